//! JSON lines from a stdin-like reader and from real TCP publishers: what is published,
//! what is skipped and counted, and what a disconnect mid-line leaves behind.

mod common;

use std::{net::SocketAddr, sync::Arc};

use common::{collect, drain_now, engine, subscribe_all, within, SeqCheck};
use feed_engine::Engine;
use ingest::{publisher::PublisherToken, stream, IngestStats, LineCounts, SourceKind, TsUnit};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

/// Good lines with every kind of malformed line between them; returns the input and how
/// many bad lines it holds.
fn mixed_input() -> (Vec<u8>, u64) {
    let bad: Vec<Vec<u8>> = vec![
        b"not json at all".to_vec(),
        b"\"a string\"".to_vec(),
        br#"{"price":1}"#.to_vec(),
        br#"{"symbol":"bad symbol","price":1}"#.to_vec(),
        br#"{"symbol":"X"}"#.to_vec(),
        br#"{"symbol":"X","price":"n/a"}"#.to_vec(),
        br#"{"symbol":"X","price":"-inf"}"#.to_vec(),
        b"{\"symbol\":\"X\xff\",\"price\":1}".to_vec(),
        format!(r#"{{"symbol":"X","price":1,"pad":"{}"}}"#, "p".repeat(100_000)).into_bytes(),
    ];
    let mut input = Vec::new();
    for (n, line) in bad.iter().enumerate() {
        input.extend_from_slice(
            format!("{{\"symbol\":\"NASDAQ:AAPL\",\"price\":{n}.5,\"ts\":{}}}\n", n * 1000).as_bytes(),
        );
        input.extend_from_slice(line);
        input.extend_from_slice(b"\n\r\n");
    }
    (input, bad.len() as u64)
}

#[tokio::test]
async fn stdin_lines_are_published_and_every_malformed_kind_is_skipped() {
    within(async {
        let (mut input, bad) = mixed_input();
        input.extend_from_slice(br#"{"symbol":"NASDAQ:AAPL","price":99}"#); // stdin may end without \n
        let engine = engine(1024);
        let mut subscriber = subscribe_all(&engine);
        let stats = IngestStats::default();

        let counts = stream::run_reader(
            &engine,
            &input[..],
            SourceKind::Stdin,
            "stdin",
            TsUnit::Us,
            &CancellationToken::new(),
            &stats,
        )
        .await
        .expect("in-memory input");

        assert_eq!(counts, LineCounts { published: bad + 1, malformed: bad });
        assert_eq!(stats.counts(SourceKind::Stdin), counts);
        let ticks = drain_now(&mut subscriber);
        let prices: Vec<f64> = ticks.iter().map(|t| t.number("price").expect("price")).collect();
        let mut expected: Vec<f64> = (0..bad).map(|n| n as f64 + 0.5).collect();
        expected.push(99.0);
        assert_eq!(prices, expected);
        assert_eq!(ticks[1].src_ts(), Some(1000));
        let mut seqs = SeqCheck::default();
        ticks.iter().for_each(|t| seqs.check(t));
    })
    .await;
}

/// A running `run_tcp` on a loopback port.
struct TcpSource {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), ingest::Error>>,
}

async fn start_tcp(engine: &Engine, stats: &Arc<IngestStats>) -> TcpSource {
    start_tcp_with(engine, stats, None).await
}

/// Like [`start_tcp`], requiring `AUTH <token>` when a token is given.
async fn start_tcp_with(engine: &Engine, stats: &Arc<IngestStats>, token: Option<PublisherToken>) -> TcpSource {
    let listener = stream::bind_tcp("127.0.0.1:0").await.expect("loopback port");
    let addr = listener.local_addr().expect("bound address");
    let shutdown = CancellationToken::new();
    let run = stream::run_tcp(engine.clone(), listener, TsUnit::Ns, token, shutdown.clone(), Arc::clone(stats));
    TcpSource { addr, shutdown, task: tokio::spawn(run) }
}

impl TcpSource {
    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("task").expect("clean stop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tcp_publishers_at_once_are_both_published_in_their_own_order() {
    within(async {
        let engine = engine(1 << 14);
        let mut subscriber = subscribe_all(&engine);
        let stats = Arc::new(IngestStats::default());
        let source = start_tcp(&engine, &stats).await;

        const LINES: usize = 500;
        let publish = |symbol: &'static str| {
            let addr = source.addr;
            tokio::spawn(async move {
                let mut socket = TcpStream::connect(addr).await.expect("connect");
                for n in 0..LINES {
                    // Split mid-line on purpose: lines may arrive in any chunking.
                    let line = format!("{{\"symbol\":\"{symbol}\",\"price\":{n}}}\n");
                    let (head, tail) = line.as_bytes().split_at(line.len() / 2);
                    socket.write_all(head).await.expect("write");
                    socket.flush().await.expect("flush");
                    socket.write_all(tail).await.expect("write");
                }
                socket.shutdown().await.expect("close");
            })
        };
        let (first, second) = (publish("VENUE-A:X"), publish("VENUE-B:Y"));

        let ticks = collect(&mut subscriber, 2 * LINES).await;
        first.await.expect("publisher");
        second.await.expect("publisher");

        for symbol in ["VENUE-A:X", "VENUE-B:Y"] {
            let mine: Vec<(u64, f64)> = ticks
                .iter()
                .filter(|t| t.symbol == symbol)
                .map(|t| (t.seq, t.number("price").expect("price")))
                .collect();
            let expected: Vec<(u64, f64)> = (0..LINES).map(|n| (n as u64 + 1, n as f64)).collect();
            assert_eq!(mine, expected, "{symbol}");
        }
        source.stop().await;
        assert_eq!(stats.counts(SourceKind::Tcp), LineCounts { published: 2 * LINES as u64, malformed: 0 });
    })
    .await;
}

#[tokio::test]
async fn a_tcp_publisher_cut_off_mid_line_publishes_nothing_partial() {
    within(async {
        // Driven through `run_reader` on the accepted socket, whose return marks the moment
        // the disconnect has been handled.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("loopback port");
        let addr = listener.local_addr().expect("bound address");
        let engine = engine(64);
        let mut subscriber = subscribe_all(&engine);
        let stats = Arc::new(IngestStats::default());
        let server = {
            let (engine, stats) = (engine.clone(), Arc::clone(&stats));
            tokio::spawn(async move {
                let (socket, peer) = listener.accept().await.expect("accept");
                let name = peer.to_string();
                stream::run_reader(
                    &engine,
                    socket,
                    SourceKind::Tcp,
                    &name,
                    TsUnit::Ns,
                    &CancellationToken::new(),
                    &stats,
                )
                .await
            })
        };
        let mut client = TcpStream::connect(addr).await.expect("connect");
        // The cut line would be a valid (and wrong) tick if it were taken as complete.
        client.write_all(b"{\"symbol\":\"A\",\"price\":100}\n{\"symbol\":\"A\",\"price\":1}").await.expect("write");
        client.shutdown().await.expect("close");
        drop(client);

        let counts = server.await.expect("task").expect("clean end of input");
        assert_eq!(counts, LineCounts { published: 1, malformed: 1 });
        let ticks = drain_now(&mut subscriber);
        assert_eq!(ticks.len(), 1);
        assert_eq!(ticks[0].number("price"), Some(100.0));
    })
    .await;
}

#[tokio::test]
async fn an_overlong_tcp_line_is_skipped_and_the_publisher_carries_on() {
    within(async {
        let engine = engine(64);
        let mut subscriber = subscribe_all(&engine);
        let stats = Arc::new(IngestStats::default());
        let source = start_tcp(&engine, &stats).await;

        let mut client = TcpStream::connect(source.addr).await.expect("connect");
        let writer = tokio::spawn(async move {
            client.write_all(b"{\"symbol\":\"A\",\"price\":").await.expect("write");
            // 8 MiB without a newline: far beyond the limit, never held in memory at once.
            let chunk = vec![b'7'; 64 * 1024];
            for _ in 0..128 {
                client.write_all(&chunk).await.expect("write");
            }
            client.write_all(b"}\n{\"symbol\":\"A\",\"price\":2}\n").await.expect("write");
            client
        });

        let ticks = collect(&mut subscriber, 1).await;
        assert_eq!((ticks[0].seq, ticks[0].number("price")), (1, Some(2.0)));
        // Lines of one connection are handled in order: the long one was counted first.
        assert_eq!(stats.counts(SourceKind::Tcp), LineCounts { published: 1, malformed: 1 });
        drop(writer.await.expect("writer"));
        source.stop().await;
    })
    .await;
}

#[tokio::test]
async fn tcp_shutdown_closes_idle_publishers() {
    within(async {
        let engine = engine(64);
        let mut subscriber = subscribe_all(&engine);
        let stats = Arc::new(IngestStats::default());
        let source = start_tcp(&engine, &stats).await;
        let mut client = TcpStream::connect(source.addr).await.expect("connect");
        client.write_all(b"{\"symbol\":\"A\",\"price\":1}\n").await.expect("write");
        collect(&mut subscriber, 1).await;
        // The publisher stays connected and silent; shutdown must not wait for it.
        source.stop().await;
        assert_eq!(stats.tcp_publishers.load(std::sync::atomic::Ordering::Relaxed), 0);
        drop(client);
    })
    .await;
}

#[tokio::test]
async fn binding_a_taken_address_names_it() {
    within(async {
        let taken = TcpListener::bind("127.0.0.1:0").await.expect("loopback port");
        let addr = taken.local_addr().expect("bound address").to_string();
        let error = stream::bind_tcp(&addr).await.expect_err("address in use");
        assert!(matches!(&error, ingest::Error::Bind { addr: a, .. } if *a == addr));
        assert!(error.to_string().contains(&addr), "{error}");
    })
    .await;
}

fn token() -> PublisherToken {
    PublisherToken::new("publisher-s3cret").expect("valid token")
}

#[tokio::test]
async fn a_publisher_that_authenticates_first_gets_its_ticks_published() {
    within(async {
        let engine = engine(64);
        let mut subscriber = subscribe_all(&engine);
        let stats = Arc::new(IngestStats::default());
        let source = start_tcp_with(&engine, &stats, Some(token())).await;

        let mut client = TcpStream::connect(source.addr).await.expect("connect");
        // The AUTH line and the ticks in one write: the ticks must not be lost with the line.
        client
            .write_all(b"AUTH publisher-s3cret\r\n{\"symbol\":\"A\",\"price\":1}\nnot json\n{\"symbol\":\"A\",\"price\":2}\n")
            .await
            .expect("write");
        let ticks = collect(&mut subscriber, 2).await;
        assert_eq!(ticks.iter().map(|t| (t.seq, t.number("price"))).collect::<Vec<_>>(), [(1, Some(1.0)), (2, Some(2.0))]);
        client.shutdown().await.expect("close");
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.expect("clean close");
        assert!(answer.is_empty(), "an accepted publisher is told nothing: {answer:?}");
        source.stop().await;
        assert_eq!(stats.counts(SourceKind::Tcp), LineCounts { published: 2, malformed: 1 });
    })
    .await;
}

#[tokio::test]
async fn a_publisher_with_a_wrong_or_missing_token_is_closed_and_nothing_it_sent_is_published() {
    within(async {
        let engine = engine(64);
        let mut subscriber = subscribe_all(&engine);
        let stats = Arc::new(IngestStats::default());
        let source = start_tcp_with(&engine, &stats, Some(token())).await;

        for first_lines in [
            &b"AUTH wrong-token\n{\"symbol\":\"A\",\"price\":1}\n"[..],
            b"{\"symbol\":\"A\",\"price\":1}\n{\"symbol\":\"A\",\"price\":2}\n",
            b"AUTH\n",
            b"AUTH publisher-s3cret-and-more\n",
        ] {
            let mut client = TcpStream::connect(source.addr).await.expect("connect");
            client.write_all(first_lines).await.expect("write");
            let mut answer = Vec::new();
            // The server closes: the read ends without the client closing first.
            let _ = client.read_to_end(&mut answer).await;
            assert_eq!(answer, b"ERR unauthorized\n", "after {:?}", String::from_utf8_lossy(first_lines));
        }
        // A publisher with the token, after them, is the first to publish anything.
        let mut good = TcpStream::connect(source.addr).await.expect("connect");
        good.write_all(b"AUTH publisher-s3cret\n{\"symbol\":\"B\",\"price\":3}\n").await.expect("write");
        let ticks = collect(&mut subscriber, 1).await;
        assert_eq!((ticks[0].symbol.as_str(), ticks[0].seq), ("B", 1));
        assert_eq!(stats.counts(SourceKind::Tcp), LineCounts { published: 1, malformed: 0 });
        drop(good);
        source.stop().await;
    })
    .await;
}
