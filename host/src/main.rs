//! The `switchyard` binary: `serve` the host, or `plugin inspect` a component.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use switchyard::{Config, Server};

#[derive(Parser)]
#[command(name = "switchyard", version, about = "WebAssembly-pluggable message-routing engine")]
struct Cli {
    /// Log output format.
    #[arg(long, global = true, value_enum, default_value = "text", env = "SWITCHYARD_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve WebSocket clients with the plugins in a folder.
    Serve {
        /// TOML configuration file.
        #[arg(long, env = "SWITCHYARD_CONFIG")]
        config: Option<PathBuf>,
        /// Listen address (overrides `listen`).
        #[arg(long, env = "SWITCHYARD_LISTEN")]
        listen: Option<SocketAddr>,
        /// Plugin folder (overrides `plugins.dir`).
        #[arg(long, env = "SWITCHYARD_PLUGINS")]
        plugins: Option<PathBuf>,
    },
    /// Work with plugin components.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Print a component's manifest, or why it is not a valid plugin.
    Inspect { file: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve { config, listen, plugins } => serve(config, listen, plugins).await,
            Command::Plugin { command: PluginCommand::Inspect { file } } => inspect(file).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Option<PathBuf>, listen: Option<SocketAddr>, plugins: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let mut config = match config {
        Some(path) => Config::from_file(&path)?,
        None => Config::default(),
    };
    if let Some(listen) = listen {
        config.listen = listen;
    }
    if let Some(dir) = plugins {
        config.plugins.dir = dir;
    }
    let server = Server::start(config).await?;
    shutdown_signal().await.context("cannot listen for shutdown signals")?;
    server.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

async fn inspect(file: PathBuf) -> anyhow::Result<ExitCode> {
    match switchyard::inspect::inspect(&file).await {
        Ok(manifest) => {
            // A closed pipe (`inspect … | head`) is not an error worth a panic.
            let _ = writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&manifest)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{}: not a valid plugin: [{}] {}", file.display(), e.code, e.message);
            Ok(ExitCode::from(2))
        }
    }
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWITCHYARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
