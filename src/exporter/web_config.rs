//! `--web.config.file`: the web configuration every exporter built on the
//! Prometheus exporter-toolkit reads (node_exporter, blackbox_exporter, ...),
//! in its format and meaning: `tls_server_config`, `http_server_config`,
//! `basic_auth_users` and `rate_limit`. Validated whole before anything is
//! served: a file that does not parse, has a key we do not know, names a
//! file that cannot be read, holds a password that is not a bcrypt hash or
//! asks for what we cannot do stops the start; nothing falls back to
//! plain HTTP.

use std::fmt;
use std::time::Duration;

use serde_json::{Map, Value};

/// What the file configures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebConfig {
    /// HTTPS, when `tls_server_config` names a certificate.
    pub tls: Option<TlsSettings>,
    /// (user, bcrypt hash); empty: no basic auth.
    pub users: Vec<(String, String)>,
    /// Headers added to every answer.
    pub headers: Vec<(String, String)>,
    /// Requests allowed: one per `interval`, with bursts of `burst`.
    pub rate_limit: Option<(Duration, u32)>,
}

/// Where a PEM comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum Pem {
    /// A file, read again when it changes.
    File(String),
    /// Inline in the config file.
    Inline(String),
}

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pem::File(p) => write!(f, "File({p:?})"),
            // A key inline is a secret.
            Pem::Inline(_) => f.write_str("Inline(..)"),
        }
    }
}

/// Go's `tls.ClientAuthType`, as the toolkit names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is asked for.
    NoClientCert,
    /// Asked for, not required, not verified.
    RequestClientCert,
    /// Required, not verified.
    RequireAnyClientCert,
    /// Verified against the client CA when given.
    VerifyClientCertIfGiven,
    /// Required and verified against the client CA.
    RequireAndVerifyClientCert,
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.0 (accepted as a minimum; we serve 1.2 and 1.3 only).
    Tls10,
    /// TLS 1.1 (likewise).
    Tls11,
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

/// `tls_server_config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The server certificate chain.
    pub cert: Pem,
    /// Its private key.
    pub key: Pem,
    /// The client certificate policy.
    pub client_auth: ClientAuth,
    /// CAs for client certificates.
    pub client_ca: Option<Pem>,
    /// Lowest version offered.
    pub min_version: TlsVersion,
    /// Highest version offered.
    pub max_version: TlsVersion,
    /// TLS 1.2 cipher suites by Go name, in preference order (empty: the defaults).
    pub cipher_suites: Vec<String>,
    /// Whether the server's order of suites wins.
    pub prefer_server_cipher_suites: bool,
    /// Key exchange groups by Go name, in preference order (empty: the defaults).
    pub curve_preferences: Vec<String>,
}

/// Why a web config cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfigError(pub String);

impl fmt::Display for WebConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "--web.config.file: {}", self.0)
    }
}

impl std::error::Error for WebConfigError {}

fn err<T>(what: impl Into<String>) -> Result<T, WebConfigError> {
    Err(WebConfigError(what.into()))
}

/// The TLS 1.2 suites we can serve, by the names Go (and so the toolkit)
/// gives them. TLS 1.3 suites are not configurable, as in Go.
pub const CIPHER_SUITES: [&str; 8] = [
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
];

/// The key exchange groups we can serve, by Go's names.
pub const CURVES: [&str; 3] = ["X25519", "CurveP256", "CurveP384"];

/// The headers the toolkit lets a config add.
const HEADERS: [&str; 5] = [
    "Content-Security-Policy",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "X-XSS-Protection",
    "Strict-Transport-Security",
];

/// Reads and validates a web config file; the files it names must be
/// readable now (they are read again when they change).
pub fn load(path: &str) -> Result<WebConfig, WebConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| WebConfigError(format!("{path}: {e}")))?;
    let config = parse(&text).map_err(|e| WebConfigError(format!("{path}: {}", e.0)))?;
    if let Some(tls) = &config.tls {
        for pem in [Some(&tls.cert), Some(&tls.key), tls.client_ca.as_ref()]
            .into_iter()
            .flatten()
        {
            if let Pem::File(f) = pem {
                std::fs::metadata(f).map_err(|e| WebConfigError(format!("{path}: {f}: {e}")))?;
            }
        }
    }
    Ok(config)
}

/// Parses and validates a web config's text (YAML; an empty file is an
/// empty config: plain HTTP, no auth).
pub fn parse(text: &str) -> Result<WebConfig, WebConfigError> {
    let docs = crate::sys::yaml::parse_yaml_documents(text)
        .map_err(|e| WebConfigError(format!("not YAML: {e}")))?;
    let root = match docs.as_slice() {
        [] | [Value::Null] => return Ok(WebConfig::default()),
        [Value::Object(m)] => m,
        [_] => return err("not a mapping"),
        _ => return err("more than one YAML document"),
    };
    known(
        root,
        "",
        &[
            "tls_server_config",
            "http_server_config",
            "basic_auth_users",
            "rate_limit",
        ],
    )?;
    let mut config = WebConfig::default();
    if let Some(v) = present(root, "tls_server_config") {
        config.tls = tls_settings(mapping(v, "tls_server_config")?)?;
    }
    if let Some(v) = present(root, "http_server_config") {
        let m = mapping(v, "http_server_config")?;
        known(m, "http_server_config.", &["http2", "headers"])?;
        if let Some(h2) = present(m, "http2") {
            h2.as_bool()
                .ok_or_else(|| WebConfigError("http_server_config.http2: not a boolean".into()))?;
        }
        if let Some(h) = present(m, "headers") {
            config.headers = headers(mapping(h, "http_server_config.headers")?)?;
        }
    }
    if let Some(v) = present(root, "basic_auth_users") {
        for (user, hash) in mapping(v, "basic_auth_users")? {
            let hash = hash
                .as_str()
                .ok_or_else(|| WebConfigError(format!("basic_auth_users.{user}: not a string")))?;
            if !is_bcrypt(hash) {
                // Never print what was there: it may be a plain password.
                return err(format!(
                    "basic_auth_users.{user}: not a bcrypt hash (make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)"
                ));
            }
            config.users.push((user.clone(), hash.to_string()));
        }
    }
    if let Some(v) = present(root, "rate_limit") {
        config.rate_limit = rate_limit(mapping(v, "rate_limit")?)?;
    }
    Ok(config)
}

fn present<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    m.get(key).filter(|v| !v.is_null())
}

fn mapping<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>, WebConfigError> {
    v.as_object()
        .ok_or_else(|| WebConfigError(format!("{what}: not a mapping")))
}

fn known(m: &Map<String, Value>, prefix: &str, keys: &[&str]) -> Result<(), WebConfigError> {
    match m.keys().find(|k| !keys.contains(&k.as_str())) {
        Some(k) => err(format!("unknown key {prefix}{k}")),
        None => Ok(()),
    }
}

fn string(m: &Map<String, Value>, key: &str) -> Result<Option<String>, WebConfigError> {
    match present(m, key) {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => err(format!("tls_server_config.{key}: not a string")),
    }
}

fn strings(m: &Map<String, Value>, key: &str) -> Result<Vec<String>, WebConfigError> {
    match present(m, key) {
        None => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str().map(str::to_string).ok_or_else(|| {
                    WebConfigError(format!("tls_server_config.{key}: not a list of strings"))
                })
            })
            .collect(),
        Some(_) => err(format!("tls_server_config.{key}: not a list")),
    }
}

/// One of a file or an inline PEM, not both.
fn pem(m: &Map<String, Value>, inline: &str, file: &str) -> Result<Option<Pem>, WebConfigError> {
    match (string(m, inline)?, string(m, file)?) {
        (Some(_), Some(_)) => err(format!(
            "tls_server_config: both {inline} and {file}; give one"
        )),
        (Some(text), None) => Ok(Some(Pem::Inline(text))),
        (None, Some(path)) => Ok(Some(Pem::File(path))),
        (None, None) => Ok(None),
    }
}

fn tls_settings(m: &Map<String, Value>) -> Result<Option<TlsSettings>, WebConfigError> {
    known(
        m,
        "tls_server_config.",
        &[
            "cert",
            "key",
            "client_ca",
            "cert_file",
            "key_file",
            "client_auth_type",
            "client_ca_file",
            "client_allowed_sans",
            "min_version",
            "max_version",
            "cipher_suites",
            "prefer_server_cipher_suites",
            "curve_preferences",
        ],
    )?;
    let cert = pem(m, "cert", "cert_file")?;
    let key = pem(m, "key", "key_file")?;
    let client_ca = pem(m, "client_ca", "client_ca_file")?;
    let client_auth = match string(m, "client_auth_type")?.as_deref() {
        None | Some("NoClientCert") => ClientAuth::NoClientCert,
        Some("RequestClientCert") => ClientAuth::RequestClientCert,
        Some("RequireAnyClientCert") => ClientAuth::RequireAnyClientCert,
        Some("VerifyClientCertIfGiven") => ClientAuth::VerifyClientCertIfGiven,
        Some("RequireAndVerifyClientCert") => ClientAuth::RequireAndVerifyClientCert,
        Some(other) => {
            return err(format!(
                "tls_server_config.client_auth_type: {other:?} is none of NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert"
            ))
        }
    };
    let sans = strings(m, "client_allowed_sans")?;
    let cipher_suites = strings(m, "cipher_suites")?;
    let curve_preferences = strings(m, "curve_preferences")?;
    let prefer_server_cipher_suites = match present(m, "prefer_server_cipher_suites") {
        None => true,
        Some(v) => v.as_bool().ok_or_else(|| {
            WebConfigError("tls_server_config.prefer_server_cipher_suites: not a boolean".into())
        })?,
    };
    let min_version = version(m, "min_version")?.unwrap_or(TlsVersion::Tls12);
    let max_version = version(m, "max_version")?.unwrap_or(TlsVersion::Tls13);
    let (cert, key) = match (cert, key) {
        // Nothing of a certificate: the toolkit serves plain HTTP, and so
        // do we (the other keys then have nothing to apply to).
        (None, None) if client_ca.is_none() && client_auth == ClientAuth::NoClientCert => {
            return Ok(None)
        }
        (Some(c), Some(k)) => (c, k),
        (None, _) => return err("tls_server_config: missing cert_file (or cert)"),
        (_, None) => return err("tls_server_config: missing key_file (or key)"),
    };
    let verifies = matches!(
        client_auth,
        ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
    );
    if verifies && client_ca.is_none() {
        return err(format!(
            "tls_server_config: client_auth_type {client_auth:?} needs client_ca_file"
        ));
    }
    if !verifies && client_ca.is_some() {
        return err(format!(
            "tls_server_config: client_ca_file is given but client_auth_type {client_auth:?} does not verify client certificates; use RequireAndVerifyClientCert"
        ));
    }
    if !sans.is_empty() {
        return err("tls_server_config.client_allowed_sans is not supported: verify clients by their CA (client_ca_file)");
    }
    if max_version < TlsVersion::Tls12 {
        return err("tls_server_config.max_version: TLS 1.2 and 1.3 are served; a maximum below TLS12 leaves nothing");
    }
    if min_version > max_version {
        return err("tls_server_config: min_version is above max_version");
    }
    if let Some(s) = cipher_suites
        .iter()
        .find(|s| !CIPHER_SUITES.contains(&s.as_str()))
    {
        return err(format!(
            "tls_server_config.cipher_suites: {s:?} is not served (we serve {})",
            CIPHER_SUITES.join(", ")
        ));
    }
    if let Some(c) = curve_preferences
        .iter()
        .find(|c| !CURVES.contains(&c.as_str()))
    {
        return err(format!(
            "tls_server_config.curve_preferences: {c:?} is not served (we serve {})",
            CURVES.join(", ")
        ));
    }
    Ok(Some(TlsSettings {
        cert,
        key,
        client_auth,
        client_ca,
        min_version,
        max_version,
        cipher_suites,
        prefer_server_cipher_suites,
        curve_preferences,
    }))
}

fn version(m: &Map<String, Value>, key: &str) -> Result<Option<TlsVersion>, WebConfigError> {
    Ok(match string(m, key)?.as_deref() {
        None => None,
        Some("TLS10") => Some(TlsVersion::Tls10),
        Some("TLS11") => Some(TlsVersion::Tls11),
        Some("TLS12") => Some(TlsVersion::Tls12),
        Some("TLS13") => Some(TlsVersion::Tls13),
        Some(other) => {
            return err(format!(
                "tls_server_config.{key}: {other:?} is none of TLS10, TLS11, TLS12, TLS13"
            ))
        }
    })
}

fn headers(m: &Map<String, Value>) -> Result<Vec<(String, String)>, WebConfigError> {
    let mut out = Vec::new();
    for (name, value) in m {
        let Some(canonical) = HEADERS.iter().find(|h| h.eq_ignore_ascii_case(name)) else {
            return err(format!(
                "http_server_config.headers: {name:?} cannot be set (only {})",
                HEADERS.join(", ")
            ));
        };
        let value = match value {
            Value::Null => continue,
            Value::String(s) if s.is_empty() => continue,
            Value::String(s) => s.clone(),
            _ => return err(format!("http_server_config.headers.{name}: not a string")),
        };
        if value.bytes().any(|b| b.is_ascii_control()) {
            return err(format!(
                "http_server_config.headers.{name}: control characters"
            ));
        }
        let lower = value.to_ascii_lowercase();
        match *canonical {
            "X-Frame-Options" if lower != "deny" && lower != "sameorigin" => {
                return err("http_server_config.headers.X-Frame-Options: deny or sameorigin")
            }
            "X-Content-Type-Options" if lower != "nosniff" => {
                return err("http_server_config.headers.X-Content-Type-Options: nosniff")
            }
            _ => {}
        }
        out.push((canonical.to_string(), value));
    }
    Ok(out)
}

fn rate_limit(m: &Map<String, Value>) -> Result<Option<(Duration, u32)>, WebConfigError> {
    known(m, "rate_limit.", &["interval", "burst"])?;
    let interval = match present(m, "interval") {
        None => Duration::ZERO,
        Some(Value::String(s)) => crate::sys::duration::parse_duration(s).ok_or_else(|| {
            WebConfigError(format!("rate_limit.interval: {s:?} is not a duration"))
        })?,
        Some(_) => return err("rate_limit.interval: not a duration"),
    };
    let burst = match present(m, "burst") {
        None => 0,
        Some(v) => v
            .as_u64()
            .and_then(|b| u32::try_from(b).ok())
            .ok_or_else(|| WebConfigError("rate_limit.burst: not a count".into()))?,
    };
    if interval.is_zero() {
        return Ok(None);
    }
    Ok(Some((interval, burst.max(1))))
}

/// Whether `hash` is a bcrypt hash as htpasswd and Go write it:
/// `$2a$`, `$2b$` or `$2y$`, a two-digit cost from 4 to 31, `$`, and 53
/// characters of bcrypt's base64.
pub fn is_bcrypt(hash: &str) -> bool {
    let b = hash.as_bytes();
    b.len() == 60
        && (hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$"))
        && hash[4..6]
            .parse::<u32>()
            .is_ok_and(|c| (4..=31).contains(&c))
        && b[6] == b'$'
        && b[7..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'.' || *c == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG";

    fn error(text: &str) -> String {
        parse(text).unwrap_err().0
    }

    #[test]
    fn a_full_config() {
        let c = parse(&format!(
            "tls_server_config:\n  cert_file: /c.pem\n  key_file: /k.pem\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: /ca.pem\n  min_version: TLS13\n  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n  curve_preferences: [X25519]\nhttp_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n    Strict-Transport-Security: max-age=31536000\nbasic_auth_users:\n  prometheus: '{HASH}'\nrate_limit:\n  interval: 100ms\n  burst: 20\n"
        ))
        .unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(tls.cert, Pem::File("/c.pem".into()));
        assert_eq!(tls.client_auth, ClientAuth::RequireAndVerifyClientCert);
        assert_eq!(tls.min_version, TlsVersion::Tls13);
        assert_eq!(tls.max_version, TlsVersion::Tls13);
        assert_eq!(c.users, [("prometheus".to_string(), HASH.to_string())]);
        assert_eq!(c.headers.len(), 2);
        assert_eq!(c.rate_limit, Some((Duration::from_millis(100), 20)));
        assert_eq!(parse("").unwrap(), WebConfig::default());
        assert_eq!(parse("tls_server_config: {}\n").unwrap().tls, None);
    }

    #[test]
    fn what_stops_the_start() {
        assert!(error("nonsense: 1\n").contains("unknown key nonsense"));
        assert!(error("tls_server_config:\n  certfile: x\n")
            .contains("unknown key tls_server_config.certfile"));
        assert!(error("tls_server_config:\n  cert_file: x\n").contains("missing key_file"));
        assert!(error("tls_server_config:\n  cert_file: x\n  key_file: y\n  client_auth_type: RequireAndVerifyClientCert\n").contains("needs client_ca_file"));
        assert!(
            error("tls_server_config:\n  cert_file: x\n  key_file: y\n  client_ca_file: z\n")
                .contains("does not verify")
        );
        assert!(error(
            "tls_server_config:\n  cert_file: x\n  key_file: y\n  client_auth_type: Sometimes\n"
        )
        .contains("Sometimes"));
        assert!(
            error("tls_server_config:\n  cert_file: x\n  key_file: y\n  max_version: TLS11\n")
                .contains("max_version")
        );
        assert!(error("tls_server_config:\n  cert_file: x\n  key_file: y\n  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n").contains("RC4"));
        assert!(
            error("tls_server_config:\n  cert_file: x\n  cert: y\n  key_file: y\n")
                .contains("both cert and cert_file")
        );
        let plain = error("basic_auth_users:\n  admin: hunter2\n");
        assert!(
            plain.contains("not a bcrypt hash") && !plain.contains("hunter2"),
            "{plain}"
        );
        assert!(
            error("http_server_config:\n  headers:\n    Set-Cookie: x\n").contains("cannot be set")
        );
        assert!(
            error("http_server_config:\n  headers:\n    X-Frame-Options: allow\n").contains("deny")
        );
        assert!(error("- a\n").contains("not a mapping"));
        assert!(error("a: [\n").contains("not YAML"));
    }

    #[test]
    fn bcrypt_hashes() {
        assert!(is_bcrypt(HASH));
        assert!(is_bcrypt(&HASH.replacen("$2y$", "$2b$", 1)));
        assert!(!is_bcrypt(&HASH[..59]));
        assert!(!is_bcrypt(&HASH.replacen("$10$", "$03$", 1)));
        assert!(!is_bcrypt(&HASH.replacen("$2y$", "$1$x", 1)));
        assert!(!is_bcrypt("{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="));
    }
}
