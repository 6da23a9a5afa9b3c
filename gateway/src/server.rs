//! The accept loop, HTTP/1.1 serving of each connection, and shutdown.
//!
//! Every connection is one task in the shared [`TaskTracker`]; WebSocket sessions and SSE
//! streams are tasks of their own in the same tracker. Shutdown cancels one token: the
//! accept loop stops (the listener is dropped, so new connections are refused), HTTP
//! connections finish their current response and close, WebSockets close with 1001, SSE
//! streams end, and `serve` waits for all of it up to the grace period.
//!
//! Time limits before a connection is of any use, so idle sockets cannot pile up: from the
//! accept to its first request head (the TLS handshake included) a connection has the
//! handshake timeout; between requests on a keep-alive connection, the idle timeout, which
//! hyper's header-read timer enforces (in hyper 1 it starts when the connection starts
//! waiting for a head, so for a kept-alive connection it measures idle time plus the head).
//! A response in progress is never cut by either.

use std::{
    convert::Infallible,
    io,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use feed_engine::Engine;
use hyper::{server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
    time::Instant,
};
use tokio_rustls::TlsAcceptor;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Instrument as _;

use crate::{config::GatewayConfig, pacing, routes, state::State, ws::held::Held, Error};

/// Largest request head (and read buffer) hyper accepts.
const MAX_REQUEST_HEAD_BYTES: usize = 64 * 1024;
/// First and longest pause after an accept error that is not about one connection.
const BACKOFF_MIN: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Serves `/ws`, `/sse`, `/symbols`, `/snapshot` and `/health` on `listener` until `shutdown`
/// is cancelled, then closes every connection (WebSockets with 1001) and returns once they
/// are closed or `config.shutdown_grace` has passed. With `config.tls` every connection is
/// TLS (`https://`, `wss://`); the handshake runs in the connection's own task.
///
/// # Errors
/// [`Error::Config`] for a zero heartbeat or timeout, or a JWT leeway over
/// [`MAX_LEEWAY`](crate::MAX_LEEWAY); [`Error::Listener`] when the listener has no local
/// address (it is not a bound socket). Both are reported before anything is served.
/// Failed accepts are survived: per-connection errors are skipped, others (out of file
/// descriptors) are retried with back-off.
pub async fn serve(
    listener: TcpListener,
    engine: Engine,
    config: GatewayConfig,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    if config.heartbeat.is_zero() {
        return Err(Error::Config("heartbeat must be longer than zero"));
    }
    if config.auth.as_ref().is_some_and(|auth| auth.leeway > crate::auth::MAX_LEEWAY) {
        return Err(Error::Config("the JWT clock leeway must be at most 5 s"));
    }
    if config.handshake_timeout.is_zero() || config.idle_timeout.is_zero() {
        return Err(Error::Config("handshake and idle timeouts must be longer than zero"));
    }
    let local = listener.local_addr().map_err(Error::Listener)?;
    let grace = config.shutdown_grace;
    let tls = config.tls.as_ref().map(crate::TlsConfig::acceptor);
    let state = State::new(engine, config, shutdown.child_token());
    let mut http = http1::Builder::new();
    // The first head is also bounded by the handshake timeout, in `serve_http`.
    http.timer(TokioTimer::new()).header_read_timeout(state.config.idle_timeout).max_buf_size(MAX_REQUEST_HEAD_BYTES);
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%local, scheme, "gateway listening");

    state.tracker.spawn(pace(Arc::clone(&state)));
    state.tracker.spawn(Held::flush(Arc::clone(&state)));
    let mut backoff = BACKOFF_MIN;
    let stopping = state.shutdown.clone().cancelled_owned();
    tokio::pin!(stopping);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut stopping => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff = BACKOFF_MIN;
                accepted
            }
            Err(error) if is_connection_error(&error) => continue,
            Err(error) => {
                // Usually EMFILE/ENFILE: retrying at once would spin; pause and let
                // connections close.
                tracing::error!(%error, ?backoff, "accept failed");
                tokio::select! {
                    () = &mut stopping => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        let id = state.next_connection_id();
        let span = tracing::debug_span!("http", %peer, conn = id);
        let connection = serve_connection(stream, peer, Arc::clone(&state), http.clone(), tls.clone());
        state.tracker.spawn(connection.instrument(span));
    }

    drop(listener);
    state.closing.close();
    tracing::info!(connections = state.limits.live(), "gateway shutting down");
    close_and_wait(&state.tracker, grace).await;
    tracing::info!("gateway stopped");
    Ok(())
}

/// Recomputes the write-coalescing window until shutdown.
async fn pace(state: Arc<State>) {
    let mut ticker = tokio::time::interval(pacing::PERIOD);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut seen, mut last) = (pacing::Seen::default(), tokio::time::Instant::now());
    // The cores the runtime may keep busy; CPU time is the whole process's (the simulator's
    // thread included), which is what competes with the connections for those cores.
    let cores = tokio::runtime::Handle::current().metrics().num_workers().max(1) as f64;
    let mut cpu_then = pacing::process_cpu_time();
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            now = ticker.tick() => {
                let elapsed = now - last;
                let cpu_now = pacing::process_cpu_time();
                let busy = cpu_now.zip(cpu_then).map(|(now, then)| {
                    now.saturating_sub(then).as_secs_f64() / (elapsed.as_secs_f64().max(1e-3) * cores)
                });
                cpu_then = cpu_now;
                let window = state.pacing.update(&mut seen, elapsed, state.limits.live(), busy);
                last = now;
                tracing::trace!(?window, ?busy, "write-coalescing window");
            }
        }
    }
}

/// One accepted connection: the TLS handshake when TLS is on, then HTTP/1.1 until the
/// connection ends or shutdown finishes it.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<State>,
    http: http1::Builder,
    tls: Option<TlsAcceptor>,
) {
    // Ticks are small and latency matters more than packet count; batching is done by the
    // sessions themselves.
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY");
    }
    let head_deadline = Instant::now() + state.config.handshake_timeout;
    let Some(acceptor) = tls else {
        return serve_http(stream, peer, state, http, head_deadline).await;
    };
    let handshake = tokio::select! {
        () = state.shutdown.cancelled() => return,
        handshake = tokio::time::timeout_at(head_deadline, acceptor.accept(stream)) => handshake,
    };
    match handshake {
        Ok(Ok(stream)) => serve_http(stream, peer, state, http, head_deadline).await,
        // Plain HTTP on the TLS port, an untrusting client, a scanner: nothing to answer.
        Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed; connection dropped"),
        Err(_elapsed) => tracing::debug!("TLS handshake timed out; connection dropped"),
    }
}

/// Serves HTTP/1.1 (with upgrades) on one connection, plain or TLS, until it ends or shutdown
/// finishes it. Without a complete first request head by `head_deadline` it is dropped.
///
/// The plain stream reaches hyper as `TokioIo<TcpStream>`, the type `ws::socket` downcasts
/// an upgraded connection to; a TLS stream takes the generic path there.
async fn serve_http<S>(stream: S, peer: SocketAddr, state: Arc<State>, http: http1::Builder, head_deadline: Instant)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let shutdown = state.shutdown.clone();
    // Relaxed: a flag read by this connection's own task, publishing nothing else.
    let has_request = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&has_request);
    let service = service_fn(move |request| {
        seen.store(true, Ordering::Relaxed);
        std::future::ready(Ok::<_, Infallible>(routes::handle(request, &state, peer)))
    });
    let connection = http.serve_connection(TokioIo::new(stream), service).with_upgrades();
    tokio::pin!(connection);
    let head_timeout = tokio::time::sleep_until(head_deadline);
    tokio::pin!(head_timeout);
    let mut waiting_for_head = true;
    let result = loop {
        tokio::select! {
            result = connection.as_mut() => break result,
            () = shutdown.cancelled() => {
                // Finish the response in flight (an SSE stream ends on the same signal), then close.
                connection.as_mut().graceful_shutdown();
                break connection.await;
            }
            () = &mut head_timeout, if waiting_for_head => {
                if !has_request.load(Ordering::Relaxed) {
                    tracing::debug!("no request head within the handshake timeout; connection dropped");
                    return;
                }
                waiting_for_head = false;
            }
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "http connection ended with an error");
    }
}

/// Waits for every tracked task, at most `grace`.
async fn close_and_wait(tracker: &TaskTracker, grace: Duration) {
    tracker.close();
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!(remaining = tracker.len(), "shutdown grace period over; leaving connections behind");
    }
}

/// Errors that concern only the connection being accepted (it was reset or aborted before
/// we got to it): skip it and accept the next one.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}
