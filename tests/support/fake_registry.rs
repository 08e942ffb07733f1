//! A scripted HTTP server for registry answers that Docker Distribution never
//! gives (429, 5xx, redirects to other hosts, hostile token realms). Each
//! test states the answers; the server records what it was sent.

use std::sync::{Arc, Mutex};

use super::http::{Request, Response, Server};

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
    _server: Server,
}

impl FakeRegistry {
    /// Starts a server answering each request with `script(request, index)`.
    pub fn start(script: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> FakeRegistry {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let server = Server::start(
            Arc::new(move |req: &Request| {
                let this = Seen {
                    method: req.method.clone(),
                    url: req.url.clone(),
                    authorization: req.header("authorization").map(str::to_string),
                    accept: req.header("accept").map(str::to_string),
                };
                let n = {
                    let mut l = log.lock().unwrap();
                    l.push(this.clone());
                    l.len() - 1
                };
                let reply = script(&this, n);
                Response {
                    status: reply.status,
                    headers: reply.headers,
                    body: reply.body,
                }
            }),
            Arc::new(|| {}),
        );
        FakeRegistry {
            host: server.host.clone(),
            seen,
            _server: server,
        }
    }

    /// Everything received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}
