//! The HTTP side: `/metrics` for Prometheus (gzip when asked), `/healthz`
//! (the scheduler and every watch loop are alive), `/readyz` (every watch
//! has delivered its first list) and a short index page.

use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::inventory::{Inventory, SyncProgress};
use crate::kube::watch::{Stream, StreamState};
use crate::metrics::Metrics;
use crate::scheduler::{Heartbeat, Results};

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
}

/// Binds `addr`; Go's `:8080` means every interface.
pub fn bind(addr: &str) -> Result<tiny_http::Server, String> {
    let candidates: Vec<String> = match addr.strip_prefix(':') {
        Some(port) => vec![format!("[::]:{port}"), format!("0.0.0.0:{port}")],
        None => vec![addr.to_string()],
    };
    let mut last = String::new();
    for c in &candidates {
        match tiny_http::Server::http(c.as_str()) {
            Ok(s) => return Ok(s),
            Err(e) => last = format!("--bind-address {addr}: cannot listen on {c}: {e}"),
        }
    }
    Err(last)
}

/// Serves requests on `threads` threads until the server is unblocked.
pub fn spawn(server: Arc<tiny_http::Server>, state: Arc<State>, threads: usize) {
    for i in 0..threads {
        let (server, state) = (server.clone(), state.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("http-{i}"))
            .spawn(move || {
                for req in server.incoming_requests() {
                    handle(&state, req);
                }
            });
        if let Err(e) = spawned {
            log::error!("cannot start HTTP thread {i}: {e}");
        }
    }
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header")
}

fn text(status: u16, body: String) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    tiny_http::Response::from_data(body.into_bytes())
        .with_status_code(status)
        .with_header(header("Content-Type", "text/plain; charset=utf-8"))
}

fn handle(state: &State, req: tiny_http::Request) {
    let path = req.url().split('?').next().unwrap_or("/").to_string();
    if !matches!(
        req.method(),
        tiny_http::Method::Get | tiny_http::Method::Head
    ) {
        let _ = req.respond(text(405, "only GET\n".into()));
        return;
    }
    let resp = match path.as_str() {
        "/metrics" => {
            let gzip = req.headers().iter().any(|h| {
                h.field.equiv("Accept-Encoding")
                    && h.value
                        .as_str()
                        .split(',')
                        .any(|e| e.trim().starts_with("gzip"))
            });
            metrics(state, gzip)
        }
        "/healthz" => healthz(state),
        "/readyz" => readyz(state),
        "/" => tiny_http::Response::from_data(INDEX.as_bytes().to_vec())
            .with_header(header("Content-Type", "text/html; charset=utf-8")),
        _ => text(404, "not found\n".into()),
    };
    let _ = req.respond(resp);
}

const INDEX: &str = "<html><head><title>k8s-image-availability-exporter</title></head><body>\
<h1>k8s-image-availability-exporter</h1><ul>\
<li><a href=\"/metrics\">/metrics</a></li><li><a href=\"/healthz\">/healthz</a></li><li><a href=\"/readyz\">/readyz</a></li>\
</ul></body></html>\n";

fn metrics(state: &State, gzip: bool) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let started = Instant::now();
    let (body, encoding) = if gzip {
        let mut enc =
            flate2::write::GzEncoder::new(Vec::with_capacity(1 << 20), flate2::Compression::fast());
        let r = state
            .metrics
            .render(&state.inventory, &state.results, &state.streams, &mut enc);
        (r.and_then(|_| enc.finish()), Some("gzip"))
    } else {
        let mut buf = Vec::with_capacity(1 << 20);
        let r = state
            .metrics
            .render(&state.inventory, &state.results, &state.streams, &mut buf);
        (r.map(|_| buf), None)
    };
    match body {
        Ok(body) => {
            log::debug!(
                "rendered /metrics ({} bytes{}) in {:.1?}",
                body.len(),
                if gzip { ", gzip" } else { "" },
                started.elapsed()
            );
            let mut resp = tiny_http::Response::from_data(body).with_header(header(
                "Content-Type",
                "text/plain; version=0.0.4; charset=utf-8",
            ));
            if let Some(e) = encoding {
                resp.add_header(header("Content-Encoding", e));
            }
            resp
        }
        Err(e) => text(500, format!("rendering metrics failed: {e}\n")),
    }
}

fn healthz(state: &State) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let mut problems = Vec::new();
    if !state.heartbeat.alive(SCHEDULER_STALL) {
        problems.push("the scheduler has stopped".to_string());
    }
    for (s, st) in &state.streams {
        if !st.alive.load(Ordering::SeqCst) {
            problems.push(format!("the watch of {} has stopped", s.describe()));
        }
    }
    if problems.is_empty() {
        text(200, "ok\n".into())
    } else {
        text(503, problems.join("\n") + "\n")
    }
}

fn readyz(state: &State) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let waiting: Vec<String> = state
        .streams
        .iter()
        .filter(|(_, st)| !st.synced.load(Ordering::SeqCst))
        .map(|(s, _)| s.describe())
        .collect();
    if waiting.is_empty() {
        text(200, "ok\n".into())
    } else {
        let list: String = waiting.iter().map(|w| format!("  {w}\n")).collect();
        text(503, format!("waiting for the first list of:\n{list}"))
    }
}
