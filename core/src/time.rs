//! Time as microseconds since the Unix epoch (UTC), the unit of Avro's `timestamp-micros`.

/// Microseconds since 1970-01-01T00:00:00Z.
pub type TimestampMicros = i64;

/// A source of the current time, so that tests and replays can pin it.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now_micros(&self) -> TimestampMicros;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_micros(&self) -> TimestampMicros {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(since_epoch.as_micros()).unwrap_or(i64::MAX)
    }
}

/// A clock that always says the same instant.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub TimestampMicros);

impl Clock for FixedClock {
    fn now_micros(&self) -> TimestampMicros {
        self.0
    }
}

/// A clock that says what it is set to: for tests that move time on (a timer's due day) without
/// waiting for it.
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicI64);

impl ManualClock {
    pub fn new(at: TimestampMicros) -> Self {
        Self(std::sync::atomic::AtomicI64::new(at))
    }

    pub fn set(&self, at: TimestampMicros) {
        self.0.store(at, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn advance(&self, by: TimestampMicros) {
        self.0.fetch_add(by, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_micros(&self) -> TimestampMicros {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}
