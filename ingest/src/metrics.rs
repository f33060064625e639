//! Every metric the ingest stage emits, in one place. Names carry the `kinfold_` prefix.

/// Names of the ingest metrics, for descriptions and tests.
pub const EVENTS_ACCEPTED: &str = "kinfold_events_accepted_total";
pub const EVENTS_DUPLICATE: &str = "kinfold_events_duplicate_total";
pub const EVENTS_REJECTED: &str = "kinfold_events_rejected_total";
pub const IDENTIFIERS_DROPPED: &str = "kinfold_identifiers_dropped_total";
pub const APPEND_LATENCY: &str = "kinfold_log_append_seconds";

/// Describes the metrics to the installed recorder.
pub fn describe() {
    metrics::describe_counter!(
        EVENTS_ACCEPTED,
        "events appended to the canonical log, by source"
    );
    metrics::describe_counter!(
        EVENTS_DUPLICATE,
        "events recognised as already in the canonical log"
    );
    metrics::describe_counter!(
        EVENTS_REJECTED,
        "inputs sent to the dead-letter log, by source and reason"
    );
    metrics::describe_counter!(
        IDENTIFIERS_DROPPED,
        "junk identifiers dropped from kept events"
    );
    metrics::describe_histogram!(
        APPEND_LATENCY,
        metrics::Unit::Seconds,
        "time to append a batch durably"
    );
}

pub fn accepted(source: &'static str) {
    metrics::counter!(EVENTS_ACCEPTED, "source" => source).increment(1);
}

pub fn duplicate(source: &'static str) {
    metrics::counter!(EVENTS_DUPLICATE, "source" => source).increment(1);
}

pub fn rejected(source: &'static str, reason_code: &str) {
    metrics::counter!(EVENTS_REJECTED, "source" => source, "reason" => reason_code.to_owned())
        .increment(1);
}

pub fn identifier_dropped(kind: &'static str, why: &'static str) {
    metrics::counter!(IDENTIFIERS_DROPPED, "kind" => kind, "why" => why).increment(1);
}

pub fn append_latency(log: &'static str, seconds: f64) {
    metrics::histogram!(APPEND_LATENCY, "log" => log).record(seconds);
}
