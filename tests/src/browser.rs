//! Headless Chromium driven through WebDriver (`chromedriver`, Debian's
//! `chromium` and `chromium-driver`, which `scripts/test.sh` installs).
//!
//! [`Browser::start`] runs a chromedriver of its own on a free loopback
//! port and opens one session; dropping the [`Browser`] kills that
//! chromedriver (call [`Browser::close`] first to end the session and its
//! Chromium cleanly). Without chromedriver the dashboard tests are skipped,
//! except under CI (`CI` or `SWITCHYARD_REQUIRE_BROWSER` set), where that
//! is a failure.

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Browser {
    pub client: Client,
    driver: Child,
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join(name)).find(|p| p.is_file()))
}

impl Browser {
    /// A session in a fresh headless Chromium, `width`×`height`; `None`
    /// (after saying why) where chromedriver is not installed, outside CI.
    pub async fn start(width: u32, height: u32) -> Option<Browser> {
        Browser::launch(width, height, false).await
    }

    /// A session whose viewport is a phone's, `width`×`height` CSS pixels
    /// (a desktop window cannot be made that narrow): Chromium's mobile
    /// emulation, touch and a device pixel ratio of 3.
    pub async fn phone(width: u32, height: u32) -> Option<Browser> {
        Browser::launch(width, height, true).await
    }

    async fn launch(width: u32, height: u32, phone: bool) -> Option<Browser> {
        let Some(chromedriver) = on_path("chromedriver") else {
            let required = std::env::var_os("CI").is_some() || std::env::var_os("SWITCHYARD_REQUIRE_BROWSER").is_some();
            assert!(!required, "chromedriver is not installed (apt-get install chromium chromium-driver, or run scripts/test.sh)");
            eprintln!("skipped: chromedriver is not installed (apt-get install chromium chromium-driver)");
            return None;
        };
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            probe.local_addr().expect("its address").port()
        };
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let mut browser_args = vec![
            "--headless=new".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--no-first-run".to_owned(),
            format!("--window-size={width},{height}"),
        ];
        // Chromium refuses to run its sandbox as root (CI runs as root).
        if std::env::var("USER").as_deref() == Ok("root") || is_root() {
            browser_args.push("--no-sandbox".to_owned());
        }
        let mut options = json!({ "args": browser_args });
        if phone {
            options["mobileEmulation"] = json!({ "deviceMetrics": { "width": width, "height": height, "pixelRatio": 3.0, "touch": true } });
        }
        if let Some(binary) = on_path("chromium") {
            options["binary"] = json!(binary);
        }
        let capabilities = json!({ "browserName": "chrome", "goog:chromeOptions": options });
        let capabilities = capabilities.as_object().expect("an object").clone();
        let url = format!("http://127.0.0.1:{port}");
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let started = Instant::now();
        // chromedriver takes a moment to listen.
        let client = loop {
            match ClientBuilder::new(connector.clone()).capabilities(capabilities.clone()).connect(&url).await {
                Ok(client) => break client,
                Err(error) if started.elapsed() < Duration::from_secs(20) => {
                    let _ = error;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("no WebDriver session from chromedriver on port {port}: {error}"),
            }
        };
        Some(Browser { client, driver })
    }

    /// End the session (Chromium quits), then chromedriver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }

    /// Wait up to `budget` for `script` (a function body returning a value)
    /// to return something other than `null`/`false`; that value.
    pub async fn wait_for(&self, what: &str, budget: Duration, script: &str) -> Value {
        let started = Instant::now();
        loop {
            let value = self.client.execute(script, vec![]).await.unwrap_or(Value::Null);
            if !(value.is_null() || value == Value::Bool(false)) {
                return value;
            }
            if started.elapsed() > budget {
                let page = self.client.execute("return document.body.innerText.slice(0, 3000)", vec![]).await.unwrap_or_default();
                panic!("waited {budget:?} for {what}; the page says:\n{}", page.as_str().unwrap_or_default());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no {css}: {e}")).text().await.expect("its text")
    }

    pub async fn click(&self, css: &str) {
        self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no {css}: {e}")).click().await.expect("click");
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let input = self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no {css}: {e}"));
        input.clear().await.expect("clear");
        input.send_keys(text).await.expect("type");
    }

    /// Save a PNG of the window as `target/dashboard-screenshots/NAME.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = crate::workspace_root().join("target/dashboard-screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot folder");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, self.client.screenshot().await.expect("screenshot")).expect("write screenshot");
        path
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

impl Drop for Browser {
    /// chromedriver ends the Chromium it started when asked to stop (a
    /// test that panicked never closed its session): TERM, then KILL.
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.driver.id().to_string()).status();
        for _ in 0..40 {
            if matches!(self.driver.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
