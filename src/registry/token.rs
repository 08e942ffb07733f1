//! Bearer tokens from registry token servers, cached so that a steady-state
//! check is a single manifest request.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::credentials::Credential;

/// What a token is valid for: realm, service, scope and the identity that
/// asked (anonymous or a hash of one credential).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenKey {
    realm: String,
    service: Option<String>,
    scope: String,
    identity: Option<u64>,
}

/// Longest lifetime we trust: a token server's huge `expires_in` must not
/// overflow a deadline, and a day-old token is worth refreshing anyway.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Default lifetime when the token server does not say (token spec).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);
/// Prune expired tokens once the cache grows past this.
const PRUNE_AT: usize = 4096;

/// A cache entry: a token, or a fetch in progress that others wait for.
#[derive(Debug)]
enum Slot {
    Ready(String, Instant),
    Fetching,
}

/// How long a token server's refusal (401 or 403) is remembered: checks
/// that fail are rechecked with backoff anyway, and a credential fixed on
/// the registry's side is seen within this time.
pub const REFUSAL_LIFETIME: Duration = Duration::from_secs(120);

/// A token server's refusal of one identity for one scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 403 (the credential is known but may not), else 401.
    pub forbidden: bool,
    /// What the token server said, as the check's reason gives it.
    pub reason: String,
}

/// Thread-safe token cache shared by all workers. Concurrent checks of one
/// repository wait for a single token fetch instead of each fetching one.
#[derive(Debug, Default)]
pub struct TokenCache {
    tokens: Mutex<HashMap<TokenKey, Slot>>,
    refusals: Mutex<HashMap<TokenKey, (Refusal, Instant)>>,
    fetched: std::sync::Condvar,
    hasher: RandomState,
}

/// Longest wait for another thread's token fetch (it has its own timeouts).
const FETCH_WAIT: Duration = Duration::from_secs(60);

impl TokenCache {
    /// Builds the cache key for a request.
    pub fn key(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        credential: Option<&Credential>,
    ) -> TokenKey {
        TokenKey {
            realm: realm.to_string(),
            service: service.map(str::to_string),
            scope: scope.to_string(),
            identity: credential.map(|c| {
                let mut h = self.hasher.build_hasher();
                c.hash_identity(&mut h);
                h.finish()
            }),
        }
    }

    /// A refusal of `key` within [`REFUSAL_LIFETIME`].
    pub fn refused(&self, key: &TokenKey) -> Option<Refusal> {
        let refusals = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        refusals
            .get(key)
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(r, _)| r.clone())
    }

    /// Remembers that the token server refused `key`.
    pub fn refuse(&self, key: &TokenKey, refusal: Refusal) {
        let mut refusals = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if refusals.len() >= PRUNE_AT {
            refusals.retain(|_, (_, until)| now < *until);
        }
        refusals.insert(key.clone(), (refusal, now + REFUSAL_LIFETIME));
    }

    /// A token that is still valid.
    pub fn get(&self, key: &TokenKey) -> Option<String> {
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        match tokens.get(key) {
            Some(Slot::Ready(t, until)) if Instant::now() < *until => Some(t.clone()),
            _ => None,
        }
    }

    /// A valid cached token other than `stale`, or the result of `fetch`,
    /// run by one caller while concurrent callers for the same key wait.
    /// Returns the token and whether it came from the cache.
    pub fn get_or_fetch<E>(
        &self,
        key: &TokenKey,
        stale: Option<&str>,
        fetch: impl FnOnce() -> Result<Token, E>,
    ) -> Result<(String, bool), E> {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let deadline = Instant::now() + FETCH_WAIT;
        loop {
            match tokens.get(key) {
                Some(Slot::Ready(t, until))
                    if Instant::now() < *until && Some(t.as_str()) != stale =>
                {
                    return Ok((t.clone(), true))
                }
                Some(Slot::Fetching) if Instant::now() < deadline => {
                    tokens = self
                        .fetched
                        .wait_timeout(tokens, deadline - Instant::now())
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                _ => break,
            }
        }
        tokens.insert(key.clone(), Slot::Fetching);
        drop(tokens);
        let result = fetch();
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let out = match result {
            Ok(t) => {
                if tokens.len() >= PRUNE_AT {
                    let now = Instant::now();
                    tokens.retain(|_, s| match s {
                        Slot::Fetching => true,
                        Slot::Ready(_, until) => now < *until,
                    });
                }
                // Leave a margin for clock skew and request time: a tenth, at most 30 s.
                let margin = (t.lifetime / 10).min(Duration::from_secs(30));
                let until = Instant::now() + t.lifetime.saturating_sub(margin);
                tokens.insert(key.clone(), Slot::Ready(t.token.clone(), until));
                Ok((t.token, false))
            }
            Err(e) => {
                tokens.remove(key);
                Err(e)
            }
        };
        drop(tokens);
        self.fetched.notify_all();
        out
    }
}

/// A parsed token response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The bearer token.
    pub token: String,
    /// How long from now it stays valid.
    pub lifetime: Duration,
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<i64>,
    issued_at: Option<String>,
}

/// Parses a token server's JSON answer. `token` and `access_token` are the
/// same thing under two names; `expires_in` counts from `issued_at` when given.
pub fn parse_token_response(body: &[u8], now: SystemTime) -> Result<Token, String> {
    let r: TokenResponse = serde_json::from_slice(body).map_err(|_| {
        "token server answered with something that is not a token response".to_string()
    })?;
    let token = r
        .token
        .filter(|t| !t.is_empty())
        .or(r.access_token.filter(|t| !t.is_empty()))
        .ok_or_else(|| "token server answer has neither token nor access_token".to_string())?;
    let expires_in = match r.expires_in {
        Some(s) if s > 0 => Duration::from_secs(s as u64).min(MAX_LIFETIME),
        _ => DEFAULT_LIFETIME,
    };
    // Count from issued_at when it is sane; a skewed clock must neither
    // make the token look expired nor stretch it past expires_in.
    let elapsed = r
        .issued_at
        .as_deref()
        .and_then(crate::sys::timestamp::parse_rfc3339)
        .and_then(|issued| now.duration_since(issued).ok())
        .unwrap_or(Duration::ZERO);
    let lifetime = expires_in.checked_sub(elapsed).unwrap_or(Duration::ZERO);
    Ok(Token { token, lifetime })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> SystemTime {
        crate::sys::timestamp::parse_rfc3339("2026-01-01T00:01:00Z").unwrap()
    }

    #[test]
    fn token_responses() {
        let t = parse_token_response(br#"{"token":"a","expires_in":300}"#, now()).unwrap();
        assert_eq!((t.token.as_str(), t.lifetime.as_secs()), ("a", 300));
        let t = parse_token_response(br#"{"access_token":"b"}"#, now()).unwrap();
        assert_eq!((t.token.as_str(), t.lifetime.as_secs()), ("b", 60));
        let t = parse_token_response(br#"{"token":"","access_token":"c","expires_in":0}"#, now())
            .unwrap();
        assert_eq!((t.token.as_str(), t.lifetime.as_secs()), ("c", 60));
        let t = parse_token_response(
            br#"{"token":"d","expires_in":300,"issued_at":"2026-01-01T00:00:00Z"}"#,
            now(),
        )
        .unwrap();
        assert_eq!(t.lifetime.as_secs(), 240);
        // Issued in the future (skew): full lifetime. Issued long ago: expired.
        let t = parse_token_response(
            br#"{"token":"d","expires_in":300,"issued_at":"2026-01-01T00:05:00Z"}"#,
            now(),
        )
        .unwrap();
        assert_eq!(t.lifetime.as_secs(), 300);
        let t = parse_token_response(
            br#"{"token":"d","expires_in":30,"issued_at":"2025-01-01T00:05:00Z"}"#,
            now(),
        )
        .unwrap();
        assert_eq!(t.lifetime.as_secs(), 0);
        let t = parse_token_response(br#"{"token":"d","issued_at":"garbage"}"#, now()).unwrap();
        assert_eq!(t.lifetime.as_secs(), 60);
        let t = parse_token_response(br#"{"token":"d","expires_in":9223372036854775807}"#, now())
            .unwrap();
        assert_eq!(
            t.lifetime.as_secs(),
            86_400,
            "capped, so deadlines cannot overflow"
        );
        assert!(parse_token_response(br#"{}"#, now()).is_err());
        assert!(parse_token_response(b"<html>", now()).is_err());
        assert!(parse_token_response(br#"{"token":5}"#, now()).is_err());
    }

    #[test]
    fn refusals_are_remembered_per_key() {
        let cache = TokenCache::default();
        let a = cache.key("https://auth/t", None, "repository:x:pull", None);
        let b = cache.key("https://auth/t", None, "repository:y:pull", None);
        assert_eq!(cache.refused(&a), None);
        let refusal = Refusal {
            forbidden: true,
            reason: "token server denied access (HTTP 403)".into(),
        };
        cache.refuse(&a, refusal.clone());
        assert_eq!(cache.refused(&a), Some(refusal));
        assert_eq!(cache.refused(&b), None);
    }

    #[test]
    fn cache_keys_by_identity_and_expires() {
        let cache = TokenCache::default();
        let alice = Credential::new("s", "k", "alice", "1");
        let bob = Credential::new("s", "k", "bob", "1");
        let ka = cache.key(
            "https://a/t",
            Some("svc"),
            "repository:x:pull",
            Some(&alice),
        );
        let kb = cache.key("https://a/t", Some("svc"), "repository:x:pull", Some(&bob));
        let anon = cache.key("https://a/t", Some("svc"), "repository:x:pull", None);
        assert_ne!(ka, kb);
        assert_ne!(ka, anon);
        assert_eq!(
            ka,
            cache.key(
                "https://a/t",
                Some("svc"),
                "repository:x:pull",
                Some(&alice.clone())
            )
        );
        let tok = |t: &str, secs| {
            Ok::<_, ()>(Token {
                token: t.into(),
                lifetime: Duration::from_secs(secs),
            })
        };
        assert_eq!(
            cache.get_or_fetch(&ka, None, || tok("ta", 60)),
            Ok(("ta".to_string(), false))
        );
        assert_eq!(cache.get(&ka).as_deref(), Some("ta"));
        assert_eq!(
            cache.get_or_fetch(&ka, None, || tok("other", 60)),
            Ok(("ta".to_string(), true))
        );
        assert_eq!(cache.get(&kb), None);
        cache.get_or_fetch(&kb, None, || tok("tb", 0)).unwrap();
        assert_eq!(
            cache.get(&kb),
            None,
            "a token with no lifetime left is not reused"
        );
        // A token the registry refused is replaced.
        assert_eq!(
            cache.get_or_fetch(&ka, Some("ta"), || tok("ta2", 60)),
            Ok(("ta2".to_string(), false))
        );
        // A failed fetch leaves nothing behind.
        assert_eq!(
            cache.get_or_fetch(&anon, None, || Err::<Token, _>(())),
            Err(())
        );
        assert_eq!(cache.get(&anon), None);
    }

    #[test]
    fn concurrent_callers_share_one_fetch() {
        let cache = std::sync::Arc::new(TokenCache::default());
        let key = cache.key("https://a/t", None, "repository:x:pull", None);
        let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (c, k, f) = (cache.clone(), key.clone(), fetches.clone());
                std::thread::spawn(move || {
                    c.get_or_fetch(&k, None, || {
                        f.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(50));
                        Ok::<_, ()>(Token {
                            token: "t".into(),
                            lifetime: Duration::from_secs(60),
                        })
                    })
                    .unwrap()
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap().0, "t");
        }
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
