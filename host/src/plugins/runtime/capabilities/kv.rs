//! `kv`: the plugin's key-value store, scoped by plugin name so that state
//! outlives any one version of the plugin.
//!
//! 0.1 and 0.2 read an absent key for anything that goes wrong; 0.3's
//! functions are fallible and async, so a store that must commit before a
//! write returns can await it without holding any other call.

use super::failure;
use crate::plugins::runtime::world::{v0_1, v0_2, v0_3};
use crate::plugins::runtime::PluginState;
use crate::services::KvError;
use crate::wire::{ErrorCode, Failure};

fn quota(error: KvError) -> Failure {
    failure(ErrorCode::KvQuotaExceeded, error)
}

macro_rules! kv_host {
    ($($v:ident),*) => {$(
        impl $v::kv::Host for PluginState {
            fn get(&mut self, key: String) -> Option<String> {
                self.services.kv.get(&self.identity.name, &key)
            }

            fn set(&mut self, key: String, value: String) -> Result<(), $v::types::Failure> {
                self.services.kv.set(&self.identity.name, &key, value).map_err(|e| quota(e).into())
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

impl v0_3::kv::Host for PluginState {
    async fn get(&mut self, key: String) -> Result<Option<String>, v0_3::types::Failure> {
        Ok(self.services.kv.get(&self.identity.name, &key))
    }

    async fn set(&mut self, key: String, value: String) -> Result<(), v0_3::types::Failure> {
        self.services.kv.set(&self.identity.name, &key, value).map_err(|e| quota(e).into())
    }

    async fn delete(&mut self, key: String) -> Result<(), v0_3::types::Failure> {
        self.services.kv.delete(&self.identity.name, &key);
        Ok(())
    }

    async fn keys(&mut self, prefix: String) -> Result<Vec<String>, v0_3::types::Failure> {
        Ok(self.services.kv.keys(&self.identity.name, &prefix))
    }
}
