//! What a message type routes to, and the table the registry swaps in whole.
//!
//! [`Routes`] holds the plugins' claims and the host's built-ins in a
//! [`RouteTable`], and beside them the `[[workers.types]]` rules that send a
//! type to remote workers instead of (or before) its plugin. A message
//! resolves against the one snapshot it loaded, in one call and without a
//! lock: [`Routes::resolve`] gives a [`Route`].

use super::router::{Claim, RouteError, RouteTable};
use crate::config::workers::{Serve, Strategy, WorkersConfig};
use crate::plugins::rollout::Canary;
use crate::plugins::shadow::Shadow;
use crate::plugins::runtime::PluginVersion;
use std::sync::Arc;

/// What serves a claim in the table.
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
    /// `get_client_info`: the action server's list of online clients, the
    /// connections the caller's key may see.
    ClientInfo,
    /// `heartbeat`: the action server's sign of life, answered, never
    /// refused.
    Heartbeat,
    /// `connect`: the action server's greeting, answered with who the
    /// client is to the host.
    Connect,
    /// `disconnect`: the action server's goodbye: answered, then the host
    /// closes the connection (1000).
    Disconnect,
    /// `notification` that no plugin claims: taken and acknowledged (a
    /// plugin may claim the type; it is not reserved).
    Notification,
    /// `host.call`: `{to, action, params, timeout_ms}`, a request to one
    /// client, answered with its answer (admin).
    Call,
}

/// The one-way message type the action server accepted from any client,
/// which a plugin may claim and the host takes when none does.
pub const NOTIFICATION: &str = "notification";

impl Builtin {
    /// The reserved built-ins (`notification` is not reserved: see
    /// [`Builtin::Notification`]).
    pub const ALL: [(&'static str, Builtin); 11] = [
        ("ping", Builtin::Ping),
        ("subscribe", Builtin::Subscribe),
        ("unsubscribe", Builtin::Unsubscribe),
        ("host.connections", Builtin::Connections),
        ("host.send", Builtin::Send),
        ("host.broadcast", Builtin::Broadcast),
        ("get_client_info", Builtin::ClientInfo),
        ("heartbeat", Builtin::Heartbeat),
        ("connect", Builtin::Connect),
        ("disconnect", Builtin::Disconnect),
        ("host.call", Builtin::Call),
    ];

    pub fn of(kind: &str) -> Option<Builtin> {
        Self::ALL.iter().find(|(name, _)| *name == kind).map(|(_, builtin)| *builtin)
    }
}

/// How remote workers serve a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerRoute {
    pub strategy: Strategy,
    /// Safe to run twice: retried once elsewhere if a worker leaves mid-request.
    pub idempotent: bool,
}

/// Where one message goes.
#[derive(Debug)]
pub enum Route<'a> {
    Builtin(Builtin),
    Plugin(&'a Arc<PluginVersion>),
    /// Remote workers; `fallback` serves it while none is available.
    Workers { route: WorkerRoute, fallback: Option<&'a Arc<PluginVersion>> },
    /// No rule and no claim: workers, if any registered the type, else
    /// `UNKNOWN_TYPE`.
    Unclaimed(WorkerRoute),
    /// Nothing may serve it.
    Unknown,
}

/// One `[[workers.types]]` rule, parsed.
#[derive(Debug)]
struct WorkerRule {
    /// `None` for `*`: every type.
    claim: Option<Claim>,
    serve: Serve,
    route: WorkerRoute,
}

/// The `[[workers.types]]` rules, first match wins, and the strategy of
/// types without a rule.
#[derive(Debug, Default)]
pub struct WorkerRules {
    rules: Vec<WorkerRule>,
    default_strategy: Strategy,
}

impl WorkerRules {
    pub fn from_config(config: &WorkersConfig) -> Result<WorkerRules, RouteError> {
        let rules = config
            .types
            .iter()
            .map(|rule| {
                Ok(WorkerRule {
                    claim: match rule.kind.as_str() {
                        "*" => None,
                        kind => Some(Claim::parse(kind)?),
                    },
                    serve: rule.serve,
                    route: WorkerRoute { strategy: rule.strategy.unwrap_or(config.strategy), idempotent: rule.idempotent },
                })
            })
            .collect::<Result<_, RouteError>>()?;
        Ok(WorkerRules { rules, default_strategy: config.strategy })
    }

    fn first_match(&self, kind: &str) -> Option<&WorkerRule> {
        self.rules.iter().find(|r| r.claim.as_ref().is_none_or(|c| c.matches(kind)))
    }
}

/// The live routing snapshot: claims, built-ins and worker rules.
#[derive(Debug, Default)]
pub struct Routes {
    table: RouteTable<Target>,
    workers: Arc<WorkerRules>,
    /// Running canaries, by their stable version (usually none).
    canaries: Vec<Arc<Canary>>,
    /// Running shadows, by their serving version (usually none).
    shadows: Vec<Arc<Shadow>>,
}

impl Routes {
    /// A table of the built-ins and every plugin's claims, with `workers`.
    pub fn build<'a>(
        plugins: impl IntoIterator<Item = &'a Arc<PluginVersion>>,
        workers: Arc<WorkerRules>,
    ) -> Result<Routes, RouteError> {
        let builtins = Builtin::ALL.into_iter().map(|(name, builtin)| (name, Target::Builtin(builtin)));
        let claims = plugins.into_iter().map(|v| (v.name().to_owned(), v.claims.clone(), Target::Plugin(Arc::clone(v))));
        Ok(Routes { table: RouteTable::build(builtins, claims)?, workers, canaries: Vec::new(), shadows: Vec::new() })
    }

    /// This table with `canaries` splitting their plugins' messages.
    pub fn with_canaries(mut self, canaries: Vec<Arc<Canary>>) -> Routes {
        self.canaries = canaries;
        self
    }

    /// This table with `shadows` copying their plugins' messages.
    pub fn with_shadows(mut self, shadows: Vec<Arc<Shadow>>) -> Routes {
        self.shadows = shadows;
        self
    }

    /// The shadow copying `plugin`'s messages, if one runs: like
    /// [`canary_of`](Self::canary_of), nothing when none runs.
    pub fn shadow_of(&self, plugin: &Arc<PluginVersion>) -> Option<&Arc<Shadow>> {
        self.shadows.iter().find(|s| Arc::ptr_eq(&s.serving, plugin))
    }

    /// The canary splitting `plugin`'s messages, if one runs: a pointer
    /// comparison per running canary, nothing when none runs.
    pub fn canary_of(&self, plugin: &Arc<PluginVersion>) -> Option<&Arc<Canary>> {
        self.canaries.iter().find(|c| Arc::ptr_eq(&c.stable, plugin))
    }

    /// Where a message of type `kind` goes.
    pub fn resolve(&self, kind: &str) -> Route<'_> {
        let plugin = match self.table.resolve(kind) {
            Some(Target::Builtin(builtin)) => return Route::Builtin(*builtin),
            Some(Target::Plugin(plugin)) => Some(plugin),
            None => None,
        };
        match (self.workers.first_match(kind), plugin) {
            (Some(rule), plugin) => match rule.serve {
                Serve::Plugin => plugin.map_or(Route::Unknown, Route::Plugin),
                Serve::Workers => Route::Workers { route: rule.route, fallback: None },
                Serve::WorkersThenPlugin => Route::Workers { route: rule.route, fallback: plugin },
            },
            (None, Some(plugin)) => Route::Plugin(plugin),
            (None, None) if kind == NOTIFICATION => Route::Builtin(Builtin::Notification),
            (None, None) => Route::Unclaimed(WorkerRoute { strategy: self.workers.default_strategy, idempotent: false }),
        }
    }

    /// The plugin version named `name`, if it serves any claim.
    pub fn plugin(&self, name: &str) -> Option<&Arc<PluginVersion>> {
        self.table.targets().find_map(|t| match t {
            Target::Plugin(p) if p.name() == name => Some(p),
            _ => None,
        })
    }

    /// The worker rules, for the next table.
    pub fn worker_rules(&self) -> &Arc<WorkerRules> {
        &self.workers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::workers::TypeRule;

    fn rules(list: &[(&str, Serve)]) -> Routes {
        let config = WorkersConfig {
            types: list
                .iter()
                .map(|(kind, serve)| TypeRule { kind: kind.to_string(), serve: *serve, idempotent: false, strategy: None })
                .collect(),
            ..WorkersConfig::default()
        };
        Routes::build([], Arc::new(WorkerRules::from_config(&config).unwrap())).unwrap()
    }

    #[test]
    fn worker_rules_are_read_first_match_wins() {
        let routes = rules(&[("jobs.*", Serve::Workers), ("*", Serve::WorkersThenPlugin)]);
        assert!(matches!(routes.resolve("jobs.run"), Route::Workers { fallback: None, .. }));
        assert!(matches!(routes.resolve("other"), Route::Workers { fallback: None, .. }));
        assert!(matches!(routes.resolve("ping"), Route::Builtin(Builtin::Ping)), "built-ins never go to workers");
        assert!(matches!(rules(&[]).resolve("nobody"), Route::Unclaimed(_)));
        assert!(matches!(rules(&[("x", Serve::Plugin)]).resolve("x"), Route::Unknown), "a plugin-only type is never a worker's");
        assert!(matches!(rules(&[]).resolve("notification"), Route::Builtin(Builtin::Notification)), "the host takes unclaimed notifications");
        assert!(matches!(rules(&[("*", Serve::Workers)]).resolve("heartbeat"), Route::Builtin(Builtin::Heartbeat)));
    }
}
