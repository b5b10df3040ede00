//! A plugin project's own file, `switchyard-plugin.toml`: the plugin's
//! name and the language it is written in, which is all `plugin build`
//! needs to know to pick a toolchain.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The file that makes a folder a plugin project.
pub const PROJECT_FILE: &str = "switchyard-plugin.toml";

/// The languages `plugin new` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    Rust,
    Python,
    Js,
    C,
    Zig,
    Go,
}

/// `switchyard-plugin.toml`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Project {
    pub name: String,
    pub lang: Lang,
}

impl Project {
    /// The project in `dir`.
    pub fn read(dir: &Path) -> anyhow::Result<Project> {
        let manifest = dir.join(PROJECT_FILE);
        let text = std::fs::read_to_string(&manifest).with_context(|| format!("no {PROJECT_FILE} in {}", dir.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid {}", manifest.display()))
    }
}
