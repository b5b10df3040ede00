//! `switchyard plugin new` and `switchyard plugin build`: plugin projects in
//! Rust, Python and JavaScript that build as generated.
//!
//! A project is a folder with a `switchyard-plugin.toml` (`name`, `lang`),
//! its source, and, for the languages that generate bindings at build time,
//! the WIT it binds against (`wit/`, the 0.1.0 contract the host keeps
//! loading). `build` runs the language's own tool, checks the result the way
//! `plugin inspect` does, and moves it into the plugin folder by an atomic
//! rename, so a watching host swaps it in.
//!
//! Tools: `cargo` with the `wasm32-wasip2` target; `componentize-py`
//! (or `$SWITCHYARD_COMPONENTIZE_PY`); `jco` (or `$SWITCHYARD_JCO`).

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The languages `plugin new` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    Rust,
    Python,
    Js,
}

/// `switchyard-plugin.toml`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Project {
    name: String,
    lang: Lang,
}

const PROJECT_FILE: &str = "switchyard-plugin.toml";
const WIT: &str = include_str!("../../wit/v0.1.0/plugin.wit");
const NAME: &str = "__NAME__";

const RUST_CARGO: &str = r#"[package]
name = "__NAME__"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
serde = { version = "1", features = ["derive"] }
switchyard-sdk = { path = "__SDK__" }

# A project of its own, even when created inside another workspace.
[workspace]
"#;

const RUST_LIB: &str = r#"//! `__NAME__`: a Switchyard plugin.
//!
//! `__NAME__.hello` {"name": "Ada"} → {"greeting": "Hello, Ada!", "count": 1},
//! where `count` is kept in the host's key-value store across swaps.

use serde::Deserialize;
use switchyard_sdk::{export_plugin, json, kv, Failure, Manifest, Message, Plugin, Value};

#[derive(Deserialize)]
struct Hello {
    name: String,
}

struct Handler;

impl Plugin for Handler {
    fn manifest() -> Manifest {
        Manifest::new("__NAME__", env!("CARGO_PKG_VERSION")).claim("__NAME__.*")
    }

    fn handle(msg: Message) -> Result<Value, Failure> {
        match msg.type_.as_str() {
            "__NAME__.hello" => {
                let hello: Hello = msg.data()?;
                let count = kv::get::<u64>("count").unwrap_or(0) + 1;
                kv::set("count", &count)?;
                Ok(json!({ "greeting": format!("Hello, {}!", hello.name), "count": count }))
            }
            other => Err(Failure::new("UNKNOWN_ACTION", format!("no action {other:?}"))),
        }
    }
}

export_plugin!(Handler);
"#;

const PYTHON_APP: &str = r#""""`__NAME__`: a Switchyard plugin.

`__NAME__.hello` {"name": "Ada"} -> {"greeting": "Hello, Ada!", "count": 1},
where `count` is kept in the host's key-value store across swaps.
Raising Err(Failure(code, message)) answers the client with that code.
"""
import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import kv
from wit_world.imports.types import Failure, Message, PluginManifest


class Handler(exports.Handler):
    def manifest(self) -> PluginManifest:
        return PluginManifest(name="__NAME__", version="0.1.0", description="", claims=["__NAME__.*"])

    def handle(self, msg: Message) -> str:
        if msg.type != "__NAME__.hello":
            raise Err(Failure("UNKNOWN_ACTION", f"no action {msg.type!r}"))
        try:
            name = json.loads(msg.data)["name"]
        except (ValueError, TypeError, KeyError) as e:
            raise Err(Failure("INVALID_DATA", f'expected {{"name": str}}: {e!r}'))
        count = json.loads(kv.get("count") or "0") + 1
        kv.set("count", json.dumps(count))
        return json.dumps({"greeting": f"Hello, {name}!", "count": count})
"#;

const JS_APP: &str = r#"// `__NAME__`: a Switchyard plugin.
// `__NAME__.hello` {"name": "Ada"} -> {"greeting": "Hello, Ada!", "count": 1},
// where `count` is kept in the host's key-value store across swaps.
// Throwing {code, message} answers the client with that code.
import kv from "switchyard:plugin/kv@0.1.0";

export const handler = {
  manifest() {
    return { name: "__NAME__", version: "0.1.0", description: "", claims: ["__NAME__.*"] };
  },

  handle(msg) {
    if (msg.type !== "__NAME__.hello") throw { code: "UNKNOWN_ACTION", message: `no action ${msg.type}` };
    let name;
    try {
      name = JSON.parse(msg.data).name;
    } catch (e) {
      throw { code: "INVALID_DATA", message: `data is not JSON: ${e}` };
    }
    if (typeof name !== "string") throw { code: "INVALID_DATA", message: 'expected {"name": string}' };
    const count = Number(kv.get("count") ?? 0) + 1;
    kv.set("count", JSON.stringify(count));
    return JSON.stringify({ greeting: `Hello, ${name}!`, count });
  },
};
"#;

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
        std::fs::write(&path, text.replace(NAME, name)).with_context(|| format!("cannot write {}", path.display()))
    };
    write(PROJECT_FILE, &toml::to_string(&Project { name: name.to_owned(), lang })?)?;
    match lang {
        Lang::Rust => {
            let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
            let sdk = sdk.canonicalize().unwrap_or(sdk);
            write("Cargo.toml", &RUST_CARGO.replace("__SDK__", &sdk.to_string_lossy()))?;
            write("src/lib.rs", RUST_LIB)?;
        }
        Lang::Python => {
            write("app.py", PYTHON_APP)?;
            write("wit/plugin.wit", WIT)?;
        }
        Lang::Js => {
            write("app.js", JS_APP)?;
            write("wit/plugin.wit", WIT)?;
        }
    }
    Ok(())
}

/// Build the project in `dir` and move the component into `out_dir` as
/// `<name>.wasm`; its path.
pub async fn build(dir: &Path, out_dir: &Path) -> anyhow::Result<PathBuf> {
    let manifest = dir.join(PROJECT_FILE);
    let text = std::fs::read_to_string(&manifest).with_context(|| format!("no {PROJECT_FILE} in {}", dir.display()))?;
    let project: Project = toml::from_str(&text).with_context(|| format!("invalid {}", manifest.display()))?;
    std::fs::create_dir_all(out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let staging = out_dir.join(format!(".{}.wasm.build", project.name));
    let dir = dir.canonicalize()?;
    match project.lang {
        Lang::Rust => {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            run(Command::new(cargo)
                .args(["build", "--release", "--target", "wasm32-wasip2", "--manifest-path"])
                .arg(dir.join("Cargo.toml")))?;
            let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| dir.join("target"), PathBuf::from);
            let built = target.join("wasm32-wasip2/release").join(format!("{}.wasm", project.name.replace('-', "_")));
            std::fs::copy(&built, &staging).with_context(|| format!("cargo built no {}", built.display()))?;
        }
        Lang::Python => {
            let tool = std::env::var("SWITCHYARD_COMPONENTIZE_PY").unwrap_or_else(|_| "componentize-py".into());
            run(Command::new(tool)
                .current_dir(&dir)
                .args(["--quiet", "-d", "wit", "-w", "plugin", "componentize", "-p", ".", "-o"])
                .arg(&staging)
                .arg("app"))?;
        }
        Lang::Js => {
            let tool = std::env::var("SWITCHYARD_JCO").unwrap_or_else(|_| "jco".into());
            // QuickJS without component-model async, which the host does not enable.
            run(Command::new(tool)
                .arg("componentize")
                .arg(dir.join("app.js"))
                .arg("--wit")
                .arg(dir.join("wit"))
                .args(["--world-name", "plugin", "--backend", "quickjs", "--backend-qjs-disable-async", "-o"])
                .arg(&staging))?;
        }
    }
    if let Err(e) = crate::inspect::inspect(&staging).await {
        let _ = std::fs::remove_file(&staging);
        bail!("the build is not a valid plugin: [{}] {}", e.code, e.message);
    }
    let out = out_dir.join(format!("{}.wasm", project.name));
    std::fs::rename(&staging, &out).with_context(|| format!("cannot move the component to {}", out.display()))?;
    Ok(out)
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let program = command.get_program().to_string_lossy().into_owned();
    let status = command.status().with_context(|| format!("cannot run {program}; is it installed?"))?;
    anyhow::ensure!(status.success(), "{program} failed ({status})");
    Ok(())
}
