//! The `application/vnd.amazon.eventstream` binary framing (Amazon Bedrock's
//! `ConverseStream`, and every other AWS event stream): an incremental
//! [`Decoder`] and an [`encode`] function.
//!
//! One message, all integers big-endian:
//!
//! ```text
//! ┌──────────────┬────────────────┬─────────────┬─────────┬─────────┬─────────────┐
//! │ total length │ headers length │ prelude CRC │ headers │ payload │ message CRC │
//! │     u32      │      u32       │     u32     │         │         │     u32     │
//! └──────────────┴────────────────┴─────────────┴─────────┴─────────┴─────────────┘
//! ```
//!
//! The total length counts every byte of the message (so at least 16). The
//! prelude CRC is the CRC-32 of the 8 bytes before it; the message CRC is the
//! CRC-32 of every byte before it. A header is: name length (u8), name
//! (UTF-8), value type (u8), value:
//!
//! | type | value                     | bytes                        |
//! |------|---------------------------|------------------------------|
//! | 0    | bool `true`               | none                         |
//! | 1    | bool `false`              | none                         |
//! | 2    | byte (i8)                 | 1                            |
//! | 3    | short (i16)               | 2                            |
//! | 4    | integer (i32)             | 4                            |
//! | 5    | long (i64)                | 8                            |
//! | 6    | byte array                | u16 length + bytes           |
//! | 7    | string (UTF-8)            | u16 length + bytes           |
//! | 8    | timestamp (i64, ms epoch) | 8                            |
//! | 9    | UUID                      | 16                           |
//!
//! Messages longer than [`MAX_MESSAGE_LEN`] (16 MiB, the limit of AWS's own
//! implementations) are refused: a corrupt length never makes the decoder
//! wait for, or allocate, more than that.

use bytes::{Bytes, BytesMut};

/// The largest message the decoder accepts (and [`encode`] writes): 16 MiB.
pub const MAX_MESSAGE_LEN: usize = 16 * 1024 * 1024;
/// Total length + headers length + prelude CRC.
const PRELUDE_LEN: usize = 12;
/// Prelude + message CRC: a message with no headers and no payload.
const MIN_MESSAGE_LEN: usize = PRELUDE_LEN + 4;

const TYPE_TRUE: u8 = 0;
const TYPE_FALSE: u8 = 1;
const TYPE_BYTE: u8 = 2;
const TYPE_INT16: u8 = 3;
const TYPE_INT32: u8 = 4;
const TYPE_INT64: u8 = 5;
const TYPE_BYTES: u8 = 6;
const TYPE_STRING: u8 = 7;
const TYPE_TIMESTAMP: u8 = 8;
const TYPE_UUID: u8 = 9;

/// The value of one header.
#[derive(Debug, Clone, PartialEq)]
pub enum HeaderValue {
    Bool(bool),
    Byte(i8),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    Bytes(Vec<u8>),
    String(String),
    /// Milliseconds since the Unix epoch.
    Timestamp(i64),
    Uuid([u8; 16]),
}

/// One decoded message: its headers in wire order, and its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub headers: Vec<(String, HeaderValue)>,
    pub payload: Bytes,
}

impl Message {
    /// The value of the first header called `name`, if it is a string
    /// header (`:event-type`, `:message-type`, `:content-type`…).
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).and_then(|(_, v)| match v {
            HeaderValue::String(s) => Some(s.as_str()),
            _ => None,
        })
    }
}

/// Why an event stream cannot be decoded. Every variant means the stream is
/// corrupt (or not an event stream at all): nothing after it can be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventStreamError {
    /// The CRC-32 of the 8 prelude bytes is not the one the message carries
    /// (so its lengths cannot be trusted either).
    #[error(
        "event stream prelude checksum mismatch: the message says {expected:#010x}, its bytes give {computed:#010x}"
    )]
    PreludeCrc { expected: u32, computed: u32 },
    /// The CRC-32 of the whole message is not the one it carries.
    #[error(
        "event stream message checksum mismatch: the message says {expected:#010x}, its bytes give {computed:#010x}"
    )]
    MessageCrc { expected: u32, computed: u32 },
    /// The total length is below 16 or above [`MAX_MESSAGE_LEN`].
    #[error("event stream message length {0} is outside the allowed 16..=16777216 bytes")]
    Length(u32),
    /// The headers length does not fit in the message.
    #[error("event stream headers length {headers} does not fit in a message of {total} bytes")]
    HeadersLength { headers: u32, total: u32 },
    /// A header is cut off, has an unknown value type, or is not UTF-8 where
    /// it must be.
    #[error("malformed event stream header: {0}")]
    Header(String),
}

/// Incremental decoder: feed chunks of any size (split anywhere, even 1
/// byte); complete messages are appended to `out`. After an error the
/// decoder stays failed (every later push returns the same error).
#[derive(Debug, Default)]
pub struct Decoder {
    /// Bytes of the message being received (and possibly the next ones).
    buf: BytesMut,
    /// `(total length, headers length)` of the message at the front of
    /// `buf`, once its prelude has been checked.
    current: Option<(usize, usize)>,
    /// The first error; returned by every later push.
    failed: Option<EventStreamError>,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed one chunk. Every message it completes is appended to `out`, also
    /// those completed before an error in the same chunk.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<Message>) -> Result<(), EventStreamError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.buf.extend_from_slice(chunk);
        match self.drain(out) {
            Ok(()) => Ok(()),
            Err(e) => {
                // Nothing after a corrupt byte can be framed: free the buffer.
                self.buf = BytesMut::new();
                self.current = None;
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    /// True when no partial message is buffered (and the decoder has not
    /// failed): the stream may end here.
    pub fn is_idle(&self) -> bool {
        self.buf.is_empty() && self.failed.is_none()
    }

    fn drain(&mut self, out: &mut Vec<Message>) -> Result<(), EventStreamError> {
        loop {
            let (total, headers_len) = match self.current {
                Some(lengths) => lengths,
                None => {
                    if self.buf.len() < PRELUDE_LEN {
                        return Ok(());
                    }
                    let lengths = check_prelude(&self.buf[..PRELUDE_LEN])?;
                    self.current = Some(lengths);
                    lengths
                }
            };
            if self.buf.len() < total {
                return Ok(());
            }
            self.current = None;
            // Only this message's bytes move out; the rest stays in place.
            let frame = self.buf.split_to(total).freeze();
            out.push(decode_frame(frame, headers_len)?);
        }
    }
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Checks the 12 prelude bytes; returns (total length, headers length).
fn check_prelude(prelude: &[u8]) -> Result<(usize, usize), EventStreamError> {
    let expected = be_u32(prelude, 8);
    let computed = crc32fast::hash(&prelude[..8]);
    if expected != computed {
        return Err(EventStreamError::PreludeCrc { expected, computed });
    }
    let total = be_u32(prelude, 0);
    let headers = be_u32(prelude, 4);
    let total_len = total as usize;
    if !(MIN_MESSAGE_LEN..=MAX_MESSAGE_LEN).contains(&total_len) {
        return Err(EventStreamError::Length(total));
    }
    let headers_len = headers as usize;
    if headers_len > total_len - MIN_MESSAGE_LEN {
        return Err(EventStreamError::HeadersLength { headers, total });
    }
    Ok((total_len, headers_len))
}

/// One whole message whose prelude has been checked.
fn decode_frame(frame: Bytes, headers_len: usize) -> Result<Message, EventStreamError> {
    let crc_at = frame.len() - 4;
    let expected = be_u32(&frame, crc_at);
    let computed = crc32fast::hash(&frame[..crc_at]);
    if expected != computed {
        return Err(EventStreamError::MessageCrc { expected, computed });
    }
    let payload_at = PRELUDE_LEN + headers_len;
    let headers = decode_headers(&frame[PRELUDE_LEN..payload_at])?;
    Ok(Message { headers, payload: frame.slice(payload_at..crc_at) })
}

fn header_error(what: impl std::fmt::Display) -> EventStreamError {
    EventStreamError::Header(what.to_string())
}

/// Takes `n` bytes off the front of `rest`, or says what was cut off.
fn take<'a>(rest: &mut &'a [u8], n: usize, what: &str) -> Result<&'a [u8], EventStreamError> {
    if rest.len() < n {
        return Err(header_error(format_args!("{what} needs {n} bytes, only {} left in the headers", rest.len())));
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}

fn take_array<const N: usize>(rest: &mut &[u8], what: &str) -> Result<[u8; N], EventStreamError> {
    let mut a = [0u8; N];
    a.copy_from_slice(take(rest, N, what)?);
    Ok(a)
}

fn take_u16_prefixed<'a>(rest: &mut &'a [u8], what: &str) -> Result<&'a [u8], EventStreamError> {
    let len = u16::from_be_bytes(take_array(rest, what)?);
    take(rest, usize::from(len), what)
}

fn decode_headers(mut rest: &[u8]) -> Result<Vec<(String, HeaderValue)>, EventStreamError> {
    let mut headers = Vec::new();
    while !rest.is_empty() {
        let [name_len] = take_array::<1>(&mut rest, "a header name length")?;
        let name = take(&mut rest, usize::from(name_len), "a header name")?;
        let name = std::str::from_utf8(name).map_err(|_| header_error("a header name is not UTF-8"))?;
        let [kind] = take_array::<1>(&mut rest, "a header value type")?;
        let value = match kind {
            TYPE_TRUE => HeaderValue::Bool(true),
            TYPE_FALSE => HeaderValue::Bool(false),
            TYPE_BYTE => HeaderValue::Byte(i8::from_be_bytes(take_array(&mut rest, "a byte header")?)),
            TYPE_INT16 => HeaderValue::Int16(i16::from_be_bytes(take_array(&mut rest, "a short header")?)),
            TYPE_INT32 => HeaderValue::Int32(i32::from_be_bytes(take_array(&mut rest, "an integer header")?)),
            TYPE_INT64 => HeaderValue::Int64(i64::from_be_bytes(take_array(&mut rest, "a long header")?)),
            TYPE_BYTES => HeaderValue::Bytes(take_u16_prefixed(&mut rest, "a byte array header")?.to_vec()),
            TYPE_STRING => {
                let s = take_u16_prefixed(&mut rest, "a string header")?;
                let s = std::str::from_utf8(s)
                    .map_err(|_| header_error(format_args!("the string header `{name}` is not UTF-8")))?;
                HeaderValue::String(s.to_owned())
            }
            TYPE_TIMESTAMP => HeaderValue::Timestamp(i64::from_be_bytes(take_array(&mut rest, "a timestamp header")?)),
            TYPE_UUID => HeaderValue::Uuid(take_array(&mut rest, "a UUID header")?),
            other => return Err(header_error(format_args!("the header `{name}` has unknown value type {other}"))),
        };
        headers.push((name.to_owned(), value));
    }
    Ok(headers)
}

/// One encoded message (for the mock provider and tests).
///
/// # Panics
///
/// If a header name is longer than 255 bytes, a byte array or string value
/// longer than 65535 bytes, or the message longer than [`MAX_MESSAGE_LEN`]:
/// such a message cannot be written in this format.
pub fn encode(headers: &[(&str, HeaderValue)], payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; PRELUDE_LEN];
    for (name, value) in headers {
        let name_len = u8::try_from(name.len())
            .unwrap_or_else(|_| panic!("event stream header name of {} bytes (at most 255)", name.len()));
        out.push(name_len);
        out.extend_from_slice(name.as_bytes());
        let prefixed = |out: &mut Vec<u8>, kind: u8, b: &[u8]| {
            let len = u16::try_from(b.len()).unwrap_or_else(|_| {
                panic!("event stream header `{name}` has a value of {} bytes (at most 65535)", b.len())
            });
            out.push(kind);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(b);
        };
        match value {
            HeaderValue::Bool(true) => out.push(TYPE_TRUE),
            HeaderValue::Bool(false) => out.push(TYPE_FALSE),
            HeaderValue::Byte(v) => {
                out.push(TYPE_BYTE);
                out.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Int16(v) => {
                out.push(TYPE_INT16);
                out.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Int32(v) => {
                out.push(TYPE_INT32);
                out.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Int64(v) => {
                out.push(TYPE_INT64);
                out.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Bytes(b) => prefixed(&mut out, TYPE_BYTES, b),
            HeaderValue::String(s) => prefixed(&mut out, TYPE_STRING, s.as_bytes()),
            HeaderValue::Timestamp(v) => {
                out.push(TYPE_TIMESTAMP);
                out.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Uuid(u) => {
                out.push(TYPE_UUID);
                out.extend_from_slice(u);
            }
        }
    }
    let headers_len = out.len() - PRELUDE_LEN;
    out.extend_from_slice(payload);
    let total = out.len() + 4;
    assert!(total <= MAX_MESSAGE_LEN, "event stream message of {total} bytes (at most {MAX_MESSAGE_LEN})");
    // Both fit: total ≤ 16 MiB.
    let (total, headers_len) = (total as u32, headers_len as u32);
    out[0..4].copy_from_slice(&total.to_be_bytes());
    out[4..8].copy_from_slice(&headers_len.to_be_bytes());
    let prelude_crc = crc32fast::hash(&out[..8]);
    out[8..12].copy_from_slice(&prelude_crc.to_be_bytes());
    let message_crc = crc32fast::hash(&out);
    out.extend_from_slice(&message_crc.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests may unwrap

    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn decode_all(bytes: &[u8]) -> Result<Vec<Message>, EventStreamError> {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        d.push(bytes, &mut out)?;
        assert!(d.is_idle(), "a whole message leaves nothing buffered");
        Ok(out)
    }

    fn decode_one(bytes: &[u8]) -> Message {
        let mut v = decode_all(bytes).unwrap();
        assert_eq!(v.len(), 1);
        v.pop().unwrap()
    }

    const FOO_BAR: &[u8] = b"{'foo':'bar'}";

    // The `all_headers` test vector of AWS's JavaScript SDK
    // (aws-sdk-js-v3, packages/eventstream-marshaller test vectors): one
    // header of every type and a 13-byte payload, 204 bytes.
    const ALL_HEADERS: &str = "
        000000cc 000000af 0fae64ca
        0a 6576656e742d74797065 04 0000a00c
        0c 636f6e74656e742d74797065 07 0010 6170706c69636174696f6e2f6a736f6e
        0a 626f6f6c2066616c7365 01
        09 626f6f6c2074727565 00
        04 62797465 02 cf
        08 6279746520627566 06 0014 49276d2061206c6974746c6520746561706f7421
        09 74696d657374616d70 08 0000000000845fed
        05 696e743136 03 002a
        05 696e743634 05 00000000028757b2
        04 75756964 09 0102030405060708090a0b0c0d0e0f10
        7b27666f6f273a27626172277d
        aba5f10c";

    #[test]
    fn aws_all_headers_vector() {
        let bytes = unhex(ALL_HEADERS);
        assert_eq!(bytes.len(), 204);
        let m = decode_one(&bytes);
        let expected: Vec<(String, HeaderValue)> = vec![
            ("event-type".into(), HeaderValue::Int32(40972)),
            ("content-type".into(), HeaderValue::String("application/json".into())),
            ("bool false".into(), HeaderValue::Bool(false)),
            ("bool true".into(), HeaderValue::Bool(true)),
            ("byte".into(), HeaderValue::Byte(-49)),
            ("byte buf".into(), HeaderValue::Bytes(b"I'm a little teapot!".to_vec())),
            ("timestamp".into(), HeaderValue::Timestamp(8_675_309)),
            ("int16".into(), HeaderValue::Int16(42)),
            ("int64".into(), HeaderValue::Int64(42_424_242)),
            ("uuid".into(), HeaderValue::Uuid([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16])),
        ];
        assert_eq!(m.headers, expected);
        assert_eq!(&m.payload[..], FOO_BAR);
        assert_eq!(m.header_str("content-type"), Some("application/json"));
        assert_eq!(m.header_str("event-type"), None, "an integer header is not a string");
        assert_eq!(m.header_str("missing"), None);
        // Our encoder writes exactly AWS's bytes.
        let borrowed: Vec<(&str, HeaderValue)> = expected.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();
        assert_eq!(encode(&borrowed, FOO_BAR), bytes);
    }

    // The other positive vectors of the same test set.
    #[test]
    fn aws_small_vectors() {
        let empty = unhex("00000010 00000000 05c248eb 7d98c8ff");
        let m = decode_one(&empty);
        assert!(m.headers.is_empty() && m.payload.is_empty());
        assert_eq!(encode(&[], b""), empty);

        let no_headers = unhex("0000001d 00000000 fd528c5a 7b27666f6f273a27626172277d c3653936");
        let m = decode_one(&no_headers);
        assert!(m.headers.is_empty());
        assert_eq!(&m.payload[..], FOO_BAR);
        assert_eq!(encode(&[], FOO_BAR), no_headers);

        let int32 =
            unhex("0000002d 00000010 41c424b8 0a6576656e742d74797065 04 0000a00c 7b27666f6f273a27626172277d 36f480a0");
        let m = decode_one(&int32);
        assert_eq!(m.headers, vec![("event-type".to_owned(), HeaderValue::Int32(0xa00c))]);
        assert_eq!(&m.payload[..], FOO_BAR);

        let one_str = unhex(
            "0000003d 00000020 07fd8396 0c636f6e74656e742d74797065 07 0010 6170706c69636174696f6e2f6a736f6e
             7b27666f6f273a27626172277d 8d9c08b1",
        );
        let m = decode_one(&one_str);
        assert_eq!(m.header_str("content-type"), Some("application/json"));
        assert_eq!(&m.payload[..], FOO_BAR);
        assert_eq!(encode(&[("content-type", HeaderValue::String("application/json".into()))], FOO_BAR), one_str);
    }

    // The negative vectors of the same test set.
    #[test]
    fn aws_corrupted_vectors() {
        // A payload byte changed: the message CRC catches it.
        let corrupted_payload = unhex("0000001d 00000000 fd528c5a 5b27666f6f273a27626172277d c3653936");
        assert!(matches!(decode_all(&corrupted_payload), Err(EventStreamError::MessageCrc { .. })));
        // The total length changed: the prelude CRC catches it.
        let corrupted_length = unhex(
            "0000003e 00000020 07fd8396 0c636f6e74656e742d74797065 07 0010 6170706c69636174696f6e2f6a736f6e
             7b27666f6f273a27626172277d 8d9c08b1",
        );
        assert!(matches!(decode_all(&corrupted_length), Err(EventStreamError::PreludeCrc { .. })));
        // The headers length changed.
        let corrupted_header_len = unhex(
            "0000003d 00000021 07fd8396 0c636f6e74656e742d74797065 07 0010 6170706c69636174696f6e2f6a736f6e
             7b27666f6f273a27626172277d 8d9c08b1",
        );
        assert!(matches!(decode_all(&corrupted_header_len), Err(EventStreamError::PreludeCrc { .. })));
        // Another payload byte changed (`'` → `a`).
        let corrupted_headers = unhex(
            "0000003d 00000020 07fd8396 0c636f6e74656e742d74797065 07 0010 6170706c69636174696f6e2f6a736f6e
             7b61666f6f273a27626172277d 8d9c08b1",
        );
        assert!(matches!(decode_all(&corrupted_headers), Err(EventStreamError::MessageCrc { .. })));
    }

    fn every_type() -> Vec<(&'static str, HeaderValue)> {
        vec![
            ("t", HeaderValue::Bool(true)),
            ("f", HeaderValue::Bool(false)),
            ("byte", HeaderValue::Byte(i8::MIN)),
            ("short", HeaderValue::Int16(-12_345)),
            ("int", HeaderValue::Int32(i32::MIN)),
            ("long", HeaderValue::Int64(i64::MAX)),
            ("bytes", HeaderValue::Bytes(vec![0, 255, 1, 254])),
            ("empty bytes", HeaderValue::Bytes(Vec::new())),
            (":event-type", HeaderValue::String("contentBlockDelta".into())),
            ("unicode ✓", HeaderValue::String("héllo → wörld".into())),
            ("ts", HeaderValue::Timestamp(-1)),
            ("uuid", HeaderValue::Uuid([0xab; 16])),
            ("", HeaderValue::String(String::new())),
        ]
    }

    #[test]
    fn every_header_type_round_trips() {
        for (name, value) in every_type() {
            let bytes = encode(&[(name, value.clone())], b"payload");
            let m = decode_one(&bytes);
            assert_eq!(m.headers, vec![(name.to_owned(), value)]);
            assert_eq!(&m.payload[..], b"payload");
        }
        let all = every_type();
        let bytes = encode(&all, b"");
        let m = decode_one(&bytes);
        let expected: Vec<(String, HeaderValue)> = all.into_iter().map(|(n, v)| (n.to_owned(), v)).collect();
        assert_eq!(m.headers, expected);
        assert!(m.payload.is_empty());
        assert_eq!(m.header_str(":event-type"), Some("contentBlockDelta"));
    }

    #[test]
    fn longest_names_and_values_round_trip() {
        let name = "n".repeat(255);
        let s = "s".repeat(usize::from(u16::MAX));
        let b = vec![7u8; usize::from(u16::MAX)];
        let bytes = encode(&[(&name, HeaderValue::String(s.clone())), ("b", HeaderValue::Bytes(b.clone()))], b"x");
        let m = decode_one(&bytes);
        assert_eq!(m.headers, vec![(name, HeaderValue::String(s)), ("b".to_owned(), HeaderValue::Bytes(b))]);
    }

    #[test]
    #[should_panic(expected = "at most 255")]
    fn encode_refuses_a_name_too_long() {
        encode(&[(&"n".repeat(256), HeaderValue::Bool(true))], b"");
    }

    #[test]
    #[should_panic(expected = "at most 65535")]
    fn encode_refuses_a_value_too_long() {
        encode(&[("s", HeaderValue::String("s".repeat(65_536)))], b"");
    }

    #[test]
    fn bad_prelude_crc() {
        let mut bytes = encode(&[("a", HeaderValue::Int32(1))], b"hello");
        bytes[10] ^= 0x01;
        let e = decode_all(&bytes).unwrap_err();
        assert!(matches!(e, EventStreamError::PreludeCrc { .. }), "{e}");
        assert!(e.to_string().contains("prelude checksum"), "{e}");
    }

    #[test]
    fn bad_message_crc() {
        let mut bytes = encode(&[("a", HeaderValue::Int32(1))], b"hello");
        let at = bytes.len() - 5; // the last payload byte
        bytes[at] ^= 0x20;
        let e = decode_all(&bytes).unwrap_err();
        assert!(matches!(e, EventStreamError::MessageCrc { .. }), "{e}");
        // The CRC itself damaged.
        let mut bytes = encode(&[], b"hello");
        let last = bytes.len() - 1;
        bytes[last] ^= 0x80;
        assert!(matches!(decode_all(&bytes), Err(EventStreamError::MessageCrc { .. })));
    }

    /// A prelude with a valid CRC and the given lengths.
    fn prelude(total: u32, headers: u32) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&headers.to_be_bytes());
        let crc = crc32fast::hash(&p);
        p.extend_from_slice(&crc.to_be_bytes());
        p
    }

    #[test]
    fn length_above_the_cap_fails_as_soon_as_the_prelude_is_in() {
        let too_long = MAX_MESSAGE_LEN as u32 + 1;
        let p = prelude(too_long, 0);
        let mut d = Decoder::new();
        let mut out = Vec::new();
        // Byte by byte: nothing until the 12th prelude byte, then the error.
        for b in &p[..PRELUDE_LEN - 1] {
            d.push(std::slice::from_ref(b), &mut out).unwrap();
            assert!(!d.is_idle());
        }
        assert_eq!(d.push(&p[PRELUDE_LEN - 1..], &mut out), Err(EventStreamError::Length(too_long)));
        assert!(out.is_empty());
        assert!(d.buf.capacity() < 1024, "nothing of the announced size was allocated");
        let e = EventStreamError::Length(u32::MAX);
        assert!(e.to_string().contains("4294967295"), "{e}");
        // Exactly at the cap is accepted (the decoder then waits for the rest).
        let mut d = Decoder::new();
        d.push(&prelude(MAX_MESSAGE_LEN as u32, 0), &mut out).unwrap();
        assert!(!d.is_idle());
    }

    #[test]
    fn length_below_the_minimum_and_headers_too_long() {
        assert_eq!(decode_all(&prelude(15, 0)), Err(EventStreamError::Length(15)));
        assert_eq!(decode_all(&prelude(0, 0)), Err(EventStreamError::Length(0)));
        let e = decode_all(&prelude(20, 5)).unwrap_err();
        assert_eq!(e, EventStreamError::HeadersLength { headers: 5, total: 20 });
        assert!(e.to_string().contains("headers length 5"), "{e}");
        assert!(matches!(decode_all(&prelude(20, u32::MAX)), Err(EventStreamError::HeadersLength { .. })));
    }

    /// A message with the given raw header bytes and valid CRCs.
    fn with_raw_headers(headers: &[u8]) -> Vec<u8> {
        let mut m = prelude((MIN_MESSAGE_LEN + headers.len()) as u32, headers.len() as u32);
        m.extend_from_slice(headers);
        let crc = crc32fast::hash(&m);
        m.extend_from_slice(&crc.to_be_bytes());
        m
    }

    #[test]
    fn malformed_headers_with_valid_checksums() {
        let cases: &[(&[u8], &str)] = &[
            (&[1, b'a', 10], "unknown value type 10"),
            (&[1, b'a', 4, 0, 0], "an integer header needs 4 bytes"),
            (&[1, b'a', 7, 0, 5, b'x'], "a string header needs 5 bytes"),
            (&[1, b'a', 7, 0, 2, 0xc3, 0x28], "is not UTF-8"),
            (&[2, 0xff, 0xfe, 0], "a header name is not UTF-8"),
            (&[5, b'a'], "a header name needs 5 bytes"),
            (&[1, b'a'], "a header value type needs 1 bytes"),
            (&[1, b'a', 9, 1, 2, 3], "a UUID header needs 16 bytes"),
        ];
        for (raw, want) in cases {
            let e = decode_all(&with_raw_headers(raw)).unwrap_err();
            assert!(matches!(e, EventStreamError::Header(_)), "{raw:?}: {e}");
            assert!(e.to_string().contains(want), "{raw:?}: {e}");
        }
    }

    #[test]
    fn the_decoder_stays_failed() {
        let good = encode(&[("a", HeaderValue::Bool(true))], b"1");
        let mut bad = good.clone();
        bad[13] ^= 0xff; // in the header name
        let mut d = Decoder::new();
        let mut out = Vec::new();
        let mut stream = good.clone();
        stream.extend_from_slice(&bad);
        let e = d.push(&stream, &mut out).unwrap_err();
        assert_eq!(out.len(), 1, "the message before the error is delivered");
        assert!(!d.is_idle());
        assert_eq!(d.push(&good, &mut out), Err(e.clone()));
        assert_eq!(d.push(&[], &mut out), Err(e));
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn messages_split_anywhere_and_partial_ones_keep_the_decoder_busy() {
        let a = encode(&[(":event-type", HeaderValue::String("messageStart".into()))], br#"{"role":"assistant"}"#);
        let b = encode(&[], b"");
        let c = encode(&[("n", HeaderValue::Int64(-5))], &[0u8; 300]);
        let stream: Vec<u8> = [a.as_slice(), &b, &c].concat();
        let whole = decode_all(&stream).unwrap();
        assert_eq!(whole.len(), 3);
        for split in 0..=stream.len() {
            let mut d = Decoder::new();
            let mut out = Vec::new();
            d.push(&stream[..split], &mut out).unwrap();
            let boundary = [0, a.len(), a.len() + b.len(), stream.len()].contains(&split);
            assert_eq!(d.is_idle(), boundary, "split at {split}");
            d.push(&stream[split..], &mut out).unwrap();
            assert!(d.is_idle());
            assert_eq!(out, whole, "split at {split}");
        }
    }
}
