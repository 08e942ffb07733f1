//! One HTTP request to a registry or token server, with our own TLS roots and
//! timeouts, and errors sorted into what they mean for availability.
//! Redirects are not followed here: the checker follows them itself so it
//! can drop credentials when the host changes and count every request.

use std::fmt;
use std::io::Read;
use std::net::IpAddr;
use std::time::Duration;

use ureq::tls::{Certificate, RootCerts, TlsConfig};

/// Transport settings taken from flags.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// `--skip-registry-cert-verification`.
    pub skip_verify: bool,
    /// CA certificates (DER) from `--capath`, added to the built-in Mozilla roots.
    pub extra_roots: Vec<Vec<u8>>,
    /// Limit for DNS plus TCP connect.
    pub connect_timeout: Duration,
    /// Limit for a whole request, connect to last body byte.
    pub request_timeout: Duration,
    /// Proxies from the environment, as Go reads them.
    pub proxies: crate::registry::proxy::ProxyEnv,
}

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Plain text, only where allowed.
    Http,
    /// TLS.
    Https,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// An absolute http(s) URL, split into the parts we compare.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Url {
    /// Scheme.
    pub scheme: Scheme,
    /// `host[:port]`, IPv6 in brackets.
    pub authority: String,
    /// Path and query, starting with `/`.
    pub path_and_query: String,
}

impl Url {
    /// Parses an absolute http or https URL; userinfo is refused.
    pub fn parse(s: &str) -> Option<Url> {
        let (scheme, rest) = if let Some(r) = strip_prefix_ci(s, "https://") {
            (Scheme::Https, r)
        } else if let Some(r) = strip_prefix_ci(s, "http://") {
            (Scheme::Http, r)
        } else {
            return None;
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        if authority.is_empty()
            || authority.contains('@')
            || authority.contains(char::is_whitespace)
        {
            return None;
        }
        let mut path = rest[end..].split('#').next().unwrap_or("").to_string();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        Some(Url {
            scheme,
            authority: authority.to_ascii_lowercase(),
            path_and_query: path,
        })
    }

    /// Builds `scheme://authority/path`.
    pub fn new(scheme: Scheme, authority: &str, path_and_query: String) -> Url {
        Url {
            scheme,
            authority: authority.to_ascii_lowercase(),
            path_and_query,
        }
    }

    /// Resolves a `Location` header against this URL.
    pub fn join(&self, location: &str) -> Option<Url> {
        if let Some(u) = Url::parse(location) {
            return Some(u);
        }
        if let Some(rest) = location.strip_prefix("//") {
            return Url::parse(&format!("{}://{rest}", self.scheme.as_str()));
        }
        let path = if location.starts_with('/') {
            location.to_string()
        } else {
            let base = self.path_and_query.split('?').next().unwrap_or("/");
            let dir = &base[..base.rfind('/').map(|i| i + 1).unwrap_or(0)];
            format!("{dir}{location}")
        };
        Some(Url::new(self.scheme, &self.authority, path))
    }

    /// The host without port or IPv6 brackets.
    pub fn host(&self) -> &str {
        host_of(&self.authority)
    }

    /// The port, or the scheme's default.
    pub fn port(&self) -> u16 {
        let after_host = match self.authority.strip_prefix('[') {
            Some(rest) => rest.split_once(']').map_or("", |(_, p)| p),
            None => self.authority.split_once(':').map_or("", |(_, p)| p),
        };
        match after_host.trim_start_matches(':').parse() {
            Ok(p) => p,
            Err(_) if self.scheme == Scheme::Https => 443,
            Err(_) => 80,
        }
    }

    /// Same scheme, host and port: where credentials may follow a redirect.
    pub fn same_origin(&self, other: &Url) -> bool {
        self.scheme == other.scheme && self.authority == other.authority
    }

    /// Appends query parameters, percent-encoding their values.
    pub fn with_query(&self, params: &[(&str, &str)]) -> Url {
        let mut s = self.path_and_query.clone();
        for (k, v) in params {
            s.push(if s.contains('?') { '&' } else { '?' });
            s.push_str(k);
            s.push('=');
            s.push_str(&percent_encode(v));
        }
        Url::new(self.scheme, &self.authority, s)
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}{}",
            self.scheme.as_str(),
            self.authority,
            self.path_and_query
        )
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len()
        && s.is_char_boundary(prefix.len())
        && s[..prefix.len()].eq_ignore_ascii_case(prefix))
    .then(|| &s[prefix.len()..])
}

/// The host part of `host[:port]`, without IPv6 brackets.
pub fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority.split(':').next().unwrap_or(authority)
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether an address is one a token realm must not point to unless it is
/// the registry itself: loopback, link-local (cloud metadata lives there),
/// private ranges and the unspecified address.
pub fn is_internal_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_link_local()
                || v4.is_private()
                || v4.is_unspecified()
                || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10, carrier-grade NAT
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal_ip(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xfe00) == 0xfc00
        }
    }
}

/// A request that got no HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// The host name did not resolve.
    Dns(String),
    /// TCP connect failed (refused, unreachable).
    Connect(String),
    /// TLS handshake or certificate verification failed.
    Tls(String),
    /// A connect or request timeout fired.
    Timeout(String),
    /// The connection broke mid-request; worth one more try.
    Reset(String),
    /// Anything else, such as a malformed HTTP answer.
    Other(String),
}

impl TransportError {
    /// Whether retrying the same request may help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, TransportError::Reset(_))
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::Dns(m) => write!(f, "DNS lookup failed: {m}"),
            TransportError::Connect(m) => write!(f, "connection failed: {m}"),
            TransportError::Tls(m) => write!(f, "TLS error: {m}"),
            TransportError::Timeout(m) => write!(f, "timed out: {m}"),
            TransportError::Reset(m) => write!(f, "connection broken: {m}"),
            TransportError::Other(m) => write!(f, "{m}"),
        }
    }
}

fn classify(e: ureq::Error) -> TransportError {
    use std::io::ErrorKind as K;
    match e {
        ureq::Error::HostNotFound => TransportError::Dns("host not found".into()),
        ureq::Error::Timeout(t) => TransportError::Timeout(t.to_string()),
        // The system resolver's failures arrive as uncategorised I/O errors.
        ureq::Error::Io(io) if io.to_string().contains("lookup address") => {
            TransportError::Dns(io.to_string())
        }
        ureq::Error::Io(io) => match io.kind() {
            K::ConnectionRefused
            | K::AddrNotAvailable
            | K::NetworkUnreachable
            | K::HostUnreachable => TransportError::Connect(io.to_string()),
            K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
                TransportError::Reset(io.to_string())
            }
            K::TimedOut | K::WouldBlock => TransportError::Timeout(io.to_string()),
            K::InvalidData => TransportError::Tls(io.to_string()),
            _ => TransportError::Connect(io.to_string()),
        },
        ureq::Error::ConnectionFailed => {
            TransportError::Connect("no connection could be made".into())
        }
        e @ (ureq::Error::Tls(_)
        | ureq::Error::Rustls(_)
        | ureq::Error::Pem(_)
        | ureq::Error::TlsRequired) => TransportError::Tls(e.to_string()),
        e @ ureq::Error::Protocol(_) => TransportError::Other(format!("bad HTTP answer: {e}")),
        e => TransportError::Other(e.to_string()),
    }
}

/// The parts of an HTTP answer the checker looks at.
#[derive(Debug, Clone, Default)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header (lower-case name, value) pairs.
    pub headers: Vec<(String, String)>,
    /// The body, cut at the limit the caller gave.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// HTTP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Manifest existence check.
    Head,
    /// Token requests, and the manifest fallback for broken registries.
    Get,
}

/// Per-connection buffers. ureq allocates 128 KiB each way per connection
/// by default; with a connection per watch stream and per check worker, and
/// idle ones in the pool, that was most of the exporter's heap. Our
/// requests are header-only GETs and HEADs, answers' headers are a few KiB
/// (the input buffer must hold them whole), and bodies stream through it.
pub const INPUT_BUFFER: usize = 32 * 1024;
/// See [`INPUT_BUFFER`]; request headers (with tokens of a few KiB) only.
pub const OUTPUT_BUFFER: usize = 16 * 1024;

/// Most bytes of a failed answer's body (a registry error) read.
pub const ERROR_BODY_LIMIT: u64 = 64 * 1024;

/// The registry-side HTTP client. Separate from the Kubernetes API client:
/// different roots, timeouts and proxy rules.
pub struct Transport {
    agent: ureq::Agent,
    proxies: crate::registry::proxy::ProxyEnv,
}

/// User-Agent sent to registries.
pub const USER_AGENT: &str = concat!(
    "k8s-image-availability-exporter/",
    env!("CARGO_PKG_VERSION")
);

impl Transport {
    /// Builds the client; fails only on unusable CA certificates.
    pub fn new(config: &TransportConfig) -> Result<Transport, String> {
        let roots = if config.extra_roots.is_empty() {
            RootCerts::WebPki
        } else {
            let mut certs: Vec<Certificate<'static>> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
                .iter()
                .map(|c| Certificate::from_der(c.as_ref()).to_owned())
                .collect();
            certs.extend(
                config
                    .extra_roots
                    .iter()
                    .map(|der| Certificate::from_der(der).to_owned()),
            );
            RootCerts::new_with_certs(&certs)
        };
        let tls = TlsConfig::builder()
            .root_certs(roots)
            .disable_verification(config.skip_verify)
            .build();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .input_buffer_size(INPUT_BUFFER)
            .output_buffer_size(OUTPUT_BUFFER)
            .max_response_header_size(INPUT_BUFFER)
            .tls_config(tls)
            .timeout_connect(Some(config.connect_timeout))
            .timeout_global(Some(config.request_timeout))
            .user_agent(USER_AGENT)
            .max_idle_connections_per_host(8)
            // Each request names its proxy (see crate::registry::proxy).
            .proxy(None)
            .build()
            .new_agent();
        Ok(Transport {
            agent,
            proxies: config.proxies.clone(),
        })
    }

    /// Sends one request and reads at most `body_limit` bytes of a
    /// successful GET's answer (of a failed one, its error body); an
    /// answer not read to its end closes the connection.
    pub fn send(
        &self,
        method: Method,
        url: &Url,
        headers: &[(&str, &str)],
        body_limit: u64,
    ) -> Result<Response, TransportError> {
        let uri = url.to_string();
        let mut req = match method {
            Method::Head => self.agent.head(&uri),
            Method::Get => self.agent.get(&uri),
        };
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let proxy = self
            .proxies
            .for_target(url.scheme == Scheme::Https, url.host(), url.port())
            .cloned();
        let mut resp = req.config().proxy(proxy).build().call().map_err(classify)?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let mut body = Vec::new();
        // A failed answer's body is the registry's error, which reasons
        // quote: read it whatever a success would be allowed.
        let limit = if (200..300).contains(&status) {
            body_limit
        } else {
            body_limit.max(ERROR_BODY_LIMIT)
        };
        if method == Method::Get && limit > 0 {
            resp.body_mut()
                .as_reader()
                .take(limit)
                .read_to_end(&mut body)
                .map_err(|e| classify(ureq::Error::Io(e)))?;
        }
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("HTTPS://Auth.Example.com:8443/token?x=1#frag").unwrap();
        assert_eq!(u.to_string(), "https://auth.example.com:8443/token?x=1");
        assert_eq!(u.host(), "auth.example.com");
        assert!(Url::parse("ftp://x/").is_none());
        assert!(Url::parse("https://user:pw@x/").is_none());
        assert!(Url::parse("https:///x").is_none());
        assert_eq!(Url::parse("https://x").unwrap().path_and_query, "/");
        assert_eq!(Url::parse("http://[::1]:5000/v2/").unwrap().host(), "::1");
        let base = Url::parse("https://r.io/v2/a/manifests/t").unwrap();
        assert_eq!(
            base.join("/other").unwrap().to_string(),
            "https://r.io/other"
        );
        assert_eq!(
            base.join("b").unwrap().to_string(),
            "https://r.io/v2/a/manifests/b"
        );
        assert_eq!(
            base.join("//cdn.io/x").unwrap().to_string(),
            "https://cdn.io/x"
        );
        assert_eq!(
            base.join("http://cdn.io/x").unwrap().to_string(),
            "http://cdn.io/x"
        );
        assert!(!base.same_origin(&base.join("https://r.io:444/x").unwrap()));
        assert!(base.same_origin(&base.join("/x").unwrap()));
        let q = Url::parse("https://a.io/token?realm=1")
            .unwrap()
            .with_query(&[("scope", "repository:a/b:pull"), ("service", "a b")]);
        assert_eq!(
            q.path_and_query,
            "/token?realm=1&scope=repository%3Aa%2Fb%3Apull&service=a%20b"
        );
    }

    #[test]
    fn internal_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_internal_ip(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "172.32.0.1", "2001:db8::1", "100.128.0.1"] {
            assert!(!is_internal_ip(ip.parse().unwrap()), "{ip}");
        }
    }
}
