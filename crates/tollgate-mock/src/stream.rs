//! Streamed answers: a provider-neutral script of events, bent by stream faults, sent paced.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http::{header, HeaderValue};
use serde_json::Value;

use crate::knobs::{Fault, Knobs};

/// What an intermediary's error page looks like when it answers 200.
pub(crate) const GARBAGE: &str = "<html><body><h1>502 Bad Gateway</h1></body></html>";

/// How long `timeout` and `stall` faults keep a request hanging.
pub(crate) const HANG: Duration = Duration::from_secs(3600);

/// `data: <json>\n\n` (OpenAI chat).
pub(crate) fn data(json: &Value) -> Bytes {
    Bytes::from(format!("data: {json}\n\n"))
}

/// `data: <text>\n\n` for a chunk already written as JSON text.
pub(crate) fn data_text(json: &str) -> Bytes {
    Bytes::from(format!("data: {json}\n\n"))
}

/// `event: <name>\ndata: <json>\n\n` (Anthropic, OpenAI Responses).
pub(crate) fn event(name: &str, json: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {json}\n\n"))
}

/// A stream's events in three parts, so faults can cut it at the content.
#[derive(Debug, Default)]
pub(crate) struct Script {
    /// Events before the first content delta.
    pub head: Vec<Bytes>,
    /// One event per content delta.
    pub deltas: Vec<Bytes>,
    /// The finish, usage and terminal events.
    pub tail: Vec<Bytes>,
}

/// An extra event a fault inserts half-way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inserted {
    /// The provider's in-stream error event.
    Error,
    /// An event whose JSON does not parse.
    Malformed,
}

impl Script {
    /// Position (counting from 0) at which a fault cuts or inserts: after the
    /// head and half the deltas. Responses-API sequence numbers use it.
    pub(crate) fn cut_position(&self) -> usize {
        self.head.len() + self.deltas.len() / 2
    }

    /// The streamed response, with the request's fault applied; `insert`
    /// builds the inserted event for `stream_error` and `malformed`.
    pub(crate) fn into_response(
        self,
        knobs: &Knobs,
        content_type: &'static str,
        insert: impl FnOnce(Inserted) -> Bytes,
    ) -> Response {
        let plan = self.plan(knobs, insert);
        let body = paced_body(plan.events, Duration::from_millis(knobs.chunk_delay_ms), plan.stall_at, plan.broken_at);
        let headers = [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ];
        (headers, body).into_response()
    }

    /// The events to send once the request's fault is applied (see
    /// [`Self::into_response`]), for a caller that frames or paces them itself.
    pub(crate) fn plan(self, knobs: &Knobs, insert: impl FnOnce(Inserted) -> Bytes) -> Plan {
        let half = self.deltas.len() / 2;
        let Self { head, mut deltas, tail } = self;
        let mut stall_at = None;
        let mut broken_at = None;
        let mut events = head;
        match knobs.fault {
            Some(Fault::Garbage) => {
                events.insert(0, Bytes::from(format!("data: {GARBAGE}\n\n")));
                events.extend(deltas);
                events.extend(tail);
            }
            Some(Fault::ResetMid) => {
                events.extend(deltas.drain(..half.max(1)));
                broken_at = Some(events.len());
            }
            Some(Fault::Truncate) => events.extend(deltas.drain(..half)),
            Some(Fault::Stall) => {
                events.extend(deltas.drain(..half));
                stall_at = Some(events.len());
            }
            Some(Fault::StreamError) => {
                events.extend(deltas.drain(..half));
                events.push(insert(Inserted::Error));
            }
            Some(Fault::Malformed) => {
                let rest = deltas.split_off(half);
                events.extend(deltas);
                events.push(insert(Inserted::Malformed));
                events.extend(rest);
                events.extend(tail);
            }
            _ => {
                events.extend(deltas);
                events.extend(tail);
            }
        }
        Plan { events, stall_at, broken_at }
    }
}

/// A stream's events with its fault applied.
#[derive(Debug)]
pub(crate) struct Plan {
    pub events: Vec<Bytes>,
    /// Hang (an hour) before this event (`stall`).
    pub stall_at: Option<usize>,
    /// Break the connection at this event (`reset_mid`).
    pub broken_at: Option<usize>,
}

/// A chunked body sending `events` with `delay` between them, hanging before
/// event `stall_at` (or after the last one, if it equals the length), or
/// breaking the connection at event `broken_at`.
pub(crate) fn paced_body(
    events: Vec<Bytes>,
    delay: Duration,
    stall_at: Option<usize>,
    broken_at: Option<usize>,
) -> Body {
    if delay.is_zero() && stall_at.is_none() && broken_at.is_none() {
        // The fast path: one write, still chunked like a real stream.
        let mut all = BytesMut::with_capacity(events.iter().map(Bytes::len).sum());
        events.iter().for_each(|e| all.extend_from_slice(e));
        let once = futures_util::stream::once(std::future::ready(Ok::<_, Infallible>(all.freeze())));
        return Body::from_stream(once);
    }
    let stream = futures_util::stream::unfold((events.into_iter(), 0usize), move |(mut events, i)| async move {
        if stall_at == Some(i) {
            tokio::time::sleep(HANG).await;
            return None;
        }
        if broken_at == Some(i) {
            // After a pause, so what came before is on the wire first.
            tokio::time::sleep(Duration::from_millis(50)).await;
            return Some((Err(std::io::Error::other("mock fault=reset_mid")), (events, usize::MAX)));
        }
        if i == usize::MAX {
            return None;
        }
        let next = events.next()?;
        if i > 0 && !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Some((Ok::<_, std::io::Error>(next), (events, i + 1)))
    });
    Body::from_stream(stream)
}
