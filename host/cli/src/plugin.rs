//! `switchyard plugin history|rollback|canary|promote|shadow`: safe deploys through a running
//! host's admin API (`/api/plugins/{name}/...`), with an `admin` key.

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::Value;
use std::process::ExitCode;

/// Where the host's API is and the admin key to use.
#[derive(Args)]
pub struct Admin {
    /// The host's HTTP address.
    #[arg(long, env = "SWITCHYARD_API", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// An `admin` API key.
    #[arg(long, env = "SWITCHYARD_KEY", hide_env_values = true)]
    key: Option<String>,
}

#[derive(Subcommand)]
pub enum Deploy {
    /// List a plugin's serving and retained versions with their calls,
    /// errors and latency.
    History {
        name: String,
        #[command(flatten)]
        admin: Admin,
    },
    /// Serve the previous version again (or `--to` a version string or
    /// hash prefix), without compiling.
    Rollback {
        name: String,
        #[arg(long)]
        to: Option<String>,
        #[command(flatten)]
        admin: Admin,
    },
    /// Start a canary: FILE serves --weight percent of the plugin's
    /// messages beside the serving version, judged by
    /// `[plugins.rollout.NAME]`'s thresholds.
    Canary {
        name: String,
        file: std::path::PathBuf,
        /// Percent of the plugin's messages, 0-100.
        #[arg(long)]
        weight: u32,
        /// Keep each client on one version: client_id or device_id.
        #[arg(long)]
        sticky: Option<String>,
        #[command(flatten)]
        admin: Admin,
    },
    /// Promote the running canary by hand.
    Promote {
        name: String,
        #[command(flatten)]
        admin: Admin,
    },
    /// Shadow a plugin: FILE (or --version, a retained one) gets a copy of
    /// every live message, contained, its replies compared with the
    /// serving version's and never sent. `--status` shows the comparison,
    /// `--stop` ends it.
    Shadow {
        name: String,
        #[arg(required_unless_present_any = ["status", "stop", "version"], conflicts_with = "version")]
        file: Option<std::path::PathBuf>,
        /// A retained version (version string or hash prefix) instead of FILE.
        #[arg(long)]
        version: Option<String>,
        /// A JSON pointer left out of the comparison, e.g. /data/time; repeatable.
        #[arg(long = "ignore", value_name = "PATH")]
        ignore: Vec<String>,
        /// Show the running shadow's comparison.
        #[arg(long, conflicts_with_all = ["file", "version", "stop"])]
        status: bool,
        /// Stop the running shadow, showing its final comparison.
        #[arg(long, conflicts_with_all = ["file", "version"])]
        stop: bool,
        #[command(flatten)]
        admin: Admin,
    },
}

pub async fn run(command: Deploy) -> anyhow::Result<ExitCode> {
    match command {
        Deploy::History { name, admin } => {
            let answer = call(&admin, reqwest::Method::GET, &format!("/api/plugins/{name}/versions"), None).await?;
            print_history(&answer);
            Ok(ExitCode::SUCCESS)
        }
        Deploy::Rollback { name, to, admin } => {
            let body = to.map(|to| serde_json::json!({ "to": to }));
            let answer = call(&admin, reqwest::Method::POST, &format!("/api/plugins/{name}/rollback"), body).await?;
            println!(
                "{name}: rolled back from {} ({}) to {} ({}){}",
                answer["from"]["version"].as_str().unwrap_or("?"),
                short(&answer["from"]["hash"]),
                answer["to"]["version"].as_str().unwrap_or("?"),
                short(&answer["to"]["hash"]),
                if answer["restored_kv"] == true { "; kv restored to its state before the migration" } else { "" },
            );
            Ok(ExitCode::SUCCESS)
        }
        Deploy::Canary { name, file, weight, sticky, admin } => {
            let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let mut path = format!("/api/plugins/{name}/canary?weight={weight}");
            if let Some(sticky) = sticky {
                path.push_str(&format!("&sticky={sticky}"));
            }
            let answer = send(&admin, reqwest::Method::POST, &path, Body::Bytes(bytes)).await?;
            println!(
                "{name}: canary {} ({}) on {}% beside {}; thresholds {}",
                answer["candidate"]["version"].as_str().unwrap_or("?"),
                short(&answer["candidate"]["hash"]),
                answer["weight"],
                answer["stable"]["version"].as_str().unwrap_or("?"),
                answer["thresholds"],
            );
            Ok(ExitCode::SUCCESS)
        }
        Deploy::Promote { name, admin } => {
            let answer = call(&admin, reqwest::Method::POST, &format!("/api/plugins/{name}/canary/promote"), None).await?;
            println!("{name}: {} promoted", answer["candidate"]["version"].as_str().unwrap_or("?"));
            Ok(ExitCode::SUCCESS)
        }
        Deploy::Shadow { name, file, version, ignore, status, stop, admin } => {
            let path = format!("/api/plugins/{name}/shadow");
            let answer = if status {
                call(&admin, reqwest::Method::GET, &path, None).await?
            } else if stop {
                call(&admin, reqwest::Method::DELETE, &path, None).await?
            } else if let Some(version) = version {
                call(&admin, reqwest::Method::POST, &path, Some(serde_json::json!({ "version": version, "ignore": ignore }))).await?
            } else {
                let file = file.context("give FILE, --version, --status or --stop")?;
                let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
                let query: String = ignore.iter().map(|p| format!("ignore={}", percent(p))).collect::<Vec<_>>().join("&");
                let path = if query.is_empty() { path } else { format!("{path}?{query}") };
                send(&admin, reqwest::Method::POST, &path, Body::Bytes(bytes)).await?
            };
            print_shadow(&name, &answer);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A query value, percent-encoded.
fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn print_shadow(name: &str, answer: &Value) {
    let ms = |v: &Value| v.as_f64().map_or("-".to_owned(), |ms| format!("{ms:.3}"));
    let latency = &answer["latency"];
    println!(
        "{name}: shadow {} ({}) beside {} ({}), {}{}",
        answer["candidate"]["version"].as_str().unwrap_or("?"),
        short(&answer["candidate"]["hash"]),
        answer["serving"]["version"].as_str().unwrap_or("?"),
        short(&answer["serving"]["hash"]),
        answer["state"].as_str().unwrap_or("?"),
        answer["reason"].as_str().map(|r| format!(" ({r})")).unwrap_or_default(),
    );
    println!(
        "compared {} matched {} match rate {} dropped {}",
        answer["compared"],
        answer["matched"],
        answer["match_rate"].as_f64().map_or("-".to_owned(), |r| format!("{:.2}%", r * 100.0)),
        answer["dropped"],
    );
    println!(
        "p50/p99 ms: serving {}/{}, candidate {}/{}",
        ms(&latency["serving"]["p50_ms"]),
        ms(&latency["serving"]["p99_ms"]),
        ms(&latency["candidate"]["p50_ms"]),
        ms(&latency["candidate"]["p99_ms"]),
    );
    println!("recorded, not delivered: {}", answer["effects"]["counts"]);
    for sample in answer["samples"].as_array().into_iter().flatten() {
        println!("  {} differs at {}", sample["type"].as_str().unwrap_or("?"), sample["differing_paths"]);
        println!("    serving   {}", sample["serving"]);
        println!("    candidate {}", sample["candidate"]);
    }
}

/// A request body.
enum Body {
    None,
    Json(Value),
    Bytes(Vec<u8>),
}

async fn call(admin: &Admin, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
    send(admin, method, path, body.map_or(Body::None, Body::Json)).await
}

/// One admin API call; an error body becomes an error naming its code.
async fn send(admin: &Admin, method: reqwest::Method, path: &str, body: Body) -> anyhow::Result<Value> {
    let url = format!("{}{path}", admin.url.trim_end_matches('/'));
    let mut request = reqwest::Client::new().request(method, &url);
    if let Some(key) = &admin.key {
        request = request.bearer_auth(key);
    }
    match body {
        Body::None => {}
        Body::Json(body) => request = request.json(&body),
        Body::Bytes(bytes) => request = request.header("content-type", "application/wasm").body(bytes),
    }
    let response = request.send().await.with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    let answer: Value = response.json().await.with_context(|| format!("{url} answered {status} with no JSON"))?;
    if !status.is_success() {
        let error = &answer["data"];
        anyhow::bail!("{} ({status}): {}", error["code"].as_str().unwrap_or("?"), error["message"].as_str().unwrap_or("?"));
    }
    Ok(answer)
}

fn short(hash: &Value) -> &str {
    hash.as_str().map_or("?", |h| &h[..h.len().min(12)])
}

fn print_history(answer: &Value) {
    println!("{:<10} {:<14} {:<12} {:<20} {:>8} {:>7} {:>9} {:>9}", "ROLE", "VERSION", "HASH", "LOADED", "CALLS", "ERRORS", "P50 MS", "P99 MS");
    for version in answer["versions"].as_array().into_iter().flatten() {
        let ms = |v: &Value| v.as_f64().map_or("-".to_owned(), |ms| format!("{ms:.3}"));
        println!(
            "{:<10} {:<14} {:<12} {:<20} {:>8} {:>7} {:>9} {:>9}",
            version["role"].as_str().unwrap_or("?"),
            version["version"].as_str().unwrap_or("?"),
            short(&version["hash"]),
            version["loaded_at"].as_str().unwrap_or("?"),
            version["calls"],
            version["errors"],
            ms(&version["p50_ms"]),
            ms(&version["p99_ms"]),
        );
    }
}
