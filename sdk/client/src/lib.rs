//! A Rust client for Switchyard.
//!
//! [`Client`] speaks the canonical envelope of `docs/protocol.md` over one
//! WebSocket and keeps it alive: it reconnects with exponential backoff and
//! jitter ([`ReconnectPolicy`]), sends heartbeat pings, treats a silent
//! connection as dead, correlates requests with replies under a deadline,
//! hands pushed events to handlers, and restores subscriptions and other
//! remembered requests after every reconnect. Sends made while disconnected
//! wait in a bounded offline queue.
//!
//! ```no_run
//! use switchyard_client::{Client, ClientError};
//! use serde_json::json;
//!
//! # async fn demo() -> Result<(), ClientError> {
//! let client = Client::connect("ws://127.0.0.1:8080/ws").await?;
//! client.on("status", |event| println!("status: {}", event["data"]));
//! client.subscribe(["status"], json!({})).await?;
//! let time = client.request("get_time", json!({})).await?;
//! println!("{time}");
//! match client.request("calculate", json!({"a": 1, "b": 0, "op": "/"})).await {
//!     Err(ClientError::Remote { code, message }) => println!("{code}: {message}"),
//!     other => println!("{other:?}"),
//! }
//! client.close().await;
//! # Ok(()) }
//! ```
//!
//! The host may also call the client (a plugin's `clients.call`, the HTTP
//! API, the console): [`Client::answer`] registers a handler per action,
//! and [`calls`] has examples (`get_time`, `get_system_info`, and an
//! `execute_command` that refuses by default).
//!
//! [`Worker`] is the other side of the host's remote-worker pool: it
//! registers the types it serves and answers the host's requests (the
//! protocol is documented in [`worker`]). [`cli`] holds the helpers behind
//! `switchyard send` and `switchyard console`.
//!
//! This crate never touches the host's internals: everything it knows about
//! the host is the wire protocol.

mod backoff;
pub mod calls;
pub mod cli;
mod client;
mod config;
mod envelope;
mod error;
mod outbox;
mod restore;
mod transport;
pub mod worker;

pub use backoff::{Backoff, ReconnectPolicy};
pub use client::{Client, ClientStats, ConnectionState, WeakClient};
pub use config::{ClientConfig, RoomMessages};
pub use error::ClientError;
pub use worker::{Failure, RunningWorker, Worker, WorkerConfig};

pub use serde_json::{json, Value};
