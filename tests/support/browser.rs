//! Headless Chromium (Debian's `chromium`) driven over the DevTools
//! protocol on a pipe (`--remote-debugging-pipe`: NUL-separated JSON on fds
//! 3 and 4, no WebSocket), so a test can load a page in a window of a given
//! size, measure its layout and take a screenshot. The page's own
//! Content-Security-Policy forbids scripts; DevTools evaluation is not a
//! page script and is not subject to it.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use super::TempDir;

/// A running headless Chromium with one page.
pub struct Browser {
    child: Child,
    to: File,
    from: BufReader<File>,
    next_id: u64,
    session: String,
    _dir: TempDir,
}

impl Browser {
    /// Starts Chromium with a `width` x `height` window.
    pub fn start(width: u32, height: u32) -> Browser {
        let dir = TempDir::new("browser");
        let (to_path, from_path) = (dir.join("to-chromium"), dir.join("from-chromium"));
        for p in [&to_path, &from_path] {
            super::run("mkfifo", &[p.to_str().unwrap()]);
        }
        let profile = dir.join("profile");
        let cmd = format!(
            "exec chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
             --disable-background-networking --disable-component-update --disable-sync \
             --disable-extensions --hide-scrollbars --window-size={width},{height} \
             --user-data-dir='{}' --remote-debugging-pipe about:blank 3<'{}' 4>'{}'",
            profile.display(),
            to_path.display(),
            from_path.display()
        );
        let child = Command::new("sh")
            .args(["-c", &cmd])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium (Debian package chromium; tests/run installs it)");
        // The shell opens fd 3 first, then fd 4: open the ends in that order.
        let to = File::options().write(true).open(&to_path).unwrap();
        let from = BufReader::new(File::open(&from_path).unwrap());
        let mut b = Browser {
            child,
            to,
            from,
            next_id: 0,
            session: String::new(),
            _dir: dir,
        };
        let targets = b.call("Target.getTargets", json!({}));
        let page = targets["targetInfos"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .map(|t| t["targetId"].as_str().unwrap().to_string())
            .unwrap_or_else(|| {
                b.call("Target.createTarget", json!({"url": "about:blank"}))["targetId"]
                    .as_str()
                    .unwrap()
                    .to_string()
            });
        let attached = b.call(
            "Target.attachToTarget",
            json!({"targetId": page, "flatten": true}),
        );
        b.session = attached["sessionId"].as_str().unwrap().to_string();
        b.page(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        );
        b
    }

    fn send(&mut self, method: &str, params: Value, session: bool) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if session {
            msg["sessionId"] = json!(self.session);
        }
        let mut bytes = msg.to_string().into_bytes();
        bytes.push(0);
        self.to.write_all(&bytes).expect("write to chromium");
        loop {
            let mut buf = Vec::new();
            let n = self.from.read_until(0, &mut buf).expect("read chromium");
            assert!(n > 0, "chromium closed the pipe");
            buf.pop();
            let v: Value = serde_json::from_slice(&buf).expect("chromium's JSON");
            if v["id"] == json!(id) {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, false)
    }

    fn page(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, true)
    }

    /// Evaluates a JavaScript expression in the page; its value.
    pub fn eval(&mut self, expr: &str) -> Value {
        let r = self.page(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
        );
        r["result"]["value"].clone()
    }

    /// Loads `url` and waits until it has loaded.
    pub fn open(&mut self, url: &str) {
        self.page("Page.navigate", json!({"url": url}));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = self.eval("document.readyState + ' ' + location.href");
            let ready = ready.as_str().unwrap_or("");
            if ready.starts_with("complete ") && ready.ends_with(url) {
                return;
            }
            assert!(Instant::now() < deadline, "{url} did not load: {ready}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A PNG of the viewport, written to `path`.
    pub fn screenshot(&mut self, path: &std::path::Path) {
        let r = self.page("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
