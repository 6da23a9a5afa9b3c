//! `GET /ws`: the WebSocket transport.
//!
//! The handshake is checked here, completely, before anything is committed: fastwebsockets
//! only checks the key and the version, so a plain GET (no `Upgrade: websocket`) gets 426,
//! an `Origin` outside `--allowed-origin` gets 403, a missing or refused token 401, a bad
//! `?symbols=` 400 and one outside the token's entitlement 403, and a server or IP over its
//! connection limit gets 503 — all with JSON bodies, before the 101. The 101 is returned first and the connection's task
//! then awaits the upgraded socket (hyper hands it over only after the 101 is written).

mod codec;
mod direct;
pub(crate) use direct::Batch;
mod echo;
pub(crate) mod held;
mod sends;
mod session;
mod socket;

// The fuzz targets drive the decoder directly, through `crate::fuzzing`.
#[cfg(feature = "fuzzing")]
pub(crate) use codec::{Decoder, Item};

use std::{net::SocketAddr, sync::Arc};

use http::{header, HeaderMap, Request, Response};
use hyper::body::Incoming;
use tracing::Instrument as _;

use crate::{auth, body::Body, origin, query, reply::WireError, state::State};

/// Answers an upgrade request: 101 and a spawned session, or an HTTP error.
pub(crate) fn upgrade(request: &mut Request<Incoming>, state: &Arc<State>, peer: SocketAddr) -> Response<Body> {
    match start(request, state, peer) {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

fn start(request: &mut Request<Incoming>, state: &Arc<State>, peer: SocketAddr) -> Result<Response<Body>, WireError> {
    check_handshake(request.headers())?;
    origin::check(request.headers(), &state.config.allowed_origins)?;
    let grant = auth::authenticate(state.auth.as_ref(), request.headers(), request.uri().query())?;
    let initial = initial_subscription(request.uri().query(), state.config.max_subscriptions)?;
    if let Some(initial) = &initial {
        grant.check(&initial.selectors)?;
    }
    let guard = state.limits.acquire(peer.ip())?;
    let (response, upgrade) = fastwebsockets::upgrade::upgrade(&mut *request)
        .map_err(|_| WireError::bad_handshake("invalid WebSocket handshake"))?;

    let task_state = Arc::clone(state);
    let session = async move {
        let upgraded = match upgrade.await {
            Ok(websocket) => websocket.into_inner().into_inner(),
            Err(error) => {
                tracing::debug!(%error, "the upgrade did not complete");
                return;
            }
        };
        let session = session::Session::open(Arc::clone(&task_state), socket::unwrap(upgraded), initial, grant, guard);
        // A task of its own, so that nothing of this one (the upgrade) stays in its future;
        // and in the span only when it is on (debug logs), as a span costs every idle task
        // 40 bytes even when off.
        let span = tracing::Span::current();
        if span.is_disabled() {
            task_state.tracker.spawn(session.run());
        } else {
            task_state.tracker.spawn(session.run().instrument(span));
        }
    };
    state.tracker.spawn(session.instrument(tracing::debug_span!("ws")));
    Ok(response.map(|_| Body::Empty))
}

/// Answers an upgrade to the conformance echo (`--conformance-echo`): the same handshake
/// checks and connection limits as `/ws`, then [`echo::run`] instead of a session.
pub(crate) fn upgrade_echo(request: &mut Request<Incoming>, state: &Arc<State>, peer: SocketAddr) -> Response<Body> {
    let mut start = || -> Result<Response<Body>, WireError> {
        check_handshake(request.headers())?;
        let guard = state.limits.acquire(peer.ip())?;
        let (response, upgrade) = fastwebsockets::upgrade::upgrade(&mut *request)
            .map_err(|_| WireError::bad_handshake("invalid WebSocket handshake"))?;
        let shutdown = state.shutdown.clone();
        state.tracker.spawn(async move {
            if let Ok(websocket) = upgrade.await {
                echo::run(socket::unwrap(websocket.into_inner().into_inner()), shutdown).await;
            }
            drop(guard);
        });
        Ok(response.map(|_| Body::Empty))
    };
    start().unwrap_or_else(WireError::into_response)
}

/// RFC 6455 §4.2.1: an upgrade to `websocket`, version 13, with a key. The method (GET) and
/// HTTP/1.1 are checked by the router and hyper.
fn check_handshake(headers: &HeaderMap) -> Result<(), WireError> {
    if !has_token(headers, header::CONNECTION, "upgrade") || !has_token(headers, header::UPGRADE, "websocket") {
        return Err(WireError::upgrade_required());
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        return Err(WireError::unsupported_websocket_version());
    }
    match headers.get(header::SEC_WEBSOCKET_KEY) {
        Some(key) if !key.is_empty() => Ok(()),
        _ => Err(WireError::bad_handshake("missing Sec-WebSocket-Key")),
    }
}

/// Does a comma-separated header (any of its occurrences) contain `token`, case-insensitively?
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

/// `?symbols=A,B`: subscribed on connect, checked before the upgrade.
fn initial_subscription(query: Option<&str>, max_subscriptions: usize) -> Result<Option<session::Initial>, WireError> {
    let symbols = query::symbols(query, max_subscriptions)?;
    Ok(symbols.map(|s| session::Initial { symbols: s.requested, selectors: s.selectors }))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;
    use crate::reply::Code;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn browser_style_handshake_is_accepted() {
        let ok = headers(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ]);
        assert_eq!(check_handshake(&ok), Ok(()));
    }

    #[test]
    fn plain_get_needs_an_upgrade() {
        let error = check_handshake(&headers(&[("connection", "keep-alive")])).expect_err("plain GET");
        assert_eq!(error.code, Code::UpgradeRequired);
    }

    #[test]
    fn query_symbols_are_checked_before_upgrade() {
        let error = initial_subscription(Some("symbols=A,b%20d"), 10).err().expect("bad symbol");
        assert_eq!(error.code, Code::BadSymbol);
        let error = initial_subscription(Some("symbols=A,B,C"), 2).err().expect("over the limit");
        assert_eq!(error.code, Code::Limit);
        let initial = initial_subscription(Some("symbols=FX%3A*,A"), 10).expect("valid").expect("some");
        assert_eq!(initial.symbols, ["FX:*", "A"]);
    }
}
