//! `switchyard plugin build`: run the project's language compiler, check
//! the result the way `plugin inspect` does, and move it into the plugin
//! folder by an atomic rename, so a watching host swaps it in. A build that
//! is not a valid plugin never reaches the folder.
//!
//! C, Zig and Go compile to a core WebAssembly module (WASI preview 1, reactor)
//! in the project's `build/` folder; this crate writes the C bindings there
//! and encodes the module as a component ([`componentize`]), so none of these
//! needs `wit-bindgen` or `wasm-tools` installed.
//!
//! Tools: `cargo` with the `wasm32-wasip2` target; `clang` with wasi-libc
//! (`$SWITCHYARD_CLANG`); and componentize-py, jco, Zig and Go, pinned and
//! installed on first use into a per-user cache ([`toolchain`]).
//!
//! [`componentize`]: crate::componentize
//! [`toolchain`]: crate::toolchain

use crate::componentize;
use crate::project::{Lang, Project};
use crate::templates;
use crate::toolchain::{self, Tool};
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Build the project in `dir` and move the component into `out_dir` as
/// `<name>.wasm`; its path. `offline`: install no toolchain (say how).
pub async fn build(dir: &Path, out_dir: &Path, offline: bool) -> anyhow::Result<PathBuf> {
    let project = Project::read(dir)?;
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
            run(Command::new(toolchain::program(Tool::ComponentizePy, offline)?)
                .current_dir(&dir)
                .args(["--quiet", "-d", "wit", "-w", "plugin", "componentize", "-p", ".", "-o"])
                .arg(&staging)
                .arg("app"))?;
        }
        Lang::Js => {
            // QuickJS without component-model async, which the host does not enable.
            run(Command::new(toolchain::program(Tool::Jco, offline)?)
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
            write(&build.join("switchyard.zig"), templates::ZIG_SDK.as_bytes())?;
            // Module `main` (main.zig) depends on module `switchyard`,
            // which imports the C header and carries the C glue.
            run(Command::new(toolchain::program(Tool::Zig, offline)?)
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
            run(Command::new(toolchain::program(Tool::Go, offline)?)
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
