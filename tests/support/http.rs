//! A minimal HTTP/1.1 server for test registries: a thread per connection,
//! keep-alive, no request bodies. A TLS handshake on the plain port gets an
//! immediate 400, as real plain-http registries answer, so clients that try
//! https first fall back at once.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A request as received.
#[derive(Debug, Clone)]
pub struct Request {
    /// Method.
    pub method: String,
    /// Path and query.
    pub url: String,
    /// Headers with lower-case names.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The first value of a header (name in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An answer.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body (not sent for HEAD).
    pub body: String,
}

/// What a server does with each request.
pub type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

/// A running server; stops accepting when dropped.
pub struct Server {
    /// `127.0.0.1:PORT`.
    pub host: String,
    stop: Arc<AtomicBool>,
}

impl Server {
    /// Starts serving `handler` on a free port of 127.0.0.1. `on_tls` is
    /// called for every refused TLS handshake.
    pub fn start(handler: Handler, on_tls: Arc<dyn Fn() + Send + Sync>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let host = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (h, t) = (handler.clone(), on_tls.clone());
                std::thread::spawn(move || serve(conn, &*h, &*t));
            }
        });
        Server { host, stop }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.host);
    }
}

fn serve(conn: TcpStream, handler: &dyn Fn(&Request) -> Response, on_tls: &dyn Fn()) {
    let _ = conn.set_nodelay(true);
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    loop {
        match reader.fill_buf() {
            Ok([0x16, ..]) => {
                on_tls();
                let _ = out.write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                return;
            }
            Ok([]) | Err(_) => return,
            Ok(_) => {}
        }
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let url = parts.next().unwrap_or("/").to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let close = headers
            .iter()
            .any(|(k, v)| k == "connection" && v.eq_ignore_ascii_case("close"));
        let req = Request {
            method,
            url,
            headers,
        };
        let resp = handler(&req);
        let head_only = req.method == "HEAD";
        let mut text = format!(
            "HTTP/1.1 {} X\r\nContent-Length: {}\r\n",
            resp.status,
            resp.body.len()
        );
        for (k, v) in &resp.headers {
            text.push_str(&format!("{k}: {v}\r\n"));
        }
        text.push_str("\r\n");
        if !head_only {
            text.push_str(&resp.body);
        }
        if out.write_all(text.as_bytes()).is_err() || close {
            return;
        }
    }
}
