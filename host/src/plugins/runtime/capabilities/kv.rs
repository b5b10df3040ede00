//! `kv`: the plugin's key-value store, scoped by plugin name so that state
//! outlives any one version of the plugin.

use super::failure;
use crate::wire::ErrorCode;
use crate::plugins::runtime::world::{v0_1, v0_2};
use crate::plugins::runtime::PluginState;

macro_rules! kv_host {
    ($($v:ident),*) => {$(
        impl $v::kv::Host for PluginState {
            fn get(&mut self, key: String) -> Option<String> {
                self.services.kv.get(&self.identity.name, &key)
            }

            fn set(&mut self, key: String, value: String) -> Result<(), $v::types::Failure> {
                let result = self.services.kv.set(&self.identity.name, &key, value);
                result.map_err(|e| failure(ErrorCode::KvQuotaExceeded, e).into())
            }

            fn delete(&mut self, key: String) {
                self.services.kv.delete(&self.identity.name, &key)
            }

            fn keys(&mut self, prefix: String) -> Vec<String> {
                self.services.kv.keys(&self.identity.name, &prefix)
            }
        }
    )*};
}
kv_host!(v0_1, v0_2);
