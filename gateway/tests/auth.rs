//! Authentication, entitlements and the Origin allow-list as a client sees them: 401s with a
//! reason before any upgrade or stream, 403s for symbols outside the token, `forbidden` and
//! `unauthorized` errors on a live WebSocket, the `auth` op, and expiry (close 1008 on
//! WebSocket, end of stream on SSE).
//!
//! Tokens are signed here with jsonwebtoken and the test keys in `tests/fixtures/`. The
//! servers run with no clock leeway, so a token expiring in two seconds ends its connection
//! in two seconds.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use common::{close_code, next_json, next_non_heartbeat, send, start_with, within, HttpResponse, HttpStream, Server, Ws};
use feed_engine::EngineConfig;
use gateway::{AuthConfig, GatewayConfig, JwtKey};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest as _, http::HeaderValue};

const RSA_PRIVATE: &[u8] = include_bytes!("fixtures/rsa_private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("fixtures/rsa_public.pem");
const EC_PRIVATE: &[u8] = include_bytes!("fixtures/ec_private.pem");
const EC_PUBLIC: &[u8] = include_bytes!("fixtures/ec_public.pem");
const SECRET: &[u8] = b"integration-test-secret";
const AUDIENCE: &str = "tickfeed";
const ISSUER: &str = "https://issuer.example";

fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Longer than any test runs: a WebSocket closed at its token's expiry was closed by the
/// expiry, not by a heartbeat timer that happened to look at it.
const SLOW_HEARTBEAT: Duration = Duration::from_secs(120);
/// How long a two-second token may take to close its connection.
const EXPIRY_BOUND: Duration = Duration::from_secs(8);

/// A server that checks tokens with `key`, `aud` and `iss`, and no clock leeway.
async fn start_auth(key: JwtKey) -> Server {
    let auth = AuthConfig {
        key,
        audience: Some(AUDIENCE.to_owned()),
        issuer: Some(ISSUER.to_owned()),
        leeway: Duration::ZERO,
    };
    let config = GatewayConfig { auth: Some(auth), heartbeat: SLOW_HEARTBEAT, ..GatewayConfig::default() };
    start_with(EngineConfig::default(), config).await
}

async fn start_rs256() -> Server {
    start_auth(JwtKey::from_public_key_pem(RSA_PUBLIC).unwrap()).await
}

/// The close code, which must come within [`EXPIRY_BOUND`].
async fn close_code_at_expiry(ws: &mut Ws) -> u16 {
    tokio::time::timeout(EXPIRY_BOUND, close_code(ws)).await.expect("closed at expiry, not at a heartbeat")
}

/// Claims that pass every check, valid for five minutes, with `extra` merged in.
fn claims(extra: Value) -> Value {
    let mut claims = json!({"exp": now_s() + 300, "sub": "tester", "aud": AUDIENCE, "iss": ISSUER});
    if let (Some(claims), Value::Object(extra)) = (claims.as_object_mut(), extra) {
        claims.extend(extra);
    }
    claims
}

fn sign(algorithm: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    encode(&Header::new(algorithm), claims, key).unwrap()
}

/// An RS256 token for the test RSA key.
fn rs256(extra: Value) -> String {
    sign(Algorithm::RS256, &EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(), &claims(extra))
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A raw request head for `path` with extra header lines, as an upgrade or a plain GET.
fn head(path: &str, upgrade: bool, extra_headers: &str) -> String {
    let upgrade = if upgrade {
        "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    } else {
        ""
    };
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{upgrade}{extra_headers}\r\n")
}

/// Sends the request and reads the response head (and a `Content-Length` body, if any).
async fn request(server: &Server, path: &str, upgrade: bool, extra_headers: &str) -> (u16, Option<HttpResponse>) {
    let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let response = HttpStream::request_on(stream, &head(path, upgrade, extra_headers)).await;
    let status = response.status;
    let body = response.header("content-length").is_some().then_some(response);
    match body {
        Some(response) => (status, Some(response.into_response().await)),
        None => (status, None),
    }
}

/// `/ws` (as an upgrade), `/sse` and `/snapshot` with the same query and headers.
async fn on_each_endpoint(server: &Server, query: &str, extra_headers: &str) -> Vec<(String, u16, Option<HttpResponse>)> {
    let mut out = Vec::new();
    for (path, upgrade) in [("/ws", true), ("/sse", false), ("/snapshot", false)] {
        let target = format!("{path}?{query}");
        let (status, body) = request(server, &target, upgrade, extra_headers).await;
        out.push((target, status, body));
    }
    out
}

#[track_caller]
fn assert_error(response: &HttpResponse, status: u16, code: &str, needle: &str) {
    assert_eq!(response.status, status);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let body = response.json();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["code"], code, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.to_lowercase().contains(needle), "{needle:?} not in {message:?}");
}

/// Opens `/ws` + `query` with `Authorization: Bearer <token>` and reads `welcome`.
async fn connect_bearer(server: &Server, query: &str, token: &str) -> Ws {
    let mut request = server.ws_url(query).into_client_request().unwrap();
    request.headers_mut().insert("authorization", HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.expect("websocket connect");
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
    ws
}

/// Opens an SSE stream and reads up to its opening block.
async fn open_sse(server: &Server, path: &str, extra_headers: &str) -> HttpStream {
    let mut stream = HttpStream::get(server, path, extra_headers).await;
    assert_eq!(stream.status, 200, "{path}");
    assert_eq!(stream.next_block().await.unwrap().retry.as_deref(), Some("1000"));
    stream
}

#[tokio::test]
async fn missing_and_refused_tokens_get_401_with_a_json_reason_before_anything_starts() {
    within(async {
        let server = start_rs256().await;
        let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
        let valid = rs256(json!({}));
        let (header, _, signature) = {
            let mut parts = valid.split('.');
            (parts.next().unwrap().to_owned(), parts.next(), parts.next().unwrap().to_owned())
        };
        let tampered = format!("{header}.{}.{signature}", b64(claims(json!({"symbols": ["*"]})).to_string().as_bytes()));
        let unsigned = format!("{}.{}.", b64(br#"{"alg":"none","typ":"JWT"}"#), b64(claims(json!({})).to_string().as_bytes()));
        // The classic algorithm confusion: the RSA public key used as an HMAC secret.
        let confused = sign(Algorithm::HS256, &EncodingKey::from_secret(RSA_PUBLIC), &claims(json!({})));
        let cases = [
            ("missing", None, "missing token"),
            ("malformed", Some("not-a-jwt".to_owned()), "malformed"),
            ("alg none", Some(unsigned), "unsigned"),
            ("expired", Some(rs256(json!({"exp": now_s() - 60}))), "expired"),
            ("nbf in the future", Some(rs256(json!({"nbf": now_s() + 60}))), "not valid yet"),
            ("bad signature", Some(tampered), "signature"),
            ("HS256 against an RS256 key", Some(confused), "algorithm"),
            ("wrong aud", Some(sign(Algorithm::RS256, &rsa, &claims(json!({"aud": "someone-else"})))), "audience"),
            ("wrong iss", Some(sign(Algorithm::RS256, &rsa, &claims(json!({"iss": "https://evil.example"})))), "issuer"),
        ];
        for (i, (case, token, needle)) in cases.into_iter().enumerate() {
            // Half the cases send the token in the header, half in the query string.
            let (query, headers) = match &token {
                Some(token) if i % 2 == 0 => ("symbols=NASDAQ:AAPL".to_owned(), format!("Authorization: Bearer {token}\r\n")),
                Some(token) => (format!("symbols=NASDAQ:AAPL&token={token}"), String::new()),
                None => ("symbols=NASDAQ:AAPL".to_owned(), String::new()),
            };
            for (target, status, response) in on_each_endpoint(&server, &query, &headers).await {
                assert_eq!(status, 401, "{case} on {target}");
                let response = response.unwrap_or_else(|| panic!("{case} on {target}: no body"));
                assert_error(&response, 401, "unauthorized", needle);
                assert_eq!(response.header("www-authenticate"), Some("Bearer"), "{case} on {target}");
            }
        }
    })
    .await;
}

#[tokio::test]
async fn a_token_in_the_header_or_the_query_opens_ws_sse_and_snapshot() {
    within(async {
        let server = start_rs256().await;
        server.publish("NASDAQ:AAPL", 1.0);
        let token = rs256(json!({"symbols": ["NASDAQ:*"]}));

        let mut ws = connect_bearer(&server, "?symbols=NASDAQ:AAPL", &token).await;
        assert_eq!(next_json(&mut ws).await["type"], "subscribed");
        let (mut ws_query, _) = common::connect(&server, &format!("?symbols=NASDAQ:AAPL&token={token}")).await;
        assert_eq!(next_json(&mut ws_query).await["type"], "subscribed");

        for (path, headers) in [
            ("/sse?symbols=NASDAQ:AAPL".to_owned(), format!("Authorization: Bearer {token}\r\n")),
            (format!("/sse?symbols=NASDAQ:AAPL&token={token}"), String::new()),
        ] {
            let mut stream = open_sse(&server, &path, &headers).await;
            common::assert_tick(&stream.next_event().await.json(), "NASDAQ:AAPL", 1, true);
        }
        for (path, headers) in [
            ("/snapshot?symbols=NASDAQ:AAPL".to_owned(), format!("authorization: bearer {token}\r\n")),
            (format!("/snapshot?symbols=NASDAQ:AAPL&token={token}"), String::new()),
        ] {
            let response = HttpStream::get(&server, &path, &headers).await.into_response().await;
            assert_eq!(response.status, 200, "{path}");
            assert_eq!(response.json().as_array().map(Vec::len), Some(1));
        }

        // Both WebSockets are live: a tick reaches each.
        server.publish("NASDAQ:AAPL", 2.0);
        common::assert_tick(&next_non_heartbeat(&mut ws).await, "NASDAQ:AAPL", 1, true);
        common::assert_tick(&next_non_heartbeat(&mut ws).await, "NASDAQ:AAPL", 2, false);
        common::assert_tick(&next_non_heartbeat(&mut ws_query).await, "NASDAQ:AAPL", 1, true);
        common::assert_tick(&next_non_heartbeat(&mut ws_query).await, "NASDAQ:AAPL", 2, false);
    })
    .await;
}

#[tokio::test]
async fn es256_and_hs256_keys_accept_only_their_own_algorithm() {
    within(async {
        let es = start_auth(JwtKey::from_public_key_pem(EC_PUBLIC).unwrap()).await;
        let es_token = sign(Algorithm::ES256, &EncodingKey::from_ec_pem(EC_PRIVATE).unwrap(), &claims(json!({})));
        let path = format!("/snapshot?symbols=*&token={es_token}");
        assert_eq!(HttpStream::get(&es, &path, "").await.into_response().await.status, 200);
        let path = format!("/snapshot?symbols=*&token={}", rs256(json!({})));
        assert_error(&HttpStream::get(&es, &path, "").await.into_response().await, 401, "unauthorized", "es256");

        let hs = start_auth(JwtKey::hs256_secret(SECRET).unwrap()).await;
        let hs_token = sign(Algorithm::HS256, &EncodingKey::from_secret(SECRET), &claims(json!({})));
        let mut ws = connect_bearer(&hs, "", &hs_token).await;
        send(&mut ws, json!({"op":"ping","id":1})).await;
        assert_eq!(next_non_heartbeat(&mut ws).await["type"], "pong");
        let path = format!("/snapshot?symbols=*&token={es_token}");
        assert_error(&HttpStream::get(&hs, &path, "").await.into_response().await, 401, "unauthorized", "hs256");
    })
    .await;
}

#[tokio::test]
async fn query_symbols_outside_the_entitlement_are_403_before_anything_starts() {
    within(async {
        let server = start_rs256().await;
        let token = rs256(json!({"symbols": ["NASDAQ:*", "FX:EUR/USD"]}));
        for (query, refused) in [
            ("symbols=*", json!(["*"])),
            ("symbols=NASDAQ:AAPL,FX:*", json!(["FX:*"])),
            ("symbols=FX:EUR/USD,NYSE:IBM", json!(["NYSE:IBM"])),
        ] {
            let headers = format!("Authorization: Bearer {token}\r\n");
            for (target, status, response) in on_each_endpoint(&server, query, &headers).await {
                assert_eq!(status, 403, "{target}");
                let response = response.unwrap();
                assert_error(&response, 403, "forbidden", "not entitled");
                assert_eq!(response.json()["symbols"], refused, "{target}");
            }
        }
        // Nothing started: no connection is counted.
        assert_eq!(common::http_get(&server, "/health").await.json()["connections"], 0);
    })
    .await;
}

#[tokio::test]
async fn star_by_a_venue_holder_is_forbidden_and_the_websocket_stays_open() {
    within(async {
        let server = start_rs256().await;
        let mut ws = connect_bearer(&server, "", &rs256(json!({"symbols": ["NASDAQ:*"]}))).await;
        send(&mut ws, json!({"op":"subscribe","symbols":["*"],"id":1})).await;
        let error = next_non_heartbeat(&mut ws).await;
        assert_eq!(error["type"], "error");
        assert_eq!(error["code"], "forbidden");
        assert_eq!(error["id"], 1);
        assert_eq!(error["symbols"], json!(["*"]));

        // The whole op was refused: nothing of it is subscribed.
        send(&mut ws, json!({"op":"subscribe","symbols":["NASDAQ:AAPL","FX:EUR/USD"],"id":2})).await;
        let error = next_non_heartbeat(&mut ws).await;
        assert_eq!((error["code"].clone(), error["symbols"].clone()), (json!("forbidden"), json!(["FX:EUR/USD"])));
        server.publish("FX:EUR/USD", 1.1);

        send(&mut ws, json!({"op":"subscribe","symbols":["NASDAQ:AAPL"],"id":3})).await;
        assert_eq!(next_non_heartbeat(&mut ws).await, json!({"type":"subscribed","symbols":["NASDAQ:AAPL"],"id":3}));
        server.publish("NASDAQ:AAPL", 2.0);
        common::assert_tick(&next_non_heartbeat(&mut ws).await, "NASDAQ:AAPL", 1, false);
    })
    .await;
}

/// Symbols of several venues, ticked round-robin.
const MARKET: [&str; 7] = ["NASDAQ:AAPL", "NYSE:IBM", "FX:EUR/USD", "FX:GBP/USD", "NASDAQ:MSFT", "COINBASE:BTC-USD", "AAPL"];

fn is_entitled(symbol: &str) -> bool {
    symbol.starts_with("NASDAQ:") || symbol == "FX:EUR/USD"
}

#[tokio::test]
async fn an_entitled_holder_never_receives_ticks_outside_its_entitlement() {
    within(async {
        let server = start_rs256().await;
        let token = rs256(json!({"symbols": ["NASDAQ:*", "FX:EUR/USD"]}));
        let mut ws = connect_bearer(&server, "?symbols=NASDAQ:*,FX:EUR/USD", &token).await;
        assert_eq!(next_json(&mut ws).await["type"], "subscribed");
        for (id, refused) in [(1, "*"), (2, "FX:*"), (3, "NYSE:IBM"), (4, "COINBASE:*"), (5, "AAPL")] {
            send(&mut ws, json!({"op":"subscribe","symbols":[refused],"id":id})).await;
            let error = next_non_heartbeat(&mut ws).await;
            assert_eq!((error["code"].clone(), error["id"].clone()), (json!("forbidden"), json!(id)), "{refused}");
        }
        let mut sse = open_sse(&server, "/sse?symbols=NASDAQ:*,FX:EUR/USD", &format!("Authorization: Bearer {token}\r\n")).await;

        let mut expected = 0;
        for i in 0..350 {
            let symbol = MARKET[i % MARKET.len()];
            server.publish(symbol, i as f64);
            expected += usize::from(is_entitled(symbol));
        }
        server.publish("NASDAQ:END", 0.0);
        expected += 1;

        let mut seen = 0;
        loop {
            let tick = next_non_heartbeat(&mut ws).await;
            assert_eq!(tick["type"], "tick", "{tick}");
            let symbol = tick["symbol"].as_str().unwrap();
            assert!(is_entitled(symbol), "websocket got {symbol}");
            seen += 1;
            if symbol == "NASDAQ:END" {
                break;
            }
        }
        assert_eq!(seen, expected);
        let mut seen = 0;
        loop {
            let tick = sse.next_event().await.json();
            let symbol = tick["symbol"].as_str().unwrap().to_owned();
            assert!(is_entitled(&symbol), "sse got {symbol}");
            seen += 1;
            if symbol == "NASDAQ:END" {
                break;
            }
        }
        assert_eq!(seen, expected);
    })
    .await;
}

#[tokio::test]
async fn auth_op_replaces_entitlements_and_drops_what_they_no_longer_allow() {
    within(async {
        let server = start_rs256().await;
        let mut ws = connect_bearer(&server, "", &rs256(json!({"symbols": ["*"]}))).await;
        send(&mut ws, json!({"op":"subscribe","symbols":["NASDAQ:*","FX:*","NYSE:IBM"],"id":1})).await;
        assert_eq!(next_non_heartbeat(&mut ws).await["type"], "subscribed");

        let exp = now_s() + 120;
        let narrower = rs256(json!({"exp": exp, "symbols": ["FX:*", "NASDAQ:AAPL"]}));
        send(&mut ws, json!({"op":"auth","token":narrower,"id":4})).await;
        assert_eq!(next_non_heartbeat(&mut ws).await, json!({"type":"authenticated","exp":exp,"id":4}));
        let dropped = next_non_heartbeat(&mut ws).await;
        assert_eq!(dropped["type"], "error");
        assert_eq!(dropped["code"], "forbidden");
        assert_eq!(dropped["id"], 4);
        assert_eq!(dropped["symbols"], json!(["NASDAQ:*", "NYSE:IBM"]));

        // The dropped subscriptions deliver nothing more; the kept one does.
        for symbol in ["NASDAQ:AAPL", "NYSE:IBM", "NASDAQ:MSFT", "FX:EUR/USD"] {
            server.publish(symbol, 1.0);
        }
        common::assert_tick(&next_non_heartbeat(&mut ws).await, "FX:EUR/USD", 1, false);
        // The new entitlements apply to new subscriptions too.
        send(&mut ws, json!({"op":"subscribe","symbols":["NASDAQ:*"],"id":5})).await;
        assert_eq!(next_non_heartbeat(&mut ws).await["code"], "forbidden");
        send(&mut ws, json!({"op":"subscribe","symbols":["NASDAQ:AAPL"],"id":6})).await;
        assert_eq!(next_non_heartbeat(&mut ws).await["type"], "subscribed");
        common::assert_tick(&next_non_heartbeat(&mut ws).await, "NASDAQ:AAPL", 1, true);
    })
    .await;
}

#[tokio::test]
async fn refused_auth_op_gets_unauthorized_and_the_old_token_stays() {
    within(async {
        let server = start_rs256().await;
        let mut ws = connect_bearer(&server, "?symbols=NASDAQ:*", &rs256(json!({"symbols": ["NASDAQ:*"]}))).await;
        assert_eq!(next_non_heartbeat(&mut ws).await["type"], "subscribed");
        let expired = rs256(json!({"exp": now_s() - 60, "symbols": ["*"]}));
        for (id, token, needle) in [(7, expired.as_str(), "expired"), (8, "garbage", "malformed")] {
            send(&mut ws, json!({"op":"auth","token":token,"id":id})).await;
            let error = next_non_heartbeat(&mut ws).await;
            assert_eq!((error["code"].clone(), error["id"].clone()), (json!("unauthorized"), json!(id)));
            assert!(error["message"].as_str().unwrap().contains(needle), "{error}");
        }
        // Still the old grant: its subscription flows, and nothing wider is allowed.
        server.publish("NASDAQ:AAPL", 1.0);
        common::assert_tick(&next_non_heartbeat(&mut ws).await, "NASDAQ:AAPL", 1, false);
        send(&mut ws, json!({"op":"subscribe","symbols":["*"],"id":9})).await;
        assert_eq!(next_non_heartbeat(&mut ws).await["code"], "forbidden");
    })
    .await;
}

#[tokio::test]
async fn an_expired_token_closes_the_websocket_with_1008_unless_an_auth_op_replaced_it() {
    within(async {
        let server = start_rs256().await;
        let exp = now_s() + 2;
        let short = rs256(json!({"exp": exp}));
        let mut left = connect_bearer(&server, "", &short).await;
        let mut renewed = connect_bearer(&server, "", &short).await;
        send(&mut renewed, json!({"op":"auth","token":rs256(json!({})),"id":1})).await;
        assert_eq!(next_non_heartbeat(&mut renewed).await["type"], "authenticated");

        assert_eq!(close_code_at_expiry(&mut left).await, 1008);
        assert!(now_s() >= exp, "closed before the token expired");
        send(&mut renewed, json!({"op":"ping","id":2})).await;
        assert_eq!(next_non_heartbeat(&mut renewed).await["type"], "pong");
    })
    .await;
}

#[tokio::test]
async fn a_shorter_token_from_an_auth_op_closes_the_websocket_at_its_own_expiry() {
    within(async {
        let server = start_rs256().await;
        let mut ws = connect_bearer(&server, "", &rs256(json!({}))).await;
        let exp = now_s() + 2;
        send(&mut ws, json!({"op":"auth","token":rs256(json!({"exp": exp})),"id":1})).await;
        assert_eq!(next_non_heartbeat(&mut ws).await["type"], "authenticated");
        assert_eq!(close_code_at_expiry(&mut ws).await, 1008);
        assert!(now_s() >= exp, "closed before the token expired");
    })
    .await;
}

#[tokio::test]
async fn an_expired_token_ends_the_sse_stream() {
    within(async {
        let server = start_rs256().await;
        let exp = now_s() + 2;
        let token = rs256(json!({"exp": exp}));
        let mut stream = open_sse(&server, &format!("/sse?symbols=*&token={token}"), "").await;
        server.publish("NASDAQ:AAPL", 1.0);
        assert_eq!(stream.next_event().await.json()["symbol"], "NASDAQ:AAPL");
        tokio::time::timeout(EXPIRY_BOUND, async { while stream.next_block().await.is_some() {} })
            .await
            .expect("ended at expiry, not at a heartbeat");
        assert!(now_s() >= exp, "ended before the token expired");
    })
    .await;
}

#[tokio::test]
async fn origin_allow_list_admits_listed_origins_and_clients_without_one() {
    within(async {
        let config =
            GatewayConfig { allowed_origins: vec!["https://app.example.com".to_owned()], ..GatewayConfig::default() };
        let server = start_with(EngineConfig::default(), config).await;
        for (path, upgrade, ok) in [("/ws", true, 101), ("/sse?symbols=*", false, 200)] {
            for origin in ["Origin: https://app.example.com\r\n", "Origin: HTTPS://APP.example.com\r\n", ""] {
                let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
                let response = HttpStream::request_on(stream, &head(path, upgrade, origin)).await;
                assert_eq!(response.status, ok, "{path} with {origin:?}");
            }
            for origin in ["Origin: https://evil.example.com\r\n", "Origin: http://app.example.com\r\n", "Origin: null\r\n"] {
                let (status, response) = request(&server, path, upgrade, origin).await;
                assert_eq!(status, 403, "{path} with {origin:?}");
                assert_error(&response.unwrap(), 403, "forbidden", "origin");
            }
        }
    })
    .await;
}

#[tokio::test]
async fn symbols_and_health_stay_open_with_auth_on() {
    within(async {
        let server = start_rs256().await;
        server.publish("NASDAQ:AAPL", 1.0);
        let symbols = common::http_get(&server, "/symbols").await;
        assert_eq!((symbols.status, symbols.json()), (200, json!(["NASDAQ:AAPL"])));
        let health = common::http_get(&server, "/health").await;
        assert_eq!((health.status, health.json()["status"].clone()), (200, json!("ok")));
    })
    .await;
}

#[tokio::test]
async fn more_than_five_seconds_of_leeway_is_refused_at_startup() {
    within(async {
        let mut auth = AuthConfig::new(JwtKey::hs256_secret(SECRET).unwrap());
        auth.leeway = Duration::from_secs(6);
        let mut server =
            start_with(EngineConfig::default(), GatewayConfig { auth: Some(auth), ..GatewayConfig::default() }).await;
        let result = (&mut server.handle).await.unwrap();
        assert!(matches!(result, Err(gateway::Error::Config(_))), "{result:?}");
    })
    .await;
}

/// `tungstenite` reports a refused handshake as an HTTP error carrying the response.
#[tokio::test]
async fn a_websocket_client_sees_the_401() {
    within(async {
        let server = start_rs256().await;
        match tokio_tungstenite::connect_async(server.ws_url("")).await {
            Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
            other => panic!("expected a 401, got {other:?}"),
        }
    })
    .await;
}
