//! Test support shared by every integration test and the benchmark: the real
//! registry launcher, our token server, a scripted registry for answers a
//! real registry never gives, and small helpers.
#![allow(dead_code)]

pub mod apiserver;
pub mod bench_registry;
pub mod browser;
pub mod cluster;
pub mod exporter;
pub mod fake_registry;
pub mod flood;
pub mod http;
pub mod objects;
pub mod policy_proxy;
pub mod prometheus;
pub mod proxy;
pub mod rbac;
pub mod registry;
pub mod tls;
pub mod token_server;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates a fresh directory under the system temp dir.
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("kiae-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A path inside it.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes a file inside it and returns its path as a string.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> String {
        let p = self.join(name);
        std::fs::write(&p, contents).expect("write temp file");
        p.to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Polls `cond` until it holds or `timeout` passes; panics with `what` then.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// Runs a program and panics with its output when it fails.
pub fn run(program: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (is it installed? see .ci/run)"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Decodes a query-string value (`%XX` escapes, `+` as space).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push(h * 16 + l);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// SHA-256 digest in `sha256:hex` form.
pub fn sha256(data: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    format!("sha256:{}", hex(d.as_ref()))
}

/// Lower-case hex.
pub fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// Unpadded base64url, as JWTs use.
pub fn b64url(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// The exporter binary built for this test run, or `KIAE_EXPORTER_BIN`
/// (the benchmark measures the static binary the container ships with it).
pub fn exporter_bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("KIAE_EXPORTER_BIN")
            .ok()
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_k8s-image-availability-exporter").to_string())
    })
}

/// The outcome of `k8s-image-availability-exporter check --output json ...`.
pub struct CheckRun {
    /// Exit status.
    pub code: i32,
    /// One parsed JSON object per image.
    pub rows: Vec<serde_json::Value>,
    /// Everything printed, for secret-leak assertions.
    pub stdout: String,
    /// The log.
    pub stderr: String,
}

impl CheckRun {
    /// The row for `image`.
    pub fn row(&self, image: &str) -> &serde_json::Value {
        self.rows
            .iter()
            .find(|r| r["image"] == image)
            .unwrap_or_else(|| {
                panic!(
                    "no row for {image} in {:#?}\nstderr: {}",
                    self.rows, self.stderr
                )
            })
    }

    /// Asserts the status of `image`, showing its row and the log otherwise.
    pub fn assert_status(&self, image: &str, want: &str) {
        assert_eq!(
            self.status(image),
            want,
            "{image}: {:?}\n{}",
            self.row(image),
            self.stderr
        );
    }

    /// The status of `image`.
    pub fn status(&self, image: &str) -> &str {
        self.row(image)["status"].as_str().expect("status")
    }
}

/// Runs the `check` command with JSON output.
pub fn check(args: &[&str]) -> CheckRun {
    let mut full = vec!["--output", "json", "--log-level", "debug"];
    full.extend_from_slice(args);
    let out = Command::new(exporter_bin())
        .args(&full)
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .output()
        .expect("run exporter");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let rows = stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}\nstderr: {stderr}"))
        })
        .collect();
    CheckRun {
        code: out.status.code().unwrap_or(-1),
        rows,
        stdout,
        stderr,
    }
}

/// An HTTP client for our own local servers: no proxy, no status errors.
pub fn local_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent()
}

/// Percent-encodes everything but unreserved characters, for query values.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A benchmark's flags (`cargo bench --bench NAME -- FLAGS`): prints the
/// help or the error and exits on either.
pub fn bench_opts<T: argh::FromArgs>(name: &str) -> T {
    let args: Vec<String> = std::env::args().collect();
    let rest: Vec<&str> = args[1..].iter().map(String::as_str).collect();
    match T::from_args(&[name], &rest) {
        Ok(o) => o,
        Err(e) => {
            println!("{}", e.output);
            std::process::exit(if e.status.is_ok() { 0 } else { 2 });
        }
    }
}

/// A `kB` field of /proc/PID/status (`VmRSS:`, `VmHWM:`), 0 if unreadable.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
