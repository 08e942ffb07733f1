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

/// Default lifetime when the token server does not say (token spec).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);
/// Prune expired tokens once the cache grows past this.
const PRUNE_AT: usize = 4096;

/// Thread-safe token cache shared by all workers.
#[derive(Debug, Default)]
pub struct TokenCache {
    tokens: Mutex<HashMap<TokenKey, (String, Instant)>>,
    hasher: RandomState,
}

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

    /// A token that is still valid.
    pub fn get(&self, key: &TokenKey) -> Option<String> {
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens
            .get(key)
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(t, _)| t.clone())
    }

    /// Stores a token until shortly before it expires.
    pub fn put(&self, key: TokenKey, token: String, lifetime: Duration) {
        // Leave a margin for clock skew and request time: a tenth, at most 30 s.
        let margin = (lifetime / 10).min(Duration::from_secs(30));
        let until = Instant::now() + lifetime.saturating_sub(margin);
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        if tokens.len() >= PRUNE_AT {
            let now = Instant::now();
            tokens.retain(|_, (_, u)| now < *u);
        }
        tokens.insert(key, (token, until));
    }

    /// Forgets a token the registry refused.
    pub fn remove(&self, key: &TokenKey) {
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// Number of cached tokens (for tests and metrics).
    pub fn len(&self) -> usize {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
        Some(s) if s > 0 => Duration::from_secs(s as u64),
        _ => DEFAULT_LIFETIME,
    };
    // Count from issued_at when it is sane; a skewed clock must neither
    // make the token look expired nor stretch it past expires_in.
    let elapsed = r
        .issued_at
        .as_deref()
        .and_then(crate::timestamp::parse_rfc3339)
        .and_then(|issued| now.duration_since(issued).ok())
        .unwrap_or(Duration::ZERO);
    let lifetime = expires_in.checked_sub(elapsed).unwrap_or(Duration::ZERO);
    Ok(Token { token, lifetime })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> SystemTime {
        crate::timestamp::parse_rfc3339("2026-01-01T00:01:00Z").unwrap()
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
        assert!(parse_token_response(br#"{}"#, now()).is_err());
        assert!(parse_token_response(b"<html>", now()).is_err());
        assert!(parse_token_response(br#"{"token":5}"#, now()).is_err());
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
        cache.put(ka.clone(), "ta".into(), Duration::from_secs(60));
        assert_eq!(cache.get(&ka).as_deref(), Some("ta"));
        assert_eq!(cache.get(&kb), None);
        cache.put(kb.clone(), "tb".into(), Duration::ZERO);
        assert_eq!(
            cache.get(&kb),
            None,
            "a token with no lifetime left is not reused"
        );
        cache.remove(&ka);
        assert_eq!(cache.get(&ka), None);
    }
}
