//! Every error code the host itself emits, in one enum: its string on the
//! wire, its HTTP status, and the line that documents it.
//!
//! `docs/protocol.md`'s "Host error codes" table is these rows, checked
//! both ways by a test. Plugins add codes of their own (`DIVISION_BY_ZERO`,
//! `ROOM_ERROR`...), which pass through as they are and are answered with
//! HTTP 422 when they reach the HTTP API.

use std::fmt;

macro_rules! error_codes {
    ($($(#[$attr:meta])* $variant:ident = $code:literal, $status:literal, $doc:literal;)*) => {
        /// A stable machine code the host emits.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$attr])* #[doc = $doc] $variant,)*
        }

        impl ErrorCode {
            /// Every host code, in documentation order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The code as clients read it.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }

            /// The HTTP status of an API response that fails with this code.
            pub const fn http_status(self) -> u16 {
                match self {
                    $(ErrorCode::$variant => $status,)*
                }
            }

            /// When the host answers with this code, as `docs/protocol.md` says.
            pub const fn documentation(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $doc,)*
                }
            }
        }
    };
}

error_codes! {
    // Requests.
    InvalidJson = "INVALID_JSON", 400, "the frame or body is not JSON (or not UTF-8)";
    InvalidMessage = "INVALID_MESSAGE", 400,
        "JSON, but not a message: not an object, missing or mistyped `type`/`id`/`meta`/`command`/`msg_id`/`data.action`, a binary frame, a bad subscribe, a bad registration or limit";
    UnknownType = "UNKNOWN_TYPE", 404, "no plugin, worker or built-in serves the type";
    PayloadTooLarge = "PAYLOAD_TOO_LARGE", 413,
        "the message is over `limits.max_message_bytes` (the connection stays open), or a frame over `limits.max_frame_bytes` (then close 1009), or an HTTP body over its limit";
    PluginTimeout = "PLUGIN_TIMEOUT", 504,
        "the plugin ran past `plugins.deadline_ms`, or all its instances, or its CPU share (`plugins.cpu_share`), stayed busy that long";
    PluginFailed = "PLUGIN_FAILED", 502,
        "the plugin trapped (a panic, a memory cap hit, an invalid reply); its instance is replaced; the message says why in one line, the wasm backtrace is in the host's log with the message id";
    PluginUnavailable = "PLUGIN_UNAVAILABLE", 503,
        "the plugin's circuit breaker is open after repeated timeouts or traps (`plugins.breaker`); `retry_after` says when it is tried again (ms)";
    Internal = "INTERNAL_ERROR", 500, "a host fault; please report it";
    AuthenticationFailed = "AUTHENTICATION_FAILED", 401,
        "a missing (where required), wrong or revoked API key; on a WebSocket, followed by close 4001";
    Forbidden = "FORBIDDEN", 403,
        "the key's scope does not cover the message type, topic or administration, or a browser `Origin` is not allowed";
    RateLimitExceeded = "RATE_LIMIT_EXCEEDED", 429,
        "over the message or connection rate; `retry_after` says when to try again (ms)";
    TooManyConnections = "TOO_MANY_CONNECTIONS", 503,
        "at `limits.max_connections`, the client id's `max_connections_per_client`, `workers.max_workers`, or a proxy route's `max_connections`";
    NotFound = "NOT_FOUND", 404, "HTTP: no such route, plugin, room, key or proxy route; a call to a client: no such connection or device";
    MethodNotAllowed = "METHOD_NOT_ALLOWED", 405, "HTTP: the route exists, but not for this method";
    RequestTimeout = "REQUEST_TIMEOUT", 408, "HTTP: the request body did not arrive whole within `limits.body_timeout_ms`";
    UriTooLong = "URI_TOO_LONG", 414, "HTTP: the request URI is over the HTTP parser's 64 KiB";
    HeadersTooLarge = "HEADERS_TOO_LARGE", 431, "HTTP: the request head is over the HTTP parser's buffer (about 400 KiB) or 100 headers";
    Unavailable = "UNAVAILABLE", 503, "the host is shutting down";

    // Remote workers.
    NoAvailableWorkers = "NO_AVAILABLE_WORKERS", 503, "\"No available workers\": no worker registered for the type";
    WorkerTimeout = "WORKER_TIMEOUT", 504, "\"Worker response timeout\": no answer within `workers.timeout_ms`";
    WorkerDisconnected = "WORKER_DISCONNECTED", 502,
        "the worker left before answering, and the type is not idempotent (or no other worker was there)";
    WorkerFailed = "WORKER_FAILED", 502, "a worker answered with a failure that named no code";
    WorkerBusy = "WORKER_BUSY", 503, "sent by a worker that refuses a request unexecuted; the host tries another worker once";
    WorkerShuttingDown = "WORKER_SHUTTING_DOWN", 503,
        "sent by a worker that is stopping; the request was not run, and the host tries another worker once";

    // Host capabilities, as plugins see them (a plugin may pass them on).
    InvalidData = "INVALID_DATA", 422, "a capability was handed text that is not JSON, or not a message object";
    KvQuotaExceeded = "KV_QUOTA_EXCEEDED", 422, "`kv.set` over the plugin's value size or key count quota";
    KvUnavailable = "KV_UNAVAILABLE", 503,
        "a `kv` write could not be committed (the database is down or slow); nothing changed, retry later";
    ConnectionNotFound = "CONNECTION_NOT_FOUND", 404,
        "`events.send`, `rooms.join`, `identity.set`, `host.send` or an API send: no such connection, or it is closing";
    DeviceNotFound = "DEVICE_NOT_FOUND", 404, "`identity.send-to-device`: no connected device with that id";
    CapabilityDenied = "CAPABILITY_DENIED", 403, "`system.figures` without the `system` grant";

    // Calls to clients (`clients.call`, `POST /api/connections/{id}/call`, the console's `call`).
    ClientTimeout = "CLIENT_TIMEOUT", 504,
        "a call to a client: no answer within its `timeout_ms`, or before the calling plugin's deadline";
    ClientDisconnected = "CLIENT_DISCONNECTED", 502, "a call to a client: its connection closed or was evicted before it answered";
    ClientBusy = "CLIENT_BUSY", 503, "a call to a client that already has `limits.max_client_calls` calls waiting for its answers";
    ClientFailed = "CLIENT_FAILED", 502, "a call to a client: the client answered with a failure that named no code";

    // Plugin loads: `status` events, `plugin inspect` and the plugin API.
    PluginReadFailed = "PLUGIN_READ_FAILED", 422, "the plugin file could not be read";
    PluginCompileFailed = "PLUGIN_COMPILE_FAILED", 422, "not a valid WebAssembly component";
    PluginInvalid = "PLUGIN_INVALID", 422,
        "a component, but not of the `switchyard:plugin` world, or a bad manifest (name, version, claims)";
    PluginInstantiateFailed = "PLUGIN_INSTANTIATE_FAILED", 422, "instantiation or `manifest()` trapped";
    ClaimConflict = "CLAIM_CONFLICT", 409,
        "a claim (or the plugin name) is already another plugin's, or a type the host reserves";
    PluginWriteFailed = "PLUGIN_WRITE_FAILED", 500, "an uploaded plugin validated but could not be written into the plugin folder";

    // The reverse proxy, before the upgrade.
    UpgradeRequired = "UPGRADE_REQUIRED", 426, "proxy: the request is not a WebSocket handshake";
    UpstreamRefused = "UPSTREAM_REFUSED", 502,
        "proxy: the upstream refused the handshake; its own 4xx status is passed on";
    NoSubprotocol = "NO_SUBPROTOCOL", 400, "proxy: the upstream accepted none of the client's subprotocols";
    BadRequest = "BAD_REQUEST", 400,
        "HTTP: a request head that cannot be parsed (method, URI, a header line, `Content-Length`) or a request refused before routing (a WebSocket path without an upgrade, a bad query string); proxy: the request has headers that cannot be forwarded";

    // The history API (`/api/history/...`).
    InvalidQuery = "INVALID_QUERY", 400,
        "history API: an unknown query parameter, or a bad value (a time, `limit`, `minutes`, `order`, `outcome`, `active`, a type or cursor)";
    HistoryDisabled = "HISTORY_DISABLED", 404, "history API: this host records no history (`storage.history.enabled = false`)";
    HistoryUnavailable = "HISTORY_UNAVAILABLE", 503, "history API: the database did not answer (down, or slower than 30 s); retry later";
    // Safe deploys: rollback, migration, canary, shadow.
    VersionNotFound = "VERSION_NOT_FOUND", 404,
        "no retained version of the plugin matches the version ref (a version string or at least 8 hex digits of a hash), or none is retained";
    VersionAmbiguous = "VERSION_AMBIGUOUS", 400, "the hash prefix matches more than one retained version; give more of it";
    MigrationFailed = "MIGRATION_FAILED", 422,
        "the incoming version's `migrate` failed or trapped: the swap is refused, the outgoing version keeps serving and the kv is put back as it was";
    RollbackRefused = "ROLLBACK_REFUSED", 409,
        "a rollback across a migration that cannot be undone: the kv was written since the migration, or the target is not the version it migrated from";
    CanaryRefused = "CANARY_REFUSED", 409,
        "a canary cannot start: one (or a shadow) is already running for the plugin, the candidate is the serving version or another plugin, or the weight or thresholds are out of range";
    ShadowRefused = "SHADOW_REFUSED", 409,
        "a shadow cannot start: one (or a canary) is already running for the plugin, the candidate is the serving version or another plugin, or an ignored path is not a JSON pointer";
}

impl ErrorCode {
    /// The host code spelled `code`, if it is one (plugin codes are not).
    pub fn parse(code: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|c| c.as_str() == code)
    }
}

/// The HTTP status for any code on the wire: a host code's own, else 422
/// (a plugin's code: the request was understood and refused).
pub fn http_status_of(code: &str) -> u16 {
    ErrorCode::parse(code).map_or(422, ErrorCode::http_status)
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_upper_snake_case_with_error_statuses() {
        let mut seen = HashSet::new();
        for code in ErrorCode::ALL {
            let text = code.as_str();
            assert!(seen.insert(text), "{text} twice");
            assert!(text.chars().all(|c| c.is_ascii_uppercase() || c == '_'), "{text}");
            assert!((400..600).contains(&code.http_status()), "{text}");
            assert!(!code.documentation().is_empty(), "{text}");
            assert_eq!(ErrorCode::parse(text), Some(*code));
        }
        assert_eq!(http_status_of("DIVISION_BY_ZERO"), 422);
        assert_eq!(http_status_of("FORBIDDEN"), 403);
    }

    /// The row `docs/protocol.md` must have for `code`.
    fn row(code: ErrorCode) -> String {
        format!("| `{}` | {} | {} |", code.as_str(), code.http_status(), code.documentation())
    }

    #[test]
    fn the_protocol_doc_lists_exactly_these_codes() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md");
        let doc = std::fs::read_to_string(path).expect("read docs/protocol.md");
        let section = doc.split("### Host error codes").nth(1).expect("a \"### Host error codes\" section");
        let documented: Vec<&str> = section
            .lines()
            .skip_while(|line| !line.starts_with("| `"))
            .take_while(|line| line.starts_with('|'))
            .collect();
        let expected: Vec<String> = ErrorCode::ALL.iter().map(|c| row(*c)).collect();
        let table = expected.join("\n");
        assert_eq!(documented.len(), expected.len(), "docs/protocol.md's host code table must be, in this order:\n{table}");
        for (doc_row, row) in documented.iter().zip(&expected) {
            assert_eq!(doc_row, row, "docs/protocol.md's host code table must be, in this order:\n{table}");
        }
    }
}
