//! Incremental Server-Sent Events parser that keeps each event's original bytes.
//!
//! Upstream chunks can split anywhere (mid-line, mid-UTF-8 character, between
//! `\r` and `\n`), so bytes are buffered until a whole event (ended by a blank
//! line) is available. Each event keeps its raw bytes so a relay can forward
//! them untouched instead of re-serialising.

use bytes::Bytes;

/// One SSE block: the lines up to and including the blank line that ends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The exact bytes upstream sent for this block (blank line included).
    pub raw: Bytes,
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n` (SSE rule).
    pub data: String,
    /// At least one `data:` line was present (a block of only comments or
    /// `retry:` / `id:` fields has none and dispatches no event in SSE terms).
    pub has_data: bool,
}

impl Event {
    /// The `event:` name, or `""`.
    pub fn name(&self) -> &str {
        self.event.as_deref().unwrap_or("")
    }
}

/// Feed bytes in with [`Parser::push`], take events out as they complete.
#[derive(Debug, Default)]
pub struct Parser {
    buf: Vec<u8>,
    /// Where the current (unfinished) line starts in `buf`.
    line_start: usize,
    /// Where scanning for the next line end resumes (avoids rescanning a
    /// long line when it arrives byte by byte).
    scan: usize,
    event: Option<String>,
    data: String,
    has_data: bool,
    any_line: bool,
}

impl Parser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Append a chunk and push every event it completes onto `events`.
    pub fn push(&mut self, chunk: &[u8], events: &mut Vec<Event>) {
        self.buf.extend_from_slice(chunk);
        self.drain(false, events);
    }

    /// The stream ended: a trailing block without its blank line is still
    /// dispatched (upstreams sometimes close right after the last `data:` line).
    pub fn finish(&mut self, events: &mut Vec<Event>) {
        self.drain(true, events);
        if self.line_start < self.buf.len() {
            let start = self.line_start;
            let end = self.buf.len();
            self.line(start, end);
            self.line_start = end;
        }
        if self.any_line {
            let mut raw = std::mem::take(&mut self.buf);
            if !raw.ends_with(b"\n") && !raw.ends_with(b"\r") {
                raw.push(b'\n');
            }
            raw.push(b'\n');
            events.push(self.take_event(Bytes::from(raw)));
        }
        self.buf.clear();
        self.line_start = 0;
        self.scan = 0;
    }

    fn drain(&mut self, at_eof: bool, events: &mut Vec<Event>) {
        let mut event_start = 0usize;
        let mut i = self.scan;
        while i < self.buf.len() {
            let b = self.buf[i];
            if b != b'\n' && b != b'\r' {
                i += 1;
                continue;
            }
            let content_end = i;
            let next = if b == b'\r' {
                match self.buf.get(i + 1) {
                    Some(b'\n') => i + 2,
                    Some(_) => i + 1,
                    // A lone `\r` at the end may be the first half of `\r\n`.
                    None if at_eof => i + 1,
                    None => break,
                }
            } else {
                i + 1
            };
            let start = self.line_start;
            if content_end == start {
                if self.any_line {
                    let raw = Bytes::copy_from_slice(&self.buf[event_start..next]);
                    events.push(self.take_event(raw));
                }
                event_start = next;
            } else {
                self.line(start, content_end);
            }
            self.line_start = next;
            i = next;
        }
        self.scan = i;
        // Drop what has been dispatched; keep the unfinished event's bytes.
        if event_start > 0 {
            self.buf.drain(..event_start);
            self.line_start -= event_start;
            self.scan -= event_start;
        }
    }

    fn line(&mut self, start: usize, end: usize) {
        self.any_line = true;
        let line = &self.buf[start..end];
        if line.first() == Some(&b':') {
            return;
        }
        let (field, value) = match line.iter().position(|&c| c == b':') {
            Some(p) => {
                let v = &line[p + 1..];
                (&line[..p], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.has_data = true;
                self.data.push_str(&String::from_utf8_lossy(value));
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {}
        }
    }

    fn take_event(&mut self, raw: Bytes) -> Event {
        self.any_line = false;
        Event {
            raw,
            event: self.event.take(),
            data: std::mem::take(&mut self.data),
            has_data: std::mem::replace(&mut self.has_data, false),
        }
    }
}

/// `data: {json}\n\n`
pub(crate) fn data_event(json: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(json.len() + 8);
    v.extend_from_slice(b"data: ");
    v.extend_from_slice(json);
    v.extend_from_slice(b"\n\n");
    Bytes::from(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<Event> {
        let mut p = Parser::new();
        let mut ev = Vec::new();
        for c in chunks {
            p.push(c, &mut ev);
        }
        p.finish(&mut ev);
        ev
    }

    #[test]
    fn multi_line_data_event_name_and_comments() {
        let ev = parse_all(&[b": hi\n\nevent: x\ndata: a\ndata:b\nid: 3\n\n"]);
        assert_eq!(ev.len(), 2);
        assert!(!ev[0].has_data);
        assert_eq!(ev[0].raw.as_ref(), b": hi\n\n");
        assert_eq!(ev[1].name(), "x");
        assert_eq!(ev[1].data, "a\nb");
        assert_eq!(ev[1].raw.as_ref(), b"event: x\ndata: a\ndata:b\nid: 3\n\n");
    }

    #[test]
    fn crlf_split_between_cr_and_lf() {
        let ev = parse_all(&[b"data: 1\r", b"\n\r", b"\ndata: 2\r\n\r\n"]);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].data, "1");
        assert_eq!(ev[0].raw.as_ref(), b"data: 1\r\n\r\n");
        assert_eq!(ev[1].data, "2");
    }

    #[test]
    fn lone_cr_line_endings() {
        let ev = parse_all(&[b"data: 1\r\rdata: 2\r\r"]);
        assert_eq!(ev.iter().map(|e| e.data.as_str()).collect::<Vec<_>>(), ["1", "2"]);
    }

    #[test]
    fn utf8_split_mid_character() {
        let s = "data: héllo ✓\n\n".as_bytes();
        let chunks: Vec<&[u8]> = s.chunks(1).collect();
        let ev = parse_all(&chunks);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].data, "héllo ✓");
    }

    #[test]
    fn trailing_event_without_blank_line_is_flushed() {
        let ev = parse_all(&[b"data: a\n\ndata: [DONE]"]);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[1].data, "[DONE]");
        assert_eq!(ev[1].raw.as_ref(), b"data: [DONE]\n\n");
    }
}
