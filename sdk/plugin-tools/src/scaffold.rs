//! `switchyard plugin new`: a plugin project in Rust, Python, JavaScript,
//! C, Zig or Go that builds as generated, written from the [`templates`].
//!
//! Python and JavaScript projects also carry the WIT they bind against
//! (`wit/`, the `switchyard:plugin@0.2.0` contract).
//!
//! [`templates`]: crate::templates

use crate::project::{Lang, Project, PROJECT_FILE};
use crate::templates;
use anyhow::Context;
use std::path::Path;

/// Write a new project for plugin `name` in `dir` (which must not exist).
pub fn new_project(dir: &Path, name: &str, lang: Lang) -> anyhow::Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    anyhow::ensure!(valid, "plugin name {name:?} must be a-z, 0-9 and -, starting with a letter");
    anyhow::ensure!(!dir.exists(), "{} already exists", dir.display());
    let write = |path: &str, text: &str| -> anyhow::Result<()> {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap_or(dir))?;
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    write(PROJECT_FILE, &toml::to_string(&Project { name: name.to_owned(), lang })?)?;
    for file in templates::project_files(lang, name) {
        write(file.path, &file.text)?;
    }
    Ok(())
}
