//! `settings` (0.2): the plugin's `[plugins.settings.<name>]` values.

use crate::plugins::runtime::world::v0_2::settings::Host;
use crate::plugins::runtime::PluginState;

impl Host for PluginState {
    fn get(&mut self, key: String) -> Option<String> {
        self.settings.as_ref().and_then(|settings| settings.get(&key).cloned())
    }
}
