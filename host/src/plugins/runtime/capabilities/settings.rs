//! `settings` (0.2 on): the plugin's `[plugins.settings.<name>]` values.

use crate::plugins::runtime::world::{v0_2, v0_3};
use crate::plugins::runtime::PluginState;

macro_rules! settings_host {
    ($($v:ident),*) => {$(
        impl $v::settings::Host for PluginState {
            fn get(&mut self, key: String) -> Option<String> {
                self.settings.as_ref().and_then(|settings| settings.get(&key).cloned())
            }
        }
    )*};
}
settings_host!(v0_2, v0_3);
