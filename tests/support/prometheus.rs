//! A real Prometheus (Debian's `prometheus` package) on 127.0.0.1, scraping
//! given targets every second with given rule files, and a small client for
//! its HTTP API.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, wait_until, TempDir};

/// A running Prometheus.
pub struct Prometheus {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    child: Child,
    dir: TempDir,
    agent: ureq::Agent,
}

impl Prometheus {
    /// Starts Prometheus with `config` (YAML) and the files it names,
    /// written into its own directory; waits until it is ready.
    pub fn start(config: &str, files: &[(&str, String)]) -> Prometheus {
        let dir = TempDir::new("prometheus");
        let config_path = dir.write("prometheus.yml", config);
        for (name, text) in files {
            dir.write(name, text);
        }
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .args([
                &format!("--config.file={config_path}"),
                &format!("--storage.tsdb.path={}", dir.join("data").display()),
                &format!("--web.listen-address=127.0.0.1:{port}"),
                "--log.level=warn",
            ])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus (Debian package prometheus; tests/run installs it)");
        let agent = super::local_agent();
        let p = Prometheus {
            url: format!("http://127.0.0.1:{port}"),
            child,
            dir,
            agent,
        };
        wait_until("Prometheus to be ready", Duration::from_secs(30), || {
            p.agent
                .get(format!("{}/-/ready", p.url))
                .call()
                .is_ok_and(|r| r.status() == 200)
        });
        p
    }

    /// The process id, for its memory.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Prometheus's own metrics (not scraped into its database): the value
    /// of the unlabelled sample `name`.
    pub fn own_metric(&self, name: &str) -> Option<f64> {
        let mut r = self
            .agent
            .get(format!("{}/metrics", self.url))
            .call()
            .ok()?;
        let text = r.body_mut().read_to_string().ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// GET an API path; the parsed JSON.
    pub fn api(&self, path_and_query: &str) -> serde_json::Value {
        let mut r = self
            .agent
            .get(format!("{}{path_and_query}", self.url))
            .call()
            .unwrap_or_else(|e| panic!("GET {path_and_query}: {e}"));
        serde_json::from_str(&r.body_mut().read_to_string().expect("body")).expect("JSON")
    }

    /// An instant query: (status, result list, error).
    pub fn query(&self, expr: &str) -> (String, Vec<serde_json::Value>, String) {
        let mut r = self
            .agent
            .get(format!("{}/api/v1/query", self.url))
            .query("query", expr)
            .call()
            .unwrap_or_else(|e| panic!("query {expr}: {e}"));
        let v: serde_json::Value =
            serde_json::from_str(&r.body_mut().read_to_string().expect("body")).expect("JSON");
        (
            v["status"].as_str().unwrap_or("").to_string(),
            v["data"]["result"].as_array().cloned().unwrap_or_default(),
            v["error"].as_str().unwrap_or("").to_string(),
        )
    }

    /// Prometheus's own log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Renders `url` in headless Chromium (Debian's `chromium`) and returns the
/// DOM after the page loaded, as Chromium serialises it.
pub fn chromium_dom(url: &str) -> String {
    let profile = TempDir::new("chromium");
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            &format!("--user-data-dir={}", profile.path().display()),
            "--dump-dom",
            url,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("chromium (Debian package chromium; tests/run installs it)");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
