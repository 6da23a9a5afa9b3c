//! Everything the server says to a client other than a tick, and the one place where a
//! client-caused failure becomes a wire error: an error `code`, an HTTP status, or a
//! WebSocket close code.
//!
//! Keeping the mapping here means the contract's vocabulary (`bad_request`, `bad_symbol`,
//! `limit`, 426, 503, 1002, 1009, 4000, …) appears in one file, and transports only pick the
//! constructor that names what happened.

use std::{
    borrow::Cow,
    time::{SystemTime, UNIX_EPOCH},
};

use feed_engine::Selector;
use http::{header, HeaderValue, Response, StatusCode};
use serde_json::{json, Value};

use crate::{body::Body, config::GatewayConfig};

/// Microseconds since the Unix epoch, the unit of every `ts` on the wire.
pub(crate) fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// The `code` field of an error message or error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    /// Not JSON, unknown op, bad or missing field, binary message, bad request line.
    BadRequest,
    /// A symbol or pattern outside the grammar.
    BadSymbol,
    /// A limit was hit: subscriptions, ops per second, connections.
    Limit,
    /// No such path.
    NotFound,
    /// The path exists, the method does not.
    MethodNotAllowed,
    /// `/ws` without the WebSocket upgrade headers.
    UpgradeRequired,
    /// No token, or a token that was refused (HTTP 401).
    Unauthorized,
    /// Outside the token's entitlement, or an origin not allowed (HTTP 403).
    Forbidden,
}

impl Code {
    /// The wire spelling.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::BadSymbol => "bad_symbol",
            Self::Limit => "limit",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::UpgradeRequired => "upgrade_required",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
        }
    }
}

/// A client-caused failure, as an error message on a live connection or as an HTTP error
/// before one starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WireError {
    /// The error code.
    pub(crate) code: Code,
    /// Human-readable detail; never contains secrets.
    pub(crate) message: Cow<'static, str>,
    /// The HTTP status when this error answers a request.
    status: StatusCode,
    /// For `forbidden`: the symbols and patterns refused or dropped, so a client can act on
    /// them without parsing the message. Omitted from the JSON when empty.
    symbols: Vec<String>,
}

impl WireError {
    fn new(code: Code, status: StatusCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self { code, message: message.into(), status, symbols: Vec::new() }
    }

    /// Not JSON, unknown op, a bad or missing field.
    pub(crate) fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(Code::BadRequest, StatusCode::BAD_REQUEST, message)
    }

    /// A symbol or pattern outside the grammar; the engine's message names it.
    pub(crate) fn bad_symbol(error: &feed_engine::Error) -> Self {
        Self::new(Code::BadSymbol, StatusCode::BAD_REQUEST, error.to_string())
    }

    /// A binary WebSocket message: every op is JSON text.
    pub(crate) fn binary_message() -> Self {
        Self::bad_request("binary messages are not accepted: send JSON text")
    }

    /// `auth` before authentication exists on this server.
    pub(crate) fn auth_not_enabled() -> Self {
        Self::bad_request("authentication is not enabled")
    }

    /// A missing or refused token; `reason` says which check failed (never the token).
    pub(crate) fn unauthorized(reason: &impl std::fmt::Display) -> Self {
        Self::new(Code::Unauthorized, StatusCode::UNAUTHORIZED, reason.to_string())
    }

    /// A subscription the token does not entitle: nothing of the request is subscribed.
    pub(crate) fn forbidden(selectors: &[Selector]) -> Self {
        let symbols = names(selectors);
        let message = format!("not entitled to {}", symbols.join(", "));
        Self { symbols, ..Self::new(Code::Forbidden, StatusCode::FORBIDDEN, message) }
    }

    /// After an `auth` op: subscriptions the new token no longer allows, now dropped.
    pub(crate) fn no_longer_entitled(selectors: &[Selector]) -> Self {
        let symbols = names(selectors);
        let message = format!("the new token does not entitle {}: unsubscribed", symbols.join(", "));
        Self { symbols, ..Self::new(Code::Forbidden, StatusCode::FORBIDDEN, message) }
    }

    /// An `Origin` outside `--allowed-origin`.
    pub(crate) fn origin_not_allowed(origin: &str) -> Self {
        let shown: String = origin.chars().take(100).collect();
        Self::new(Code::Forbidden, StatusCode::FORBIDDEN, format!("origin {shown:?} is not allowed"))
    }

    /// `/sse` or `/snapshot` without `?symbols=`.
    pub(crate) fn missing_symbols() -> Self {
        Self::bad_request("missing query parameter symbols=A,B,…")
    }

    /// A subscribe that would hold more than `max` selectors.
    pub(crate) fn too_many_subscriptions(max: usize) -> Self {
        Self::new(Code::Limit, StatusCode::BAD_REQUEST, format!("at most {max} subscriptions per connection"))
    }

    /// An op over the per-second budget.
    pub(crate) fn too_many_ops(max: u32) -> Self {
        Self::new(Code::Limit, StatusCode::TOO_MANY_REQUESTS, format!("at most {max} ops per second"))
    }

    /// The server is at `--max-connections`.
    pub(crate) fn too_many_connections() -> Self {
        Self::new(Code::Limit, StatusCode::SERVICE_UNAVAILABLE, "too many connections: try again later")
    }

    /// The client's IP is at `--max-connections-per-ip`.
    pub(crate) fn too_many_connections_from_ip() -> Self {
        Self::new(Code::Limit, StatusCode::SERVICE_UNAVAILABLE, "too many connections from this address")
    }

    /// A plain GET on `/ws`.
    pub(crate) fn upgrade_required() -> Self {
        Self::new(
            Code::UpgradeRequired,
            StatusCode::UPGRADE_REQUIRED,
            "this endpoint speaks WebSocket: send an upgrade request",
        )
    }

    /// An upgrade request without a usable `Sec-WebSocket-Key`.
    pub(crate) fn bad_handshake(message: &'static str) -> Self {
        Self::bad_request(message)
    }

    /// A WebSocket version other than 13.
    pub(crate) fn unsupported_websocket_version() -> Self {
        Self::new(Code::UpgradeRequired, StatusCode::UPGRADE_REQUIRED, "Sec-WebSocket-Version must be 13")
    }

    /// No such path.
    pub(crate) fn not_found(path: &str) -> Self {
        let shown: String = path.chars().take(100).collect();
        Self::new(Code::NotFound, StatusCode::NOT_FOUND, format!("no such path {shown:?}"))
    }

    /// A method other than GET.
    pub(crate) fn method_not_allowed() -> Self {
        Self::new(Code::MethodNotAllowed, StatusCode::METHOD_NOT_ALLOWED, "only GET is supported")
    }

    /// The error as a JSON message, echoing the op's `id` when it had one.
    pub(crate) fn to_json(&self, id: Option<&Value>) -> Vec<u8> {
        let mut message = json!({"type": "error", "code": self.code.as_str(), "message": self.message});
        if let (false, Some(object)) = (self.symbols.is_empty(), message.as_object_mut()) {
            object.insert("symbols".to_owned(), json!(self.symbols));
        }
        with_id(message, id)
    }

    /// The error as an HTTP response with a JSON body.
    pub(crate) fn into_response(self) -> Response<Body> {
        let mut response = json_response(self.status, self.to_json(None));
        let headers = response.headers_mut();
        match self.status {
            StatusCode::UPGRADE_REQUIRED => {
                headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
                headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                headers.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
            }
            StatusCode::METHOD_NOT_ALLOWED => {
                headers.insert(header::ALLOW, HeaderValue::from_static("GET"));
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            StatusCode::UNAUTHORIZED => {
                // RFC 6750 §3: which scheme to authenticate with.
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

/// Selectors as the client spells them.
fn names(selectors: &[Selector]) -> Vec<String> {
    selectors.iter().map(ToString::to_string).collect()
}

/// A JSON response with `status`.
pub(crate) fn json_response(status: StatusCode, json: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Body::full(json));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A WebSocket close code with its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Close {
    /// RFC 6455 §7.4 code (or 4000 for a slow consumer).
    pub(crate) code: u16,
    /// Short UTF-8 reason.
    pub(crate) reason: &'static str,
}

impl Close {
    /// The server is shutting down.
    pub(crate) const GOING_AWAY: Self = Self { code: 1001, reason: "server shutting down" };
    /// The client broke the framing rules.
    pub(crate) const PROTOCOL: Self = Self { code: 1002, reason: "protocol error" };
    /// A text message that is not UTF-8.
    pub(crate) const INVALID_UTF8: Self = Self { code: 1007, reason: "invalid UTF-8" };
    /// Sustained abuse of the ops-per-second limit.
    pub(crate) const ABUSE: Self = Self { code: 1008, reason: "too many ops per second, repeatedly" };
    /// The token's `exp` (plus the leeway) passed without an `auth` op replacing it.
    pub(crate) const TOKEN_EXPIRED: Self = Self { code: 1008, reason: "token expired" };
    /// A message over `--max-message-bytes`.
    pub(crate) const TOO_BIG: Self = Self { code: 1009, reason: "message too big" };
    /// With `--slow-consumer disconnect`: the client fell behind the engine's ring.
    pub(crate) const SLOW_CONSUMER: Self = Self { code: 4000, reason: "slow consumer" };
}

/// `{"type":"welcome",…}`: the first message on every WebSocket.
pub(crate) fn welcome(epoch: &str, config: &GatewayConfig) -> Vec<u8> {
    to_vec(&json!({
        "type": "welcome",
        "epoch": epoch,
        "heartbeat_ms": u64::try_from(config.heartbeat.as_millis()).unwrap_or(u64::MAX),
        "server": "tickfeed",
        "version": env!("CARGO_PKG_VERSION"),
        "limits": {
            "max_message_bytes": config.max_message_bytes,
            "max_subscriptions": config.max_subscriptions,
            "max_ops_per_sec": config.max_ops_per_sec,
        },
    }))
}

/// `{"type":"subscribed","symbols":[as requested],"id":…}`.
pub(crate) fn subscribed(symbols: &[String], id: Option<&Value>) -> Vec<u8> {
    with_id(json!({"type": "subscribed", "symbols": symbols}), id)
}

/// `{"type":"unsubscribed","symbols":[as requested],"id":…}`.
pub(crate) fn unsubscribed(symbols: &[String], id: Option<&Value>) -> Vec<u8> {
    with_id(json!({"type": "unsubscribed", "symbols": symbols}), id)
}

/// `{"type":"authenticated","exp":…,"id":…}`: an `auth` op's token replaced the old one.
pub(crate) fn authenticated(exp_s: Option<u64>, id: Option<&Value>) -> Vec<u8> {
    with_id(json!({"type": "authenticated", "exp": exp_s}), id)
}

/// `{"type":"pong","id":…,"ts":…}`.
pub(crate) fn pong(id: Option<&Value>) -> Vec<u8> {
    with_id(json!({"type": "pong", "ts": now_us()}), id)
}

/// `{"type":"heartbeat","ts":…}`, for clients that cannot see WebSocket pings.
pub(crate) fn heartbeat() -> Vec<u8> {
    to_vec(&json!({"type": "heartbeat", "ts": now_us()}))
}

/// Appends `{"type":"reset","symbol":…,"epoch":…}`. Called per reset event, so it writes
/// straight into the output buffer; both strings are JSON-escaped (a resumed `since` name
/// comes from the client).
pub(crate) fn write_reset(out: &mut Vec<u8>, symbol: &str, epoch: &str) {
    out.extend_from_slice(b"{\"type\":\"reset\",\"symbol\":");
    write_json_string(out, symbol);
    out.extend_from_slice(b",\"epoch\":");
    write_json_string(out, epoch);
    out.push(b'}');
}

fn write_json_string(out: &mut Vec<u8>, text: &str) {
    // Serialising a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

fn with_id(mut message: Value, id: Option<&Value>) -> Vec<u8> {
    if let (Some(id), Some(object)) = (id, message.as_object_mut()) {
        object.insert("id".to_owned(), id.clone());
    }
    to_vec(&message)
}

fn to_vec(value: &Value) -> Vec<u8> {
    // A Value built by json! always serialises.
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).expect("valid JSON")
    }

    #[test]
    fn error_message_echoes_number_and_string_ids() {
        let error = WireError::bad_request("unknown op \"x\"");
        assert_eq!(
            parse(&error.to_json(Some(&json!(7)))),
            json!({"type":"error","code":"bad_request","message":"unknown op \"x\"","id":7})
        );
        assert_eq!(parse(&error.to_json(Some(&json!("a"))))["id"], "a");
        assert!(parse(&error.to_json(None)).get("id").is_none());
    }

    #[test]
    fn reset_is_escaped_json() {
        let mut out = Vec::new();
        write_reset(&mut out, "we\"ird", "e1");
        assert_eq!(parse(&out), json!({"type":"reset","symbol":"we\"ird","epoch":"e1"}));
    }

    #[test]
    fn http_errors_carry_status_and_headers() {
        let response = WireError::upgrade_required().into_response();
        assert_eq!(response.status(), StatusCode::UPGRADE_REQUIRED);
        assert_eq!(response.headers()[header::UPGRADE], "websocket");
        assert_eq!(WireError::too_many_connections().into_response().status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(WireError::method_not_allowed().into_response().headers()[header::ALLOW], "GET");
    }

    #[test]
    fn auth_errors_are_401_with_a_challenge_and_403_naming_symbols() {
        let response = WireError::unauthorized(&"token expired").into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
        let forbidden = WireError::forbidden(&[Selector::All, Selector::Venue("FX".into())]);
        assert_eq!(
            parse(&forbidden.to_json(Some(&json!(3)))),
            json!({"type":"error","code":"forbidden","message":"not entitled to *, FX:*","symbols":["*","FX:*"],"id":3})
        );
        assert_eq!(forbidden.into_response().status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn welcome_names_epoch_and_heartbeat() {
        let welcome = parse(&welcome("e1", &GatewayConfig::default()));
        assert_eq!(welcome["type"], "welcome");
        assert_eq!(welcome["epoch"], "e1");
        assert_eq!(welcome["heartbeat_ms"], 15_000);
        assert_eq!(welcome["server"], "tickfeed");
    }
}
