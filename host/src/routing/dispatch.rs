//! Runs one routed call: decodes it, admits it (rate limit, then the
//! caller's scopes), resolves the message type against the current route
//! table snapshot and calls the target: a plugin version, the remote worker
//! pool (as `[workers]` decides per type), or a host built-in. Every fault
//! comes back as a [`Failure`] with a stable code.
//!
//! Each message runs in a `message` span (id, type, plugin, code,
//! latency), so plugin log lines carry the message they belong to.

use super::builtins;
pub use super::Caller;
use super::target::{Builtin, Route, Routes, WorkerRoute};
use crate::admission::limits::LiveLimits;
use crate::hub::{Connection, Hub};
use crate::observability::feed::{TailEntry, DASHBOARD_TOPIC};
use crate::observability::metrics::Metrics;
use crate::plugins::rollout::Sticky;
use crate::plugins::runtime::PluginVersion;
use crate::store::history;
use crate::wire::dialect::{self, Profile, ReplyTo};
use crate::wire::{Envelope, ErrorCode, Failure, Origin, Outcome, Payload, Reply, ServedBy};
use crate::workers::WorkerPool;
use arc_swap::ArcSwap;
use std::sync::Arc;
use std::time::Instant;
use tracing::field::Empty;
use tracing::Instrument;

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
        if let Some(connection) = caller.connection {
            connection.note_dialect(request.reply_to.dialect);
        }
        let envelope = &request.envelope;
        let span = tracing::debug_span!("message", id = %envelope.id, r#type = %envelope.kind, plugin = Empty, code = Empty, latency_us = Empty);
        let started = Instant::now();
        let outcome = async {
            // A heartbeat is answered, never refused (the action server's
            // clients send them on a timer); it costs no plugin call.
            let heartbeat = Builtin::of(&envelope.kind) == Some(Builtin::Heartbeat);
            if let Err(failure) = if heartbeat { Ok(()) } else { admit() } {
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
        self.hub.history().message(&envelope.kind, envelope.data.get(), || history::MessageRecord {
            id: envelope.id.clone(),
            kind: envelope.kind.clone(),
            sender: Some(caller.origin.connection_id.clone()),
            direction: Some(history::Direction::In),
            outcome: code.to_owned(),
            plugin: outcome.as_ref().ok().map(|r| r.served_by.name.clone()),
            plugin_version: outcome.as_ref().ok().map(|r| r.served_by.version.clone()),
            latency_us: latency.as_micros() as i64,
            payload: None,
            target: None,
            presence: caller.connection.map(|c| Arc::clone(c) as Arc<dyn history::Presence>),
        });
        let feed = &self.metrics.feed;
        if feed.watched() {
            feed.observe(&envelope.kind, code, envelope.data.get(), || {
                let (device_id, room) = caller.connection.map(|c| history::Presence::device_and_room(&**c)).unwrap_or_default();
                let served_by = outcome.as_ref().ok().map(|r| &r.served_by);
                TailEntry {
                    at: crate::store::db::now_ms(),
                    id: envelope.id.clone(),
                    r#type: envelope.kind.clone(),
                    outcome: code.to_owned(),
                    connection_id: caller.origin.connection_id.clone(),
                    client_id: caller.origin.client_id.clone(),
                    endpoint: caller.origin.endpoint.clone(),
                    device_id,
                    room,
                    plugin: served_by.map(|s| s.name.clone()),
                    version: served_by.map(|s| s.version.clone()),
                    latency_us: latency.as_micros() as u64,
                    payload: None,
                }
            });
        }
        (request.reply_to, outcome)
    }

    /// Route and run one message, already admitted.
    pub async fn dispatch(&self, envelope: &Envelope, caller: &Caller<'_>) -> Outcome {
        // One snapshot per message: a swap during the call does not affect it.
        let routes = self.routes.load_full();
        match routes.resolve(&envelope.kind) {
            Route::Builtin(Builtin::Subscribe) => {
                let outcome = builtins::run(Builtin::Subscribe, envelope, caller, &self.hub).await;
                // An administrator opening the dashboard (a false positive
                // only wakes the feed until its next snapshot finds nobody).
                if outcome.is_ok() && !self.metrics.feed.watched() && envelope.data.get().contains(DASHBOARD_TOPIC) {
                    self.metrics.feed.wake();
                }
                outcome
            }
            Route::Builtin(builtin) => builtins::run(builtin, envelope, caller, &self.hub).await,
            Route::Plugin(plugin) => self.call_version(&routes, plugin, envelope, caller).await,
            Route::Workers { fallback: Some(plugin), .. } if !self.workers.available(&envelope.kind) => {
                self.call_version(&routes, plugin, envelope, caller).await
            }
            Route::Workers { route, .. } => self.call_workers(envelope, route).await,
            Route::Unclaimed(route) if self.workers.serves(&envelope.kind) => self.call_workers(envelope, route).await,
            Route::Unclaimed(_) | Route::Unknown => {
                Err(Failure::new(ErrorCode::UnknownType, format!("no plugin claims type {:?}", envelope.kind)))
            }
        }
    }

    /// Call `plugin`, or the version its canary picks for this caller;
    /// a running shadow gets a copy of the message and the answer.
    async fn call_version(&self, routes: &Routes, plugin: &Arc<PluginVersion>, envelope: &Envelope, caller: &Caller<'_>) -> Outcome {
        let Some(canary) = routes.canary_of(plugin) else {
            let Some(shadow) = routes.shadow_of(plugin) else {
                return self.call_plugin(plugin, envelope, caller).await;
            };
            // The live answer first; the copy is queued without waiting.
            let started = Instant::now();
            let outcome = self.call_plugin(plugin, envelope, caller).await;
            shadow.offer(envelope, caller.origin, outcome.as_ref().map(|r| &*r.data), started.elapsed());
            return outcome;
        };
        let chosen = canary.choose(|| {
            let key = match canary.config.sticky? {
                Sticky::ClientId => caller.origin.client_id.clone(),
                Sticky::DeviceId => caller.connection.and_then(|c| c.device_id()),
            };
            Some(key.unwrap_or_else(|| caller.origin.connection_id.clone()))
        });
        let outcome = self.call_plugin(chosen, envelope, caller).await;
        if Arc::ptr_eq(chosen, &canary.candidate) {
            canary.observe();
        }
        outcome
    }

    async fn call_plugin(&self, plugin: &Arc<PluginVersion>, envelope: &Envelope, caller: &Caller<'_>) -> Outcome {
        // An open breaker answers before any instance or hook is touched.
        let ticket = plugin.breaker.admit(self.limits.get().deadline())?;
        if let Some(connection) = caller.connection.filter(|c| c.touch(plugin.name())) {
            if let Err(failure) = plugin.connection_opened(&connection.id).await {
                tracing::warn!(plugin = plugin.name(), connection = %connection.id, "connection-opened hook failed: {failure}");
            }
        }
        let started = Instant::now();
        let data = plugin.call(envelope, caller.origin).await;
        self.metrics.plugin_call(plugin.name(), plugin.version(), started.elapsed());
        ticket.settle(data.as_ref().err());
        let data = data?;
        let served_by = ServedBy { name: plugin.name().to_owned(), version: plugin.version().to_owned() };
        Ok(Reply { data, served_by, reply_type: "reply" })
    }

    async fn call_workers(&self, envelope: &Envelope, route: WorkerRoute) -> Outcome {
        let started = Instant::now();
        let outcome = self.workers.call(envelope, route).await;
        if let Ok(reply) = &outcome {
            self.metrics.plugin_call(&reply.served_by.name, "worker", started.elapsed());
        }
        outcome
    }

    /// Hand one frame of an `opaque` endpoint to the plugin claiming
    /// `kind`; its answer, if any, is one frame back.
    pub async fn frame(&self, kind: &str, origin: &Origin, frame: Payload) -> Result<Option<Payload>, Failure> {
        let routes = self.routes.load_full();
        let started = Instant::now();
        let outcome = match routes.resolve(kind) {
            Route::Plugin(plugin) => {
                let answer = plugin.handle_frame(origin, frame).await;
                self.metrics.plugin_call(plugin.name(), plugin.version(), started.elapsed());
                answer
            }
            _ => Err(Failure::new(ErrorCode::UnknownType, format!("no plugin claims type {kind:?} for this endpoint's frames"))),
        };
        self.metrics.message(kind, true, outcome.as_ref().err().map_or("OK", |f| &f.code));
        outcome
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
            if let Some(plugin) = routes.plugin(&name) {
                if let Err(failure) = plugin.connection_closed(&connection.id).await {
                    tracing::warn!(plugin = %name, connection = %connection.id, "connection-closed hook failed: {failure}");
                }
            }
        }
    }
}

