//! A fast in-process registry for throughput runs: bearer-token auth like
//! Docker Hub's (any user with the configured password), or none at all
//! (`open`: it never challenges), a configurable latency on every answer, a thread per
//! connection with keep-alive, and counters per endpoint. Tags starting with
//! `missing` are absent. Every image is an index of two single-layer builds
//! whose blobs are all there. A TLS handshake is refused at once, as real plain
//! http registries do (they answer 400), so clients fall back quickly.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;

use super::http::{Request, Response, Server};

/// Request counters.
#[derive(Debug, Default)]
pub struct Counters {
    /// HEAD/GET of manifests (any answer).
    pub manifest: AtomicU64,
    /// Token requests.
    pub token: AtomicU64,
    /// Anything else: other paths, refused TLS handshakes.
    pub other: AtomicU64,
    /// GETs of manifests by digest (the platform read and the pull path walk).
    pub platform_gets: AtomicU64,
    /// Blob requests (the pull path walk's HEADs).
    pub blob_requests: AtomicU64,
    /// Manifest paths answered 200 or 404 (checked images), with how many
    /// times each was.
    pub answered: Mutex<HashMap<String, u64>>,
}

impl Counters {
    /// (manifest, token, other) now.
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.manifest.load(Ordering::SeqCst),
            self.token.load(Ordering::SeqCst),
            self.other.load(Ordering::SeqCst),
        )
    }

    /// Distinct manifests answered so far.
    pub fn answered(&self) -> usize {
        self.answered.lock().unwrap().len()
    }

    /// Answers per manifest path so far.
    pub fn per_image(&self) -> HashMap<String, u64> {
        self.answered.lock().unwrap().clone()
    }
}

/// The running registry.
pub struct BenchRegistry {
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// Counters.
    pub counters: Arc<Counters>,
    _server: Server,
}

struct Config {
    host: Mutex<String>,
    password: String,
    open: bool,
    latency: Duration,
    expires_in: u64,
    seq: AtomicU64,
}

impl BenchRegistry {
    /// Starts serving; tokens need any user with `password`, or nothing
    /// when `open`.
    pub fn start(latency: Duration, password: &str, expires_in: u64, open: bool) -> BenchRegistry {
        let counters = Arc::new(Counters::default());
        let cfg = Arc::new(Config {
            host: Mutex::new(String::new()),
            password: password.to_string(),
            open,
            latency,
            expires_in,
            seq: AtomicU64::new(0),
        });
        let (c, c2, cf) = (counters.clone(), counters.clone(), cfg.clone());
        let server = Server::start(
            Arc::new(move |req: &Request| {
                let (status, headers, body) = answer(
                    &req.method,
                    &req.url,
                    req.header("authorization").unwrap_or(""),
                    &c,
                    &cf,
                );
                Response {
                    status,
                    headers,
                    body,
                }
            }),
            Arc::new(move || {
                c2.other.fetch_add(1, Ordering::SeqCst);
            }),
        );
        *cfg.host.lock().unwrap() = server.host.clone();
        BenchRegistry {
            host: server.host.clone(),
            counters,
            _server: server,
        }
    }
}

fn answer(
    method: &str,
    url: &str,
    auth: &str,
    c: &Counters,
    cfg: &Config,
) -> (u16, Vec<(String, String)>, String) {
    if url.starts_with("/token") {
        c.token.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(cfg.latency);
        let decoded = auth
            .strip_prefix("Basic ")
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        if decoded.split_once(':').map(|(_, p)| p) != Some(cfg.password.as_str()) {
            return (401, vec![], "{}".into());
        }
        let n = cfg.seq.fetch_add(1, Ordering::SeqCst);
        let body = format!(
            r#"{{"token":"bench-token-{n}","expires_in":{}}}"#,
            cfg.expires_in
        );
        return (
            200,
            vec![("Content-Type".into(), "application/json".into())],
            body,
        );
    }
    // Blobs: every one is there (the pull path walk asks with HEAD).
    if url.starts_with("/v2/") && url.contains("/blobs/sha256:") {
        c.blob_requests.fetch_add(1, Ordering::SeqCst);
        if !cfg.open && !auth.starts_with("Bearer bench-token-") {
            return (401, vec![], String::new());
        }
        std::thread::sleep(cfg.latency);
        return (200, vec![], String::new());
    }
    // Every image is an index of amd64 and arm64, read by digest; its
    // entries (digests 1 and 2) are single manifests of one layer.
    if method == "GET" && url.starts_with("/v2/") && url.contains("/manifests/sha256:") {
        c.platform_gets.fetch_add(1, Ordering::SeqCst);
        if !cfg.open && !auth.starts_with("Bearer bench-token-") {
            return (401, vec![], String::new());
        }
        std::thread::sleep(cfg.latency);
        let entry_digest = |n: u8| format!("sha256:{n:064x}");
        if url.ends_with(&entry_digest(1)) || url.ends_with(&entry_digest(2)) {
            let body = format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{:064x}","size":300}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:{:064x}","size":3000000}}]}}"#,
                10, 11
            );
            return (
                200,
                vec![(
                    "Content-Type".into(),
                    "application/vnd.oci.image.manifest.v1+json".into(),
                )],
                body,
            );
        }
        let entry = |arch: &str, n: u8| {
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{:064x}","size":500,"platform":{{"architecture":"{arch}","os":"linux"}}}}"#,
                n
            )
        };
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{},{}]}}"#,
            entry("amd64", 1),
            entry("arm64", 2)
        );
        return (
            200,
            vec![(
                "Content-Type".into(),
                "application/vnd.oci.image.index.v1+json".into(),
            )],
            body,
        );
    }
    if let Some(rest) = url
        .strip_prefix("/v2/")
        .filter(|r| r.contains("/manifests/") && (method == "HEAD" || method == "GET"))
    {
        c.manifest.fetch_add(1, Ordering::SeqCst);
        if !cfg.open && !auth.starts_with("Bearer bench-token-") {
            let challenge = format!(
                r#"Bearer realm="http://{}/token",service="bench""#,
                cfg.host.lock().unwrap()
            );
            return (
                401,
                vec![("WWW-Authenticate".into(), challenge)],
                String::new(),
            );
        }
        std::thread::sleep(cfg.latency);
        *c.answered
            .lock()
            .unwrap()
            .entry(rest.to_string())
            .or_default() += 1;
        let tag = rest.rsplit('/').next().unwrap_or("");
        if tag.starts_with("missing") {
            return (404, vec![], String::new());
        }
        // A distinct digest per image, as content addressing gives.
        let digest = super::sha256(rest.as_bytes());
        return (
            200,
            vec![("Docker-Content-Digest".into(), digest)],
            String::new(),
        );
    }
    c.other.fetch_add(1, Ordering::SeqCst);
    (404, vec![], String::new())
}
