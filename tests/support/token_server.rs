//! Our token server for the registry's `auth.token` mode: issues ES256 JWTs
//! the registry accepts, for the users and repositories a test configures,
//! and counts what it is asked.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

use super::tls::SigningKey;
use super::{b64url, percent_decode};

/// The `service` the registry is configured with.
pub const SERVICE: &str = "kiae-test-registry";
/// The `issuer` the registry is configured with.
pub const ISSUER: &str = "kiae-test-issuer";

/// Repository prefixes and the actions allowed on them.
pub type Grants = Vec<(String, Vec<String>)>;

/// Who may do what.
#[derive(Clone, Default)]
pub struct Policy {
    /// user -> (password, [(repository prefix, actions)]).
    pub users: HashMap<String, (String, Grants)>,
    /// Users whose token requests get 403 (authenticated, not allowed).
    pub forbidden: Vec<String>,
    /// What anonymous requests may do: [(repository prefix, actions)].
    pub anonymous: Grants,
    /// `expires_in` of issued tokens.
    pub expires_in: u64,
}

impl Policy {
    /// Adds a user allowed `actions` ("pull", "push") on repositories starting with `prefix`.
    pub fn user(mut self, name: &str, password: &str, prefix: &str, actions: &[&str]) -> Policy {
        let entry = self
            .users
            .entry(name.to_string())
            .or_insert_with(|| (password.to_string(), Vec::new()));
        entry.1.push((
            prefix.to_string(),
            actions.iter().map(|a| a.to_string()).collect(),
        ));
        self
    }

    /// Lets anonymous users pull repositories starting with `prefix`.
    pub fn anonymous_pull(mut self, prefix: &str) -> Policy {
        self.anonymous
            .push((prefix.to_string(), vec!["pull".into()]));
        self
    }

    /// Makes token requests of `name` answer 403.
    pub fn forbid(mut self, name: &str, password: &str) -> Policy {
        self.users
            .entry(name.to_string())
            .or_insert_with(|| (password.to_string(), Vec::new()));
        self.forbidden.push(name.to_string());
        self
    }
}

/// A running token server on 127.0.0.1.
pub struct TokenServer {
    /// `http://127.0.0.1:PORT/token`.
    pub realm: String,
    /// Token requests received.
    pub requests: Arc<AtomicUsize>,
    /// (user or "anonymous", scope) of each request.
    pub log: Arc<Mutex<Vec<(String, String)>>>,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl TokenServer {
    /// The users that asked for tokens, in order ("anonymous" for none),
    /// leaving out the harness's own pushes as `admin`.
    pub fn users(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|(u, _)| u.clone())
            .filter(|u| u != "admin")
            .collect()
    }

    /// Starts serving tokens signed with `key` under `policy`.
    pub fn start(key: &SigningKey, policy: Policy) -> TokenServer {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("token server bind"));
        let port = server.server_addr().to_ip().expect("ip").port();
        let pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &key.pkcs8,
            &SystemRandom::new(),
        )
        .expect("signing key");
        let requests = Arc::new(AtomicUsize::new(0));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (s, r, l, kid) = (
            server.clone(),
            requests.clone(),
            log.clone(),
            key.kid.clone(),
        );
        let policy = Policy {
            expires_in: if policy.expires_in == 0 {
                300
            } else {
                policy.expires_in
            },
            ..policy
        };
        let thread = std::thread::spawn(move || {
            for req in s.incoming_requests() {
                r.fetch_add(1, Ordering::SeqCst);
                let (status, body) = answer(&req, &policy, &pair, &kid, &l);
                let resp = tiny_http::Response::from_string(body)
                    .with_status_code(status)
                    .with_header(
                        tiny_http::Header::from_bytes("Content-Type", "application/json").unwrap(),
                    );
                let _ = req.respond(resp);
            }
        });
        TokenServer {
            realm: format!("http://127.0.0.1:{port}/token"),
            requests,
            log,
            server,
            thread: Some(thread),
        }
    }

    /// Requests received so far.
    pub fn count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// A token for `user` (must be in the policy) with `scope`, for the harness's own pushes.
    pub fn basic_header(user: &str, password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn query_param(url: &str, name: &str) -> Option<String> {
    let q = url.split_once('?')?.1;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| percent_decode(v))
    })
}

fn answer(
    req: &tiny_http::Request,
    policy: &Policy,
    key: &EcdsaKeyPair,
    kid: &str,
    log: &Mutex<Vec<(String, String)>>,
) -> (u16, String) {
    let url = req.url().to_string();
    let scope = query_param(&url, "scope").unwrap_or_default();
    let auth = req
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .map(|h| h.value.as_str().to_string());
    let user = match auth {
        None => None,
        Some(a) => {
            let decoded = a
                .strip_prefix("Basic ")
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .and_then(|b| String::from_utf8(b).ok());
            let Some((u, p)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
                return (
                    401,
                    r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad authorization header"}]}"#
                        .into(),
                );
            };
            match policy.users.get(u) {
                Some((pw, _)) if pw == p => Some(u.to_string()),
                _ => {
                    log.lock().unwrap().push((u.to_string(), scope.clone()));
                    return (401, r#"{"errors":[{"code":"UNAUTHORIZED","message":"invalid username or password"}]}"#.into());
                }
            }
        }
    };
    log.lock().unwrap().push((
        user.clone().unwrap_or_else(|| "anonymous".into()),
        scope.clone(),
    ));
    if let Some(u) = &user {
        if policy.forbidden.contains(u) {
            return (
                403,
                r#"{"errors":[{"code":"DENIED","message":"access denied"}]}"#.into(),
            );
        }
    }
    // As Docker Hub, Harbor and docker_auth do: what anyone may pull, any
    // signed-in user may pull too.
    let grants: Vec<(String, Vec<String>)> = match &user {
        Some(u) => policy.users[u]
            .1
            .iter()
            .chain(&policy.anonymous)
            .cloned()
            .collect(),
        None => policy.anonymous.clone(),
    };
    // scope = repository:NAME:ACTIONS
    let mut access = Vec::new();
    let parts: Vec<&str> = scope.splitn(3, ':').collect();
    if let [typ, name, actions] = parts[..] {
        let granted: Vec<&str> = actions
            .split(',')
            .filter(|a| {
                grants.iter().any(|(prefix, acts)| {
                    name.starts_with(prefix.as_str()) && acts.iter().any(|x| x == a)
                })
            })
            .collect();
        access.push(serde_json::json!({"type": typ, "name": name, "actions": granted}));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    static JTI: AtomicUsize = AtomicUsize::new(0);
    let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "kid": kid});
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": user.clone().unwrap_or_default(),
        "aud": SERVICE,
        "exp": now + policy.expires_in,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("t{}", JTI.fetch_add(1, Ordering::SeqCst)),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let sig = key
        .sign(&SystemRandom::new(), signing_input.as_bytes())
        .expect("sign");
    let jwt = format!("{signing_input}.{}", b64url(sig.as_ref()));
    let issued =
        k8s_image_availability_exporter::sys::timestamp::format_rfc3339_millis(SystemTime::now());
    (200, serde_json::json!({"token": jwt, "access_token": jwt, "expires_in": policy.expires_in, "issued_at": issued}).to_string())
}
