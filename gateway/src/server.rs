//! The accept loop, HTTP/1.1 serving of each connection, and shutdown.
//!
//! Every connection is one task in the shared [`TaskTracker`]; WebSocket sessions and SSE
//! streams are tasks of their own in the same tracker. Shutdown cancels one token: the
//! accept loop stops (the listener is dropped, so new connections are refused), HTTP
//! connections finish their current response and close, WebSockets close with 1001, SSE
//! streams end, and `serve` waits for all of it up to the grace period.

use std::{convert::Infallible, io, net::SocketAddr, sync::Arc, time::Duration};

use feed_engine::Engine;
use hyper::{server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Instrument as _;

use crate::{config::GatewayConfig, pacing, routes, state::State, Error};

/// A client must send its request head within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head (and read buffer) hyper accepts.
const MAX_REQUEST_HEAD_BYTES: usize = 64 * 1024;
/// First and longest pause after an accept error that is not about one connection.
const BACKOFF_MIN: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Serves `/ws`, `/sse`, `/symbols`, `/snapshot` and `/health` on `listener` until `shutdown`
/// is cancelled, then closes every connection (WebSockets with 1001) and returns once they
/// are closed or `config.shutdown_grace` has passed.
///
/// # Errors
/// [`Error::Config`] for a zero heartbeat; [`Error::Listener`] when the listener has no local
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
    let local = listener.local_addr().map_err(Error::Listener)?;
    let grace = config.shutdown_grace;
    let state = State::new(engine, config, shutdown.child_token());
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).max_buf_size(MAX_REQUEST_HEAD_BYTES);
    tracing::info!(%local, "gateway listening");

    state.tracker.spawn(pace(Arc::clone(&state)));
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
        state.tracker.spawn(serve_connection(stream, peer, Arc::clone(&state), http.clone()).instrument(span));
    }

    drop(listener);
    tracing::info!(connections = state.limits.live(), "gateway shutting down");
    close_and_wait(&state.tracker, grace).await;
    tracing::info!("gateway stopped");
    Ok(())
}

/// Recomputes the write-coalescing window until shutdown.
async fn pace(state: Arc<State>) {
    let mut ticker = tokio::time::interval(pacing::PERIOD);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut seen, mut last) = (0, tokio::time::Instant::now());
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            now = ticker.tick() => {
                let window = state.pacing.update(&mut seen, now - last, state.limits.live());
                last = now;
                tracing::trace!(?window, "write-coalescing window");
            }
        }
    }
}

/// Serves HTTP/1.1 (with upgrades) on one connection until it ends or shutdown finishes it.
async fn serve_connection(stream: TcpStream, peer: SocketAddr, state: Arc<State>, http: http1::Builder) {
    // Ticks are small and latency matters more than packet count; batching is done by the
    // sessions themselves.
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY");
    }
    let shutdown = state.shutdown.clone();
    let service =
        service_fn(move |request| std::future::ready(Ok::<_, Infallible>(routes::handle(request, &state, peer))));
    let connection = http.serve_connection(TokioIo::new(stream), service).with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = shutdown.cancelled() => {
            // Finish the response in flight (an SSE stream ends on the same signal), then close.
            connection.as_mut().graceful_shutdown();
            connection.await
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
