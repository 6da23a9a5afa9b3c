//! Which path gets which handler, and the plain JSON endpoints: `/symbols`, `/snapshot`,
//! `/health`. Unknown paths get 404 and other methods than GET get 405, both with JSON
//! bodies. Only `/snapshot` of these needs a token when authentication is on: symbol names
//! and health are not market data.

use std::{net::SocketAddr, sync::Arc};

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use crate::{
    auth,
    body::Body,
    query,
    reply::{json_response, WireError},
    sse,
    state::State,
    ws,
};

/// The paths this crate serves (the dashboard, `/poll` and `/metrics` come later).
const PATHS: [&str; 5] = ["/ws", "/sse", "/symbols", "/snapshot", "/health"];
/// The WebSocket echo for conformance tests, served only with `--conformance-echo`.
const ECHO_PATH: &str = "/ws-echo";

/// Answers one request.
pub(crate) fn handle(mut request: Request<Incoming>, state: &Arc<State>, peer: SocketAddr) -> Response<Body> {
    let path = request.uri().path();
    let is_echo = path == ECHO_PATH && state.config.conformance_echo;
    if !PATHS.contains(&path) && !is_echo {
        return WireError::not_found(path).into_response();
    }
    if request.method() != Method::GET {
        return WireError::method_not_allowed().into_response();
    }
    match request.uri().path() {
        "/ws" => ws::upgrade(&mut request, state, peer),
        ECHO_PATH => ws::upgrade_echo(&mut request, state, peer),
        "/sse" => sse::open(&request, state, peer),
        "/symbols" => symbols(state),
        "/snapshot" => snapshot(&request, state).unwrap_or_else(WireError::into_response),
        _ => health(state),
    }
}

/// `GET /symbols`: every known symbol, byte-sorted.
fn symbols(state: &State) -> Response<Body> {
    let names = state.engine.symbols();
    let names: Vec<&str> = names.iter().map(|name| &**name).collect();
    json_response(StatusCode::OK, serde_json::to_vec(&names).unwrap_or_default())
}

/// `GET /snapshot?symbols=A,B`: the last tick of each matching symbol, flagged `snapshot`,
/// as the same bytes a stream would carry. With authentication on, a token is required and
/// every selector must be within its entitlement (else 401 / 403).
fn snapshot(request: &Request<Incoming>, state: &State) -> Result<Response<Body>, WireError> {
    let query = request.uri().query();
    let grant = auth::authenticate(state.auth.as_ref(), request.headers(), query)?;
    let selectors = query::symbols(query, state.config.max_subscriptions)?
        .ok_or_else(WireError::missing_symbols)?
        .selectors;
    grant.check(&selectors)?;
    let ticks = state.engine.snapshot(&selectors);
    let mut out = Vec::with_capacity(2 + ticks.iter().map(|t| t.json_len_with_flags(true, false) + 1).sum::<usize>());
    out.push(b'[');
    for (i, tick) in ticks.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        tick.write_json_with_flags(&mut out, true, false);
    }
    out.push(b']');
    Ok(json_response(StatusCode::OK, out))
}

/// `GET /health`.
fn health(state: &State) -> Response<Body> {
    let stats = state.engine.stats();
    let body = json!({
        "status": "ok",
        "epoch": state.engine.epoch(),
        "uptime_s": state.engine.uptime().as_secs(),
        "symbols": stats.symbols,
        "ticks_published": stats.ticks_published,
        "subscribers": stats.subscribers,
        "connections": state.limits.live(),
    });
    json_response(StatusCode::OK, serde_json::to_vec(&body).unwrap_or_default())
}
