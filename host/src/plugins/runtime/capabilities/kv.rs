//! `kv`: the plugin's key-value store, scoped by plugin name so that state
//! outlives any one version of the plugin. Reads come from memory; a write
//! returns once the store has committed it.
//!
//! When the store cannot commit, `set` fails with `KV_UNAVAILABLE`. In
//! contracts 0.1 and 0.2, `delete` cannot return a failure: a delete that
//! cannot be committed ends the plugin's call, and the client is answered
//! `KV_UNAVAILABLE` (the instance is discarded, as after any fault). Their
//! `get` and `keys` read memory and cannot fail. In 0.3 every function is
//! fallible, and `delete` reports `KV_UNAVAILABLE` to the plugin.

use super::failure;
use crate::plugins::runtime::world::{v0_1, v0_2, v0_3};
use crate::plugins::runtime::PluginState;
use crate::services::KvError;
use crate::wire::{ErrorCode, Failure};

/// A kv failure as the plugin sees it.
pub(crate) fn kv_failure(error: KvError) -> Failure {
    match error {
        KvError::Unavailable(_) => failure(ErrorCode::KvUnavailable, error),
        KvError::ValueTooLarge { .. } | KvError::TooManyKeys { .. } => failure(ErrorCode::KvQuotaExceeded, error),
    }
}

macro_rules! kv_host {
    ($($v:ident),*) => {$(
        impl $v::kv::Host for PluginState {
            fn get(&mut self, key: String) -> Option<String> {
                self.services.kv.get(&self.identity.name, &key)
            }

            async fn set(&mut self, key: String, value: String) -> Result<(), $v::types::Failure> {
                let result = self.services.kv.set(&self.identity.name, &key, value).await;
                result.map_err(|e| kv_failure(e).into())
            }

            async fn delete(&mut self, key: String) -> wasmtime::Result<()> {
                let result = self.services.kv.delete(&self.identity.name, &key).await;
                result.map_err(|e| wasmtime::Error::new(kv_failure(e)))
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
        let result = self.services.kv.set(&self.identity.name, &key, value).await;
        result.map_err(|e| kv_failure(e).into())
    }

    async fn delete(&mut self, key: String) -> Result<(), v0_3::types::Failure> {
        let result = self.services.kv.delete(&self.identity.name, &key).await;
        result.map_err(|e| kv_failure(e).into())
    }

    async fn keys(&mut self, prefix: String) -> Result<Vec<String>, v0_3::types::Failure> {
        Ok(self.services.kv.keys(&self.identity.name, &prefix))
    }
}
