//! The Amazon event stream decoder against its encoder, on random messages:
//! any split of the bytes gives the same messages, and any single flipped
//! bit is reported, never decoded into a message.
#![allow(clippy::unwrap_used)] // tests may unwrap

use proptest::prelude::*;
use tollgate_providers::eventstream::{encode, Decoder, EventStreamError, HeaderValue, Message};

fn header_value() -> impl Strategy<Value = HeaderValue> {
    prop_oneof![
        any::<bool>().prop_map(HeaderValue::Bool),
        any::<i8>().prop_map(HeaderValue::Byte),
        any::<i16>().prop_map(HeaderValue::Int16),
        any::<i32>().prop_map(HeaderValue::Int32),
        any::<i64>().prop_map(HeaderValue::Int64),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(HeaderValue::Bytes),
        "\\PC{0,40}".prop_map(HeaderValue::String),
        any::<i64>().prop_map(HeaderValue::Timestamp),
        any::<[u8; 16]>().prop_map(HeaderValue::Uuid),
    ]
}

/// Headers (names of up to 16 characters, any script) and a payload of up to 4 KiB.
fn message() -> impl Strategy<Value = Message> {
    (prop::collection::vec(("\\PC{0,16}", header_value()), 0..8), prop::collection::vec(any::<u8>(), 0..4096))
        .prop_map(|(headers, payload)| Message { headers, payload: payload.into() })
}

fn encoded(m: &Message) -> Vec<u8> {
    let headers: Vec<(&str, HeaderValue)> = m.headers.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();
    encode(&headers, &m.payload)
}

/// Feeds `bytes` in chunks of the given sizes (cycled); returns the
/// messages and the first error, if any.
fn feed(d: &mut Decoder, bytes: &[u8], sizes: &[usize]) -> (Vec<Message>, Option<EventStreamError>) {
    let mut out = Vec::new();
    let mut first_error = None;
    let mut rest = bytes;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes.get(i % sizes.len().max(1)).copied().unwrap_or(rest.len()).clamp(1, rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        i += 1;
        if let Err(e) = d.push(chunk, &mut out) {
            if let Some(first) = &first_error {
                assert_eq!(&e, first, "a failed decoder repeats its error");
            }
            first_error.get_or_insert(e);
        }
    }
    (out, first_error)
}

proptest! {
    #[test]
    fn any_split_gives_the_same_messages(
        messages in prop::collection::vec(message(), 1..6),
        sizes in prop::collection::vec(1usize..700, 1..40),
    ) {
        let stream: Vec<u8> = messages.iter().flat_map(encoded).collect();

        // (a) whole
        let mut d = Decoder::new();
        let (out, err) = feed(&mut d, &stream, &[stream.len()]);
        prop_assert_eq!(err, None);
        prop_assert_eq!(&out, &messages);
        prop_assert!(d.is_idle());

        // (b) byte by byte
        let mut d = Decoder::new();
        let (out, err) = feed(&mut d, &stream, &[1]);
        prop_assert_eq!(err, None);
        prop_assert_eq!(&out, &messages);
        prop_assert!(d.is_idle());

        // (c) random splits
        let mut d = Decoder::new();
        let (out, err) = feed(&mut d, &stream, &sizes);
        prop_assert_eq!(err, None);
        prop_assert_eq!(&out, &messages);
        prop_assert!(d.is_idle());
    }

    #[test]
    fn any_flipped_bit_is_an_error(
        m in message(),
        next in message(),
        bit in any::<prop::sample::Index>(),
        sizes in prop::collection::vec(1usize..700, 1..10),
    ) {
        let original = encoded(&m);
        let bit = bit.index(original.len() * 8);
        let mut corrupt = original.clone();
        corrupt[bit / 8] ^= 1 << (bit % 8);
        // Enough bytes after it that a damaged length could not just wait.
        let mut stream = corrupt;
        stream.extend_from_slice(&encoded(&next));

        let mut d = Decoder::new();
        let (out, err) = feed(&mut d, &stream, &sizes);
        // What must hold whatever the checksum: never the original message
        // (nor any other) out of damaged bytes, and no clean end.
        prop_assert!(!out.contains(&m), "the damaged message was decoded as the original");
        prop_assert!(err.is_some() || !d.is_idle());
        // CRC-32 detects every single-bit error, so in fact: an error at
        // once, from the checksum that covers the flipped bit.
        prop_assert!(out.is_empty(), "decoded {:?}", out);
        prop_assert!(!d.is_idle());
        match err {
            Some(EventStreamError::PreludeCrc { .. }) => prop_assert!(bit < 12 * 8, "bit {}", bit),
            Some(EventStreamError::MessageCrc { .. }) => prop_assert!(bit >= 12 * 8, "bit {}", bit),
            other => prop_assert!(false, "bit {}: {:?}", bit, other),
        }
    }
}

#[test]
fn a_stream_cut_mid_message_is_not_idle() {
    let bytes = encode(&[(":message-type", HeaderValue::String("event".into()))], b"{}");
    for cut in 1..bytes.len() {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        d.push(&bytes[..cut], &mut out).unwrap();
        assert!(out.is_empty());
        assert!(!d.is_idle(), "cut at {cut}");
    }
}
