//! `GET /sse?symbols=A,B`: the Server-Sent Events transport.
//!
//! Everything a client can get wrong (origin, token, symbols, entitlement, the connection
//! limits) is answered with a JSON error before the stream starts. Then one task per stream
//! drains its engine subscriber into chunks of complete events and hands them to the
//! response body over a bounded channel. The task waits for room in that channel *before*
//! draining, so a reader that does not keep up holds back only its own task: the engine
//! meanwhile conflates it (or, with `--slow-consumer disconnect`, the stream ends) and nobody
//! else waits.
//!
//! With authentication on, the stream ends when the token expires (`exp` plus leeway): SSE
//! has no way to replace a token, so the client reconnects with a fresh one and resumes from
//! its last event id.
//!
//! Every tick event carries `id: <cursor>`, the engine's `<epoch>-<position>`, so a
//! reconnecting client (`Last-Event-ID` or `?last_event_id=`) resumes with nothing lost or
//! repeated. A reset event carries the id of the last event sent before it; resets come
//! first in a stream, so usually that is the cursor the client resumed from, which makes
//! reconnecting before the snapshot arrives produce the same reset again.

use std::{io::Write as _, sync::Arc, time::Duration};

use bytes::Bytes;
use feed_engine::{Drain, Event, Resume, Selector, SlowConsumer, Subscriber, Tick};
use http::{header, HeaderValue, Request, Response};
use hyper::body::Incoming;
use tokio::{
    sync::mpsc,
    time::{interval, sleep_until, Instant, MissedTickBehavior},
};
use tracing::Instrument as _;

use crate::{
    auth,
    body::Body,
    closing::Closing,
    limits::ConnectionGuard,
    origin,
    pacing::Pacing,
    query,
    reply::{self, WireError},
    state::State,
};

/// Chunks queued between the stream task and hyper. Small: each holds up to a batch.
const QUEUE_CHUNKS: usize = 2;
/// Stop adding events to a chunk past this many bytes.
const BATCH_BYTES: usize = 63 * 1024;
/// How often a stream whose reader is not taking chunks checks for lag (`disconnect` policy).
const LAG_CHECK: Duration = Duration::from_millis(100);
/// Longest client cursor echoed back as a reset's id.
const MAX_ECHOED_CURSOR_BYTES: usize = 128;
/// Sent first, so `curl -N` shows output at once; also sets the browser's reconnect delay.
const OPENING: &[u8] = b"retry: 1000\n\n";
const KEEPALIVE: &[u8] = b": keepalive\n\n";

/// Answers `/sse`: an event stream, or a JSON error before it starts.
pub(crate) fn open(request: &Request<Incoming>, state: &Arc<State>, peer: std::net::SocketAddr) -> Response<Body> {
    match start(request, state, peer) {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

fn start(
    request: &Request<Incoming>,
    state: &Arc<State>,
    peer: std::net::SocketAddr,
) -> Result<Response<Body>, WireError> {
    let query = request.uri().query();
    // An EventSource sends `Origin` only cross-origin; without one there is nothing to check.
    origin::check(request.headers(), &state.config.allowed_origins)?;
    let grant = auth::authenticate(state.auth.as_ref(), request.headers(), query)?;
    let selectors = query::symbols(query, state.config.max_subscriptions)?
        .ok_or_else(WireError::missing_symbols)?
        .selectors;
    grant.check(&selectors)?;
    let cursor = request
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| query::param(query, "last_event_id").map(std::borrow::Cow::into_owned))
        .filter(|c| !c.trim().is_empty());
    let guard = state.limits.acquire(peer.ip())?;

    let (chunks, body) = mpsc::channel(QUEUE_CHUNKS);
    let stream = run(Arc::clone(state), selectors, cursor, grant.expires_at(), chunks, guard);
    state.tracker.spawn(stream.instrument(tracing::debug_span!("sse")));

    let mut response = Response::new(Body::Stream(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// The stream task: ends when the client goes, the server shuts down, or (with the
/// `disconnect` policy) the client falls behind the engine.
async fn run(
    state: Arc<State>,
    selectors: Vec<Selector>,
    cursor: Option<String>,
    expires_at: Option<Instant>,
    chunks: mpsc::Sender<Bytes>,
    _guard: ConnectionGuard,
) {
    let engine = &state.engine;
    let mut subscriber = engine.subscriber();
    let resume = match cursor.as_deref().map(|text| engine.parse_cursor(text)) {
        None => Resume::Fresh,
        Some(Ok(position)) => Resume::Position(position),
        Some(Err(error)) => {
            tracing::debug!(%error, "cannot resume from the client's cursor");
            Resume::Reset
        }
    };
    subscriber.subscribe(&selectors, resume);
    tracing::debug!(?resume, "sse open");

    let mut events = EventWriter {
        cursor_prefix: &state.cursor_prefix,
        epoch: engine.epoch(),
        client_cursor: cursor.filter(|c| is_safe_field(c)),
        last_position: None,
        out: OPENING.to_vec(),
    };
    let heartbeat = state.config.heartbeat;
    let mut last_sent = Instant::now();
    let keepalive = sleep_until(last_sent + heartbeat);
    tokio::pin!(keepalive);
    let check_lag = engine.config().slow_consumer == SlowConsumer::Disconnect;
    let mut lag_check = interval(LAG_CHECK);
    lag_check.set_missed_tick_behavior(MissedTickBehavior::Delay);

    // Lives across iterations: re-creating it would register with the server's shutdown
    // notification (a shared lock) once per chunk. Token expiry ends the stream the same way.
    let shutdown = shutdown_or_expiry(&state.closing, expires_at);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = chunks.reserve() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = lag_check.tick(), if check_lag => {
                if subscriber.is_lagging() {
                    tracing::debug!("slow consumer: ending the stream");
                    break;
                }
                continue;
            }
        };
        // Under load, let the ticks of one pacing window gather in the engine's ring so they
        // go out as one chunk (see `pacing`); an idle stream has no window and waits not at all.
        let due = last_sent + state.pacing.window();
        if Instant::now() < due {
            tokio::select! {
                biased;
                () = &mut shutdown => return,
                () = chunks.closed() => return,
                () = sleep_until(due) => {}
            }
        }
        while events.out.is_empty() {
            tokio::select! {
                biased;
                () = &mut shutdown => return,
                () = chunks.closed() => return,
                () = &mut keepalive => {
                    if last_sent.elapsed() >= heartbeat {
                        // Silent for a whole interval: an idle stream keeps no big buffer.
                        events.out = KEEPALIVE.to_vec();
                        keepalive.as_mut().reset(Instant::now() + heartbeat);
                    } else {
                        keepalive.as_mut().reset(last_sent + heartbeat);
                    }
                }
                () = subscriber.ready() => {
                    if events.fill(&mut subscriber, &state.pacing) == Drain::Lagged {
                        tracing::debug!("slow consumer: ending the stream");
                        return;
                    }
                }
            }
        }
        permit.send(Bytes::copy_from_slice(&events.out));
        events.out.clear();
        last_sent = Instant::now();
    }
    tracing::debug!("sse closed");
}

/// Resolves when the server shuts down or, with a token, when it expires. Polled on every
/// wake-up of the stream, so it watches [`Closing`] rather than the token (see `closing`).
async fn shutdown_or_expiry(closing: &Closing, expires_at: Option<Instant>) {
    let watch = closing.watch();
    tokio::pin!(watch);
    let mut registered = false;
    let shutdown = closing.closed(watch.as_mut(), &mut registered);
    let Some(expires_at) = expires_at else { return shutdown.await };
    tokio::select! {
        () = shutdown => {}
        () = sleep_until(expires_at) => tracing::debug!("token expired: ending the stream"),
    }
}

/// Can the client's cursor be written back as an `id:` field as is?
fn is_safe_field(text: &str) -> bool {
    text.len() <= MAX_ECHOED_CURSOR_BYTES && text.bytes().all(|b| b.is_ascii_graphic())
}

/// Frames engine events as SSE events into `out`.
struct EventWriter<'a> {
    cursor_prefix: &'a str,
    epoch: &'a str,
    /// The cursor the client resumed from, when it can be echoed.
    client_cursor: Option<String>,
    /// The position of the last tick event written.
    last_position: Option<u64>,
    out: Vec<u8>,
}

impl EventWriter<'_> {
    fn fill(&mut self, subscriber: &mut Subscriber, pacing: &Pacing) -> Drain {
        let mut frames = 0;
        let drained = subscriber.drain(|event| {
            frames += 1;
            match event {
                Event::Tick { tick, snapshot, conflated } => {
                    write_tick_event(&mut self.out, self.cursor_prefix, tick, snapshot, conflated);
                    self.last_position = Some(tick.position);
                }
                Event::Reset { symbol } => {
                    self.write_id(self.last_position);
                    self.out.extend_from_slice(b"event: reset\ndata: ");
                    reply::write_reset(&mut self.out, symbol, self.epoch);
                    self.out.extend_from_slice(b"\n\n");
                }
            }
            self.out.len() < BATCH_BYTES
        });
        pacing.add_delivered(frames);
        drained
    }

    /// `id: <cursor>` for `position`, or the client's own cursor when no event was sent yet.
    fn write_id(&mut self, position: Option<u64>) {
        match (position, &self.client_cursor) {
            (Some(position), _) => write_cursor_id(&mut self.out, self.cursor_prefix, position),
            (None, Some(cursor)) => {
                self.out.extend_from_slice(b"id: ");
                self.out.extend_from_slice(cursor.as_bytes());
                self.out.push(b'\n');
            }
            (None, None) => {}
        }
    }
}

/// Appends one tick event, `id: <cursor>\nevent: tick\ndata: <json>\n\n`, to `out`.
///
/// `cursor_prefix` is the engine's cursor up to the position (what
/// [`Engine::cursor`](feed_engine::Engine::cursor) writes before it), so the `id` is the
/// tick's own cursor and a client reconnecting with it resumes right after this tick.
pub fn write_tick_event(out: &mut Vec<u8>, cursor_prefix: &str, tick: &Tick, snapshot: bool, conflated: bool) {
    write_cursor_id(out, cursor_prefix, tick.position);
    out.extend_from_slice(b"event: tick\ndata: ");
    tick.write_json_with_flags(out, snapshot, conflated);
    out.extend_from_slice(b"\n\n");
}

/// `id: <cursor>` for `position`.
fn write_cursor_id(out: &mut Vec<u8>, cursor_prefix: &str, position: u64) {
    out.extend_from_slice(b"id: ");
    out.extend_from_slice(cursor_prefix.as_bytes());
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{position}");
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_cursors_are_echoed() {
        assert!(is_safe_field("3fa9c2-1042"));
        assert!(!is_safe_field("a\nevent: x"));
        assert!(!is_safe_field("a b"));
        assert!(!is_safe_field(&"x".repeat(200)));
    }

    #[test]
    fn tick_event_id_is_the_ticks_cursor() {
        let engine = feed_engine::Engine::new(feed_engine::EngineConfig {
            epoch: Some("ep0".into()),
            ..feed_engine::EngineConfig::default()
        });
        let quote = feed_engine::Quote { symbol: "FX:EUR/USD", price: 1.5, ..feed_engine::Quote::default() };
        let position = engine.publish(&quote).expect("valid quote").position;
        let tick = engine.snapshot(&[Selector::All]).pop().expect("one symbol published");
        let prefix = engine.cursor(0).strip_suffix('0').expect("cursor ends with the position").to_owned();

        let mut out = Vec::new();
        write_tick_event(&mut out, &prefix, &tick, true, false);
        let mut expected = format!("id: {}\nevent: tick\ndata: ", engine.cursor(position)).into_bytes();
        tick.write_json_with_flags(&mut expected, true, false);
        expected.extend_from_slice(b"\n\n");
        assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(&expected));
    }
}
