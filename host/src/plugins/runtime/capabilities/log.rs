//! `log`: plugin log lines into the host's `tracing`, tagged with the
//! plugin, cut and rate-limited like the guest's own output (see
//! [`output`](crate::plugins::runtime::output)).

use crate::plugins::runtime::output::{dropped_lines, MAX_LINE};
use crate::plugins::runtime::world::{v0_1, v0_2, v0_3};
use crate::plugins::runtime::PluginState;

impl PluginState {
    fn log_line(&mut self, level: tracing::Level, message: &str) {
        let (plugin, version) = (self.identity.name.as_str(), self.identity.version.as_str());
        let admitted = self.log_budget.admit(|dropped| {
            tracing::warn!(target: "plugin", plugin, version, "{}", dropped_lines(dropped));
        });
        if !admitted {
            return;
        }
        let mut line = message;
        if line.len() > MAX_LINE {
            let cut = (0..=MAX_LINE).rev().find(|i| line.is_char_boundary(*i)).unwrap_or(0);
            line = &line[..cut];
        }
        match level {
            tracing::Level::TRACE => tracing::trace!(target: "plugin", plugin, version, "{line}"),
            tracing::Level::DEBUG => tracing::debug!(target: "plugin", plugin, version, "{line}"),
            tracing::Level::INFO => tracing::info!(target: "plugin", plugin, version, "{line}"),
            tracing::Level::WARN => tracing::warn!(target: "plugin", plugin, version, "{line}"),
            tracing::Level::ERROR => tracing::error!(target: "plugin", plugin, version, "{line}"),
        }
    }
}

macro_rules! log_host {
    ($($v:ident),*) => {$(
        impl $v::log::Host for PluginState {
            fn log(&mut self, level: $v::log::Level, message: String) {
                use $v::log::Level;
                let level = match level {
                    Level::Trace => tracing::Level::TRACE,
                    Level::Debug => tracing::Level::DEBUG,
                    Level::Info => tracing::Level::INFO,
                    Level::Warn => tracing::Level::WARN,
                    Level::Error => tracing::Level::ERROR,
                };
                self.log_line(level, &message);
            }
        }
    )*};
}
log_host!(v0_1, v0_2, v0_3);
