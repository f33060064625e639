//! The stored form of a log record:
//! `timestamp i64 BE | key length i32 BE (-1: none) | key | header count u32 BE |
//!  (name length u16 BE | name | value length u32 BE | value)* | value`.

use bytes::Bytes;
use kinfold_core::ports::{LogRecord, OutgoingRecord};

pub fn encode(record: &OutgoingRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        16 + record.key.as_ref().map_or(0, Bytes::len)
            + record.value.len()
            + record
                .headers
                .iter()
                .map(|(name, value)| 6 + name.len() + value.len())
                .sum::<usize>(),
    );
    out.extend_from_slice(&record.timestamp_millis.to_be_bytes());
    match &record.key {
        Some(key) => {
            out.extend_from_slice(&(key.len() as i32).to_be_bytes());
            out.extend_from_slice(key);
        }
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
    }
    out.extend_from_slice(&(record.headers.len() as u32).to_be_bytes());
    for (name, value) in &record.headers {
        out.extend_from_slice(&(name.len() as u16).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value);
    }
    out.extend_from_slice(&record.value);
    out
}

struct Cursor {
    bytes: Bytes,
    position: usize,
}

impl Cursor {
    fn take(&mut self, length: usize) -> Option<Bytes> {
        let end = self.position.checked_add(length)?;
        if end > self.bytes.len() {
            return None;
        }
        let slice = self.bytes.slice(self.position..end);
        self.position = end;
        Some(slice)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.as_ref().try_into().ok()
    }
}

pub fn decode(partition: u32, offset: u64, stored: Bytes) -> Option<LogRecord> {
    let mut cursor = Cursor {
        bytes: stored,
        position: 0,
    };
    let timestamp_millis = i64::from_be_bytes(cursor.array()?);
    let key_length = i32::from_be_bytes(cursor.array()?);
    let key = if key_length < 0 {
        None
    } else {
        Some(cursor.take(key_length as usize)?)
    };
    let header_count = u32::from_be_bytes(cursor.array()?);
    let mut headers = Vec::with_capacity(header_count.min(64) as usize);
    for _ in 0..header_count {
        let name_length = u16::from_be_bytes(cursor.array()?);
        let name = String::from_utf8(cursor.take(name_length as usize)?.to_vec()).ok()?;
        let value_length = u32::from_be_bytes(cursor.array()?);
        headers.push((name, cursor.take(value_length as usize)?));
    }
    let value = cursor.bytes.slice(cursor.position..);
    Some(LogRecord {
        partition,
        offset,
        key,
        value,
        headers,
        timestamp_millis,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn records_round_trip(
            key in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            value in proptest::collection::vec(any::<u8>(), 0..200),
            headers in proptest::collection::vec(("[a-z-]{0,12}", proptest::collection::vec(any::<u8>(), 0..20)), 0..4),
            timestamp_millis in any::<i64>(),
        ) {
            let record = OutgoingRecord {
                key: key.map(Bytes::from),
                value: Bytes::from(value),
                headers: headers.into_iter().map(|(name, value)| (name, Bytes::from(value))).collect(),
                timestamp_millis,
                partition: None,
            };
            let decoded = decode(3, 9, Bytes::from(encode(&record))).expect("decodes");
            prop_assert_eq!(decoded.key, record.key);
            prop_assert_eq!(decoded.value, record.value);
            prop_assert_eq!(decoded.headers, record.headers);
            prop_assert_eq!(decoded.timestamp_millis, record.timestamp_millis);
            prop_assert_eq!((decoded.partition, decoded.offset), (3, 9));
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(0, 0, Bytes::from(bytes));
        }
    }
}
