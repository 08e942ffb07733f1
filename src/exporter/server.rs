//! The HTTP side: `/metrics` for Prometheus (gzip when asked), `/healthz`
//! (the scheduler and every watch loop are alive), `/readyz` (every watch
//! has delivered its first list) and the status page, answered behind the
//! bounded front (`front`).

use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::exporter::auth::{Gate, Refusal};
use crate::exporter::front::{Front, Service};
use crate::exporter::metrics::Metrics;
use crate::exporter::request::{Limits, Request};
use crate::exporter::scheduler::{Heartbeat, Results};
use crate::exporter::tls::TlsServer;
use crate::inventory::{Inventory, SyncProgress};
use crate::kube::watch::{Stream, StreamState};

/// How long the scheduler may go without looping before `/healthz` fails.
const SCHEDULER_STALL: Duration = Duration::from_secs(30);

/// What the handlers read.
pub struct State {
    /// Fixed metrics and the renderer.
    pub metrics: Arc<Metrics>,
    /// The inventory.
    pub inventory: Arc<RwLock<Inventory>>,
    /// Verdicts.
    pub results: Arc<Results>,
    /// Watch loops.
    pub streams: Vec<(Stream, Arc<StreamState>)>,
    /// Initial sync.
    pub progress: Arc<SyncProgress>,
    /// Scheduler liveness.
    pub heartbeat: Arc<Heartbeat>,
    /// How long a watch stream may fail without progress before `/healthz`
    /// says so (the watch timeout: a healthy stream ends a watch within it).
    pub stream_stall: Duration,
    /// Basic auth, rate limit and headers of the web config.
    pub gate: Gate,
    /// Lines `/readyz` always adds: what the flags leave unread.
    pub notes: Vec<String>,
}

/// Binds `addr`; Go's `:8080` means every interface.
pub fn bind(addr: &str) -> Result<std::net::TcpListener, String> {
    let candidates: Vec<String> = match addr.strip_prefix(':') {
        Some(port) => vec![format!("[::]:{port}"), format!("0.0.0.0:{port}")],
        None => vec![addr.to_string()],
    };
    let mut last = String::new();
    for c in &candidates {
        let listener = match std::net::TcpListener::bind(c.as_str()) {
            Ok(l) => l,
            Err(e) => {
                last = format!("--bind-address {addr}: cannot listen on {c}: {e}");
                continue;
            }
        };
        no_delay(&listener);
        return Ok(listener);
    }
    Err(last)
}

/// Sets TCP_NODELAY on the listening socket; Linux hands it down to every
/// accepted connection. tiny_http writes the head of an answer, then its
/// body: without this, Nagle holds a body smaller than a segment (on
/// loopback, 64 KiB) until the client's delayed ACK, 40 ms later.
fn no_delay(listener: &std::net::TcpListener) {
    use std::os::fd::AsRawFd;
    extern "C" {
        fn setsockopt(fd: i32, level: i32, name: i32, value: *const i32, len: u32) -> i32;
    }
    const IPPROTO_TCP: i32 = 6;
    const TCP_NODELAY: i32 = 1;
    let one: i32 = 1;
    // SAFETY: a valid socket descriptor and a pointer to a live i32 of the size given.
    let rc = unsafe {
        setsockopt(
            listener.as_raw_fd(),
            IPPROTO_TCP,
            TCP_NODELAY,
            &one,
            std::mem::size_of::<i32>() as u32,
        )
    };
    if rc != 0 {
        log::debug!(
            "TCP_NODELAY on the listener: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Serves requests behind the bounded front (see [`crate::exporter::front`])
/// until it is stopped.
pub fn spawn(
    listener: std::net::TcpListener,
    state: Arc<State>,
    limits: Limits,
    tls: Option<Arc<TlsServer>>,
) -> std::io::Result<Front> {
    Front::start(listener, limits, state, tls)
}

impl Service for State {
    fn answer(&self, request: &Request) -> Reply {
        let mut reply = match self.gate.admit(request) {
            Ok(()) => handle(self, request),
            // Credentials are never logged, right or wrong.
            Err(Refusal::Unauthorized) => text(401, "Unauthorized\n".into())
                .with_header(header(
                    "WWW-Authenticate",
                    "Basic realm=\"k8s-image-availability-exporter\", charset=\"UTF-8\"",
                ))
                .boxed(),
            Err(Refusal::TooMany) => text(429, "Too Many Requests\n".into()),
        };
        for (name, value) in self.gate.headers() {
            if let Ok(h) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
                reply.add_header(h);
            }
        }
        reply
    }

    fn answered(&self, request: &Request) {
        if request.path() == "/metrics" {
            crate::sys::malloc::trim();
        }
    }
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header")
}

/// Every handler's answer.
type Reply = tiny_http::ResponseBox;

fn text(status: u16, body: String) -> Reply {
    tiny_http::Response::from_data(body.into_bytes())
        .with_status_code(status)
        .with_header(header("Content-Type", "text/plain; charset=utf-8"))
        .boxed()
}

/// The answer to one request.
fn handle(state: &State, req: &Request) -> Reply {
    if !matches!(req.method.as_str(), "GET" | "HEAD") {
        return text(405, "only GET\n".into());
    }
    match req.path() {
        "/metrics" => {
            let gzip = req
                .header("accept-encoding")
                .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
            metrics(state, gzip)
        }
        "/healthz" => healthz(state),
        "/readyz" => readyz(state),
        path @ ("/" | "/status.json") => status(state, path, req.query()),
        _ => text(404, "not found\n".into()),
    }
}

/// The status page (`/`) or its JSON (`/status.json`).
fn status(state: &State, path: &str, query: &str) -> Reply {
    let filter = crate::exporter::status_page::Filter::from_query(query);
    let per_page = if path == "/status.json" {
        crate::exporter::status_page::JSON_PAGE_ROWS
    } else {
        crate::exporter::status_page::PAGE_ROWS
    };
    let mut report = {
        let inv = state.inventory.read().unwrap_or_else(|e| e.into_inner());
        crate::exporter::status_page::collect(
            &inv,
            &state.results,
            &state.metrics.moved_since,
            &filter,
            per_page,
        )
    };
    report.exhausted = state.metrics.exhausted_quotas();
    let (body, content_type) = if path == "/status.json" {
        (
            crate::exporter::status_page::json(&report),
            "application/json",
        )
    } else {
        (
            crate::exporter::status_page::html(&report, &filter),
            "text/html; charset=utf-8",
        )
    };
    tiny_http::Response::from_data(body.into_bytes())
        .with_header(header("Content-Type", content_type))
        // Nothing on the page comes from elsewhere, and nothing may run.
        .with_header(header(
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
        ))
        .boxed()
}

/// Streams the exposition (chunked), through gzip when asked.
fn metrics(state: &State, gzip: bool) -> Reply {
    let exposition =
        match state
            .metrics
            .exposition(&state.inventory, &state.results, &state.streams)
        {
            Ok(e) => e,
            Err(e) => return text(500, format!("rendering metrics failed: {e}\n")),
        };
    let content_type = header("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    let body: Box<dyn Read + Send> = if gzip {
        Box::new(flate2::read::GzEncoder::new(
            exposition,
            flate2::Compression::fast(),
        ))
    } else {
        Box::new(exposition)
    };
    let mut headers = vec![content_type];
    if gzip {
        headers.push(header("Content-Encoding", "gzip"));
    }
    tiny_http::Response::new(tiny_http::StatusCode(200), headers, body, None, None)
}

fn healthz(state: &State) -> Reply {
    let mut problems = Vec::new();
    if !state.heartbeat.alive(SCHEDULER_STALL) {
        problems.push("the scheduler has stopped".to_string());
    }
    for (s, st) in &state.streams {
        if !st.alive.load(Ordering::SeqCst) {
            problems.push(format!("the watch of {} has stopped", s.describe()));
        }
        // A refusal (403) is for /readyz: restarting grants no permission.
        // Anything else that keeps a stream from progress may be cured by
        // a restart (a stuck connection, stale credentials), so say so.
        if st.forbidden.load(Ordering::SeqCst) {
            continue;
        }
        if let Some((d, why)) = st.failing_for().filter(|(d, _)| *d > state.stream_stall) {
            problems.push(format!(
                "the watch of {} has made no progress for {:.0?}: {why}",
                s.describe(),
                d
            ));
        }
    }
    if problems.is_empty() {
        text(200, "ok\n".into())
    } else {
        text(503, problems.join("\n") + "\n")
    }
}

/// Ready when every stream has listed, except optional ones (Secrets,
/// ServiceAccounts, Namespaces) that were refused: checks run without them,
/// with a warning. A workload kind that cannot be listed keeps it at 503.
fn readyz(state: &State) -> Reply {
    let mut waiting = Vec::new();
    let mut warnings = Vec::new();
    for (s, st) in &state.streams {
        match crate::kube::watch::refusal(s, st) {
            Some(why) if s.resource.required() => waiting.push(why),
            Some(why) => warnings.push(format!("warning: {why}; checking without it")),
            None if !st.synced.load(Ordering::SeqCst) => {
                waiting.push(format!("waiting for the first list of {}", s.describe()))
            }
            None => {}
        }
    }
    warnings.extend(state.notes.iter().map(|n| format!("note: {n}")));
    let warnings: String = warnings.iter().map(|w| format!("{w}\n")).collect();
    if waiting.is_empty() {
        text(200, format!("ok\n{warnings}"))
    } else {
        let list: String = waiting.iter().map(|w| format!("  {w}\n")).collect();
        text(503, format!("not ready:\n{list}{warnings}"))
    }
}
