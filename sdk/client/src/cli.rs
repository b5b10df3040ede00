//! The command-line side: one-shot `send` and the interactive `console`,
//! for the host binary's `switchyard send` and `switchyard console`.
//!
//! The binary parses its arguments and sets the exit code; this module
//! talks to the host and prints. Console commands are parsed by
//! [`ConsoleCommand::parse`], a pure function, so they are testable
//! without a terminal.

use crate::backoff::ReconnectPolicy;
use crate::client::Client;
use crate::config::ClientConfig;
use crate::error::ClientError;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;

/// Send one request and return the whole reply frame, error replies
/// included (`Ok`); no reconnects. `data_json` is the request's `data` as
/// JSON text (`None` for no data). Turn the result into an exit code with
/// [`exit_code`].
///
/// ```no_run
/// # async fn demo() -> std::process::ExitCode {
/// use std::time::Duration;
/// use switchyard_client::cli;
///
/// let result = cli::send("ws://127.0.0.1:8080/ws", "calculate", Some(r#"{"a":6,"b":3,"op":"/"}"#), Duration::from_secs(5)).await;
/// match &result {
///     Ok(frame) => println!("{frame}"),
///     Err(e) => eprintln!("error {}: {e}", e.code()),
/// }
/// std::process::ExitCode::from(cli::exit_code(&result))
/// # }
/// ```
pub async fn send(url: &str, kind: &str, data_json: Option<&str>, timeout: Duration) -> Result<Value, ClientError> {
    let data = parse_data(data_json)?;
    let config = ClientConfig {
        reconnect: ReconnectPolicy { max_attempts: Some(0), ..ReconnectPolicy::default() },
        connect_timeout: timeout,
        request_timeout: timeout,
        ..ClientConfig::default()
    };
    let client = Client::connect_with(url, config).await?;
    let reply = client.request_frame(kind, data, timeout).await;
    client.close().await;
    reply
}

/// True for an error frame (`"type":"error"`).
pub fn is_error_reply(frame: &Value) -> bool {
    frame.get("type").and_then(Value::as_str) == Some("error")
}

/// 0 for a reply, 1 for an error reply, 2 when no reply came (the
/// connection failed, timed out, or the input was invalid).
pub fn exit_code(result: &Result<Value, ClientError>) -> u8 {
    match result {
        Ok(frame) if is_error_reply(frame) => 1,
        Ok(_) => 0,
        Err(_) => 2,
    }
}

fn parse_data(data_json: Option<&str>) -> Result<Value, ClientError> {
    match data_json.map(str::trim) {
        None | Some("") => Ok(Value::Null),
        Some(text) => {
            serde_json::from_str(text).map_err(|e| ClientError::InvalidInput(format!("data is not JSON: {e}")))
        }
    }
}

/// How the console spells its commands on the wire: by default the host's
/// built-ins `host.connections`, `host.send`, `host.broadcast` and
/// `host.call`, which need a key with `admin` scope.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsoleConfig {
    /// `list` sends `{"type": list_type}`.
    pub list_type: String,
    /// `send ID TYPE [JSON]` sends `{"type": direct_type, "data": {"to", "type", "data"}}`.
    pub direct_type: String,
    /// `broadcast TEXT` sends `{"type": broadcast_type, "data": {"message": TEXT}}`.
    pub broadcast_type: String,
    /// `call ID ACTION [JSON]` sends `{"type": call_type, "data": {"to", "action", "params", "timeout_ms"}}`.
    pub call_type: String,
    pub request_timeout: Duration,
    /// Line history; `None` keeps none. Defaults to `~/.switchyard_history`.
    pub history: Option<PathBuf>,
    pub client: ClientConfig,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            list_type: "host.connections".into(),
            direct_type: "host.send".into(),
            broadcast_type: "host.broadcast".into(),
            call_type: "host.call".into(),
            request_timeout: Duration::from_secs(10),
            history: std::env::home_dir().map(|home| home.join(".switchyard_history")),
            client: ClientConfig::default(),
        }
    }
}

/// One console command.
#[derive(Debug, Clone, PartialEq)]
pub enum ConsoleCommand {
    Help,
    List,
    /// Provisional: a direct message to one client (`{"to", "type", "data"}`).
    Send {
        to: String,
        kind: String,
        data: Value,
    },
    Broadcast {
        message: String,
    },
    /// A request to one client (by connection or client id), printed with its answer.
    Call {
        to: String,
        action: String,
        params: Value,
    },
    Subscribe {
        topics: Vec<String>,
    },
    Unsubscribe {
        topics: Vec<String>,
    },
    Request {
        kind: String,
        data: Value,
    },
    Quit,
}

pub const CONSOLE_HELP: &str = "\
commands:
  help                          this text
  list                          list the host's connections
  send <client_id> <type> [json]  send a message to one client (provisional)
  broadcast <message>           send a text to every client (provisional)
  call <id> <action> [json]     ask one client (connection or client id) and print its answer
  subscribe <topic...>          receive events on these topics (patterns like alert.* work)
  unsubscribe <topic...>        stop receiving them
  request <type> [json]         send any request and print the reply
  quit                          leave (Ctrl-D too)
events you are subscribed to are printed as they arrive";

impl ConsoleCommand {
    /// Parse a line; `Ok(None)` for a blank one, `Err` with a usage hint.
    pub fn parse(line: &str) -> Result<Option<ConsoleCommand>, String> {
        let line = line.trim();
        let (word, rest) = split_word(line);
        let command = match word {
            "" => return Ok(None),
            "help" | "?" => ConsoleCommand::Help,
            "list" => ConsoleCommand::List,
            "quit" | "exit" => ConsoleCommand::Quit,
            "send" => {
                let (to, rest) = split_word(rest);
                let (kind, json) = split_word(rest);
                if to.is_empty() || kind.is_empty() {
                    return Err("usage: send <client_id> <type> [json]".into());
                }
                ConsoleCommand::Send { to: to.into(), kind: kind.into(), data: json_arg(json)? }
            }
            "call" => {
                let (to, rest) = split_word(rest);
                let (action, json) = split_word(rest);
                if to.is_empty() || action.is_empty() {
                    return Err("usage: call <id> <action> [json]".into());
                }
                let params = if json.is_empty() { json!({}) } else { json_arg(json)? };
                ConsoleCommand::Call { to: to.into(), action: action.into(), params }
            }
            "broadcast" => {
                if rest.is_empty() {
                    return Err("usage: broadcast <message>".into());
                }
                ConsoleCommand::Broadcast { message: rest.into() }
            }
            "subscribe" | "unsubscribe" => {
                let topics: Vec<String> = rest.split_whitespace().map(str::to_owned).collect();
                if topics.is_empty() {
                    return Err(format!("usage: {word} <topic...>"));
                }
                if word == "subscribe" {
                    ConsoleCommand::Subscribe { topics }
                } else {
                    ConsoleCommand::Unsubscribe { topics }
                }
            }
            "request" => {
                let (kind, json) = split_word(rest);
                if kind.is_empty() {
                    return Err("usage: request <type> [json]".into());
                }
                ConsoleCommand::Request { kind: kind.into(), data: json_arg(json)? }
            }
            other => return Err(format!("unknown command {other:?}; try help")),
        };
        Ok(Some(command))
    }
}

fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    match text.find(char::is_whitespace) {
        Some(at) => (&text[..at], text[at..].trim()),
        None => (text, ""),
    }
}

fn json_arg(text: &str) -> Result<Value, String> {
    if text.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(text).map_err(|e| format!("not JSON ({e}): {text}"))
}

/// The interactive console with the default [`ConsoleConfig`].
pub async fn console(url: &str) -> anyhow::Result<()> {
    console_with(url, ConsoleConfig::default()).await
}

/// A line from the editor thread, and how to tell it to go on.
struct Line {
    text: Option<String>,
    done: std::sync::mpsc::SyncSender<bool>,
}

/// An interactive console: line editing and history (rustyline), commands
/// as in [`CONSOLE_HELP`], events printed as they arrive.
pub async fn console_with(url: &str, config: ConsoleConfig) -> anyhow::Result<()> {
    let client = Client::connect_with(url, config.client.clone()).await?;
    println!("connected to {url}; type help for commands");

    // The editor blocks, so it lives on its own thread and hands over one
    // line at a time, waiting until the command's output is printed.
    let (lines_tx, mut lines_rx) = mpsc::channel::<Line>(1);
    let (printer_tx, printer_rx) = std::sync::mpsc::sync_channel::<Option<Printer>>(1);
    let history = config.history.clone();
    let editor = std::thread::spawn(move || edit_lines(history, lines_tx, printer_tx));
    let printer = printer_rx.recv().ok().flatten().unwrap_or(Printer::Plain);

    let events = tokio::spawn(print_events(client.take_unhandled(), client.watch_state(), printer));

    while let Some(line) = lines_rx.recv().await {
        let Some(text) = line.text else {
            let _ = line.done.send(false);
            break;
        };
        let go_on = match ConsoleCommand::parse(&text) {
            Ok(None) => true,
            Ok(Some(ConsoleCommand::Quit)) => false,
            Ok(Some(command)) => {
                run_command(&client, &config, command).await;
                true
            }
            Err(usage) => {
                println!("{usage}");
                true
            }
        };
        let _ = line.done.send(go_on);
        if !go_on {
            break;
        }
    }
    client.close().await;
    events.abort();
    let _ = events.await;
    if editor.join().is_err() {
        anyhow::bail!("the line editor panicked");
    }
    Ok(())
}

async fn run_command(client: &Client, config: &ConsoleConfig, command: ConsoleCommand) {
    let timeout = config.request_timeout;
    let reply = match command {
        ConsoleCommand::Help => {
            println!("{CONSOLE_HELP}");
            return;
        }
        ConsoleCommand::Quit => return,
        ConsoleCommand::List => client.request_frame(&config.list_type, Value::Null, timeout).await,
        ConsoleCommand::Send { to, kind, data } => {
            client.request_frame(&config.direct_type, json!({"to": to, "type": kind, "data": data}), timeout).await
        }
        ConsoleCommand::Broadcast { message } => {
            client.request_frame(&config.broadcast_type, json!({"message": message}), timeout).await
        }
        ConsoleCommand::Call { to, action, params } => {
            // The host gives up on the client a little before the console gives up on the host.
            let timeout_ms = (timeout.as_millis() as u64).saturating_sub(500).max(1);
            let data = json!({"to": to, "action": action, "params": params, "timeout_ms": timeout_ms});
            client.request_frame(&config.call_type, data, timeout).await
        }
        ConsoleCommand::Subscribe { topics } => client.subscribe(topics, Value::Null).await,
        ConsoleCommand::Unsubscribe { topics } => client.unsubscribe(topics).await,
        ConsoleCommand::Request { kind, data } => client.request_frame(&kind, data, timeout).await,
    };
    match reply {
        Ok(frame) => println!("{}", serde_json::to_string_pretty(&frame).unwrap_or_else(|_| frame.to_string())),
        Err(e) => println!("error {}: {e}", e.code()),
    }
}

enum Printer {
    /// Prints above the prompt while the user types.
    External(Box<dyn rustyline::ExternalPrinter + Send>),
    Plain,
}

impl Printer {
    fn print(&mut self, text: String) {
        if let Printer::External(printer) = self {
            if printer.print(format!("{text}\n")).is_ok() {
                return;
            }
        }
        println!("{text}");
    }
}

async fn print_events(
    unhandled: Option<mpsc::Receiver<Value>>,
    mut states: tokio::sync::watch::Receiver<crate::ConnectionState>,
    mut printer: Printer,
) {
    let Some(mut unhandled) = unhandled else { return };
    loop {
        tokio::select! {
            frame = unhandled.recv() => match frame {
                Some(frame) => printer.print(format!("< {frame}")),
                None => return,
            },
            changed = states.changed() => {
                if changed.is_err() {
                    return;
                }
                let state = states.borrow_and_update().clone();
                printer.print(format!("[{}]", describe_state(&state)));
            }
        }
    }
}

fn describe_state(state: &crate::ConnectionState) -> String {
    use crate::ConnectionState::*;
    match state {
        Connecting => "connecting".into(),
        Connected { connection_id: Some(id) } => format!("connected as {id}"),
        Connected { connection_id: None } => "connected".into(),
        Reconnecting { attempt, delay, last_error } => {
            format!("reconnecting (attempt {attempt} in {delay:?}): {last_error}")
        }
        Closed(error) => format!("closed: {error}"),
    }
}

/// The editor thread: read lines until Ctrl-D, `quit`, or the console is gone.
fn edit_lines(
    history: Option<PathBuf>,
    lines: mpsc::Sender<Line>,
    printer: std::sync::mpsc::SyncSender<Option<Printer>>,
) {
    let mut editor = match rustyline::DefaultEditor::new() {
        Ok(editor) => editor,
        Err(e) => {
            eprintln!("no line editor ({e})");
            let _ = printer.send(None);
            let (done, _) = std::sync::mpsc::sync_channel(1);
            let _ = lines.blocking_send(Line { text: None, done });
            return;
        }
    };
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    let external = editor.create_external_printer().ok().map(|p| Printer::External(Box::new(p)));
    let _ = printer.send(external);
    loop {
        let text = match editor.readline("switchyard> ") {
            Ok(text) => {
                if !text.trim().is_empty() {
                    let _ = editor.add_history_entry(text.as_str());
                }
                Some(text)
            }
            Err(rustyline::error::ReadlineError::Interrupted) => continue,
            Err(_) => None,
        };
        let finished = text.is_none();
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
        if lines.blocking_send(Line { text, done: done_tx }).is_err() || finished {
            break;
        }
        if !done_rx.recv().unwrap_or(false) {
            break;
        }
    }
    if let Some(path) = &history {
        let _ = editor.save_history(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_commands_parse() {
        assert_eq!(ConsoleCommand::parse("  "), Ok(None));
        assert_eq!(ConsoleCommand::parse("help"), Ok(Some(ConsoleCommand::Help)));
        assert_eq!(ConsoleCommand::parse("list"), Ok(Some(ConsoleCommand::List)));
        assert_eq!(
            ConsoleCommand::parse(r#"send cam-7 video_command {"action": "play"}"#),
            Ok(Some(ConsoleCommand::Send {
                to: "cam-7".into(),
                kind: "video_command".into(),
                data: json!({"action": "play"})
            }))
        );
        assert_eq!(
            ConsoleCommand::parse("send cam-7 ping"),
            Ok(Some(ConsoleCommand::Send { to: "cam-7".into(), kind: "ping".into(), data: Value::Null }))
        );
        assert_eq!(
            ConsoleCommand::parse("broadcast hello  everyone "),
            Ok(Some(ConsoleCommand::Broadcast { message: "hello  everyone".into() }))
        );
        assert_eq!(
            ConsoleCommand::parse("subscribe status alert.*"),
            Ok(Some(ConsoleCommand::Subscribe { topics: vec!["status".into(), "alert.*".into()] }))
        );
        assert_eq!(
            ConsoleCommand::parse(r#"request calculate {"a":6,"b":3,"op":"/"}"#),
            Ok(Some(ConsoleCommand::Request { kind: "calculate".into(), data: json!({"a": 6, "b": 3, "op": "/"}) }))
        );
        assert_eq!(
            ConsoleCommand::parse(r#"call abc123 calculate {"a":1}"#),
            Ok(Some(ConsoleCommand::Call { to: "abc123".into(), action: "calculate".into(), params: json!({"a": 1}) }))
        );
        assert_eq!(
            ConsoleCommand::parse("call abc123 get_time"),
            Ok(Some(ConsoleCommand::Call { to: "abc123".into(), action: "get_time".into(), params: json!({}) }))
        );
        assert!(ConsoleCommand::parse("call abc123").unwrap_err().starts_with("usage"));
        assert_eq!(ConsoleCommand::parse("quit"), Ok(Some(ConsoleCommand::Quit)));
        assert!(ConsoleCommand::parse("send cam-7").unwrap_err().starts_with("usage"));
        assert!(ConsoleCommand::parse("request x {oops").unwrap_err().contains("not JSON"));
        assert!(ConsoleCommand::parse("subscribe").is_err());
        assert!(ConsoleCommand::parse("frobnicate").unwrap_err().contains("unknown command"));
    }

    #[test]
    fn exit_codes_tell_replies_errors_and_failures_apart() {
        assert_eq!(exit_code(&Ok(json!({"type": "reply", "data": 1}))), 0);
        assert_eq!(exit_code(&Ok(json!({"type": "error", "data": {"code": "X"}}))), 1);
        assert_eq!(exit_code(&Err(ClientError::Timeout(Duration::from_secs(1)))), 2);
        assert_eq!(parse_data(Some(" ")), Ok(Value::Null));
        assert_eq!(parse_data(Some("[1]")), Ok(json!([1])));
        assert_eq!(parse_data(Some("{")).unwrap_err().code(), "INVALID_INPUT");
    }
}
