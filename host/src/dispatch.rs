//! Runs one routed call: resolves the message type against the current
//! route table snapshot and calls the target, a plugin version or a host
//! built-in. Every fault comes back as a [`Failure`] with a stable code.

use crate::dialect::{self, Profile};
use crate::envelope::{Envelope, ErrorCode, Failure, Origin, Outcome, Reply, ServedBy};
use crate::hub::{Connection, SubscribeRequest};
use crate::router::RouteTable;
use crate::runtime::PluginVersion;
use arc_swap::ArcSwap;
use serde_json::value::{to_raw_value, RawValue};
use std::sync::Arc;
use std::time::Instant;

/// What serves a route.
#[derive(Debug, Clone)]
pub enum Target {
    Builtin(Builtin),
    Plugin(Arc<PluginVersion>),
}

/// Message types the host answers itself. Plugins cannot claim them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    Ping,
    Subscribe,
    Unsubscribe,
}

impl Builtin {
    pub const ALL: [(&'static str, Builtin); 3] =
        [("ping", Builtin::Ping), ("subscribe", Builtin::Subscribe), ("unsubscribe", Builtin::Unsubscribe)];
}

pub type Routes = RouteTable<Target>;

/// The reserved entries every route table starts from.
pub fn builtin_routes() -> impl Iterator<Item = (&'static str, Target)> {
    Builtin::ALL.into_iter().map(|(name, builtin)| (name, Target::Builtin(builtin)))
}

/// Who is calling: the origin plugins see, and the live connection, if any.
pub struct Caller<'a> {
    pub origin: Origin,
    pub connection: Option<&'a Arc<Connection>>,
}

pub struct Dispatcher {
    routes: Arc<ArcSwap<Routes>>,
}

impl Dispatcher {
    pub fn new(routes: Arc<ArcSwap<Routes>>) -> Self {
        Dispatcher { routes }
    }

    /// Decode one text frame, route and run it, and encode the answer in
    /// the client's own format. The whole message path, for any transport.
    pub async fn answer(&self, text: &str, max_bytes: usize, profile: &Profile, caller: &Caller<'_>) -> Vec<String> {
        match dialect::decode(text, max_bytes, profile) {
            Err(rejection) => dialect::frames(&rejection.reply_to, &Err(rejection.failure)),
            Ok(request) => {
                let started = Instant::now();
                let outcome = self.dispatch(&request.envelope, caller).await;
                tracing::debug!(
                    id = %request.envelope.id,
                    r#type = %request.envelope.kind,
                    served_by = outcome.as_ref().map_or("-", |r| r.served_by.name.as_str()),
                    code = outcome.as_ref().err().map_or("OK", |f| &f.code),
                    micros = started.elapsed().as_micros() as u64,
                    "message"
                );
                dialect::frames(&request.reply_to, &outcome)
            }
        }
    }

    /// Route and run one message.
    pub async fn dispatch(&self, envelope: &Envelope, caller: &Caller<'_>) -> Outcome {
        // One snapshot per message: a swap during the call does not affect it.
        let target = self.routes.load().resolve(&envelope.kind).cloned();
        match target {
            None => Err(Failure::new(ErrorCode::UnknownType, format!("no plugin claims type {:?}", envelope.kind))),
            Some(Target::Plugin(plugin)) => {
                if let Some(connection) = caller.connection.filter(|c| c.touch(plugin.name())) {
                    if let Err(failure) = plugin.connection_opened(&connection.id).await {
                        tracing::warn!(plugin = plugin.name(), connection = %connection.id, "connection-opened hook failed: {failure}");
                    }
                }
                let data = plugin.call(envelope, &caller.origin).await?;
                let served_by = ServedBy { name: plugin.name().to_owned(), version: plugin.version().to_owned() };
                Ok(Reply { data, served_by, reply_type: "reply" })
            }
            Some(Target::Builtin(builtin)) => run_builtin(builtin, envelope, caller),
        }
    }

    /// Run the `connection-closed` hook of every plugin the connection sent
    /// messages to (their current versions).
    pub async fn connection_closed(&self, connection: &Connection) {
        let touched = connection.touched();
        if touched.is_empty() {
            return;
        }
        let routes = self.routes.load_full();
        for name in touched {
            if let Some(plugin) = routes.targets().find_map(|t| match t {
                Target::Plugin(p) if p.name() == name => Some(Arc::clone(p)),
                _ => None,
            }) {
                if let Err(failure) = plugin.connection_closed(&connection.id).await {
                    tracing::warn!(plugin = %name, connection = %connection.id, "connection-closed hook failed: {failure}");
                }
            }
        }
    }
}

fn run_builtin(builtin: Builtin, envelope: &Envelope, caller: &Caller<'_>) -> Outcome {
    let (data, reply_type) = match builtin {
        Builtin::Ping => (json(&serde_json::json!({ "server_time": crate::envelope::now_rfc3339() }))?, "pong"),
        Builtin::Subscribe => {
            let connection = live(caller)?;
            let request: SubscribeRequest = parse_data(&envelope.data, r#"{"events": [...], "filters": {...}}"#)?;
            let held = connection.subscribe(&request.events, request.filters)?;
            (json(&serde_json::json!({ "subscribed": request.events, "subscriptions": held }))?, "reply")
        }
        Builtin::Unsubscribe => {
            let connection = live(caller)?;
            #[derive(serde::Deserialize)]
            struct Unsubscribe {
                events: Vec<String>,
            }
            let request: Unsubscribe = parse_data(&envelope.data, r#"{"events": [...]}"#)?;
            let held = connection.unsubscribe(&request.events);
            (json(&serde_json::json!({ "unsubscribed": request.events, "subscriptions": held }))?, "reply")
        }
    };
    Ok(Reply { data, served_by: ServedBy::host(), reply_type })
}

fn live<'a>(caller: &Caller<'a>) -> Result<&'a Arc<Connection>, Failure> {
    caller.connection.ok_or_else(|| Failure::new(ErrorCode::InvalidMessage, "subscriptions need a live connection"))
}

fn parse_data<T: serde::de::DeserializeOwned>(data: &RawValue, shape: &str) -> Result<T, Failure> {
    serde_json::from_str(data.get()).map_err(|e| Failure::new(ErrorCode::InvalidMessage, format!("data must be {shape}: {e}")))
}

fn json(value: &serde_json::Value) -> Result<Box<RawValue>, Failure> {
    to_raw_value(value).map_err(|e| Failure::new(ErrorCode::Internal, e.to_string()))
}
