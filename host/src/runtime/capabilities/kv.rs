//! `kv`: the plugin's key-value store, scoped by plugin name so that state
//! outlives any one version of the plugin.

use super::failure;
use crate::runtime::world::v0_1::{kv::Host, types::Failure};
use crate::runtime::PluginState;

impl Host for PluginState {
    fn get(&mut self, key: String) -> Option<String> {
        self.services.kv.get(&self.identity.name, &key)
    }

    fn set(&mut self, key: String, value: String) -> Result<(), Failure> {
        self.services.kv.set(&self.identity.name, &key, value).map_err(|e| failure("KV_QUOTA_EXCEEDED", e))
    }

    fn delete(&mut self, key: String) {
        self.services.kv.delete(&self.identity.name, &key)
    }

    fn keys(&mut self, prefix: String) -> Vec<String> {
        self.services.kv.keys(&self.identity.name, &prefix)
    }
}
