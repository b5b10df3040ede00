//! Runs one routed call: decodes it, admits it (rate limit, then the
//! caller's scopes), resolves the message type against the current route
//! table snapshot and calls the target: a plugin version, the remote worker
//! pool (as `[workers]` decides per type), or a host built-in. Every fault comes back as a [`Failure`] with a stable code.
//!
//! Each message runs in a `message` span (id, type, plugin, code,
//! latency), so plugin log lines carry the message they belong to.

use crate::dialect::{self, Profile, ReplyTo};
use crate::envelope::{Envelope, ErrorCode, Failure, Origin, Outcome, Reply, ServedBy};
use crate::hub::{Connection, Hub, SubscribeRequest};
use crate::limits::LiveLimits;
use crate::metrics::Metrics;
use crate::router::RouteTable;
use crate::runtime::PluginVersion;
use crate::security::Principal;
use crate::workers::{Decision, WorkerPool};
use arc_swap::ArcSwap;
use serde_json::value::{to_raw_value, RawValue};
use std::sync::Arc;
use std::time::Instant;
use tracing::field::Empty;
use tracing::Instrument;

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
    /// `host.connections`: list the open connections (admin).
    Connections,
    /// `host.send`: `{to, type, data}` to the connections with that client
    /// id or connection id (admin).
    Send,
    /// `host.broadcast`: `{message}` to every other connection (admin).
    Broadcast,
}

impl Builtin {
    pub const ALL: [(&'static str, Builtin); 6] = [
        ("ping", Builtin::Ping),
        ("subscribe", Builtin::Subscribe),
        ("unsubscribe", Builtin::Unsubscribe),
        ("host.connections", Builtin::Connections),
        ("host.send", Builtin::Send),
        ("host.broadcast", Builtin::Broadcast),
    ];

    pub fn of(kind: &str) -> Option<Builtin> {
        Self::ALL.iter().find(|(name, _)| *name == kind).map(|(_, builtin)| *builtin)
    }
}

pub type Routes = RouteTable<Target>;

/// The reserved entries every route table starts from.
pub fn builtin_routes() -> impl Iterator<Item = (&'static str, Target)> {
    Builtin::ALL.into_iter().map(|(name, builtin)| (name, Target::Builtin(builtin)))
}

/// Who is calling: the origin plugins see, what they may do, and the live
/// connection, if any.
pub struct Caller<'a> {
    pub origin: Origin,
    pub connection: Option<&'a Arc<Connection>>,
    pub principal: &'a Principal,
}

pub struct Dispatcher {
    routes: Arc<ArcSwap<Routes>>,
    workers: Arc<WorkerPool>,
    limits: Arc<LiveLimits>,
    metrics: Arc<Metrics>,
    hub: Arc<Hub>,
}

impl Dispatcher {
    pub fn new(
        routes: Arc<ArcSwap<Routes>>,
        workers: Arc<WorkerPool>,
        limits: Arc<LiveLimits>,
        metrics: Arc<Metrics>,
        hub: Arc<Hub>,
    ) -> Self {
        Dispatcher { routes, workers, limits, metrics, hub }
    }

    /// Decode one text frame, admit, route and run it, and encode the
    /// answer in the client's own format. The whole message path, for any
    /// transport. `admit` applies the transport's rate limit.
    pub async fn answer(
        &self,
        text: &str,
        profile: &Profile,
        caller: &Caller<'_>,
        admit: impl FnOnce() -> Result<(), Failure>,
    ) -> Vec<String> {
        let (reply_to, outcome) = self.handle(text, profile, caller, admit).await;
        dialect::frames(&reply_to, &outcome)
    }

    /// [`answer`](Self::answer), before encoding.
    pub async fn handle(
        &self,
        text: &str,
        profile: &Profile,
        caller: &Caller<'_>,
        admit: impl FnOnce() -> Result<(), Failure>,
    ) -> (ReplyTo, Outcome) {
        let request = match dialect::decode(text, self.limits.get().max_message_bytes, profile) {
            Ok(request) => request,
            Err(rejection) => {
                self.metrics.message("", false, &rejection.failure.code);
                return (rejection.reply_to, Err(rejection.failure));
            }
        };
        let envelope = &request.envelope;
        let span = tracing::debug_span!("message", id = %envelope.id, r#type = %envelope.kind, plugin = Empty, code = Empty, latency_us = Empty);
        let started = Instant::now();
        let outcome = async {
            if let Err(failure) = admit() {
                self.metrics.limited("messages");
                return Err(failure);
            }
            if Builtin::of(&envelope.kind).is_none() {
                caller.principal.may_send(&envelope.kind)?;
            }
            self.dispatch(envelope, caller).await
        }
        .instrument(span.clone())
        .await;
        let latency = started.elapsed();
        let code = outcome.as_ref().err().map_or("OK", |f| &f.code);
        let routed = !outcome.as_ref().is_err_and(|f| f.is(ErrorCode::UnknownType));
        self.metrics.message(&envelope.kind, routed, code);
        span.record("code", code).record("latency_us", latency.as_micros() as u64);
        if let Ok(reply) = &outcome {
            span.record("plugin", reply.served_by.name.as_str());
        }
        span.in_scope(|| tracing::debug!("answered"));
        (request.reply_to, outcome)
    }

    /// Route and run one message, already admitted.
    pub async fn dispatch(&self, envelope: &Envelope, caller: &Caller<'_>) -> Outcome {
        // One snapshot per message: a swap during the call does not affect it.
        let target = self.routes.load().resolve(&envelope.kind).cloned();
        if !matches!(target, Some(Target::Builtin(_))) {
            let claimed = target.is_some();
            if let Decision::Workers { strategy, idempotent, fallback_to_plugin } = self.workers.decide(&envelope.kind, claimed) {
                if !(fallback_to_plugin && claimed && !self.workers.available(&envelope.kind)) {
                    let started = Instant::now();
                    let outcome = self.workers.call(envelope, strategy, idempotent).await;
                    if let Ok(reply) = &outcome {
                        self.metrics.plugin_call(&reply.served_by.name, "worker", started.elapsed());
                    }
                    return outcome;
                }
            }
        }
        match target {
            None => Err(Failure::new(ErrorCode::UnknownType, format!("no plugin claims type {:?}", envelope.kind))),
            Some(Target::Plugin(plugin)) => {
                if let Some(connection) = caller.connection.filter(|c| c.touch(plugin.name())) {
                    if let Err(failure) = plugin.connection_opened(&connection.id).await {
                        tracing::warn!(plugin = plugin.name(), connection = %connection.id, "connection-opened hook failed: {failure}");
                    }
                }
                let started = Instant::now();
                let data = plugin.call(envelope, &caller.origin).await;
                self.metrics.plugin_call(plugin.name(), plugin.version(), started.elapsed());
                let data = data?;
                let served_by = ServedBy { name: plugin.name().to_owned(), version: plugin.version().to_owned() };
                Ok(Reply { data, served_by, reply_type: "reply" })
            }
            Some(Target::Builtin(builtin)) => run_builtin(builtin, envelope, caller, &self.hub),
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

fn run_builtin(builtin: Builtin, envelope: &Envelope, caller: &Caller<'_>, hub: &Hub) -> Outcome {
    let (data, reply_type) = match builtin {
        Builtin::Ping => (json(&serde_json::json!({ "server_time": crate::envelope::now_rfc3339() }))?, "pong"),
        Builtin::Subscribe => {
            let connection = live(caller)?;
            let request: SubscribeRequest = parse_data(&envelope.data, r#"{"events": [...], "filters": {...}}"#)?;
            for topic in &request.events {
                caller.principal.may_use_topic(topic)?;
            }
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
        Builtin::Connections => {
            caller.principal.may_administer()?;
            let list: Vec<_> = hub.connections().iter().map(|c| c.info()).collect();
            (json(&serde_json::json!({ "connections": list }))?, "reply")
        }
        Builtin::Send => {
            caller.principal.may_administer()?;
            #[derive(serde::Deserialize)]
            struct Direct {
                to: String,
                #[serde(rename = "type")]
                kind: String,
                #[serde(default)]
                data: serde_json::Value,
            }
            let direct: Direct = parse_data(&envelope.data, r#"{"to": "<client or connection id>", "type": "...", "data": ...}"#)?;
            let message = pushed(&direct.kind, direct.data, caller)?;
            let delivered = hub.send_to_client(&direct.to, &message);
            if delivered == 0 {
                return Err(Failure::from_plugin("CONNECTION_NOT_FOUND".into(), format!("no connection with client id or id {:?}", direct.to)));
            }
            (json(&serde_json::json!({ "delivered": delivered }))?, "reply")
        }
        Builtin::Broadcast => {
            caller.principal.may_administer()?;
            #[derive(serde::Deserialize)]
            struct Broadcast {
                message: serde_json::Value,
            }
            let broadcast: Broadcast = parse_data(&envelope.data, r#"{"message": ...}"#)?;
            let message = pushed("broadcast", serde_json::json!({ "message": broadcast.message }), caller)?;
            let except = caller.connection.map(|c| c.id.as_str());
            (json(&serde_json::json!({ "delivered": hub.broadcast_except(&message, except) }))?, "reply")
        }
    };
    Ok(Reply { data, served_by: ServedBy::host(), reply_type })
}

/// A message pushed to other connections on a caller's behalf.
fn pushed(kind: &str, data: serde_json::Value, caller: &Caller<'_>) -> Result<Box<RawValue>, Failure> {
    json(&serde_json::json!({
        "type": kind,
        "id": uuid::Uuid::new_v4().simple().to_string(),
        "timestamp": crate::envelope::now_rfc3339(),
        "data": data,
        "meta": { "from": caller.origin.connection_id, "from_client_id": caller.origin.client_id },
    }))
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
