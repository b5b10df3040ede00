//! `switchyard history ...`: the history API (`/api/history/...`) from the
//! command line, with an admin key. A table for people, `--json` for
//! machines (the API's own answer, or with `--all` every page's rows in
//! one document).
//!
//! Exit status: 0 answered, 1 the host refused (its code and message on
//! stderr), 2 the host could not be reached.

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args)]
pub struct HistoryArgs {
    /// The host's HTTP address.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8080", env = "SWITCHYARD_URL")]
    url: String,
    /// An API key with the admin scope.
    #[arg(long, global = true, env = "SWITCHYARD_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// A PEM CA certificate to trust for an https:// host.
    #[arg(long, global = true)]
    ca_cert: Option<PathBuf>,
    /// Seconds to wait for each answer.
    #[arg(long, global = true, default_value_t = 60)]
    timeout: u64,
    #[command(subcommand)]
    query: HistoryQuery,
}

/// Filters shared by `messages` and `counts`.
#[derive(Args)]
struct MessageFilters {
    /// Messages sent by members of this room, or to it.
    #[arg(long)]
    room: Option<String>,
    /// Messages this device sent, or that were sent to it.
    #[arg(long)]
    device: Option<String>,
    /// A type, or a prefix pattern such as `video.*`.
    #[arg(long = "type")]
    kind: Option<String>,
    /// `ok`, `error`, or an error code.
    #[arg(long)]
    outcome: Option<String>,
    /// `in` (from clients) or `out` (from the host).
    #[arg(long)]
    direction: Option<String>,
    /// From this time: RFC 3339 UTC, epoch milliseconds, or a duration ago (15m, 2h).
    #[arg(long)]
    since: Option<String>,
    /// Before this time (same forms as --since).
    #[arg(long)]
    until: Option<String>,
}

/// Which page, and how many.
#[derive(Args)]
struct Paging {
    /// Rows per page (the host returns at most 1000).
    #[arg(long)]
    limit: Option<u32>,
    /// Start where a previous page's `next_cursor` left off.
    #[arg(long)]
    cursor: Option<String>,
    /// `desc` (newest first, the default) or `asc`.
    #[arg(long)]
    order: Option<String>,
    /// Follow the cursors to the last page.
    #[arg(long)]
    all: bool,
}

#[derive(Subcommand)]
enum HistoryQuery {
    /// Messages, newest first.
    Messages {
        #[command(flatten)]
        filters: MessageFilters,
        #[command(flatten)]
        paging: Paging,
    },
    /// Connections: open now (--active), closed (--closed), or open at some time in --since..--until.
    Connections {
        #[arg(long, conflicts_with = "closed")]
        active: bool,
        #[arg(long)]
        closed: bool,
        #[arg(long)]
        device: Option<String>,
        #[arg(long)]
        client_id: Option<String>,
        #[arg(long)]
        endpoint: Option<String>,
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Messages counted by type and outcome.
    Counts {
        #[command(flatten)]
        filters: MessageFilters,
    },
    /// One room's joins, messages and queries in the last minutes, and its members now.
    Rooms {
        room: String,
        #[arg(long, default_value_t = 60)]
        minutes: u32,
    },
}

/// Why a query printed nothing.
enum Refusal {
    /// The host answered with an error body.
    Refused { status: u16, code: String, message: String },
    /// No answer at all.
    Unreachable(String),
}

struct Api {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
}

impl Api {
    async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, Refusal> {
        let mut request = self.http.get(format!("{}{path}", self.base)).query(query);
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(|e| Refusal::Unreachable(format!("{}: {e}", self.base)))?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|e| Refusal::Unreachable(format!("the answer is not JSON: {e}")))?;
        if status.is_success() {
            return Ok(body);
        }
        // The host's error body: {"type": "error", "data": {"code", "message"}}.
        let error = &body["data"];
        Err(Refusal::Refused {
            status: status.as_u16(),
            code: error["code"].as_str().unwrap_or("?").to_owned(),
            message: error["message"].as_str().unwrap_or_default().to_owned(),
        })
    }

    /// One page, or with `all` every page (rows under `field`, merged).
    async fn pages(&self, path: &str, mut query: Vec<(&str, String)>, field: &str, all: bool) -> Result<Value, Refusal> {
        let mut answer = self.get(path, &query).await?;
        if !all {
            return Ok(answer);
        }
        while let Some(cursor) = answer["next_cursor"].as_str().map(str::to_owned) {
            query.retain(|(name, _)| *name != "cursor" && *name != "order");
            query.push(("cursor", cursor));
            let mut next = self.get(path, &query).await?;
            if let (Some(rows), Some(more)) = (answer[field].as_array_mut(), next[field].as_array_mut()) {
                rows.append(more);
            }
            answer["next_cursor"] = next["next_cursor"].take();
        }
        Ok(answer)
    }
}

fn push(query: &mut Vec<(&'static str, String)>, name: &'static str, value: Option<impl ToString>) {
    if let Some(value) = value {
        query.push((name, value.to_string()));
    }
}

fn filter_query(f: MessageFilters) -> Vec<(&'static str, String)> {
    let mut query = Vec::new();
    push(&mut query, "room", f.room);
    push(&mut query, "device", f.device);
    push(&mut query, "type", f.kind);
    push(&mut query, "outcome", f.outcome);
    push(&mut query, "direction", f.direction);
    push(&mut query, "since", f.since);
    push(&mut query, "until", f.until);
    query
}

fn paging_query(query: &mut Vec<(&'static str, String)>, p: &Paging) {
    push(query, "limit", p.limit);
    push(query, "cursor", p.cursor.as_ref());
    push(query, "order", p.order.as_ref());
}

/// A path segment, percent-encoded.
fn segment(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) { char::from(b).to_string() } else { format!("%{b:02X}") })
        .collect()
}

pub async fn run(args: Box<HistoryArgs>) -> anyhow::Result<ExitCode> {
    let mut http = reqwest::Client::builder().timeout(Duration::from_secs(args.timeout));
    if let Some(path) = &args.ca_cert {
        let pem = std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        http = http.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
    }
    let api = Api { http: http.build()?, base: args.url.trim_end_matches('/').to_owned(), key: args.key };
    let answer = match args.query {
        HistoryQuery::Messages { filters, paging } => {
            let mut query = filter_query(filters);
            paging_query(&mut query, &paging);
            api.pages("/api/history/messages", query, "messages", paging.all).await.map(|a| (a, Table::Messages))
        }
        HistoryQuery::Connections { active, closed, device, client_id, endpoint, since, until, paging } => {
            let mut query = Vec::new();
            push(&mut query, "active", active.then_some("true").or(closed.then_some("false")));
            push(&mut query, "device", device);
            push(&mut query, "client_id", client_id);
            push(&mut query, "endpoint", endpoint);
            push(&mut query, "since", since);
            push(&mut query, "until", until);
            paging_query(&mut query, &paging);
            api.pages("/api/history/connections", query, "connections", paging.all).await.map(|a| (a, Table::Connections))
        }
        HistoryQuery::Counts { filters } => api.get("/api/history/counts", &filter_query(filters)).await.map(|a| (a, Table::Counts)),
        HistoryQuery::Rooms { room, minutes } => {
            let path = format!("/api/history/rooms/{}/activity", segment(&room));
            api.get(&path, &[("minutes", minutes.to_string())]).await.map(|a| (a, Table::Room))
        }
    };
    let mut out = std::io::stdout().lock();
    match answer {
        Ok((answer, table)) => {
            // A closed pipe (`history ... | head`) is not worth a panic.
            let _ = if args.json {
                writeln!(out, "{}", serde_json::to_string_pretty(&answer)?)
            } else {
                write!(out, "{}", table.render(&answer))
            };
            if let (false, Some(cursor)) = (args.json, answer["next_cursor"].as_str()) {
                eprintln!("more: --cursor {cursor} (or --all)");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(Refusal::Refused { status, code, message }) => {
            if args.json {
                let _ = writeln!(out, "{}", json!({ "error": { "code": code, "message": message, "status": status } }));
            }
            eprintln!("error: {code} (HTTP {status}): {message}");
            Ok(ExitCode::from(1))
        }
        Err(Refusal::Unreachable(why)) => {
            eprintln!("error: no answer: {why}");
            Ok(ExitCode::from(2))
        }
    }
}

/// How an answer prints for people.
enum Table {
    Messages,
    Connections,
    Counts,
    Room,
}

/// A cell: text as is, numbers as written, nothing as `-`; cut to `width`
/// characters and kept on one line.
fn cell(value: &Value, width: usize) -> String {
    let text = match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let text: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if text.chars().count() > width {
        let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
        cut.push('…');
        cut
    } else {
        text
    }
}

/// Rows under columns, each as wide as its widest cell.
fn columns(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(c);
            } else {
                text.push_str(c);
                text.push_str(&" ".repeat(w - c.chars().count() + 2));
            }
        }
        text.trim_end().to_owned() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

impl Table {
    fn render(&self, answer: &Value) -> String {
        let rows = |field: &str| answer[field].as_array().cloned().unwrap_or_default();
        match self {
            Table::Messages => {
                let headers = ["AT", "TYPE", "DIR", "OUTCOME", "DEVICE", "ROOM", "PLUGIN", "LATENCY_US", "ID", "PAYLOAD"];
                let keys = ["at", "type", "direction", "outcome", "device_id", "room_id", "plugin", "latency_us", "id", "payload"];
                let body: Vec<Vec<String>> =
                    rows("messages").iter().map(|m| keys.iter().map(|k| cell(&m[*k], if *k == "payload" { 48 } else { 40 })).collect()).collect();
                format!("{}({} messages)\n", columns(&headers, &body), body.len())
            }
            Table::Connections => {
                let headers = ["ID", "ENDPOINT", "DEVICE", "CLIENT", "REMOTE", "CONNECTED", "DISCONNECTED", "CLOSE"];
                let keys = ["id", "endpoint", "device_id", "client_id", "remote_addr", "connected_at", "disconnected_at", "close_code"];
                let body: Vec<Vec<String>> = rows("connections").iter().map(|c| keys.iter().map(|k| cell(&c[*k], 40)).collect()).collect();
                format!("{}({} connections)\n", columns(&headers, &body), body.len())
            }
            Table::Counts => {
                let body: Vec<Vec<String>> =
                    rows("counts").iter().map(|c| vec![cell(&c["type"], 60), cell(&c["outcome"], 40), cell(&c["count"], 20)]).collect();
                let mut out = columns(&["TYPE", "OUTCOME", "COUNT"], &body);
                out.push_str(&format!("total: {}{}\n", answer["total"], if answer["truncated"] == true { " (groups truncated)" } else { "" }));
                out
            }
            Table::Room => {
                let map = |field: &str| -> String {
                    let entries: Vec<String> = answer[field].as_object().unwrap_or(&Map::new()).iter().map(|(k, v)| format!("{k}={v}")).collect();
                    if entries.is_empty() { "-".to_owned() } else { entries.join(", ") }
                };
                let members: Vec<String> = rows("members")
                    .iter()
                    .map(|m| cell(if m["device_id"].is_null() { &m["connection_id"] } else { &m["device_id"] }, 64))
                    .collect();
                let body = vec![
                    vec!["room".to_owned(), cell(&answer["room"], 64)],
                    vec!["since".to_owned(), format!("{} (last {} minutes)", cell(&answer["since"], 40), answer["minutes"])],
                    vec!["created".to_owned(), cell(&answer["created_at"], 40)],
                    vec!["members now".to_owned(), format!("{}{}", members.len(), if members.is_empty() { String::new() } else { format!(": {}", members.join(", ")) })],
                    vec!["joins".to_owned(), format!("{} ({} devices)", answer["joins"], answer["devices_joined"])],
                    vec!["messages".to_owned(), map("messages")],
                    vec!["sent".to_owned(), map("sent")],
                    vec!["queries".to_owned(), answer["queries"].to_string()],
                ];
                columns(&["FIELD", "VALUE"], &body)
            }
        }
    }
}
