//! The `tickfeed` binary only wires things: parse the command line, build the engine, start
//! the sources, serve, wait for a signal, shut down in order.

mod cli;

use std::{process::ExitCode, sync::Arc, time::Duration};

use clap::Parser;
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{error, info, warn};

use crate::cli::{Cli, LogFormat};

/// jemalloc rather than the system allocator: every connection's task is a 768-byte block
/// that tokio aligns to 128 bytes, and jemalloc serves that from its 768-byte size class with
/// no padding, where glibc's `memalign` pads and fragments. Measured with the idle preset
/// (BENCHMARKS.md): about 1,165 bytes of server RSS per idle connection, against 1,485 with
/// glibc and 1,271 with mimalloc.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// How long sources get to stop after the gateway has closed its clients.
const SOURCE_STOP_GRACE: Duration = Duration::from_secs(2);

/// Why the process could not start.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: std::net::SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Ingest(#[from] ingest::Error),
    #[error("gateway failed: {0}")]
    Gateway(#[from] gateway::Error),
    #[error("--tls-cert/--tls-key: {0}")]
    Tls(#[source] gateway::Error),
    #[error(transparent)]
    Auth(#[from] cli::AuthSetupError),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("tickfeed: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            error!(error = %err, "tickfeed stopped");
            eprintln!("tickfeed: {err}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(cli: Cli) -> Result<(), StartError> {
    let engine = feed_engine::Engine::new(cli.engine_config());
    let shutdown = CancellationToken::new();
    let stats = Arc::new(ingest::IngestStats::default());
    let sources = TaskTracker::new();

    // Bind and open everything that can fail before anything starts, so a bad flag is a
    // clear error at startup rather than a half-running feed.
    let tls = cli.tls_config().map_err(StartError::Tls)?;
    let auth = cli.auth_config()?;
    let ingest_tcp = cli.ingest_tcp()?;
    let listener = TcpListener::bind(cli.listen).await.map_err(|source| StartError::Listen { addr: cli.listen, source })?;
    let ingest_listener = match ingest_tcp {
        Some((addr, token)) => {
            Some((TcpListener::bind(addr).await.map_err(|source| StartError::Listen { addr, source })?, token))
        }
        None => None,
    };
    let replay = match cli.replay_config() {
        Some(config) => Some(ingest::replay::open(config).await?),
        None => None,
    };
    let sim_config = cli.runs_simulator().then(|| cli.sim_config());
    if let Some(config) = &sim_config {
        config.validate()?;
    }

    let local = listener.local_addr().map_err(|source| StartError::Listen { addr: cli.listen, source })?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    info!(addr = %local, epoch = engine.epoch(), "tickfeed listening on {scheme}://{local}");

    let simulator = sim_config
        .map(|config| ingest::simulator::spawn(engine.clone(), config, shutdown.child_token(), Arc::clone(&stats)));
    if let Some(replay) = replay {
        let (engine, token, stats) = (engine.clone(), shutdown.child_token(), Arc::clone(&stats));
        sources.spawn(async move {
            if let Err(err) = replay.run(engine, token, stats).await {
                error!(error = %err, "replay stopped");
            }
        });
    }
    if cli.stdin {
        let ts_unit = cli.ts_unit();
        sources.spawn(ingest::stream::run_stdin(engine.clone(), ts_unit, shutdown.child_token(), Arc::clone(&stats)));
    }
    if let Some((listener, publisher_token)) = ingest_listener {
        if let Ok(addr) = listener.local_addr() {
            info!(%addr, authenticated = publisher_token.is_some(), "accepting JSON-lines publishers");
        }
        let (engine, ts_unit, token, stats) = (engine.clone(), cli.ts_unit(), shutdown.child_token(), Arc::clone(&stats));
        sources.spawn(async move {
            if let Err(err) = ingest::stream::run_tcp(engine, listener, ts_unit, publisher_token, token, stats).await {
                error!(error = %err, "ingest TCP listener stopped");
            }
        });
    }
    sources.close();

    let gateway_config = gateway::GatewayConfig { tls, auth, ..cli.gateway_config() };
    let serving = tokio::spawn(gateway::serve(listener, engine, gateway_config, shutdown.child_token()));
    tokio::pin!(serving);
    tokio::select! {
        () = shutdown_signal() => info!("shutting down"),
        result = &mut serving => {
            // The gateway only returns on its own when it failed.
            shutdown.cancel();
            return match result {
                Ok(result) => result.map_err(StartError::from),
                Err(join) => {
                    error!(error = %join, "gateway task ended unexpectedly");
                    Ok(())
                }
            };
        }
    }
    shutdown.cancel();
    match serving.await {
        Ok(result) => result?,
        Err(join) => error!(error = %join, "gateway task ended unexpectedly"),
    }
    if tokio::time::timeout(SOURCE_STOP_GRACE, sources.wait()).await.is_err() {
        warn!("sources did not stop in time");
    }
    if let Some(simulator) = simulator {
        // The simulator thread checks the token between batches (about every millisecond).
        let _ = tokio::task::spawn_blocking(move || simulator.join()).await;
    }
    info!("stopped");
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
