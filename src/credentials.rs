//! Pull credentials: docker config payloads (`.dockerconfigjson`,
//! `.dockercfg`, `config.json`) and the kubelet's rules for which
//! credentials apply to an image (`pkg/credentialprovider/keyring.go`).

use std::fmt;
use std::sync::Arc;

use base64::Engine;

use crate::registry::reference::Reference;

/// One username/password pair and where it came from. The password never
/// leaves this type except as an `Authorization` header value.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Credential {
    /// Where it was found, e.g. `secret team-a/regcred` or `docker-config /root/.docker/config.json`.
    pub source: String,
    /// The registry key as written in the config, e.g. `https://index.docker.io/v1/`.
    pub key: String,
    /// The user name (not secret, but kept out of metrics anyway).
    pub username: String,
    password: String,
}

impl Credential {
    /// Builds a credential; `source` and `key` are for humans, never secret.
    pub fn new(
        source: impl Into<String>,
        key: impl Into<String>,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Credential {
        Credential {
            source: source.into(),
            key: key.into(),
            username: username.into(),
            password: password.into(),
        }
    }

    /// How reports name this credential: source and key, never the secret.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.source, self.key)
    }

    /// The value of an `Authorization: Basic` header.
    pub fn basic_authorization(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    /// Whether two credentials would authenticate as the same identity.
    pub fn same_secret(&self, other: &Credential) -> bool {
        self.username == other.username && self.password == other.password
    }

    /// Feeds the secret identity into a hasher, for cache keys.
    pub fn hash_identity<H: std::hash::Hasher>(&self, h: &mut H) {
        use std::hash::Hash;
        self.username.hash(h);
        self.password.hash(h);
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("source", &self.source)
            .field("key", &self.key)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The layout of a docker config payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFormat {
    /// `{"auths": {KEY: ENTRY}}`: `kubernetes.io/dockerconfigjson` and `config.json`.
    DockerConfigJson,
    /// `{KEY: ENTRY}`: the legacy `kubernetes.io/dockercfg`.
    DockerCfg,
}

/// A payload that cannot be used at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Credentials parsed from one payload, plus warnings about entries that
/// were skipped (the warnings name keys, never values).
#[derive(Debug, Default)]
pub struct Parsed {
    /// The usable entries, in payload order.
    pub credentials: Vec<Credential>,
    /// One line per skipped entry.
    pub warnings: Vec<String>,
}

/// Parses a docker config payload found at `source`.
pub fn parse_docker_config(
    source: &str,
    bytes: &[u8],
    format: ConfigFormat,
) -> Result<Parsed, ConfigError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ConfigError(format!("{source}: not valid JSON ({})", e.classify_name())))?;
    let mut parsed = Parsed::default();
    if let Some(obj) = value.as_object() {
        if obj.contains_key("credsStore") || obj.contains_key("credHelpers") {
            parsed.warnings.push(format!(
                "{source}: credsStore/credHelpers are not supported; only \"auths\" is used"
            ));
        }
    }
    let auths = match format {
        ConfigFormat::DockerConfigJson => match value.get("auths") {
            Some(a) => a,
            // A config.json with only credential helpers is valid but empty.
            None if value.is_object() => return Ok(parsed),
            None => return Err(ConfigError(format!("{source}: expected a JSON object"))),
        },
        ConfigFormat::DockerCfg => &value,
    };
    let Some(auths) = auths.as_object() else {
        return Err(ConfigError(format!(
            "{source}: \"auths\" is not a JSON object"
        )));
    };
    for (key, entry) in auths {
        match parse_entry(entry) {
            Ok(Some((user, pass))) => {
                parsed
                    .credentials
                    .push(Credential::new(source, key.clone(), user, pass))
            }
            Ok(None) => parsed.warnings.push(format!(
                "{source}: entry {key:?} has no username/password or auth; skipped"
            )),
            Err(why) => parsed
                .warnings
                .push(format!("{source}: entry {key:?}: {why}; skipped")),
        }
    }
    Ok(parsed)
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    /// serde_json's messages can quote input; say only what kind of error it is.
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "read error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected data",
            serde_json::error::Category::Eof => "unexpected end of input",
        }
    }
}

/// `auth` (base64 of `user:pass`, padded or not) wins over `username`/`password`.
fn parse_entry(entry: &serde_json::Value) -> Result<Option<(String, String)>, &'static str> {
    let field = |name: &str| entry.get(name).and_then(|v| v.as_str()).unwrap_or("");
    if !entry.is_object() {
        return Err("not a JSON object");
    }
    let auth = field("auth");
    if !auth.is_empty() {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(auth.trim()))
            .map_err(|_| "\"auth\" is not valid base64")?;
        let decoded = String::from_utf8(decoded).map_err(|_| "\"auth\" is not UTF-8")?;
        let Some((user, pass)) = decoded.split_once(':') else {
            return Err("\"auth\" must be base64(username:password)");
        };
        return Ok(Some((
            user.to_string(),
            pass.trim_end_matches('\n').to_string(),
        )));
    }
    let (user, pass) = (field("username"), field("password"));
    if user.is_empty() && pass.is_empty() {
        return Ok(None);
    }
    Ok(Some((user.to_string(), pass.to_string())))
}

/// A key normalised as the kubelet does: `host[:port][/path]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    host: String,
    port: String,
    path: String,
}

impl Key {
    fn parse(raw: &str) -> Option<Key> {
        let rest = raw
            .strip_prefix("https://")
            .or_else(|| raw.strip_prefix("http://"))
            .unwrap_or(raw);
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        // Query and fragment are not part of a registry key.
        let path = path.split(['?', '#']).next().unwrap_or("");
        let path = path
            .strip_prefix("/v1/")
            .or_else(|| path.strip_prefix("/v2/"))
            .map(|p| format!("/{p}"))
            .unwrap_or_else(|| path.to_string());
        let path = if path == "/" { String::new() } else { path };
        if authority.is_empty() || authority.contains('@') {
            return None;
        }
        let (host, port) = split_host_port(authority);
        Some(Key {
            host: host.to_string(),
            port: port.to_string(),
            path,
        })
    }

    /// The sort key: the kubelet orders `host[:port]path` strings in reverse.
    fn text(&self) -> String {
        let port = if self.port.is_empty() {
            String::new()
        } else {
            format!(":{}", self.port)
        };
        format!("{}{}{}", self.host, port, self.path)
    }

    /// `URLsMatch`: same port, same number of host labels each glob-matching,
    /// and the key's path a prefix of the image's path.
    fn matches(&self, host: &str, port: &str, path: &str) -> bool {
        if self.port != port {
            return false;
        }
        let (a, b): (Vec<&str>, Vec<&str>) =
            (self.host.split('.').collect(), host.split('.').collect());
        a.len() == b.len()
            && a.iter()
                .zip(&b)
                .all(|(g, t)| glob_match(g.as_bytes(), t.as_bytes()))
            && path.starts_with(&self.path)
    }
}

fn split_host_port(authority: &str) -> (&str, &str) {
    if authority.starts_with('[') {
        if let Some(end) = authority.find(']') {
            let port = authority[end + 1..].strip_prefix(':').unwrap_or("");
            return (&authority[..=end], port);
        }
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, p),
        _ => (authority, ""),
    }
}

/// Go's `filepath.Match` for one host label: `*`, `?`, `[...]` classes with
/// ranges and `^` negation, `\` escapes. A malformed pattern matches nothing.
///
/// Iterative with backtracking to the last `*` only, so it is linear in
/// practice and O(len(p) * len(s)) at worst: a hostile registry key in a
/// Secret must not cost exponential time (the fuzzer found one that did).
pub fn glob_match(p: &[u8], s: &[u8]) -> bool {
    if !glob_valid(p) {
        return false;
    }
    let (mut pi, mut si) = (0, 0);
    // Where to resume after the last star: (pattern after it, subject position).
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        let step = match p.get(pi) {
            Some(b'*') => {
                star = Some((pi + 1, si));
                pi += 1;
                continue;
            }
            Some(b'?') => Some(pi + 1),
            Some(b'[') => match class_match(&p[pi + 1..], s[si]) {
                Some((true, after)) => Some(p.len() - after.len()),
                _ => None,
            },
            Some(b'\\') => (p.get(pi + 1) == Some(&s[si])).then_some(pi + 2),
            Some(&c) => (c == s[si]).then_some(pi + 1),
            None => None,
        };
        match (step, star) {
            (Some(next), _) => {
                pi = next;
                si += 1;
            }
            (None, Some((after, from))) => {
                pi = after;
                si = from + 1;
                star = Some((after, from + 1));
            }
            (None, None) => return false,
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Whether every class is closed and no escape dangles.
fn glob_valid(p: &[u8]) -> bool {
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            b'\\' => {
                if i + 1 >= p.len() {
                    return false;
                }
                i += 2;
            }
            b'[' => match class_match(&p[i + 1..], 0) {
                Some((_, after)) => i = p.len() - after.len(),
                None => return false,
            },
            _ => i += 1,
        }
    }
    true
}

/// Matches `c` against a class body (after `[`); returns whether it matched
/// and the pattern after `]`, or None for a malformed class.
fn class_match(mut p: &[u8], c: u8) -> Option<(bool, &[u8])> {
    let negate = p.first() == Some(&b'^');
    if negate {
        p = &p[1..];
    }
    let mut matched = false;
    let mut first = true;
    loop {
        match p.first()? {
            b']' if !first => return Some((matched != negate, &p[1..])),
            _ => {}
        }
        first = false;
        let (lo, rest) = class_char(p)?;
        p = rest;
        let hi = if p.first() == Some(&b'-') && p.get(1) != Some(&b']') {
            let (hi, rest) = class_char(&p[1..])?;
            p = rest;
            hi
        } else {
            lo
        };
        if lo <= c && c <= hi {
            matched = true;
        }
    }
}

fn class_char(p: &[u8]) -> Option<(u8, &[u8])> {
    match p.first()? {
        b'\\' => Some((*p.get(1)?, &p[2..])),
        b'-' | b']' => None,
        &c => Some((c, &p[1..])),
    }
}

/// Credentials from several payloads, ordered for lookup as the kubelet's
/// `BasicDockerKeyring` orders them.
#[derive(Debug, Default, Clone)]
pub struct Keyring {
    /// (normalised key, credentials under it), reverse-sorted by key text.
    index: Vec<(Key, Vec<Arc<Credential>>)>,
}

impl Keyring {
    /// Builds a keyring; credentials under the same key keep their order.
    pub fn new(credentials: impl IntoIterator<Item = Arc<Credential>>) -> Keyring {
        let mut index: Vec<(Key, Vec<Arc<Credential>>)> = Vec::new();
        for cred in credentials {
            let Some(key) = Key::parse(&cred.key) else {
                log::warn!(
                    "{}: registry key {:?} is not a valid host; skipped",
                    cred.source,
                    cred.key
                );
                continue;
            };
            match index.iter_mut().find(|(k, _)| k.text() == key.text()) {
                Some((_, v)) => v.push(cred),
                None => index.push((key, vec![cred])),
            }
        }
        index.sort_by_key(|(k, _)| std::cmp::Reverse(k.text()));
        Keyring { index }
    }

    /// The credentials that apply to `reference`, most specific key first,
    /// without repeating an identity.
    pub fn lookup(&self, reference: &Reference) -> Vec<Arc<Credential>> {
        let (host, port) = split_host_port(&reference.registry);
        let path = format!("/{}", reference.repository);
        let mut out: Vec<Arc<Credential>> = Vec::new();
        for (key, creds) in &self.index {
            if key.matches(host, port, &path) {
                out.extend(creds.iter().cloned());
            }
        }
        // The kubelet's fallback: Docker Hub images use credentials stored
        // under the legacy index host when no key matched directly.
        if out.is_empty() && reference.registry == crate::registry::reference::DOCKER_HUB {
            if let Some((_, creds)) = self
                .index
                .iter()
                .find(|(k, _)| k.text() == "index.docker.io")
            {
                out.extend(creds.iter().cloned());
            }
        }
        let mut unique: Vec<Arc<Credential>> = Vec::with_capacity(out.len());
        for c in out {
            if !unique.iter().any(|u| u.same_secret(&c)) {
                unique.push(c);
            }
        }
        unique
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(key: &str, user: &str) -> Arc<Credential> {
        Arc::new(Credential::new("test", key, user, "pw"))
    }

    fn users(k: &Keyring, image: &str) -> Vec<String> {
        k.lookup(&Reference::parse(image).unwrap())
            .iter()
            .map(|c| c.username.clone())
            .collect()
    }

    #[test]
    fn parses_all_three_formats() {
        let json = br#"{"auths":{"r.io":{"auth":"dTE6cDE="},"s.io":{"username":"u2","password":"p2","auth":""},"t.io":{"auth":"dTM6cDM"}}}"#;
        let p = parse_docker_config("secret a/b", json, ConfigFormat::DockerConfigJson).unwrap();
        let got: Vec<(&str, &str, &str)> = p
            .credentials
            .iter()
            .map(|c| (c.key.as_str(), c.username.as_str(), c.password.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("r.io", "u1", "p1"),
                ("s.io", "u2", "p2"),
                ("t.io", "u3", "p3")
            ]
        );
        assert!(p.warnings.is_empty());
        let cfg = br#"{"https://index.docker.io/v1/":{"auth":"dTE6cDE=","email":"x@y"}}"#;
        let p = parse_docker_config("secret a/c", cfg, ConfigFormat::DockerCfg).unwrap();
        assert_eq!(p.credentials[0].username, "u1");
        // auth wins over username/password.
        let both = br#"{"auths":{"r.io":{"auth":"dTE6cDE=","username":"x","password":"y"}}}"#;
        assert_eq!(
            parse_docker_config("s", both, ConfigFormat::DockerConfigJson)
                .unwrap()
                .credentials[0]
                .username,
            "u1"
        );
    }

    #[test]
    fn bad_payloads_give_errors_without_secrets() {
        let e = parse_docker_config(
            "secret a/b",
            b"{not json hunter2",
            ConfigFormat::DockerConfigJson,
        )
        .unwrap_err();
        assert!(!e.0.contains("hunter2"), "{e}");
        assert!(
            parse_docker_config("s", br#"{"auths":[]}"#, ConfigFormat::DockerConfigJson).is_err()
        );
        assert!(parse_docker_config("s", br#"[1]"#, ConfigFormat::DockerCfg).is_err());
        let p = parse_docker_config(
            "s",
            br#"{"auths":{"a.io":{"auth":"!!!hunter2"},"b.io":{"auth":"bm9jb2xvbg=="},"c.io":{},"d.io":5,"e.io":{"auth":"dTpw"}}}"#,
            ConfigFormat::DockerConfigJson,
        )
        .unwrap();
        assert_eq!(p.credentials.len(), 1);
        assert_eq!(p.warnings.len(), 4);
        assert!(p.warnings.iter().all(|w| !w.contains("hunter2")));
        let p = parse_docker_config(
            "s",
            br#"{"credsStore":"desktop"}"#,
            ConfigFormat::DockerConfigJson,
        )
        .unwrap();
        assert!(p.credentials.is_empty());
        assert_eq!(p.warnings.len(), 1);
    }

    #[test]
    fn debug_redacts_password() {
        let c = Credential::new("s", "k", "user", "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!c.describe().contains("hunter2"));
    }

    #[test]
    fn kubelet_matching_rules() {
        let k = Keyring::new([
            cred("*.example.com", "glob"),
            cred("example.com", "bare"),
            cred("https://registry.example.com/v2/", "v2"),
            cred("registry.example.com/team", "team"),
            cred("registry.example.com:5000", "port"),
            cred("quay.io/coreos", "coreos"),
            cred("quay.io", "quay"),
            cred("r?.io", "question"),
            cred("c[0-9].io", "class"),
            cred("[ab].io", "unparsable"),
        ]);
        // Most specific (reverse-sorted) first, glob after exact.
        assert_eq!(
            users(&k, "registry.example.com/team/app"),
            ["team", "v2", "glob"]
        );
        assert_eq!(users(&k, "registry.example.com/other"), ["v2", "glob"]);
        // Path prefix is a string prefix, as in the kubelet.
        assert_eq!(
            users(&k, "registry.example.com/teamx/app"),
            ["team", "v2", "glob"]
        );
        assert_eq!(users(&k, "a.example.com/x"), ["glob"]);
        assert_eq!(users(&k, "example.com/x"), ["bare"]);
        assert!(users(&k, "a.b.example.com/x").is_empty());
        assert_eq!(users(&k, "registry.example.com:5000/x"), ["port"]);
        assert_eq!(users(&k, "quay.io/coreos/etcd"), ["coreos", "quay"]);
        assert_eq!(users(&k, "r1.io/x"), ["question"]);
        assert_eq!(users(&k, "c7.io/x"), ["class"]);
        assert!(users(&k, "cx.io/x").is_empty());
        // Go's URL parser rejects "[ab].io", so the kubelet never uses that key.
        assert!(users(&k, "a.io/x").is_empty());
    }

    #[test]
    fn docker_hub_keys() {
        let k = Keyring::new([cred("https://index.docker.io/v1/", "hub")]);
        assert_eq!(users(&k, "nginx"), ["hub"]);
        assert_eq!(users(&k, "docker.io/team/app"), ["hub"]);
        assert!(users(&k, "quay.io/team/app").is_empty());
        let k = Keyring::new([
            cred("docker.io", "short"),
            cred("index.docker.io", "legacy"),
        ]);
        assert_eq!(users(&k, "nginx"), ["short"]);
    }

    #[test]
    fn same_identity_is_tried_once() {
        let k = Keyring::new([cred("r.io", "u"), cred("r.io/a", "u")]);
        assert_eq!(users(&k, "r.io/a/b").len(), 1);
    }

    #[test]
    fn glob_is_not_exponential() {
        // Found by fuzzing: the recursive version took minutes on this.
        let p = "*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b".as_bytes();
        let s = "a".repeat(200);
        let t = std::time::Instant::now();
        assert!(!glob_match(p, s.as_bytes()));
        assert!(t.elapsed() < std::time::Duration::from_millis(100));
    }

    #[test]
    fn globs() {
        for (p, s, want) in [
            ("*", "abc", true),
            ("a*c", "abbbc", true),
            ("a*c", "abd", false),
            ("[a-c]x", "bx", true),
            ("[^a-c]x", "bx", false),
            ("[^a-c]x", "dx", true),
            ("\\*", "*", true),
            ("[", "a", false),
            ("[a-", "a", false),
            ("[]", "a", false),
            ("a\\", "a", false),
            ("*.example.com", "registry.example.com", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
            ("*", "", true),
            ("**", "x", true),
            ("?", "", false),
        ] {
            assert_eq!(glob_match(p.as_bytes(), s.as_bytes()), want, "{p} {s}");
        }
    }
}
