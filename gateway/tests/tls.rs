//! `https://` and `wss://` served by the gateway itself: a certificate made in the test, real
//! rustls clients (one that trusts it, one that does not), a plain-HTTP client knocking on
//! the TLS port, and a client that never starts its handshake.
#![allow(clippy::unwrap_used)]

mod common;

use std::{sync::Arc, time::Duration};

use common::{assert_tick, next_json, send, start_with, within, Server};
use feed_engine::EngineConfig;
use gateway::{GatewayConfig, TlsConfig};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};
use tokio_rustls::{
    client::TlsStream,
    rustls::{self, pki_types::ServerName, ClientConfig, RootCertStore},
    TlsConnector,
};

/// A self-signed certificate for `localhost` and 127.0.0.1, as PEM, and its DER for clients.
struct Cert {
    cert_pem: String,
    key_pem: String,
    der: rustls::pki_types::CertificateDer<'static>,
}

fn self_signed() -> Cert {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("rcgen makes a certificate");
    Cert {
        cert_pem: generated.cert.pem(),
        key_pem: generated.key_pair.serialize_pem(),
        der: generated.cert.der().clone(),
    }
}

/// A gateway serving TLS with `cert`, with these other settings.
async fn start_tls(cert: &Cert, config: GatewayConfig) -> Server {
    let tls = TlsConfig::from_pem(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes()).expect("valid certificate");
    start_with(EngineConfig::default(), GatewayConfig { tls: Some(tls), ..config }).await
}

/// A client that trusts exactly `roots`, offering `alpn`.
fn client_config(roots: &[&rustls::pki_types::CertificateDer<'static>], alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add((*root).clone()).expect("usable root");
    }
    let mut config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the defaults")
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Opens TCP and completes a TLS handshake for `localhost`.
async fn tls_connect(server: &Server, config: Arc<ClientConfig>) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(server.addr).await?;
    let name = ServerName::try_from("localhost").expect("valid name");
    TlsConnector::from(config).connect(name, tcp).await
}

/// `GET path` over a fresh TLS connection: status and body.
async fn https_get(server: &Server, config: Arc<ClientConfig>, path: &str) -> (u16, String) {
    let mut stream = tls_connect(server, config).await.expect("TLS handshake");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send request");
    let mut response = Vec::new();
    // The server ends with close_notify; a bare TCP close would be an error here.
    stream.read_to_end(&mut response).await.expect("response, then a clean TLS close");
    let text = String::from_utf8(response).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("complete head");
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status line");
    (status, body.to_owned())
}

#[tokio::test]
async fn https_health_answers_a_client_that_trusts_the_certificate() {
    within(async {
        let cert = self_signed();
        let server = start_tls(&cert, GatewayConfig::default()).await;
        let (status, body) = https_get(&server, client_config(&[&cert.der], &[]), "/health").await;
        assert_eq!(status, 200, "{body}");
        let health: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
        assert_eq!(health["status"], "ok");
        assert_eq!(health["epoch"], common::EPOCH);
    })
    .await;
}

#[tokio::test]
async fn alpn_settles_on_http_1_1_when_the_client_also_offers_h2() {
    within(async {
        let cert = self_signed();
        let server = start_tls(&cert, GatewayConfig::default()).await;
        let stream = tls_connect(&server, client_config(&[&cert.der], &[b"h2", b"http/1.1"])).await.expect("handshake");
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));

        let refused = tls_connect(&server, client_config(&[&cert.der], &[b"h2"])).await;
        assert!(refused.is_err(), "an h2-only client is refused rather than answered in HTTP/1.1");
    })
    .await;
}

#[tokio::test]
async fn wss_client_gets_welcome_ops_and_every_tick_in_order() {
    within(async {
        let cert = self_signed();
        let server = start_tls(&cert, GatewayConfig::default()).await;
        server.publish("NASDAQ:AAPL", 1.0);
        let stream = tls_connect(&server, client_config(&[&cert.der], &[b"http/1.1"])).await.expect("handshake");
        let (mut ws, response) =
            tokio_tungstenite::client_async("wss://localhost/ws", stream).await.expect("upgrade over TLS");
        assert_eq!(response.status(), 101);
        let welcome = next_json(&mut ws).await;
        assert_eq!((welcome["type"].as_str(), welcome["epoch"].as_str()), (Some("welcome"), Some(common::EPOCH)));

        send(&mut ws, json!({"op":"subscribe","symbols":["NASDAQ:*"],"id":1})).await;
        assert_eq!(next_json(&mut ws).await, json!({"type":"subscribed","symbols":["NASDAQ:*"],"id":1}));
        assert_tick(&next_json(&mut ws).await, "NASDAQ:AAPL", 1, true);
        // Enough ticks that writes queue up behind each other on the TLS stream.
        for n in 2..=300 {
            server.publish("NASDAQ:AAPL", f64::from(n));
        }
        for seq in 2..=300 {
            assert_tick(&next_json(&mut ws).await, "NASDAQ:AAPL", seq, false);
        }
        // Client ops still get through while the server writes.
        send(&mut ws, json!({"op":"ping","id":"p"})).await;
        let pong = next_json(&mut ws).await;
        assert_eq!((pong["type"].as_str(), pong["id"].as_str()), (Some("pong"), Some("p")));
    })
    .await;
}

#[tokio::test]
async fn plain_http_on_the_tls_port_gets_no_http_answer_and_tls_still_works() {
    within(async {
        let cert = self_signed();
        let server = start_tls(&cert, GatewayConfig::default()).await;
        let mut plain = TcpStream::connect(server.addr).await.expect("connect");
        plain.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n").await.expect("send");
        let mut answer = Vec::new();
        // Closed by the server (at most a TLS alert comes back), well before the test's bound.
        let _ = plain.read_to_end(&mut answer).await;
        assert!(!answer.starts_with(b"HTTP/"), "plain HTTP was answered: {:?}", String::from_utf8_lossy(&answer));

        let (status, _) = https_get(&server, client_config(&[&cert.der], &[]), "/health").await;
        assert_eq!(status, 200);
    })
    .await;
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_certificate_fails_the_handshake() {
    within(async {
        let cert = self_signed();
        let server = start_tls(&cert, GatewayConfig::default()).await;
        let stranger = self_signed();
        let error = tls_connect(&server, client_config(&[&stranger.der], &[])).await.expect_err("untrusted");
        assert!(error.to_string().to_lowercase().contains("certificate"), "{error}");
        // The server carries on for clients that do trust it.
        let (status, _) = https_get(&server, client_config(&[&cert.der], &[]), "/health").await;
        assert_eq!(status, 200);
    })
    .await;
}

#[tokio::test]
async fn a_tls_client_that_never_sends_a_client_hello_is_dropped_after_the_handshake_timeout() {
    within(async {
        let cert = self_signed();
        let handshake_timeout = Duration::from_millis(300);
        let server = start_tls(&cert, GatewayConfig { handshake_timeout, ..GatewayConfig::default() }).await;
        let mut silent = TcpStream::connect(server.addr).await.expect("connect");
        let started = tokio::time::Instant::now();
        let mut answer = Vec::new();
        let _ = silent.read_to_end(&mut answer).await;
        assert!(answer.is_empty(), "nothing is sent to a client that said nothing");
        assert!(started.elapsed() >= handshake_timeout - Duration::from_millis(50), "not before the timeout");

        let (status, _) = https_get(&server, client_config(&[&cert.der], &[]), "/health").await;
        assert_eq!(status, 200);
    })
    .await;
}

#[test]
fn a_key_that_does_not_belong_to_the_certificate_is_refused_at_startup() {
    let (cert, other) = (self_signed(), self_signed());
    let error = TlsConfig::from_pem(cert.cert_pem.as_bytes(), other.key_pem.as_bytes()).expect_err("mismatched key");
    assert!(matches!(error, gateway::Error::TlsInvalid { .. }), "{error:?}");
    let error = TlsConfig::from_pem(cert.key_pem.as_bytes(), cert.key_pem.as_bytes()).expect_err("a key is no cert");
    assert!(error.to_string().contains("certificate chain"), "{error}");
    let error = TlsConfig::from_pem(cert.cert_pem.as_bytes(), cert.cert_pem.as_bytes()).expect_err("a cert is no key");
    assert!(error.to_string().contains("private key"), "{error}");
}
