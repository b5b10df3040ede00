//! The `switchyard` binary: `serve` the host, `plugin inspect`, `new`,
//! `build` and `compile` plugins, `plugin history`, `rollback`, `canary`
//! and `promote` on a running host, `send` one request to a running host,
//! open a `console` on it, or ask its `history`.

mod history;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use switchyard::plugins::runtime::cache::CacheOutcome;
use switchyard::{Config, Server};

mod plugin;

/// mimalloc, not the system allocator: a message's path makes a score of
/// small allocations on one thread that another thread may free (a copy
/// for a shadow, a frame for a subscriber's writer). glibc's malloc frees
/// those under the owning arena's lock, and a low-priority thread
/// preempted while holding it stalls the live path; mimalloc frees them
/// without a lock.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        /// Database URL: sqlite://, postgres:// or mysql:// (overrides `storage.url`).
        #[arg(long, env = "SWITCHYARD_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
    },
    /// Work with plugin components.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Send one request and print the reply; exit 1 on an error reply, 2 if
    /// no reply came.
    Send {
        /// WebSocket URL, e.g. ws://127.0.0.1:8080/ws
        url: String,
        /// Message type.
        r#type: String,
        /// The message's data, as JSON.
        data: Option<String>,
        /// Seconds to wait for the connection and the reply.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
        /// API key, sent as `access_token`.
        #[arg(long, env = "SWITCHYARD_KEY", hide_env_values = true)]
        key: Option<String>,
    },
    /// Interactive console: help, list, send, broadcast, call, subscribe, request, quit.
    Console {
        /// WebSocket URL, e.g. ws://127.0.0.1:8080/ws
        url: String,
        /// API key (an `admin` key for list, send and broadcast).
        #[arg(long, env = "SWITCHYARD_KEY", hide_env_values = true)]
        key: Option<String>,
    },
    /// Ask a running host's history (an admin key): messages, connections, counts, rooms.
    History(Box<history::HistoryArgs>),
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Print a component's manifest, or why it is not a valid plugin.
    Inspect { file: PathBuf },
    /// Write a new plugin project that builds as generated.
    New {
        /// Plugin name: a-z, 0-9 and -.
        name: String,
        #[arg(long, value_enum, default_value = "rust")]
        lang: switchyard_plugin_tools::Lang,
        /// Where to create it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Build a plugin project and move the component into the plugin folder.
    Build {
        /// The project (default: the current folder).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// The plugin folder.
        #[arg(long, default_value = "plugins/dist", env = "SWITCHYARD_PLUGINS")]
        out: PathBuf,
        /// Install no toolchain: if one is missing, print the command that
        /// installs it.
        #[arg(long)]
        offline: bool,
    },
    /// Compile a component into the host's compile cache ahead of a
    /// deploy, so the host serves it milliseconds after the rename into
    /// its plugin folder instead of after compiling it.
    Compile {
        /// The component, as it will land in the plugin folder.
        file: PathBuf,
        /// The host's configuration, for its `plugins.cache_dir`.
        #[arg(long, env = "SWITCHYARD_CONFIG")]
        config: Option<PathBuf>,
        /// The compile cache folder (overrides the configuration's).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
    },
    #[command(flatten)]
    Deploy(plugin::Deploy),
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
            Command::Serve { config, listen, plugins, database_url } => serve(config, listen, plugins, database_url).await,
            Command::Plugin { command: PluginCommand::Inspect { file } } => inspect(file).await,
            Command::Plugin { command: PluginCommand::New { name, lang, dir } } => {
                let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
                switchyard_plugin_tools::new_project(&dir, &name, lang)?;
                println!("created {} ({lang:?}); build it with: switchyard plugin build {}", dir.display(), dir.display());
                Ok(ExitCode::SUCCESS)
            }
            Command::Plugin { command: PluginCommand::Build { dir, out, offline } } => {
                let built = switchyard_plugin_tools::build(&dir, &out, offline).await?;
                println!("built {}", built.display());
                Ok(ExitCode::SUCCESS)
            }
            Command::Plugin { command: PluginCommand::Compile { file, config, cache_dir } } => compile(file, config, cache_dir).await,
            Command::Plugin { command: PluginCommand::Deploy(command) } => plugin::run(command).await,
            Command::Send { url, r#type, data, timeout, key } => send(&with_key(&url, key), &r#type, data.as_deref(), timeout).await,
            Command::Console { url, key } => switchyard_client::cli::console(&with_key(&url, key)).await.map(|()| ExitCode::SUCCESS),
            Command::History(args) => history::run(args).await,
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

async fn serve(
    config: Option<PathBuf>,
    listen: Option<SocketAddr>,
    plugins: Option<PathBuf>,
    database_url: Option<String>,
) -> anyhow::Result<ExitCode> {
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
    if let Some(url) = database_url {
        config.storage.url = Some(url);
    }
    let server = Server::start(config).await?;
    print_served(&server);
    shutdown_signal().await.context("cannot listen for shutdown signals")?;
    server.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// What the host serves, on stdout, one URL a line, then what it is; the
/// log stays on stderr.
fn print_served(server: &Server) {
    let served = server.served();
    let width = served.iter().map(|s| s.url.len()).max().unwrap_or(0);
    let mut stdout = std::io::stdout().lock();
    for s in served {
        // A closed stdout must not stop the host.
        let _ = writeln!(stdout, "{:width$}  {}", s.url, s.what);
    }
    let _ = stdout.flush();
}

/// The URL with the key as `access_token`, if there is one.
fn with_key(url: &str, key: Option<String>) -> String {
    let Some(key) = key else { return url.to_owned() };
    let encoded: String = key
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { char::from(b).to_string() } else { format!("%{b:02X}") })
        .collect();
    format!("{url}{}access_token={encoded}", if url.contains('?') { '&' } else { '?' })
}

async fn send(url: &str, kind: &str, data: Option<&str>, timeout: u64) -> anyhow::Result<ExitCode> {
    use switchyard_client::cli;
    let result = cli::send(url, kind, data, std::time::Duration::from_secs(timeout)).await;
    match &result {
        Ok(frame) => {
            let _ = writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(frame)?);
        }
        Err(e) => eprintln!("error: {e}"),
    }
    Ok(ExitCode::from(cli::exit_code(&result)))
}

async fn inspect(file: PathBuf) -> anyhow::Result<ExitCode> {
    match switchyard_plugin_tools::inspect::inspect(&file).await {
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

async fn compile(file: PathBuf, config: Option<PathBuf>, cache_dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let dir = match cache_dir {
        Some(dir) => dir,
        None => {
            let config = match config {
                Some(path) => Config::from_file(&path)?,
                None => Config::default(),
            };
            config.plugins.cache_dir.context("the configuration has no plugins.cache_dir: the host compiles every load, and there is nothing to fill")?
        }
    };
    let bytes = tokio::fs::read(&file).await.with_context(|| format!("cannot read {}", file.display()))?;
    let compiled = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || switchyard::plugins::runtime::precompile(&bytes, dir)
    })
    .await?;
    match compiled {
        Ok(outcome) => {
            let done = if outcome == CacheOutcome::Hit { "already compiled in" } else { "compiled into" };
            println!("{}: {done} {}", file.display(), dir.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{}: cannot be compiled: {e:#}", file.display());
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
    // Colour only for a person at a terminal, not in a file or a pipe.
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
