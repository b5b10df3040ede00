//! `switchyard plugin new` and `switchyard plugin build`: plugin projects in
//! Rust, Python, JavaScript, C, Zig and Go that build as generated.
//!
//! A project is a folder with a `switchyard-plugin.toml` (`name`, `lang`)
//! and its source; Python and JavaScript projects also carry the WIT they
//! bind against (`wit/`, the `switchyard:plugin@0.2.0` contract). `build`
//! runs the language's own compiler, checks the result the way
//! `plugin inspect` does, and moves it into the plugin folder by an atomic
//! rename, so a watching host swaps it in.
//!
//! C, Zig and Go compile to a core WebAssembly module (WASI preview 1, reactor)
//! in the project's `build/` folder; the host binary itself writes the C
//! bindings there and encodes the module as a component ([`componentize`]),
//! so none of these needs `wit-bindgen` or `wasm-tools` installed.
//!
//! Tools, each overridable by an environment variable: `cargo` with the
//! `wasm32-wasip2` target; `componentize-py` (`$SWITCHYARD_COMPONENTIZE_PY`);
//! `jco` (`$SWITCHYARD_JCO`); `clang` with wasi-libc (`$SWITCHYARD_CLANG`);
//! `zig` (`$SWITCHYARD_ZIG`); `go` >= 1.24 (`$SWITCHYARD_GO`).
//!
//! [`componentize`]: crate::componentize

use crate::componentize;
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
    C,
    Zig,
    Go,
}

/// `switchyard-plugin.toml`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Project {
    name: String,
    lang: Lang,
}

const PROJECT_FILE: &str = "switchyard-plugin.toml";
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
        return PluginManifest(
            name="__NAME__", version="0.1.0", description="", claims=["__NAME__.*"], tick_interval_ms=None
        )

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
import kv from "switchyard:plugin/kv@0.2.0";

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

const C_MAIN: &str = r#"// `__NAME__`: a Switchyard plugin.
//
// `__NAME__.hello` {"name": "Ada"} -> {"greeting": "Hello, Ada!", "count": 1},
// where `count` is kept in the host's key-value store across swaps.
// Returning false with `*err` filled answers the client with that code; a
// trap (abort(), an out-of-bounds access) becomes the failure PLUGIN_FAILED.
//
// `plugin.h` and `plugin.c` (the bindings) are written into build/ by
// `switchyard plugin build`, which compiles every .c file of this folder.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "plugin.h"

// Every string handed back to the host is malloc'd: the generated
// post-return functions free them once the host has copied them.
static bool fail(exports_switchyard_plugin_handler_failure_t *err, const char *code, const char *message) {
    plugin_string_dup(&err->code, code);
    plugin_string_dup(&err->message, message);
    return false;
}

void exports_switchyard_plugin_handler_manifest(exports_switchyard_plugin_handler_plugin_manifest_t *ret) {
    plugin_string_dup(&ret->name, "__NAME__");
    plugin_string_dup(&ret->version, "0.1.0");
    plugin_string_dup(&ret->description, "");
    ret->claims.len = 1;
    ret->claims.ptr = malloc(sizeof(plugin_string_t));
    plugin_string_dup(&ret->claims.ptr[0], "__NAME__.*");
    ret->tick_interval_ms.is_some = false;
}

// The number stored under `count`, plus one.
static long next_count(plugin_string_t *key) {
    plugin_string_t stored;
    if (!switchyard_plugin_kv_get(key, &stored)) return 1;
    char text[24] = {0};
    memcpy(text, stored.ptr, stored.len < sizeof text - 1 ? stored.len : sizeof text - 1);
    plugin_string_free(&stored);
    return strtol(text, NULL, 10) + 1;
}

bool exports_switchyard_plugin_handler_handle(exports_switchyard_plugin_handler_message_t *msg, plugin_string_t *ret,
                                              exports_switchyard_plugin_handler_failure_t *err) {
    const char *hello = "__NAME__.hello";
    bool known = msg->type.len == strlen(hello) && memcmp(msg->type.ptr, hello, msg->type.len) == 0;
    char *name = NULL;
    size_t name_len = 0;
    int found = known ? json_get_string((const char *)msg->data.ptr, msg->data.len, "name", &name, &name_len) : 0;
    exports_switchyard_plugin_handler_message_free(msg); // the message's strings are ours to free
    if (!known) return fail(err, "UNKNOWN_ACTION", "the only action is __NAME__.hello");
    if (found != 0) return fail(err, "INVALID_DATA", "expected {\"name\": \"...\"}");

    plugin_string_t key, value;
    plugin_string_set(&key, "count");
    long count = next_count(&key);
    char number[24];
    snprintf(number, sizeof number, "%ld", count);
    plugin_string_set(&value, number);
    switchyard_plugin_kv_failure_t kv_err;
    if (!switchyard_plugin_kv_set(&key, &value, &kv_err)) {
        free(name);
        *err = kv_err; // the host's failure, passed on as it is
        return false;
    }

    // "Hello, " name "!", byte for byte (a name may hold any character).
    size_t greeting_len = name_len + 8, quoted_len;
    char *greeting = malloc(greeting_len), *quoted;
    if (!greeting) abort();
    memcpy(greeting, "Hello, ", 7);
    memcpy(greeting + 7, name, name_len);
    greeting[greeting_len - 1] = '!';
    free(name);
    if (json_quote(greeting, greeting_len, &quoted, &quoted_len)) abort();
    free(greeting);
    size_t size = quoted_len + 48;
    char *reply = malloc(size);
    snprintf(reply, size, "{\"greeting\":%s,\"count\":%ld}", quoted, count);
    free(quoted);
    ret->ptr = (uint8_t *)reply;
    ret->len = strlen(reply);
    return true;
}
"#;

const ZIG_MAIN: &str = r#"//! `__NAME__`: a Switchyard plugin.
//!
//! `__NAME__.hello` {"name": "Ada"} -> {"greeting": "Hello, Ada!", "count": 1},
//! where `count` is kept in the host's key-value store across swaps.
//! Returning false with `err` filled answers the client with that code; a
//! panic (a trap) becomes the failure PLUGIN_FAILED.
//!
//! `switchyard plugin build` writes the module `switchyard` (sdk/zig) and the
//! C bindings it wraps into build/.
const std = @import("std");
const sy = @import("switchyard");

export fn exports_switchyard_plugin_handler_manifest(ret: *sy.Manifest) void {
    sy.manifest(ret, .{ .name = "__NAME__", .version = "0.1.0", .claims = &.{"__NAME__.*"} });
}

export fn exports_switchyard_plugin_handler_handle(msg: *sy.Message, ret: *sy.String, err: *sy.Failure) bool {
    defer sy.freeMessage(msg);
    if (!std.mem.eql(u8, sy.bytes(msg.type), "__NAME__.hello"))
        return sy.fail(err, "UNKNOWN_ACTION", "the only action is __NAME__.hello");

    var arena = std.heap.ArenaAllocator.init(std.heap.c_allocator);
    defer arena.deinit();
    const scratch = arena.allocator();
    const Hello = struct { name: []const u8 };
    const hello = std.json.parseFromSliceLeaky(Hello, scratch, sy.bytes(msg.data), .{ .ignore_unknown_fields = true }) catch
        return sy.fail(err, "INVALID_DATA", "expected {\"name\": \"...\"}");

    var count: u64 = 1;
    if (sy.kv.get(scratch, "count") catch @panic("out of memory")) |stored|
        count += std.fmt.parseInt(u64, stored, 10) catch 0;
    const text = std.fmt.allocPrint(scratch, "{d}", .{count}) catch @panic("out of memory");
    if (!sy.kv.set("count", text, err)) return false; // the host's failure, passed on

    const greeting = std.fmt.allocPrint(scratch, "Hello, {s}!", .{hello.name}) catch @panic("out of memory");
    const reply = std.json.Stringify.valueAlloc(scratch, .{ .greeting = greeting, .count = count }, .{}) catch @panic("out of memory");
    ret.* = sy.string(reply);
    return true;
}
"#;

/// The Zig module `switchyard`, written into a Zig project's `build/`.
const ZIG_SDK: &str = include_str!("../../sdk/zig/switchyard.zig");

/// A small JSON reader and writer for C plugins (`examples/c-checksum`).
const C_JSON: &str = include_str!("../../examples/c-checksum/json.c");
const C_JSON_H: &str = include_str!("../../examples/c-checksum/json.h");

const GO_MOD: &str = r#"module __NAME__

go 1.24

require switchyard.dev/plugin v0.0.0

replace switchyard.dev/plugin => __SDK__
"#;

const GO_MAIN: &str = r#"// `__NAME__`: a Switchyard plugin.
//
// `__NAME__.hello` {"name": "Ada"} -> {"greeting": "Hello, Ada!", "count": 1},
// where `count` is kept in the host's key-value store across swaps.
// Returning a *plugin.Failure answers the client with its code; a panic
// becomes the failure PLUGIN_PANIC.
package main

import (
	"encoding/json"
	"strconv"

	"switchyard.dev/plugin"
)

func init() {
	plugin.Register(plugin.Manifest{Name: "__NAME__", Version: "0.1.0", Claims: []string{"__NAME__.*"}}, handle)
}

// main is never called: the module is a reactor, and init registers the plugin.
func main() {}

func handle(msg plugin.Message) (string, *plugin.Failure) {
	if msg.Type != "__NAME__.hello" {
		return "", plugin.Fail("UNKNOWN_ACTION", "no action %q", msg.Type)
	}
	var in struct {
		Name *string `json:"name"`
	}
	if err := json.Unmarshal([]byte(msg.Data), &in); err != nil || in.Name == nil {
		return "", plugin.Fail("INVALID_DATA", `expected {"name": "..."}`)
	}
	count := 1
	if v, ok := plugin.KV.Get("count"); ok {
		n, _ := strconv.Atoi(v)
		count = n + 1
	}
	if err := plugin.KV.Set("count", strconv.Itoa(count)); err != nil {
		return "", plugin.FailureOf(err, "KV_FAILED") // the host's failure, passed on
	}
	reply, _ := json.Marshal(map[string]any{"greeting": "Hello, " + *in.Name + "!", "count": count})
	return string(reply), nil
}
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
            write("Cargo.toml", &RUST_CARGO.replace("__SDK__", &repo_path("sdk")))?;
            write("src/lib.rs", RUST_LIB)?;
        }
        Lang::Python => {
            write("app.py", PYTHON_APP)?;
            write("wit/plugin.wit", componentize::WIT)?;
        }
        Lang::Js => {
            write("app.js", JS_APP)?;
            write("wit/plugin.wit", componentize::WIT)?;
        }
        Lang::C => {
            write("main.c", C_MAIN)?;
            write("json.c", C_JSON)?;
            write("json.h", C_JSON_H)?;
        }
        Lang::Zig => write("main.zig", ZIG_MAIN)?,
        Lang::Go => {
            write("go.mod", &GO_MOD.replace("__SDK__", &repo_path("sdk/go")))?;
            write("main.go", GO_MAIN)?;
        }
    }
    if matches!(lang, Lang::C | Lang::Zig | Lang::Go) {
        write(".gitignore", "/build/\n")?;
    }
    Ok(())
}

/// A folder of this source tree (the SDKs), as an absolute path.
fn repo_path(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    path.canonicalize().unwrap_or(path).to_string_lossy().into_owned()
}

/// Build the project in `dir` and move the component into `out_dir` as
/// `<name>.wasm`; its path.
pub async fn build(dir: &Path, out_dir: &Path) -> anyhow::Result<PathBuf> {
    let manifest = dir.join(PROJECT_FILE);
    let text = std::fs::read_to_string(&manifest).with_context(|| format!("no {PROJECT_FILE} in {}", dir.display()))?;
    let project: Project = toml::from_str(&text).with_context(|| format!("invalid {}", manifest.display()))?;
    std::fs::create_dir_all(out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    // Absolute: the tools run in the project's folder.
    let out_dir = &out_dir.canonicalize()?;
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
            run(Command::new(tool("SWITCHYARD_COMPONENTIZE_PY", "componentize-py"))
                .current_dir(&dir)
                .args(["--quiet", "-d", "wit", "-w", "plugin", "componentize", "-p", ".", "-o"])
                .arg(&staging)
                .arg("app"))?;
        }
        Lang::Js => {
            // QuickJS without component-model async, which the host does not enable.
            run(Command::new(tool("SWITCHYARD_JCO", "jco"))
                .arg("componentize")
                .arg(dir.join("app.js"))
                .arg("--wit")
                .arg(dir.join("wit"))
                .args(["--world-name", "plugin", "--backend", "quickjs", "--backend-qjs-disable-async", "-o"])
                .arg(&staging))?;
        }
        // C, Zig and Go: a core module in build/, encoded here.
        Lang::C => {
            let build = bindings(&dir)?;
            let mut sources = vec![build.join("plugin.c")];
            for entry in std::fs::read_dir(&dir)? {
                let path = entry?.path();
                if path.extension().is_some_and(|e| e == "c") {
                    sources.push(path);
                }
            }
            sources.sort();
            run(Command::new(tool("SWITCHYARD_CLANG", "clang"))
                .args(["--target=wasm32-wasi", "-mexec-model=reactor", "-O2", "-Wall", "-Wextra", "-I"])
                .arg(&build)
                .args(&sources)
                .arg("-o")
                .arg(build.join(CORE)))?;
            write(&staging, &componentize::component(&read(&build.join(CORE))?)?)?;
        }
        Lang::Zig => {
            let build = bindings(&dir)?;
            write(&build.join("switchyard.zig"), ZIG_SDK.as_bytes())?;
            // Module `main` (main.zig) depends on module `switchyard`,
            // which imports the C header and carries the C glue.
            run(Command::new(tool("SWITCHYARD_ZIG", "zig"))
                .current_dir(&dir)
                .args(["build-exe", "-target", "wasm32-wasi", "-mexec-model=reactor", "-fno-entry", "-rdynamic"])
                .args(["-lc", "-O", "ReleaseSmall", "--cache-dir", "build/zig-cache", "-femit-bin=build/core.wasm"])
                .args(["--dep", "switchyard", "-Mmain=main.zig"])
                .args(["-I", "build", "build/plugin.c", "-Mswitchyard=build/switchyard.zig"]))?;
            write(&staging, &componentize::component(&read(&build.join(CORE))?)?)?;
        }
        Lang::Go => {
            // A reactor (`_initialize` runs Go's start-up and `init`s);
            // the SDK reserves the WASI adapter's memory.
            let build = dir.join("build");
            std::fs::create_dir_all(&build).with_context(|| format!("cannot create {}", build.display()))?;
            run(Command::new(tool("SWITCHYARD_GO", "go"))
                .current_dir(&dir)
                .env("GOOS", "wasip1")
                .env("GOARCH", "wasm")
                .args(["build", "-buildmode=c-shared", "-trimpath", "-o", "build/core.wasm", "."]))?;
            let core = read(&build.join(CORE))?;
            write(&staging, &componentize::component(&componentize::with_adapter_memory(&core)?)?)?;
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

/// The core module a C, Zig or Go build leaves in `build/`.
const CORE: &str = "core.wasm";

/// `dir`/build, with the C bindings written into it.
fn bindings(dir: &Path) -> anyhow::Result<PathBuf> {
    let build = dir.join("build");
    componentize::c_bindings(&build)?;
    Ok(build)
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// The program named by the environment variable `var`, else `default`.
fn tool(var: &str, default: &str) -> std::ffi::OsString {
    std::env::var_os(var).unwrap_or_else(|| default.into())
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let program = command.get_program().to_string_lossy().into_owned();
    let status = command.status().with_context(|| format!("cannot run {program}; is it installed?"))?;
    anyhow::ensure!(status.success(), "{program} failed ({status})");
    Ok(())
}
