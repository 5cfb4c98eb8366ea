//! `scoutstream`: a thin binary; the work lives in the library.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use scoutstream::embedded::{self, EmbeddedOptions};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "scoutstream",
    version,
    about = "The event backbone of a Dota 2 scouting product"
)]
struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true, env = "SCOUTSTREAM_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipeline on the embedded default (in-memory bus, no servers) over
    /// the real data in ../shared/data and any files you name. The default command.
    Embedded {
        /// JSON documents or JSON-lines files of matches and player records.
        files: Vec<PathBuf>,
        /// Folders to ingest (default: the shared OpenDota fixtures).
        #[arg(long = "data-dir")]
        data_dirs: Vec<PathBuf>,
        #[arg(long, default_value_t = 4)]
        partitions: u32,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logs(cli.log_json);
    let shutdown = shutdown_on_signal();
    let command = cli.command.unwrap_or(Command::Embedded {
        files: Vec::new(),
        data_dirs: Vec::new(),
        partitions: 4,
    });
    match command {
        Command::Embedded {
            files,
            mut data_dirs,
            partitions,
        } => {
            if data_dirs.is_empty() && files.is_empty() {
                data_dirs.push(producers::ingest::shared_data_dir().join("opendota"));
            }
            let report = embedded::run(
                EmbeddedOptions {
                    data_dirs,
                    files,
                    partitions,
                },
                shutdown,
            )
            .await?;
            print!("{}", report.render());
        }
    }
    Ok(())
}

fn init_logs(json: bool) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Cancels the returned token on SIGINT or SIGTERM: runners drain and commit.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(term) => term,
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
        cancel.cancel();
    });
    token
}
