//! Pull credentials: docker config payloads (`.dockerconfigjson`,
//! `.dockercfg`, `config.json`) and the kubelet's rules for which
//! credentials apply to an image (`pkg/credentialprovider/keyring.go`);
//! `provider` runs the kubelet's image credential provider plugins.
//! Imports `sys` and `image` only.

pub mod provider;

use std::fmt;
use std::sync::Arc;

use base64::Engine;

use crate::image::reference::Reference;

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

    /// The password, for the fuzz properties only (never logged).
    #[doc(hidden)]
    pub fn password_for_tests(&self) -> &str {
        &self.password
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

/// A payload the kubelet would refuse: the message names the source and the
/// entry, never a value from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Credentials parsed from one payload, plus notes about parts we ignore
/// (the notes name keys, never values).
#[derive(Debug, Default)]
pub struct Parsed {
    /// Every entry, in payload order.
    pub credentials: Vec<Credential>,
    /// One line per ignored part (`credsStore`, `credHelpers`).
    pub warnings: Vec<String>,
}

/// Parses a docker config payload found at `source` exactly as the kubelet's
/// `json.Unmarshal` into `DockerConfigJSON` / `DockerConfig` does
/// (pkg/credentialprovider/config.go): field names match case-insensitively
/// (Go's encoding/json), the last of duplicate keys wins, and one entry that
/// cannot be decoded fails the whole payload, as `MakeDockerKeyring` then
/// fails every pull of the pod. An entry without user name is kept: the
/// runtime pulls anonymously with it.
pub fn parse_docker_config(
    source: &str,
    bytes: &[u8],
    format: ConfigFormat,
) -> Result<Parsed, ConfigError> {
    let fail = |why: String| ConfigError(format!("{source}: {why}"));
    let root: GoJson = serde_json::from_slice(bytes)
        .map_err(|e| fail(format!("not valid JSON ({})", e.classify_name())))?;
    let mut parsed = Parsed::default();
    let auths = match format {
        ConfigFormat::DockerConfigJson => {
            let Some(fields) = root.into_object("the config").map_err(fail)? else {
                return Ok(parsed);
            };
            for name in ["credsStore", "credHelpers"] {
                if fields.iter().any(|(k, _)| k == name) {
                    parsed.warnings.push(format!(
                        "{source}: {name} is not supported; only \"auths\" is used"
                    ));
                }
            }
            if let Some(h) = go_field(&fields, "httpheaders") {
                string_map(h).map_err(|why| fail(format!("\"HttpHeaders\": {why}")))?;
            }
            // The last key that folds to "auths" is what Go keeps.
            match fields.into_iter().rev().find(|(k, _)| fold(k) == "auths") {
                Some((_, a)) => a,
                None => return Ok(parsed),
            }
        }
        ConfigFormat::DockerCfg => root,
    };
    let Some(entries) = auths.into_object("\"auths\"").map_err(fail)? else {
        return Ok(parsed);
    };
    // A Go map: a repeated key keeps its last value.
    let mut keep: Vec<(String, GoJson)> = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        keep.retain(|(k, _)| *k != key);
        keep.push((key, value));
    }
    for (key, entry) in keep {
        let (user, pass) =
            parse_entry(entry).map_err(|why| fail(format!("entry {key:?}: {why}")))?;
        parsed
            .credentials
            .push(Credential::new(source, key, user, pass));
    }
    Ok(parsed)
}

/// A JSON value that keeps the order (and the repeats) of object keys, as
/// Go's decoder sees them.
#[derive(Debug, Clone)]
enum GoJson {
    Null,
    Bool,
    Number,
    String(String),
    Array,
    Object(Vec<(String, GoJson)>),
}

impl GoJson {
    /// The fields of an object; `None` for null (Go leaves the value
    /// empty); an error naming `what` for anything else.
    fn into_object(self, what: &str) -> Result<Option<Vec<(String, GoJson)>>, String> {
        match self {
            GoJson::Null => Ok(None),
            GoJson::Object(fields) => Ok(Some(fields)),
            other => Err(format!(
                "{what} must be a JSON object, found {}",
                other.kind()
            )),
        }
    }

    /// Go's name for the JSON type, as its type errors say it.
    fn kind(&self) -> &'static str {
        match self {
            GoJson::Null => "null",
            GoJson::Bool => "a bool",
            GoJson::Number => "a number",
            GoJson::String(_) => "a string",
            GoJson::Array => "an array",
            GoJson::Object(_) => "an object",
        }
    }
}

impl<'de> serde::Deserialize<'de> for GoJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<GoJson, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = GoJson;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("JSON")
            }
            fn visit_unit<E>(self) -> Result<GoJson, E> {
                Ok(GoJson::Null)
            }
            fn visit_none<E>(self) -> Result<GoJson, E> {
                Ok(GoJson::Null)
            }
            fn visit_bool<E>(self, _: bool) -> Result<GoJson, E> {
                Ok(GoJson::Bool)
            }
            fn visit_i64<E>(self, _: i64) -> Result<GoJson, E> {
                Ok(GoJson::Number)
            }
            fn visit_u64<E>(self, _: u64) -> Result<GoJson, E> {
                Ok(GoJson::Number)
            }
            fn visit_f64<E>(self, _: f64) -> Result<GoJson, E> {
                Ok(GoJson::Number)
            }
            fn visit_str<E>(self, v: &str) -> Result<GoJson, E> {
                Ok(GoJson::String(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<GoJson, E> {
                Ok(GoJson::String(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<GoJson, A::Error> {
                while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(GoJson::Array)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<GoJson, A::Error> {
                let mut fields = Vec::new();
                while let Some((k, v)) = a.next_entry::<String, GoJson>()? {
                    fields.push((k, v));
                }
                Ok(GoJson::Object(fields))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Go's case folding of field names: ASCII case, and the two non-ASCII
/// letters that fold to ASCII (`ſ` to s, the Kelvin sign to k).
fn fold(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '\u{17f}' => 's',
            '\u{212a}' => 'k',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// The value Go's decoder stores in the struct field `name` (lower case):
/// every key that folds to it is applied in order, so the last one wins.
fn go_field<'a>(fields: &'a [(String, GoJson)], name: &str) -> Option<&'a GoJson> {
    fields
        .iter()
        .rev()
        .find(|(k, _)| fold(k) == name)
        .map(|(_, v)| v)
}

/// A `string` field: absent or null leave it empty; any other type fails.
fn string_field(fields: &[(String, GoJson)], name: &str) -> Result<String, String> {
    match go_field(fields, name) {
        None | Some(GoJson::Null) => Ok(String::new()),
        Some(GoJson::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!(
            "field {name:?} must be a string, found {}",
            other.kind()
        )),
    }
}

/// A `map[string]string`.
fn string_map(v: &GoJson) -> Result<(), String> {
    match v {
        GoJson::Null => Ok(()),
        GoJson::Object(fields) => fields.iter().try_for_each(|(k, v)| match v {
            GoJson::String(_) | GoJson::Null => Ok(()),
            other => Err(format!("{k:?} must be a string, found {}", other.kind())),
        }),
        other => Err(format!("must be an object, found {}", other.kind())),
    }
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

/// `DockerConfigEntry.UnmarshalJSON`: a non-empty `auth` wins over
/// `username`/`password`; null is an empty entry.
fn parse_entry(entry: GoJson) -> Result<(String, String), String> {
    let Some(fields) = entry.into_object("the entry")? else {
        return Ok((String::new(), String::new()));
    };
    let user = string_field(&fields, "username")?;
    let pass = string_field(&fields, "password")?;
    string_field(&fields, "email")?;
    let auth = string_field(&fields, "auth")?;
    if auth.is_empty() {
        return Ok((user, pass));
    }
    decode_auth(&auth)
}

/// `decodeDockerConfigFieldAuth`: padded base64 when the trimmed value ends
/// in `=`, unpadded otherwise; like Go's decoder, `\r` and `\n` anywhere are
/// skipped and the unused bits of the last character are not checked. The
/// two halves are used as they are: a secret made with `echo user:pw |
/// base64` has a password ending in a newline, and fails on the node.
fn decode_auth(field: &str) -> Result<(String, String), String> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let padded = field.trim().ends_with('=');
    let config = GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(if padded {
            DecodePaddingMode::RequireCanonical
        } else {
            DecodePaddingMode::RequireNone
        });
    let engine = GeneralPurpose::new(&base64::alphabet::STANDARD, config);
    let cleaned: Vec<u8> = field
        .bytes()
        .filter(|b| !matches!(b, b'\r' | b'\n'))
        .collect();
    let decoded = engine.decode(cleaned).map_err(|_| {
        format!(
            "\"auth\" is not valid {} base64",
            if padded { "padded" } else { "unpadded" }
        )
    })?;
    let Some(colon) = decoded.iter().position(|&b| b == b':') else {
        return Err(
            "unable to parse auth field, must be formatted as base64(username:password)".into(),
        );
    };
    // Go keeps any bytes; a registry gets them back only through Basic auth,
    // so a lossy conversion of non-UTF-8 bytes can only change a password no
    // registry would have accepted either way.
    Ok((
        String::from_utf8_lossy(&decoded[..colon]).into_owned(),
        String::from_utf8_lossy(&decoded[colon + 1..]).into_owned(),
    ))
}

/// An image credential provider's `matchImages` pattern, parsed once.
#[derive(Debug, Clone)]
pub struct MatchImage(Option<Key>);

impl MatchImage {
    /// Parses a pattern (one that is not a URL matches nothing).
    pub fn new(pattern: &str) -> MatchImage {
        MatchImage(Key::parse(pattern))
    }

    /// Whether it matches the image, by the kubelet's `URLsMatchStr`: the
    /// same glob rules as registry keys.
    pub fn matches(&self, reference: &Reference) -> bool {
        let (host, port) = split_host_port(&reference.registry);
        let path = format!("/{}", reference.repository);
        self.0
            .as_ref()
            .is_some_and(|k| k.matches(host, port, &path))
    }
}

/// Checks a `matchImages` pattern as the kubelet's `ParseSchemelessURL`
/// would accept it: a host (with `*`, `?` and `[...]` globs per label), an
/// optional port and path.
pub fn valid_match_image(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("empty".into());
    }
    if let Some(c) = pattern
        .chars()
        .find(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!("contains {c:?}"));
    }
    let Some(key) = Key::parse(pattern) else {
        return Err("no host".into());
    };
    if key.host.is_empty() || (key.host.starts_with('[') && !key.host.ends_with(']')) {
        return Err("invalid host".into());
    }
    if !key.port.is_empty() && !key.port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid port {:?}", key.port));
    }
    Ok(())
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
        // Go's url.Parse takes user info up to the last '@' out of the host:
        // `user@registry.io` is keyed by `registry.io`.
        let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        if authority.is_empty() {
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
        if out.is_empty() && reference.registry == crate::image::reference::DOCKER_HUB {
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
        // One entry the kubelet cannot decode fails the whole payload, as
        // MakeDockerKeyring fails; the error names the entry, not its value.
        for (bad, why) in [
            (r#"{"auth":"!!!hunter2"}"#, "base64"),
            (r#"{"auth":"bm9jb2xvbg=="}"#, "base64(username:password)"),
            (r#"5"#, "found a number"),
            (r#"{"username":7}"#, "\"username\" must be a string"),
            (r#"{"email":["hunter2"]}"#, "\"email\" must be a string"),
        ] {
            let payload = format!(r#"{{"auths":{{"good.io":{{"auth":"dTpw"}},"bad.io":{bad}}}}}"#);
            let e = parse_docker_config(
                "secret n/s",
                payload.as_bytes(),
                ConfigFormat::DockerConfigJson,
            )
            .unwrap_err();
            assert!(
                e.0.contains("secret n/s") && e.0.contains("\"bad.io\""),
                "{e}"
            );
            assert!(e.0.contains(why), "{bad}: {e}");
            assert!(!e.0.contains("hunter2"), "{e}");
        }
        assert!(parse_docker_config(
            "s",
            br#"{"auths":{},"HttpHeaders":{"x":1}}"#,
            ConfigFormat::DockerConfigJson
        )
        .is_err());
        let p = parse_docker_config(
            "s",
            br#"{"credsStore":"desktop"}"#,
            ConfigFormat::DockerConfigJson,
        )
        .unwrap();
        assert!(p.credentials.is_empty());
        assert_eq!(p.warnings.len(), 1);
    }

    fn one(payload: &str) -> (String, String) {
        let p = parse_docker_config("s", payload.as_bytes(), ConfigFormat::DockerConfigJson)
            .unwrap_or_else(|e| panic!("{payload}: {e}"));
        assert_eq!(p.credentials.len(), 1, "{payload}");
        let c = &p.credentials[0];
        (c.username.clone(), c.password.clone())
    }

    /// decodeDockerConfigFieldAuth and Go's encoding/json, case by case.
    #[test]
    fn entries_decode_as_the_kubelet_decodes_them() {
        let pair = |u: &str, p: &str| (u.to_string(), p.to_string());
        // Padded only when the (trimmed) value ends in '='.
        assert_eq!(
            one(r#"{"auths":{"r":{"auth":"dTE6cDE="}}}"#),
            pair("u1", "p1")
        );
        assert_eq!(
            one(r#"{"auths":{"r":{"auth":"dTE6cDE"}}}"#),
            pair("u1", "p1")
        );
        // Go's decoder skips \r and \n anywhere.
        assert_eq!(
            one(r#"{"auths":{"r":{"auth":"dTE6\r\ncDE="}}}"#),
            pair("u1", "p1")
        );
        assert_eq!(
            one(r#"{"auths":{"r":{"auth":"dTE6cDE=\n"}}}"#),
            pair("u1", "p1")
        );
        // `echo alice:pw | base64`: the newline stays in the password.
        assert_eq!(
            one(r#"{"auths":{"r":{"auth":"YWxpY2U6cHcK"}}}"#),
            pair("alice", "pw\n")
        );
        // Split at the first colon; nothing is trimmed.
        assert_eq!(
            one(r#"{"auths":{"r":{"auth":"IGE6YjpjIA=="}}}"#),
            pair(" a", "b:c ")
        );
        // Unused trailing bits are not checked (Go is not strict).
        assert_eq!(one(r#"{"auths":{"r":{"auth":"dTpx"}}}"#).0, "u");
        // Field names match case-insensitively; the last of repeated names wins.
        assert_eq!(
            one(r#"{"AUTHS":{"r":{"UserName":"u","PASSWORD":"p"}}}"#),
            pair("u", "p")
        );
        assert_eq!(
            one(r#"{"auths":{"r":{"auth":"dTE6cDE=","Auth":"","username":"x","password":"y"}}}"#),
            pair("x", "y")
        );
        assert_eq!(one(r#"{"auths":{"r":{"uſername":"long-s"}}}"#).0, "long-s");
        // An entry with no user name is kept: the runtime then pulls anonymously.
        assert_eq!(one(r#"{"auths":{"r":{}}}"#), pair("", ""));
        assert_eq!(one(r#"{"auths":{"r":null}}"#), pair("", ""));
        // A repeated registry key keeps its last entry, as a Go map does.
        assert_eq!(
            one(r#"{"auths":{"r":{"username":"a"},"r":{"username":"b"}}}"#).0,
            "b"
        );
        // A space is not skipped by Go's decoder.
        assert!(parse_docker_config(
            "s",
            br#"{"auths":{"r":{"auth":" dTE6cDE="}}}"#,
            ConfigFormat::DockerConfigJson
        )
        .is_err());
        // Padding where none is expected, and missing padding where it is.
        assert!(parse_docker_config(
            "s",
            br#"{"auths":{"r":{"auth":"dTE6cD=E"}}}"#,
            ConfigFormat::DockerConfigJson
        )
        .is_err());
        assert!(
            parse_docker_config("s", b"null", ConfigFormat::DockerConfigJson)
                .unwrap()
                .credentials
                .is_empty()
        );
    }

    #[test]
    fn keys_with_user_info_are_keyed_by_host() {
        let k = Keyring::new([
            cred("https://someone@r.example.com/v2/", "u"),
            cred("a:b@q.io", "q"),
        ]);
        assert_eq!(users(&k, "r.example.com/app"), ["u"]);
        assert_eq!(users(&k, "q.io/app"), ["q"]);
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
