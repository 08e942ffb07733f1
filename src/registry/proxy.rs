//! Proxies from the environment, read as Go's `http.ProxyFromEnvironment`
//! (golang.org/x/net/http/httpproxy) reads them, so the exporter goes
//! through the same proxy as the node and client-go would: `HTTPS_PROXY` for
//! https URLs, `HTTP_PROXY` for http URLs (never `ALL_PROXY`), and
//! `NO_PROXY` with domains, `*.` and `.` suffixes, ports, IP addresses and
//! CIDRs. `localhost` and loopback addresses never go through a proxy.
//!
//! ureq's own reading of the environment differs (it prefers `ALL_PROXY`,
//! uses one proxy for both schemes, and knows no CIDRs or ports), so every
//! agent is built with no proxy and each request names its own.

use std::net::IpAddr;

/// The proxy settings of the environment.
#[derive(Debug, Clone, Default)]
pub struct ProxyEnv {
    http: Option<ureq::Proxy>,
    https: Option<ureq::Proxy>,
    no_proxy: NoProxy,
}

impl ProxyEnv {
    /// Reads the process environment.
    pub fn from_env() -> Result<ProxyEnv, String> {
        ProxyEnv::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `get`; the upper-case name wins, and an
    /// empty value counts as unset (Go's `getEnvAny`).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<ProxyEnv, String> {
        let any = |names: [&str; 2]| names.iter().find_map(|n| get(n).filter(|v| !v.is_empty()));
        // Go ignores HTTP_PROXY under CGI (REQUEST_METHOD set): httpoxy.
        let cgi = get("REQUEST_METHOD").is_some_and(|v| !v.is_empty());
        let http = if cgi {
            None
        } else {
            any(["HTTP_PROXY", "http_proxy"])
        };
        let https = any(["HTTPS_PROXY", "https_proxy"]);
        let no_proxy = any(["NO_PROXY", "no_proxy"]).unwrap_or_default();
        Ok(ProxyEnv {
            http: http.map(|p| parse_proxy("HTTP_PROXY", &p)).transpose()?,
            https: https.map(|p| parse_proxy("HTTPS_PROXY", &p)).transpose()?,
            no_proxy: NoProxy::parse(&no_proxy),
        })
    }

    /// The proxy for a request to `host:port` over https or plain http.
    pub fn for_target(&self, https: bool, host: &str, port: u16) -> Option<&ureq::Proxy> {
        let proxy = if https { &self.https } else { &self.http };
        proxy
            .as_ref()
            .filter(|_| self.no_proxy.use_proxy(host, port))
    }

    /// Whether any proxy is set (for a log line).
    pub fn describe(&self) -> Option<String> {
        let show = |p: &Option<ureq::Proxy>| {
            p.as_ref()
                .map(|p| format!("{}:{}", p.host(), p.port()))
                .unwrap_or_else(|| "none".into())
        };
        (self.http.is_some() || self.https.is_some()).then(|| {
            format!(
                "proxies from the environment: https {}, http {}",
                show(&self.https),
                show(&self.http)
            )
        })
    }
}

/// Go's `parseProxy`: a value that is not a URL with a known scheme is
/// tried again as `http://VALUE`.
fn parse_proxy(var: &str, value: &str) -> Result<ureq::Proxy, String> {
    let known = ["http://", "https://", "socks5://", "socks5h://"]
        .iter()
        .any(|s| value.to_ascii_lowercase().starts_with(s));
    let url = if known {
        value.to_string()
    } else {
        format!("http://{value}")
    };
    // Go's socks5 resolves names at the proxy, as ureq's socks5h does.
    let url = match url.strip_prefix("socks5://") {
        Some(rest) => format!("socks5h://{rest}"),
        None => url,
    };
    ureq::Proxy::new(&url).map_err(|e| format!("{var}: invalid proxy address: {e}"))
}

/// One `NO_PROXY` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// `*`: no proxy at all.
    All,
    /// An IP address, with an optional port.
    Ip(IpAddr, Option<u16>),
    /// A CIDR block.
    Cidr(IpAddr, u8),
    /// `.suffix` (with its leading dot), whether the bare name matches
    /// too (`example.com` does, `.example.com` does not), and a port.
    Domain(String, bool, Option<u16>),
}

/// The parsed `NO_PROXY` list.
#[derive(Debug, Clone, Default)]
pub struct NoProxy(Vec<Entry>);

impl NoProxy {
    /// Parses a comma-separated list as `httpproxy.config.init` does;
    /// entries it cannot read are skipped.
    pub fn parse(list: &str) -> NoProxy {
        let mut out = Vec::new();
        for raw in list.split(',') {
            let p = raw.trim().to_ascii_lowercase();
            if p.is_empty() {
                continue;
            }
            if p == "*" {
                return NoProxy(vec![Entry::All]);
            }
            if let Some((ip, bits)) = parse_cidr(&p) {
                out.push(Entry::Cidr(ip, bits));
                continue;
            }
            let (host, port) = match split_host_port(&p) {
                Some((h, port)) => match port.parse::<u16>() {
                    Ok(port) => (h.to_string(), Some(port)),
                    Err(_) => continue,
                },
                None => (p.clone(), None),
            };
            let host = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .map(str::to_string)
                .unwrap_or(host);
            if host.is_empty() {
                continue;
            }
            if let Ok(ip) = host.parse::<IpAddr>() {
                out.push(Entry::Ip(ip, port));
                continue;
            }
            let host = host
                .strip_prefix("*.")
                .map_or(host.clone(), |h| format!(".{h}"));
            let (suffix, bare) = match host.strip_prefix('.') {
                Some(_) => (host.clone(), false),
                None => (format!(".{host}"), true),
            };
            out.push(Entry::Domain(suffix, bare, port));
        }
        NoProxy(out)
    }

    /// `useProxy`: whether a request to `host:port` goes through the proxy.
    pub fn use_proxy(&self, host: &str, port: u16) -> bool {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if host == "localhost" {
            return false;
        }
        let ip = host.parse::<IpAddr>().ok();
        if ip.is_some_and(|ip| ip.is_loopback()) {
            return false;
        }
        for e in &self.0 {
            let bypass = match e {
                Entry::All => true,
                Entry::Ip(want, p) => ip == Some(*want) && p.is_none_or(|p| p == port),
                Entry::Cidr(net, bits) => ip.is_some_and(|ip| in_cidr(ip, *net, *bits)),
                Entry::Domain(suffix, bare, p) => {
                    (host.ends_with(suffix.as_str()) || (*bare && host == suffix[1..]))
                        && p.is_none_or(|p| p == port)
                }
            };
            if bypass {
                return false;
            }
        }
        true
    }
}

/// `host:port` or `[v6]:port`; None when there is no port part.
fn split_host_port(s: &str) -> Option<(&str, &str)> {
    if s.starts_with('[') {
        let end = s.find(']')?;
        return s[end + 1..].strip_prefix(':').map(|p| (&s[..=end], p));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h, p)),
        _ => None,
    }
}

fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, bits) = s.split_once('/')?;
    let ip: IpAddr = ip.parse().ok()?;
    let bits: u8 = bits.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((ip, bits))
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    let (a, b, width) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        // Go compares the 16-byte forms: an IPv4 net holds its IPv4-mapped v6 addresses.
        (IpAddr::V6(a), IpAddr::V4(b)) => match a.to_ipv4_mapped() {
            Some(a) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32),
            None => return false,
        },
        (IpAddr::V4(_), IpAddr::V6(_)) => return false,
    };
    if bits == 0 {
        return true;
    }
    let shift = width - u32::from(bits);
    (a >> shift) == (b >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> ProxyEnv {
        ProxyEnv::from_vars(|n| {
            vars.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        })
        .unwrap()
    }

    fn via(e: &ProxyEnv, https: bool, host: &str, port: u16) -> Option<String> {
        e.for_target(https, host, port)
            .map(|p| format!("{}:{}", p.host(), p.port()))
    }

    /// Cases from httpproxy's proxy_test.go (ProxyForURL and UseProxy).
    #[test]
    fn go_rules() {
        let e = env(&[
            ("HTTP_PROXY", "http.proxy.tld"),
            ("https_proxy", "secure.proxy.tld:3128"),
            ("ALL_PROXY", "all.proxy.tld"),
        ]);
        assert_eq!(
            via(&e, false, "example.com", 80).as_deref(),
            Some("http.proxy.tld:80")
        );
        assert_eq!(
            via(&e, true, "example.com", 443).as_deref(),
            Some("secure.proxy.tld:3128")
        );
        // Loopback and localhost never go through a proxy.
        for h in ["localhost", "127.0.0.1", "::1", "[::1]", "127.1.2.3"] {
            assert_eq!(via(&e, true, h, 443), None, "{h}");
        }
        // No HTTPS_PROXY: https goes direct (no fallback to HTTP_PROXY or ALL_PROXY).
        let e = env(&[("HTTP_PROXY", "http://p:8080")]);
        assert_eq!(via(&e, true, "example.com", 443), None);
        // Under CGI, HTTP_PROXY is not trusted.
        let e = env(&[("HTTP_PROXY", "http://p:8080"), ("REQUEST_METHOD", "GET")]);
        assert_eq!(via(&e, false, "example.com", 80), None);
        // Upper case wins; an empty value counts as unset.
        let e = env(&[("HTTPS_PROXY", ""), ("https_proxy", "http://lower:1")]);
        assert_eq!(via(&e, true, "x.io", 443).as_deref(), Some("lower:1"));

        let np = NoProxy::parse(
            "foobar.com, .barbaz.net, *.qux.com, 192.168.1.1, 192.168.1.2:81, 192.168.1.3:80, 10.0.0.0/30, 2001:db8::52:0:1, [2001:db8::52:0:2]:443, [2001:db8::52:0:3]:80, 2002:db8:a::45/64, bar.com:80, www.example.com:443",
        );
        let cases: &[(&str, u16, bool)] = &[
            ("foobar.com", 80, false),
            ("www.foobar.com", 80, false),
            ("xfoobar.com", 80, true),
            ("barbaz.net", 80, true),
            ("www.barbaz.net", 80, false),
            ("qux.com", 80, true),
            ("www.qux.com", 80, false),
            ("192.168.1.1", 80, false),
            ("192.168.1.2", 80, true),
            ("192.168.1.2", 81, false),
            ("192.168.1.3", 80, false),
            ("10.0.0.2", 80, false),
            ("10.0.0.4", 80, true),
            ("2001:db8::52:0:1", 443, false),
            ("2001:db8::52:0:2", 443, false),
            ("2001:db8::52:0:2", 80, true),
            ("2001:db8::52:0:3", 443, true),
            ("2002:db8:a::123", 443, false),
            ("2002:db8:b::123", 443, true),
            ("bar.com", 80, false),
            ("bar.com", 443, true),
            ("www.bar.com", 80, false),
            ("www.example.com", 443, false),
            ("www.example.com", 80, true),
            ("example.com", 443, true),
        ];
        for (host, port, want) in cases {
            assert_eq!(np.use_proxy(host, *port), *want, "{host}:{port}");
        }
        assert!(!NoProxy::parse("*").use_proxy("anything.io", 443));
        assert!(NoProxy::parse("").use_proxy("anything.io", 443));
        assert!(NoProxy::parse(":80, [], x:notaport").use_proxy("x", 80));
    }

    #[test]
    fn bad_proxy_values() {
        assert!(
            ProxyEnv::from_vars(|n| (n == "HTTPS_PROXY").then(|| "http://[bad".into())).is_err()
        );
        let e = env(&[("HTTPS_PROXY", "socks5://s:1080")]);
        assert!(e.for_target(true, "r.io", 443).is_some());
    }
}
