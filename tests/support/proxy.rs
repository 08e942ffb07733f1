//! A forward HTTP proxy on 127.0.0.1, as corporate clusters put in front of
//! registries and apiservers: `CONNECT host:port` tunnels and absolute-form
//! plain-http requests. Every name resolves to 127.0.0.1 at the proxy (so
//! tests can use names that only the proxy knows, and nothing leaves the
//! machine), and the proxy records what it was asked for.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// A running proxy.
pub struct Proxy {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    /// Starts the proxy on a free port.
    pub fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let l = log.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let l = l.clone();
                std::thread::spawn(move || serve(conn, &l));
            }
        });
        Proxy { url, log }
    }

    /// `METHOD TARGET` of every request so far.
    pub fn seen(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

/// `host:port` -> `127.0.0.1:port`.
fn local(target: &str) -> String {
    let port = target.rsplit_once(':').map_or("80", |(_, p)| p);
    format!("127.0.0.1:{port}")
}

fn serve(client: TcpStream, log: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let parts: Vec<&str> = line.split_whitespace().collect();
    let [method, target, _version] = parts[..] else {
        return;
    };
    log.lock().unwrap().push(format!("{method} {target}"));
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        headers.push(h);
    }
    let mut client = client;
    if method == "CONNECT" {
        let Ok(upstream) = TcpStream::connect(local(target)) else {
            let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
            return;
        };
        let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
        pipe(reader, client, upstream);
        return;
    }
    // Absolute form: http://host:port/path -> origin form to 127.0.0.1:port.
    let Some(rest) = target.strip_prefix("http://") else {
        let _ = client.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        return;
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let Ok(mut upstream) = TcpStream::connect(local(authority)) else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
        return;
    };
    let path = if path.is_empty() { "/" } else { path };
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    for h in headers {
        let name = h.split(':').next().unwrap_or("").to_ascii_lowercase();
        if name != "connection" && name != "proxy-connection" {
            head.push_str(&h);
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    let _ = upstream.write_all(head.as_bytes());
    let mut answer = upstream;
    let _ = std::io::copy(&mut answer, &mut client);
    let _ = client.shutdown(Shutdown::Both);
}

/// Copies both ways until either side closes.
fn pipe(mut from_client: BufReader<TcpStream>, mut client: TcpStream, upstream: TcpStream) {
    let mut up_write = upstream.try_clone().unwrap();
    let mut up_read = upstream;
    let t = std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_client, &mut up_write);
        let _ = up_write.shutdown(Shutdown::Write);
    });
    let mut buf = [0u8; 16 << 10];
    loop {
        match up_read.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if client.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = t.join();
}
