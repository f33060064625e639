//! The Confluent wire format: magic byte 0, a 4-byte big-endian schema id, then the Avro datum.

/// The first byte of every framed record.
pub const MAGIC_BYTE: u8 = 0;
/// Magic byte plus schema id.
pub const HEADER_LEN: usize = 5;

/// Why bytes are not a framed record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("empty payload")]
    Empty,
    #[error("bad magic byte {0:#04x}, expected 0x00 (confluent wire format)")]
    BadMagicByte(u8),
    #[error("truncated header: {0} bytes, need 5 (magic byte and schema id)")]
    TruncatedHeader(usize),
}

/// Frames `datum` with `schema_id`.
pub fn frame(schema_id: u32, datum: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(HEADER_LEN + datum.len());
    framed.push(MAGIC_BYTE);
    framed.extend_from_slice(&schema_id.to_be_bytes());
    framed.extend_from_slice(datum);
    framed
}

/// Splits a framed record into its schema id and datum.
#[inline]
pub fn parse_frame(bytes: &[u8]) -> Result<(u32, &[u8]), FrameError> {
    let Some(&magic) = bytes.first() else {
        return Err(FrameError::Empty);
    };
    if magic != MAGIC_BYTE {
        return Err(FrameError::BadMagicByte(magic));
    }
    if bytes.len() < HEADER_LEN {
        return Err(FrameError::TruncatedHeader(bytes.len()));
    }
    let schema_id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    Ok((schema_id, &bytes[HEADER_LEN..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let framed = frame(258, b"abc");
        assert_eq!(framed, [0, 0, 0, 1, 2, b'a', b'b', b'c']);
        assert_eq!(parse_frame(&framed), Ok((258, &b"abc"[..])));
    }

    #[test]
    fn bad_frames_say_why() {
        assert_eq!(parse_frame(&[]), Err(FrameError::Empty));
        assert_eq!(
            parse_frame(&[1, 0, 0, 0, 1]),
            Err(FrameError::BadMagicByte(1))
        );
        assert_eq!(parse_frame(&[0, 0, 1]), Err(FrameError::TruncatedHeader(3)));
    }
}
