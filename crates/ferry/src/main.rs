//! The `ferry` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use ferry::config::{FileConfig, TaskConfig};
use ferry::status::Status;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "ferry",
    version,
    about = "Keep one Redis in one-way sync with another"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Copy the source's data into the target, then apply every later write until stopped.
    Sync(SyncArgs),
}

#[derive(Args)]
struct SyncArgs {
    /// Source server: redis://[user:password@]host:port
    #[arg(long)]
    source: Option<String>,
    /// Target server: redis://[user:password@]host:port
    #[arg(long)]
    target: Option<String>,
    /// Read settings from this TOML file; flags given here override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Stop once the full copy is on the target (exit 0) instead of following writes.
    #[arg(long)]
    full_only: bool,
    /// Serve GET /status as JSON on this address, e.g. 127.0.0.1:8080.
    #[arg(long, value_name = "HOST:PORT")]
    status_addr: Option<String>,
    /// Collections with more elements than this are written as chunked native commands.
    #[arg(long, value_name = "N")]
    big_value_elements: Option<u64>,
    /// Values serialized larger than this many bytes are written as chunked native commands.
    #[arg(long, value_name = "BYTES")]
    big_value_bytes: Option<usize>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .init();
    let result = match cli.command {
        Command::Sync(args) => sync(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry: {e}");
            ExitCode::FAILURE
        }
    }
}

fn sync(args: SyncArgs) -> ferry::Result<()> {
    let mut file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    if args.source.is_some() {
        file.source.url = args.source;
    }
    if args.target.is_some() {
        file.target.url = args.target;
    }
    if args.full_only {
        file.sync.full_only = Some(true);
    }
    if args.status_addr.is_some() {
        file.status.addr = args.status_addr;
    }
    if args.big_value_elements.is_some() {
        file.advanced.big_value_elements = args.big_value_elements;
    }
    if args.big_value_bytes.is_some() {
        file.advanced.big_value_bytes = args.big_value_bytes;
    }
    let config = TaskConfig::build(file)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| ferry::Error::Config(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async move {
        let status = Arc::new(Status::default());
        let cancel = CancellationToken::new();
        let ui_cancel = CancellationToken::new();
        let api = match config.status_addr {
            Some(addr) => Some(ferry::api::serve(addr, status.clone(), ui_cancel.clone()).await?),
            None => None,
        };
        let ui = ferry::progress::spawn(status.clone(), ui_cancel.clone());
        tokio::spawn(stop_on_signal(cancel.clone()));
        let result = ferry::task::run(config, status, cancel).await;
        ui_cancel.cancel();
        let _ = ui.await;
        if let Some(api) = api {
            let _ = api.await;
        }
        result
    })
}

/// Ctrl-C or SIGTERM: stop reading the source; the writer finishes what is in flight.
async fn stop_on_signal(cancel: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    cancel.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("stopping: finishing the writes in flight");
    cancel.cancel();
}
