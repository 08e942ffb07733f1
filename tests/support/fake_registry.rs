//! A scripted HTTP server for registry answers that Docker Distribution never
//! gives (429, 5xx, redirects to other hosts, hostile token realms). Each
//! test states the answers; the server records what it was sent.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub url: String,
    /// The Authorization header, if any.
    pub authorization: Option<String>,
    /// The Accept header, if any.
    pub accept: Option<String>,
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: String,
}

impl Reply {
    /// An answer with a status and no body.
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: String::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: &str) -> Reply {
        self.body = body.to_string();
        self
    }
}

/// A running scripted server on 127.0.0.1.
pub struct FakeRegistry {
    /// `127.0.0.1:PORT`.
    pub host: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl FakeRegistry {
    /// Starts a server answering each request with `script(request, index)`.
    pub fn start(script: impl Fn(&Seen, usize) -> Reply + Send + 'static) -> FakeRegistry {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind"));
        let host = format!(
            "127.0.0.1:{}",
            server.server_addr().to_ip().expect("ip").port()
        );
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, log) = (server.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            for req in s.incoming_requests() {
                let header = |n: &str| {
                    req.headers()
                        .iter()
                        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(n))
                        .map(|h| h.value.as_str().to_string())
                };
                let this = Seen {
                    method: req.method().as_str().to_string(),
                    url: req.url().to_string(),
                    authorization: header("Authorization"),
                    accept: header("Accept"),
                };
                let n = {
                    let mut l = log.lock().unwrap();
                    l.push(this.clone());
                    l.len() - 1
                };
                let reply = script(&this, n);
                let mut resp =
                    tiny_http::Response::from_string(reply.body).with_status_code(reply.status);
                for (k, v) in reply.headers {
                    resp.add_header(
                        tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap(),
                    );
                }
                let _ = req.respond(resp);
            }
        });
        FakeRegistry {
            host,
            seen,
            server,
            thread: Some(thread),
        }
    }

    /// Everything received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
