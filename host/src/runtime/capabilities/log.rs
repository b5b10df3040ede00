//! `log`: plugin log lines into the host's `tracing`, tagged with the plugin.

use crate::runtime::world::v0_1::log::{Host, Level};
use crate::runtime::PluginState;

/// Longest log line kept; the rest is cut so a plugin cannot flood the log.
const MAX_LINE: usize = 4096;

impl Host for PluginState {
    fn log(&mut self, level: Level, message: String) {
        let mut line = message.as_str();
        if line.len() > MAX_LINE {
            let cut = (0..=MAX_LINE).rev().find(|i| line.is_char_boundary(*i)).unwrap_or(0);
            line = &line[..cut];
        }
        let plugin = self.identity.name.as_str();
        let version = self.identity.version.as_str();
        match level {
            Level::Trace => tracing::trace!(target: "plugin", plugin, version, "{line}"),
            Level::Debug => tracing::debug!(target: "plugin", plugin, version, "{line}"),
            Level::Info => tracing::info!(target: "plugin", plugin, version, "{line}"),
            Level::Warn => tracing::warn!(target: "plugin", plugin, version, "{line}"),
            Level::Error => tracing::error!(target: "plugin", plugin, version, "{line}"),
        }
    }
}
