//! Event time of a source record, in UTC. Tills send local wall-clock time, often without an
//! offset; the store's zone (default Asia/Shanghai) resolves it.

use crate::error::{RejectCode, Rejection};
use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;
use kinfold_core::event::EventBody;
use kinfold_core::time::TimestampMicros;

/// The zone of a till that does not say.
pub const DEFAULT_TIME_ZONE: Tz = chrono_tz::Asia::Shanghai;

pub fn event_time(body: &EventBody) -> Result<TimestampMicros, Rejection> {
    match body {
        EventBody::PosTransaction(transaction) => {
            let day = transaction.business_day.trim();
            let parsed = NaiveDate::parse_from_str(day, "%Y-%m-%d").ok();
            // Only the canonical spelling: `2026-11-5` and `2026-11-05` would give one sale two ids.
            parsed
                .filter(|date| date.format("%Y-%m-%d").to_string() == day)
                .ok_or_else(|| {
                    Rejection::new(
                        RejectCode::InvalidField,
                        format!(
                            "business_day `{}` is not YYYY-MM-DD",
                            transaction.business_day
                        ),
                    )
                })?;
            resolve_local(
                &transaction.occurred_at_local,
                transaction.time_zone.as_deref(),
            )
        }
        EventBody::EcomOrder(order) => Ok(order.occurred_at),
        EventBody::EcomRefund(refund) => Ok(refund.occurred_at),
        EventBody::Wechat(event) => Ok(event.occurred_at),
        EventBody::Membership(event) => Ok(event.occurred_at),
    }
}

/// Resolves an ISO 8601 time with or without offset; without one, in `zone` (IANA name).
pub fn resolve_local(text: &str, zone: Option<&str>) -> Result<TimestampMicros, Rejection> {
    if let Ok(with_offset) = DateTime::parse_from_rfc3339(text) {
        return Ok(with_offset.timestamp_micros());
    }
    let naive = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
    .ok_or_else(|| {
        Rejection::new(
            RejectCode::InvalidField,
            format!("occurred_at_local `{text}` is not an ISO 8601 local time"),
        )
    })?;
    let zone: Tz = match zone {
        None => DEFAULT_TIME_ZONE,
        Some(name) => name.parse().map_err(|_| {
            Rejection::new(
                RejectCode::InvalidField,
                format!("unknown time zone `{name}`"),
            )
        })?,
    };
    match zone.from_local_datetime(&naive) {
        LocalResult::Single(time) | LocalResult::Ambiguous(time, _) => Ok(time.timestamp_micros()),
        // A wall-clock time skipped by a daylight-saving jump: take it as the hour after.
        LocalResult::None => zone
            .from_local_datetime(&(naive + chrono::Duration::hours(1)))
            .earliest()
            .map(|time| time.timestamp_micros())
            .ok_or_else(|| {
                Rejection::new(
                    RejectCode::InvalidField,
                    format!("`{text}` does not exist in {zone}"),
                )
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_times_default_to_shanghai() {
        // 2026-11-20 14:03 in Shanghai is 06:03 UTC.
        let micros = resolve_local("2026-11-20T14:03:00", None).expect("parses");
        assert_eq!(micros, 1_795_154_580_000_000);
        assert_eq!(
            resolve_local("2026-11-20T06:03:00Z", None).ok(),
            Some(micros)
        );
        assert_eq!(
            resolve_local("2026-11-20 06:03:00", Some("Europe/London")).ok(),
            Some(micros)
        );
        assert!(resolve_local("yesterday", None).is_err());
        assert!(resolve_local("2026-11-20T14:03:00", Some("Mars/Olympus")).is_err());
    }
}
