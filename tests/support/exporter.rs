//! Runs the real exporter binary and reads its `/metrics`, `/healthz`,
//! `/readyz` and log.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{exporter_bin, free_port, TempDir};

/// One sample of the text exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

/// Parses the text exposition format (what Prometheus reads).
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (name_labels, value) = line.rsplit_once(' ').expect("sample line");
        let (name, labels) = match name_labels.split_once('{') {
            Some((n, rest)) => (
                n,
                parse_labels(rest.strip_suffix('}').expect("closing brace")),
            ),
            None => (name_labels, BTreeMap::new()),
        };
        out.push(Sample {
            name: name.to_string(),
            labels,
            value: value.parse().unwrap_or(f64::NAN),
        });
    }
    out
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        assert_eq!(chars.next(), Some('"'));
        let mut v = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => v.push('\n'),
                    Some(o) => v.push(o),
                    None => {}
                },
                '"' => break,
                c => v.push(c),
            }
        }
        out.insert(key.trim_start_matches(',').to_string(), v);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    out
}

/// The exporter, running.
pub struct Exporter {
    child: Child,
    /// Where it listens.
    pub addr: String,
    dir: TempDir,
    agent: ureq::Agent,
    scheme: &'static str,
}

/// How long a request took, and the size of its answer.
pub type Timed = (Duration, usize);

/// Flags that make tests fast: short periods, short watch timeouts.
pub const FAST: &[&str] = &[
    "--check-period",
    "200ms",
    "--recheck-within",
    "2s",
    "--watch-timeout",
    "5s",
    "--log-level",
    "debug",
];

impl Exporter {
    /// Starts the binary with `--kubeconfig` and `args`; waits until it listens.
    pub fn start(kubeconfig: &str, args: &[&str]) -> Exporter {
        Exporter::start_with(kubeconfig, args, "http", super::local_agent())
    }

    /// As [`Exporter::start`], asking it by `scheme` with `agent` (an
    /// HTTPS agent with the CA and client certificate the web config wants).
    pub fn start_with(
        kubeconfig: &str,
        args: &[&str],
        scheme: &'static str,
        agent: ureq::Agent,
    ) -> Exporter {
        let dir = TempDir::new("exporter");
        let addr = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.join("exporter.log")).unwrap();
        let child = Command::new(exporter_bin())
            .args(["--kubeconfig", kubeconfig, "--bind-address", &addr])
            .args(args)
            .env_remove("HTTPS_PROXY")
            .env_remove("HTTP_PROXY")
            .env_remove("ALL_PROXY")
            .env_remove("https_proxy")
            .env_remove("http_proxy")
            .env_remove("all_proxy")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start exporter");
        let e = Exporter {
            child,
            addr,
            dir,
            agent,
            scheme,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while e.try_get("/healthz").is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "the exporter does not answer /healthz; log:\n{}",
                e.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        e
    }

    fn try_get(&self, path: &str) -> Option<(u16, String)> {
        let mut r = self
            .agent
            .get(format!("{}://{}{path}", self.scheme, self.addr))
            .header("Accept-Encoding", "identity")
            .call()
            .ok()?;
        Some((
            r.status().as_u16(),
            r.body_mut()
                .with_config()
                .limit(1 << 30)
                .read_to_string()
                .expect("read the answer"),
        ))
    }

    /// `127.0.0.1:PORT` it listens on.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// GET a path: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        self.try_get(path)
            .unwrap_or_else(|| panic!("GET {path} failed; log:\n{}", self.log()))
    }

    /// The agent, for custom requests.
    pub fn agent(&self) -> &ureq::Agent {
        &self.agent
    }

    /// All samples of `/metrics`.
    pub fn metrics(&self) -> Vec<Sample> {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200);
        parse_metrics(&body)
    }

    /// Which of the eight gauges is 1 for this container, if it has series.
    pub fn status_of(&self, namespace: &str, name: &str, container: &str) -> Option<String> {
        status_in(&self.metrics(), namespace, name, container)
    }

    /// Waits until the container's status is `want`; returns how long that took.
    pub fn wait_status(
        &self,
        namespace: &str,
        name: &str,
        container: &str,
        want: &str,
    ) -> Duration {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(30);
        let mut last = None;
        while Instant::now() < deadline {
            last = self.status_of(namespace, name, container);
            if last.as_deref() == Some(want) {
                return started.elapsed();
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!(
            "{namespace}/{name} {container}: wanted {want}, last {last:?}; log:\n{}",
            self.log()
        );
    }

    /// The `/status.json` row of the workload called `name`.
    pub fn status_row(&self, name: &str) -> serde_json::Value {
        let (_, page) = self.get("/status.json");
        let page: serde_json::Value = serde_json::from_str(&page).unwrap();
        page["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {page}"))
            .clone()
    }

    /// The exporter's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("exporter.log")).unwrap_or_default()
    }

    /// `n` scrapes of `/metrics` in each encoding, plain then gzip: how long
    /// each took and its size, fastest first.
    pub fn time_scrapes(&self, n: usize) -> (Vec<Timed>, Vec<Timed>) {
        let (mut plain, mut gzip) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let t = Instant::now();
            let (_, body) = self.get("/metrics");
            plain.push((t.elapsed(), body.len()));
            let t = Instant::now();
            let raw = self.get_gzip("/metrics");
            gzip.push((t.elapsed(), raw.len()));
        }
        plain.sort();
        gzip.sort();
        (plain, gzip)
    }

    /// Sends SIGTERM; returns the exit code and how long exiting took.
    pub fn terminate(&mut self) -> (Option<i32>, Duration) {
        let started = Instant::now();
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let deadline = started + Duration::from_secs(10);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return (s.code(), started.elapsed());
            }
            assert!(
                Instant::now() < deadline,
                "the exporter did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// GET with `Accept-Encoding: gzip` over a raw connection (ureq would
    /// decompress); returns the body as sent.
    pub fn get_gzip(&self, path: &str) -> Vec<u8> {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect(&self.addr).unwrap();
        write!(
            conn,
            "GET {path} HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = Vec::new();
        conn.read_to_end(&mut raw).unwrap();
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("response head");
        let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
        assert!(head.contains("content-encoding: gzip"), "{head}");
        let body = &raw[split + 4..];
        if head.contains("transfer-encoding: chunked") {
            dechunk(body)
        } else {
            body.to_vec()
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the process in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

/// Decodes a chunked transfer-encoded body.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .expect("hex chunk size");
        body = &body[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

/// Which of the eight gauges is 1 for this container in `samples`.
pub fn status_in(
    samples: &[Sample],
    namespace: &str,
    name: &str,
    container: &str,
) -> Option<String> {
    const PREFIX: &str = "k8s_image_availability_exporter_";
    let classes = [
        "available",
        "absent",
        "bad_image_format",
        "registry_unavailable",
        "authentication_failure",
        "authorization_failure",
        "unknown_error",
        "platform_unavailable",
    ];
    let mine: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.labels.get("namespace").map(String::as_str) == Some(namespace)
                && s.labels.get("name").map(String::as_str) == Some(name)
                && s.labels.get("container").map(String::as_str) == Some(container)
        })
        .filter(|s| {
            s.name
                .strip_prefix(PREFIX)
                .is_some_and(|c| classes.contains(&c))
        })
        .collect();
    if mine.is_empty() {
        return None;
    }
    // All eight classes, or with --one-series-per-container only the one that is 1.
    assert!(
        mine.len() == 8 || mine.len() == 1,
        "eight class series per container, or one: {mine:#?}"
    );
    let ones: Vec<&&Sample> = mine.iter().filter(|s| s.value == 1.0).collect();
    assert_eq!(ones.len(), 1, "exactly one class is 1: {mine:#?}");
    Some(ones[0].name.trim_start_matches(PREFIX).to_string())
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
