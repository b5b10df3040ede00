//! What the host itself must remember across a restart: API keys revoked
//! at run time and limits changed at run time, in `runtime.json` under
//! the data folder (`data_dir`).
//!
//! The file is written whole, atomically: a temporary file beside it,
//! flushed to disk, renamed over the old one, and the folder flushed, so a
//! crash leaves the old state or the new one, never half of either. Saves
//! run off the async workers, one at a time. It must not hold anything a
//! plugin can reach.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The file's name in the data folder.
pub const FILE: &str = "runtime.json";

/// The remembered state, as the file holds it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Remembered {
    /// Names of keys revoked with `DELETE /api/keys/NAME`; they stay
    /// revoked whatever the configuration file says.
    pub revoked_keys: BTreeSet<String>,
    /// The limits set with `PUT /api/config`, field by field, as `GET` shows them;
    /// applied over the configuration file's at start.
    pub limits: Map<String, Value>,
}

/// The state file and the state last written to it.
pub struct HostState {
    path: PathBuf,
    remembered: tokio::sync::Mutex<Remembered>,
}

impl HostState {
    /// Open (creating) the data folder and read what it remembers.
    pub fn open(dir: &Path) -> anyhow::Result<(HostState, Remembered)> {
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("cannot create data folder {}: {e}", dir.display()))?;
        let path = dir.join(FILE);
        let remembered = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| anyhow::anyhow!("{} is not valid host state: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Remembered::default(),
            Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
        };
        Ok((HostState { path, remembered: tokio::sync::Mutex::new(remembered.clone()) }, remembered))
    }

    /// Where the state is written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Remember that the key `name` is revoked.
    pub async fn revoke(&self, name: &str) -> std::io::Result<()> {
        self.change(|state| {
            state.revoked_keys.insert(name.to_owned());
        })
        .await
    }

    /// Remember the limit fields named in `changed` (over those set
    /// before) with their values in `current()`. It is read under the same
    /// lock as the write, so of two changes racing, the file ends with the
    /// limits the host ends with.
    pub async fn set_limits(&self, changed: &[String], current: impl FnOnce() -> Map<String, Value>) -> std::io::Result<()> {
        self.change(|state| {
            let current = current();
            for field in changed {
                if let Some(value) = current.get(field) {
                    state.limits.insert(field.clone(), value.clone());
                }
            }
        })
        .await
    }

    /// Apply `edit` and write the result; on failure, nothing is remembered.
    async fn change(&self, edit: impl FnOnce(&mut Remembered)) -> std::io::Result<()> {
        let mut remembered = self.remembered.lock().await;
        let mut next = remembered.clone();
        edit(&mut next);
        let bytes = serde_json::to_vec_pretty(&next).map_err(std::io::Error::other)?;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || write_atomically(&path, &bytes)).await.map_err(std::io::Error::other)??;
        *remembered = next;
        Ok(())
    }
}

/// Write `bytes` to `path` through a flushed temporary file and a rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    // The rename is durable once the folder's entry is.
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn state_is_written_whole_and_read_back() {
        let dir = std::env::temp_dir().join(format!("switchyard-state-{}", uuid::Uuid::new_v4().simple()));
        let (state, remembered) = HostState::open(&dir.join("data")).unwrap();
        assert_eq!(remembered, Remembered::default());
        state.revoke("cam").await.unwrap();
        let limits = |value: Value| move || value.as_object().unwrap().clone();
        state.set_limits(&["messages_per_second".into()], limits(json!({"messages_per_second": 5, "deadline_ms": 2000}))).await.unwrap();
        let both = ["messages_per_second".into(), "deadline_ms".into()];
        state.set_limits(&both, limits(json!({"messages_per_second": "off", "deadline_ms": 900, "message_burst": 3}))).await.unwrap();
        let (_, remembered) = HostState::open(&dir.join("data")).unwrap();
        assert_eq!(remembered.revoked_keys.iter().collect::<Vec<_>>(), ["cam"]);
        assert_eq!(Value::Object(remembered.limits), json!({"messages_per_second": "off", "deadline_ms": 900}));
        assert!(!dir.join("data").join("runtime.json.tmp").exists());

        std::fs::write(dir.join("data").join(FILE), b"{not json").unwrap();
        assert!(HostState::open(&dir.join("data")).is_err(), "a damaged file stops the start, not the revocations");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
