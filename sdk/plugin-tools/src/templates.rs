//! The files `plugin new` writes, per language: real files under
//! `templates/<lang>/`, compiled into the binary, with `__NAME__` replaced
//! by the plugin's name and `__SDK__` by the SDK's absolute path. Files
//! that live elsewhere in the repository (the Zig module, the C JSON
//! helpers, the WIT) are included from where they are, never copied.
//!
//! Template files named like a manifest (`Cargo.toml`, `go.mod`) carry a
//! `.tmpl` suffix, so cargo and go never take them for a project of this
//! repository.

use crate::componentize;
use crate::project::Lang;
use std::path::Path;

/// Replaced by the plugin's name in every template.
const NAME: &str = "__NAME__";
/// Replaced by the absolute path of the language's SDK in this source tree.
const SDK: &str = "__SDK__";

/// Ignores the core module and bindings that C, Zig and Go builds leave in
/// `build/`.
const BUILD_GITIGNORE: &str = include_str!("../templates/gitignore");

/// The Zig module `switchyard`, written into a Zig project's `build/`.
pub const ZIG_SDK: &str = include_str!("../../zig/switchyard.zig");

/// One file of a new project: its path in the project and its text.
pub struct ProjectFile {
    pub path: &'static str,
    pub text: String,
}

/// The files of a new `lang` project for plugin `name`.
pub fn project_files(lang: Lang, name: &str) -> Vec<ProjectFile> {
    let (sdk, files): (Option<&str>, &[(&'static str, &str)]) = match lang {
        Lang::Rust => (
            Some("sdk"),
            &[
                ("Cargo.toml", include_str!("../templates/rust/Cargo.toml.tmpl")),
                ("src/lib.rs", include_str!("../templates/rust/src/lib.rs")),
            ],
        ),
        Lang::Python => (None, &[("app.py", include_str!("../templates/python/app.py")), ("wit/plugin.wit", componentize::WIT)]),
        Lang::Js => (None, &[("app.js", include_str!("../templates/js/app.js")), ("wit/plugin.wit", componentize::WIT)]),
        Lang::C => (
            None,
            &[
                ("main.c", include_str!("../templates/c/main.c")),
                // A small JSON reader and writer, shared with `examples/c-checksum`.
                ("json.c", include_str!("../../../examples/c-checksum/json.c")),
                ("json.h", include_str!("../../../examples/c-checksum/json.h")),
                (".gitignore", BUILD_GITIGNORE),
            ],
        ),
        Lang::Zig => (None, &[("main.zig", include_str!("../templates/zig/main.zig")), (".gitignore", BUILD_GITIGNORE)]),
        Lang::Go => (
            Some("sdk/go"),
            &[
                ("go.mod", include_str!("../templates/go/go.mod.tmpl")),
                ("main.go", include_str!("../templates/go/main.go")),
                (".gitignore", BUILD_GITIGNORE),
            ],
        ),
    };
    let sdk = sdk.map(repo_path);
    files
        .iter()
        .map(|&(path, text)| {
            let text = match &sdk {
                Some(sdk) => text.replace(SDK, sdk),
                None => text.to_owned(),
            };
            ProjectFile { path, text: text.replace(NAME, name) }
        })
        .collect()
}

/// A folder of this source tree (the SDKs), as an absolute path.
fn repo_path(path: &str) -> String {
    // This package sits in sdk/plugin-tools.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path);
    path.canonicalize().unwrap_or(path).to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_is_filled_in_every_language() {
        for lang in [Lang::Rust, Lang::Python, Lang::Js, Lang::C, Lang::Zig, Lang::Go] {
            for file in project_files(lang, "hello-x") {
                assert!(!file.text.contains(NAME) && !file.text.contains(SDK), "{lang:?} {}", file.path);
            }
        }
    }

    #[test]
    fn sdk_paths_point_at_the_sdks_in_this_tree() {
        let go_mod = project_files(Lang::Go, "hello-x").into_iter().find(|f| f.path == "go.mod").unwrap();
        let sdk = go_mod.text.lines().find_map(|l| l.strip_prefix("replace switchyard.dev/plugin => ")).unwrap();
        assert!(Path::new(sdk).join("go.mod").is_file(), "{sdk}");
        let cargo = project_files(Lang::Rust, "hello-x").into_iter().find(|f| f.path == "Cargo.toml").unwrap();
        assert!(cargo.text.contains("name = \"hello-x\""), "{}", cargo.text);
    }
}
