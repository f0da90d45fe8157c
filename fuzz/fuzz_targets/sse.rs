//! The SSE parser: any bytes, cut anywhere, give the same events as the
//! same bytes in one piece, and never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_providers::sse::Parser;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, body)) = data.split_first() else { return };
    let mut whole = Vec::new();
    let mut p = Parser::new();
    p.push(body, &mut whole);
    p.finish(&mut whole);

    // The same bytes in pieces of 1..=16 bytes, sizes drawn from the first byte.
    let mut pieces = Vec::new();
    let mut p = Parser::new();
    let mut step = usize::from(cut % 16) + 1;
    for chunk in body.chunks(step) {
        p.push(chunk, &mut pieces);
        step = step % 16 + 1;
    }
    p.finish(&mut pieces);
    assert_eq!(format!("{whole:?}"), format!("{pieces:?}"), "chunking changed the events");
});
