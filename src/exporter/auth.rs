//! Who may read what the exporter knows: the web config's basic auth
//! (bcrypt hashes, as `htpasswd -B` writes them), its rate limit, and the
//! headers it adds to every answer. `/healthz` and `/readyz` stay open, so
//! the kubelet's probes work without credentials (they tell nothing but
//! health); everything else needs them when users are configured.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;

use super::request::Request;
use super::web_config::WebConfig;

/// A bcrypt hash no password matches, checked for unknown users so that
/// an unknown user takes as long as a wrong password.
const NO_USER: &str = "$2y$10$0v5vYCIGFD8KtSgSEf4N9e3EpofEfBM14axa0T9FKTYw58/Ow7u/2";

/// Credentials bcrypt accepted, remembered (by hash) so that a scrape
/// costs one bcrypt check per process, not per request; cleared when full.
const VERIFIED_CACHE: usize = 64;

/// Paths anyone may ask.
pub const OPEN_PATHS: [&str; 2] = ["/healthz", "/readyz"];

/// Why a request is not answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 401: no or wrong credentials.
    Unauthorized,
    /// 429: over the rate limit.
    TooMany,
}

/// The gate in front of the handlers.
pub struct Gate {
    users: Vec<(String, String)>,
    verified: Mutex<HashSet<[u8; 32]>>,
    headers: Vec<(String, String)>,
    bucket: Option<Mutex<Bucket>>,
}

/// A token bucket: one request per `interval`, bursts of `burst`.
struct Bucket {
    interval: Duration,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn take(&mut self, now: Instant) -> bool {
        let earned =
            now.saturating_duration_since(self.at).as_secs_f64() / self.interval.as_secs_f64();
        self.tokens = (self.tokens + earned).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Gate {
    /// The gate a web config describes (an open one without it).
    pub fn new(config: &WebConfig) -> Gate {
        Gate {
            users: config.users.clone(),
            verified: Mutex::default(),
            headers: config.headers.clone(),
            bucket: config.rate_limit.map(|(interval, burst)| {
                Mutex::new(Bucket {
                    interval,
                    burst: f64::from(burst),
                    tokens: f64::from(burst),
                    at: Instant::now(),
                })
            }),
        }
    }

    /// Headers every answer carries.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// Whether `request` may be answered.
    pub fn admit(&self, request: &Request) -> Result<(), Refusal> {
        if OPEN_PATHS.contains(&request.path()) {
            return Ok(());
        }
        if let Some(b) = &self.bucket {
            if !b
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(Instant::now())
            {
                return Err(Refusal::TooMany);
            }
        }
        if self.users.is_empty() {
            return Ok(());
        }
        let (user, password) = request
            .header("authorization")
            .and_then(basic_credentials)
            .ok_or(Refusal::Unauthorized)?;
        if self.verify(&user, &password) {
            Ok(())
        } else {
            Err(Refusal::Unauthorized)
        }
    }

    /// Whether `password` is `user`'s. The user is looked up comparing
    /// every name in constant time, and an unknown user still costs a
    /// bcrypt check: the answer's timing tells neither.
    fn verify(&self, user: &str, password: &str) -> bool {
        let mut hash = None;
        for (name, h) in &self.users {
            if constant_time_eq(name.as_bytes(), user.as_bytes()) {
                hash = Some(h.as_str());
            }
        }
        let key = remembered_key(user, password, hash.unwrap_or(NO_USER));
        if hash.is_some()
            && self
                .verified
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&key)
        {
            return true;
        }
        let ok =
            bcrypt::verify(password, hash.unwrap_or(NO_USER)).unwrap_or(false) && hash.is_some();
        if ok {
            let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if verified.len() >= VERIFIED_CACHE {
                verified.clear();
            }
            verified.insert(key);
        }
        ok
    }
}

/// What the cache of verified credentials keeps: a hash of them and of
/// the bcrypt hash they matched, never the password.
fn remembered_key(user: &str, password: &str, hash: &str) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [user, password, hash] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part.as_bytes());
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Equality whose time depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `Basic base64(user:password)` (RFC 7617), the scheme case-insensitive.
pub fn basic_credentials(header: &str) -> Option<(String, String)> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str, auth: Option<&str>) -> Request {
        Request {
            method: "GET".into(),
            url: path.into(),
            version: (1, 1),
            headers: auth
                .map(|a| vec![("authorization".to_string(), a.to_string())])
                .unwrap_or_default(),
        }
    }

    fn basic(user: &str, password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    }

    #[test]
    fn basic_auth() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let gate = Gate::new(&WebConfig {
            users: vec![("prometheus".into(), hash)],
            ..WebConfig::default()
        });
        assert_eq!(gate.admit(&request("/healthz", None)), Ok(()));
        assert_eq!(gate.admit(&request("/readyz?x", None)), Ok(()));
        for path in ["/metrics", "/", "/status.json?page=2"] {
            assert_eq!(gate.admit(&request(path, None)), Err(Refusal::Unauthorized));
        }
        let good = basic("prometheus", "s3cret");
        assert_eq!(gate.admit(&request("/metrics", Some(&good))), Ok(()));
        // Remembered: the second time costs no bcrypt.
        assert_eq!(gate.verified.lock().unwrap().len(), 1);
        assert_eq!(gate.admit(&request("/metrics", Some(&good))), Ok(()));
        for wrong in [
            basic("prometheus", "s3cret "),
            basic("nobody", "s3cret"),
            basic("", ""),
            "Bearer x".into(),
            "Basic !!!".into(),
        ] {
            assert_eq!(
                gate.admit(&request("/metrics", Some(&wrong))),
                Err(Refusal::Unauthorized),
                "{wrong}"
            );
        }
        assert_eq!(gate.verified.lock().unwrap().len(), 1);
        assert!(bcrypt::verify("anything", NO_USER).is_ok());
    }

    #[test]
    fn rate_limit() {
        let gate = Gate::new(&WebConfig {
            rate_limit: Some((Duration::from_secs(3600), 2)),
            ..WebConfig::default()
        });
        assert_eq!(gate.admit(&request("/metrics", None)), Ok(()));
        assert_eq!(gate.admit(&request("/metrics", None)), Ok(()));
        assert_eq!(
            gate.admit(&request("/metrics", None)),
            Err(Refusal::TooMany)
        );
        assert_eq!(gate.admit(&request("/healthz", None)), Ok(()));
    }

    #[test]
    fn credentials() {
        assert_eq!(
            basic_credentials("basic dXNlcjpwYTpzcw=="),
            Some(("user".into(), "pa:ss".into()))
        );
        assert_eq!(basic_credentials("Basic dXNlcg=="), None);
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
