//! The `tickfeed` binary as a user runs it: flags and their variables, a simulated market
//! over WebSocket and SSE, ticks piped into stdin, a replayed file, graceful shutdown.

mod common;

use std::{io::Write as _, process::Command, time::Duration};

use common::{http_get, Server, WAIT};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::{protocol::frame::coding::CloseCode, Message};

/// Every flag of the contract's command line (the parts this release implements) and
/// the extensions this project adds.
const FLAGS: &[&str] = &[
    "--listen", "--sim-symbols", "--sim-rate", "--sim-seed", "--replay", "--replay-speed", "--loop",
    "--ts-unit", "--replay-format", "--ingest-tcp", "--stdin", "--slow-consumer", "--history",
    "--heartbeat-ms", "--max-message-bytes", "--max-subscriptions", "--max-ops-per-sec",
    "--max-connections", "--max-connections-per-ip", "--bus-capacity", "--log-format", "--write-budget", "--max-coalesce-ms",
    "--io-uring",
    "--tls-cert", "--tls-key", "--handshake-timeout-ms", "--idle-timeout-ms", "--publisher-token",
    "--jwt-secret", "--jwt-public-key", "--jwt-audience", "--jwt-issuer", "--jwt-leeway-s", "--allowed-origin",
    "--conformance-echo",
];

#[test]
fn help_documents_every_flag_and_its_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_tickfeed")).arg("--help").output().expect("runs");
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).expect("utf8");
    for flag in FLAGS {
        assert!(help.contains(flag), "--help lacks {flag}");
        let var = format!("TICKFEED_{}", flag.trim_start_matches("--").replace('-', "_").to_uppercase());
        assert!(help.contains(&var), "--help lacks {var}");
    }
}

#[test]
fn bad_flag_values_exit_non_zero_with_a_message() {
    let output = Command::new(env!("CARGO_BIN_EXE_tickfeed")).args(["--sim-rate", "fast"]).output().expect("runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--sim-rate"));
    let output = Command::new(env!("CARGO_BIN_EXE_tickfeed"))
        .args(["--listen", "127.0.0.1:0", "--replay", "/definitely/not/here.csv"])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("/definitely/not/here.csv"));
}

async fn next_json(ws: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin)) -> Value {
    loop {
        let message = tokio::time::timeout(WAIT, ws.next()).await.expect("message in time").expect("open").expect("ok");
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).expect("server sends JSON");
        }
    }
}

#[tokio::test]
async fn simulated_market_streams_over_websocket_and_sigterm_closes_with_1001() {
    let mut server = Server::start(&["--sim-rate", "500", "--sim-symbols", "12", "--sim-seed", "7"], &[]);
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url("/ws?symbols=*")).await.expect("upgrade");
    let welcome = next_json(&mut ws).await;
    assert_eq!(welcome["type"], "welcome");
    let mut live = 0;
    while live < 50 {
        let msg = next_json(&mut ws).await;
        if msg["type"] == "tick" && msg.get("snapshot").is_none() {
            live += 1;
        }
    }
    let (status, body) = http_get(server.addr, "/symbols").await;
    assert_eq!(status, 200);
    let symbols: Vec<String> = serde_json::from_str(&body).expect("json array");
    assert_eq!(symbols.len(), 12);

    server.terminate();
    let close = loop {
        match tokio::time::timeout(WAIT, ws.next()).await.expect("close in time") {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(close.expect("close frame has a code").code, CloseCode::Away);
    assert!(server.wait_exit(Duration::from_secs(5)).success());
}

/// Each simulated tick says when it was due (`src_ts`), no later than the engine published it
/// (`ts`), and on SIGTERM the simulator logs how many ticks it published and how late: the
/// line `benches/peers/run.sh` reads into every benchmark row.
#[tokio::test]
async fn simulated_ticks_say_when_they_were_due_and_the_simulator_reports_its_lateness() {
    let mut server = Server::start(&["--sim-rate", "500", "--sim-symbols", "12", "--sim-seed", "7"], &[]);
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url("/ws?symbols=*")).await.expect("upgrade");
    let mut live = 0;
    while live < 50 {
        let msg = next_json(&mut ws).await;
        if msg["type"] == "tick" && msg.get("snapshot").is_none() {
            let (ts, src_ts) = (msg["ts"].as_i64().expect("ts"), msg["src_ts"].as_i64().expect("src_ts"));
            assert!(src_ts <= ts, "due at {src_ts}, published at {ts}: {msg}");
            live += 1;
        }
    }

    server.terminate();
    let line = server.wait_for_log("simulator stopped");
    let field = |key: &str| -> u64 {
        let start = line.find(&format!("{key}=")).unwrap_or_else(|| panic!("no {key} in {line:?}")) + key.len() + 1;
        let digits: String = line[start..].chars().take_while(char::is_ascii_digit).collect();
        digits.parse().unwrap_or_else(|_| panic!("{key} is not a count in {line:?}"))
    };
    assert!(field("published") >= 50, "{line}");
    for key in ["skipped", "late_over_2ms", "late_over_5ms", "late_max_us"] {
        field(key);
    }
    assert!(field("late_over_5ms") <= field("late_over_2ms"), "{line}");
    assert!(server.wait_exit(Duration::from_secs(5)).success());
}

#[tokio::test]
async fn environment_variables_set_flags() {
    // At rate 0 the simulated symbols exist but never tick: they are listed all the same.
    let server = Server::start(&[], &[("TICKFEED_SIM_SYMBOLS", "5"), ("TICKFEED_SIM_RATE", "0")]);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, body) = http_get(server.addr, "/symbols").await;
        let symbols: Vec<String> = serde_json::from_str(&body).expect("json array");
        assert!(symbols.len() <= 5, "{symbols:?}");
        if symbols.len() == 5 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "only {symbols:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn ticks_piped_into_stdin_reach_a_websocket_client_and_bad_lines_are_logged_with_their_number() {
    let mut server = Server::start(&["--stdin"], &[]);
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url("/ws")).await.expect("upgrade");
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
    ws.send(Message::text(r#"{"op":"subscribe","symbols":["PIPE:X"],"id":1}"#)).await.expect("send");
    assert_eq!(next_json(&mut ws).await["type"], "subscribed");
    let mut stdin = server.stdin.take().expect("stdin piped");
    writeln!(stdin, r#"{{"symbol":"PIPE:X","price":1.5,"size":3}}"#).expect("write");
    writeln!(stdin, "this is not json").expect("write");
    writeln!(stdin, r#"{{"symbol":"PIPE:X","price":1.75}}"#).expect("write");
    stdin.flush().expect("flush");
    let first = next_json(&mut ws).await;
    assert_eq!((first["seq"].as_u64(), first["price"].as_f64(), first["size"].as_f64()), (Some(1), Some(1.5), Some(3.0)));
    let second = next_json(&mut ws).await;
    assert_eq!((second["seq"].as_u64(), second["price"].as_f64()), (Some(2), Some(1.75)));
    let warning = server.wait_for_log("malformed line skipped");
    assert!(warning.contains("stdin") && warning.contains("line=2"), "source and line number are logged: {warning}");
    drop(stdin);
}

#[tokio::test]
async fn replayed_file_is_served_over_sse() {
    let dir = std::env::temp_dir().join(format!("tickfeed-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("ticks.csv");
    std::fs::write(&path, "ts,symbol,price,size\n1000000000,R:A,10.5,1\n2000000000,R:B,20.25,2\n3000000000,R:A,10.75,3\n").expect("write");
    let server = Server::start(&["--replay", path.to_str().expect("utf8 path"), "--replay-speed", "0"], &[]);
    // Once the replay has published its three ticks, the snapshot holds both symbols.
    let deadline = tokio::time::Instant::now() + WAIT;
    let snapshot: Vec<Value> = loop {
        let (status, body) = http_get(server.addr, "/snapshot?symbols=R:*").await;
        assert_eq!(status, 200, "{body}");
        let ticks: Vec<Value> = serde_json::from_str(&body).expect("json array");
        if ticks.len() == 2 && ticks[0]["seq"] == 2 {
            break ticks;
        }
        assert!(tokio::time::Instant::now() < deadline, "replay did not finish: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(snapshot[0]["price"], 10.75);
    assert_eq!(snapshot[0]["src_ts"], 3_000_000);
    assert_eq!(snapshot[1]["symbol"], "R:B");

    let output = tokio::process::Command::new("curl")
        .args(["-sN", "--max-time", "2", &format!("http://{}/sse?symbols=R:A", server.addr)])
        .output()
        .await;
    match output {
        Ok(output) => {
            let text = String::from_utf8_lossy(&output.stdout);
            assert!(text.contains("event: tick"), "{text}");
            assert!(text.contains("\"snapshot\":true"), "{text}");
            assert!(text.contains("\"price\":10.75"), "{text}");
        }
        Err(err) => eprintln!("skipping the curl part: curl is not available ({err})"),
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn tls_cert_without_tls_key_is_refused() {
    let output = Command::new(env!("CARGO_BIN_EXE_tickfeed")).args(["--tls-cert", "cert.pem"]).output().expect("runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--tls-key"));
}

#[test]
fn unreadable_tls_files_exit_non_zero_naming_the_file() {
    let output = Command::new(env!("CARGO_BIN_EXE_tickfeed"))
        .args(["--listen", "127.0.0.1:0", "--tls-cert", "/definitely/not/cert.pem", "--tls-key", "/definitely/not/key.pem"])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("/definitely/not/cert.pem"));
}

#[test]
fn ingest_tcp_off_loopback_without_a_publisher_token_fails_at_startup() {
    let output = Command::new(env!("CARGO_BIN_EXE_tickfeed"))
        .args(["--listen", "127.0.0.1:0", "--ingest-tcp", "0.0.0.0:0"])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not a loopback address") && stderr.contains("--publisher-token"), "{stderr}");
}

#[tokio::test]
async fn tls_flags_serve_https_health() {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio_rustls::rustls::{self, pki_types::ServerName, ClientConfig, RootCertStore};

    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("tickfeed-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, generated.cert.pem()).expect("write cert");
    std::fs::write(&key, generated.key_pair.serialize_pem()).expect("write key");

    let server = Server::start(
        &["--sim-rate", "0", "--tls-cert", cert.to_str().expect("utf8 path"), "--tls-key", key.to_str().expect("utf8 path")],
        &[],
    );
    assert!(server.https, "the listening line says https://");

    let mut roots = RootCertStore::empty();
    roots.add(generated.cert.der().clone()).expect("root");
    let config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("defaults")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(server.addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let mut tls = tokio::time::timeout(WAIT, tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp))
        .await
        .expect("handshake in time")
        .expect("handshake");
    tls.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.expect("send");
    let mut response = String::new();
    tokio::time::timeout(WAIT, tls.read_to_string(&mut response)).await.expect("answer in time").expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"status\":\"ok\""), "{response}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn jwt_secret_turns_auth_on_a_tokenless_websocket_gets_401_and_health_stays_open() {
    let server = Server::start(&["--sim-rate", "0", "--jwt-secret", "binary-test-secret"], &[]);
    match tokio_tungstenite::connect_async(server.ws_url("/ws?symbols=*")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401);
            let body: Value = serde_json::from_slice(response.body().as_deref().unwrap_or_default()).expect("JSON body");
            assert_eq!(body["code"], "unauthorized", "{body}");
        }
        other => panic!("expected a 401, got {other:?}"),
    }
    let (status, _) = http_get(server.addr, "/health").await;
    assert_eq!(status, 200);
}

#[test]
fn an_invalid_jwt_public_key_fails_at_startup_naming_the_flag_and_the_problem() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("tickfeed-jwt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let garbage = dir.join("not-a-key.pem");
    std::fs::write(&garbage, "this is not a key\n").expect("write");
    for (path, expected) in [(garbage.to_str().expect("utf8 path"), "not a PEM file"), ("/definitely/not/key.pem", "cannot read")] {
        let output = Command::new(env!("CARGO_BIN_EXE_tickfeed"))
            .args(["--listen", "127.0.0.1:0", "--jwt-public-key", path])
            .output()
            .expect("runs");
        assert!(!output.status.success(), "{path}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--jwt-public-key") && stderr.contains(path) && stderr.contains(expected), "{stderr}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn help_never_shows_the_jwt_secret_from_the_environment() {
    let output = Command::new(env!("CARGO_BIN_EXE_tickfeed"))
        .arg("--help")
        .env("TICKFEED_JWT_SECRET", "do-not-print-me")
        .output()
        .expect("runs");
    assert!(output.status.success());
    assert!(!String::from_utf8_lossy(&output.stdout).contains("do-not-print-me"));
}

#[test]
fn help_never_shows_the_publisher_token_from_the_environment() {
    let output = Command::new(env!("CARGO_BIN_EXE_tickfeed"))
        .arg("--help")
        .env("TICKFEED_PUBLISHER_TOKEN", "do-not-print-me-either")
        .output()
        .expect("runs");
    assert!(output.status.success());
    assert!(!String::from_utf8_lossy(&output.stdout).contains("do-not-print-me-either"));
}
