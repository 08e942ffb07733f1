//! A request as the HTTP front reads it: the head (request line and
//! headers) parsed from the bytes a connection sent, within the front's
//! limits, and those limits. Outside input: each rule that refuses a head
//! says which status it gets.

use std::time::Duration;

/// The front's limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections held at once, waiting for a request or being answered.
    pub max_connections: usize,
    /// Time to send a whole request head, from the connection's start.
    pub head_timeout: Duration,
    /// Time to send a request body once its head is in.
    pub body_timeout: Duration,
    /// Time a keep-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Time to write one answer.
    pub write_timeout: Duration,
    /// Largest request head (request line and headers).
    pub max_head: usize,
    /// Longest request target.
    pub max_url: usize,
    /// Largest request body (we serve GET and HEAD: bodies are refused
    /// past this, and never read into a handler).
    pub max_body: usize,
    /// Handler threads.
    pub handlers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: default_max_connections(),
            head_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            max_head: 16 * 1024,
            max_url: 8 * 1024,
            max_body: 64 * 1024,
            handlers: 4,
        }
    }
}

/// 16,384 connections, or fewer when the process may not open that many
/// files (leaving 256 for the watches, registries and files).
fn default_max_connections() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|n| n.parse::<usize>().ok())
        })
        .unwrap_or(1024);
    soft.saturating_sub(256).clamp(64, 16_384)
}

/// A complete request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// The request target, path and query.
    pub url: String,
    /// HTTP/major.minor.
    pub version: (u8, u8),
    /// Headers (lower-case names) in order.
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

    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.url.split('?').next().unwrap_or("/")
    }

    /// The query, without `?`.
    pub fn query(&self) -> &str {
        self.url.split_once('?').map_or("", |(_, q)| q)
    }

    /// Whether the client wants the connection kept open (HTTP/1.1 unless
    /// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`).
    pub fn keep_alive(&self) -> bool {
        let says = |token: &str| {
            self.headers.iter().any(|(k, v)| {
                k == "connection" && v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))
            })
        };
        if self.version >= (1, 1) {
            !says("close")
        } else {
            says("keep-alive")
        }
    }
}

/// What a buffer holds of a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not all of its head yet.
    Incomplete,
    /// A head of `head` bytes, and a body of `body` bytes to follow it.
    Head {
        /// The request.
        request: Request,
        /// Bytes of the head, its blank line included.
        head: usize,
        /// `Content-Length`.
        body: usize,
    },
    /// A request that is refused whole: status and why.
    Refused(u16, &'static str),
}

/// Reads a request head from the start of `buf`, within `limits`.
pub fn parse(buf: &[u8], limits: &Limits) -> Parsed {
    let Some(end) = find_head_end(buf) else {
        if buf.len() >= limits.max_head {
            return refused_long(buf, limits);
        }
        return Parsed::Incomplete;
    };
    if end > limits.max_head {
        return refused_long(buf, limits);
    }
    let Ok(text) = std::str::from_utf8(&buf[..end]) else {
        return Parsed::Refused(400, "request head is not text");
    };
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(url), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Parsed::Refused(400, "malformed request line");
    };
    if url.len() > limits.max_url {
        return Parsed::Refused(414, "URI too long");
    }
    let version = match version {
        "HTTP/1.1" => (1, 1),
        "HTTP/1.0" => (1, 0),
        _ => return Parsed::Refused(505, "HTTP version not supported"),
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) || url.is_empty() {
        return Parsed::Refused(400, "malformed request line");
    }
    let mut headers = Vec::new();
    for h in lines.take_while(|l| !l.is_empty()) {
        let Some((name, value)) = h.split_once(':') else {
            return Parsed::Refused(400, "malformed header");
        };
        // No whitespace before the colon, and no obsolete line folding
        // (RFC 9112 5.1, 5.2): both have smuggled requests past proxies.
        if name.is_empty() || !name.bytes().all(is_token_char) {
            return Parsed::Refused(400, "malformed header");
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let request = Request {
        method: method.to_string(),
        url: url.to_string(),
        version,
        headers,
    };
    if request.header("transfer-encoding").is_some() {
        return Parsed::Refused(501, "request bodies are not served");
    }
    let lengths: Vec<&str> = request
        .headers
        .iter()
        .filter(|(k, _)| k == "content-length")
        .map(|(_, v)| v.as_str())
        .collect();
    let body = match lengths.as_slice() {
        [] => 0,
        [one] if !one.is_empty() && one.bytes().all(|b| b.is_ascii_digit()) => {
            match one.parse::<usize>() {
                Ok(n) if n <= limits.max_body => n,
                _ => return Parsed::Refused(413, "request body too large"),
            }
        }
        _ => return Parsed::Refused(400, "malformed Content-Length"),
    };
    Parsed::Head {
        request,
        head: end,
        body,
    }
}

/// A character of an RFC 9110 token (header names).
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A head that passes its limit: 414 when the request line alone does.
fn refused_long(buf: &[u8], limits: &Limits) -> Parsed {
    let line_end = buf.windows(2).position(|w| w == b"\r\n");
    if line_end.is_none_or(|e| e > limits.max_url) {
        Parsed::Refused(414, "URI too long")
    } else {
        Parsed::Refused(431, "request header fields too large")
    }
}

/// The end of the head (after its blank line), if it is all there.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_head: 256,
            max_url: 64,
            max_body: 16,
            ..Limits::default()
        }
    }

    fn head(text: &str) -> Parsed {
        parse(text.as_bytes(), &limits())
    }

    #[test]
    fn heads() {
        assert_eq!(
            head("GET /metrics HTTP/1.1\r\nHost: x\r\n"),
            Parsed::Incomplete
        );
        let Parsed::Head {
            request,
            head: n,
            body,
        } = head("GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\nGET")
        else {
            panic!()
        };
        assert_eq!((n, body), (61, 0));
        assert_eq!(request.path(), "/metrics");
        assert_eq!(request.query(), "x=1");
        assert_eq!(request.header("accept-encoding"), Some("gzip"));
        assert!(request.keep_alive());
        let Parsed::Head { request, .. } = head("GET / HTTP/1.0\r\n\r\n") else {
            panic!()
        };
        assert!(!request.keep_alive());
        let Parsed::Head { request, .. } = head("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n")
        else {
            panic!()
        };
        assert!(!request.keep_alive());
        let Parsed::Head { body, .. } = head("GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n") else {
            panic!()
        };
        assert_eq!(body, 5);
    }

    #[test]
    fn refusals() {
        let status = |t: &str| match head(t) {
            Parsed::Refused(s, _) => s,
            other => panic!("{t:?}: {other:?}"),
        };
        assert_eq!(
            status(&format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(100))),
            414
        );
        assert_eq!(status(&format!("GET /{}", "a".repeat(300))), 414);
        assert_eq!(
            status(&format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(300))),
            431
        );
        assert_eq!(status("GET / HTTP/1.1\r\nContent-Length: 17\r\n\r\n"), 413);
        assert_eq!(
            status("GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            400
        );
        assert_eq!(status("GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"), 400);
        assert_eq!(
            status("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            501
        );
        assert_eq!(status("GET / HTTP/2.0\r\n\r\n"), 505);
        assert_eq!(status("GET /\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nBad Header: x\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\n folded\r\n\r\n"), 400);
        assert_eq!(status("get / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\n\u{ff}: x\r\n\r\n"), 400);
    }
}
