//! A small Kubernetes API client over ureq: its own agent (the API server's
//! CA, client certificates, `tls-server-name`), and bearer tokens that are
//! re-read or refreshed the way client-go does.

use std::io::Read;
use std::net::ToSocketAddrs;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use ureq::tls::{
    Certificate, ClientCert as UreqClientCert, PemItem, PrivateKey, RootCerts, TlsConfig,
};

use super::config::{Auth, ClientCert, ClusterConfig};
use super::exec::{self, ExecCredential};

/// client-go re-reads token files about once a minute.
const TOKEN_FILE_REFRESH: Duration = Duration::from_secs(60);
/// Run an exec plugin again this long before its credential expires.
const EXEC_EXPIRY_MARGIN: Duration = Duration::from_secs(10);
/// The largest list page we read.
const LIST_BODY_LIMIT: u64 = 256 << 20;

/// A failed API request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// No HTTP answer (DNS, connect, TLS, timeout, broken connection).
    Transport(String),
    /// An HTTP error answer, usually with a `Status` body.
    Status {
        /// HTTP status code.
        code: u16,
        /// `Status.reason`, e.g. `Forbidden`, `Expired`.
        reason: String,
        /// `Status.message`.
        message: String,
        /// `Retry-After` of a 429 or 5xx, in seconds as the apiserver sends it.
        retry_after: Option<Duration>,
    },
    /// Credentials could not be obtained (plugin failed, token file unreadable).
    Auth(String),
    /// The answer could not be read or decoded.
    Decode(String),
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Transport(m) => write!(f, "{m}"),
            ApiError::Status {
                code,
                reason,
                message,
                ..
            } if reason.is_empty() => write!(f, "HTTP {code}: {message}"),
            ApiError::Status {
                code,
                reason,
                message,
                ..
            } => write!(f, "HTTP {code} {reason}: {message}"),
            ApiError::Auth(m) => write!(f, "credentials: {m}"),
            ApiError::Decode(m) => write!(f, "bad answer: {m}"),
        }
    }
}

impl ApiError {
    /// The HTTP status, if the server answered.
    pub fn code(&self) -> Option<u16> {
        match self {
            ApiError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }
}

#[derive(serde::Deserialize, Default)]
struct StatusBody {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    message: String,
}

/// The longest Retry-After from the apiserver we honour.
const MAX_RETRY_AFTER_SECS: u64 = 600;

/// Builds an [`ApiError`] from an error answer's body.
pub fn status_error(code: u16, body: &[u8]) -> ApiError {
    let s: StatusBody = serde_json::from_slice(body).unwrap_or_default();
    let message = if s.message.is_empty() {
        String::from_utf8_lossy(&body[..body.len().min(200)])
            .trim()
            .to_string()
    } else {
        s.message
    };
    ApiError::Status {
        code,
        reason: s.reason,
        message,
        retry_after: None,
    }
}

enum AuthState {
    None,
    Header(String),
    TokenFile {
        path: std::path::PathBuf,
        cached: Mutex<Option<(String, Instant)>>,
    },
    Exec {
        config: super::config::ExecConfig,
        cached: Mutex<Option<ExecCredential>>,
    },
}

/// A client for one API server.
pub struct ApiClient {
    config: ClusterConfig,
    /// Base URL: the server, with the host replaced by `tls-server-name` when set.
    base: String,
    auth: AuthState,
    /// The agent and the client certificate it was built with.
    agent: Mutex<(Option<ClientCert>, ureq::Agent)>,
}

impl ApiClient {
    /// Builds a client; fails on unusable certificates.
    pub fn new(config: ClusterConfig) -> Result<ApiClient, String> {
        let auth = match &config.auth {
            Auth::None => AuthState::None,
            Auth::Token(t) => AuthState::Header(format!("Bearer {t}")),
            Auth::Basic { username, password } => {
                use base64::Engine;
                AuthState::Header(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("{username}:{password}"))
                ))
            }
            Auth::TokenFile(p) => AuthState::TokenFile {
                path: p.clone(),
                cached: Mutex::new(None),
            },
            Auth::Exec(e) => AuthState::Exec {
                config: e.clone(),
                cached: Mutex::new(None),
            },
        };
        let (base, _) = split_server(&config)?;
        let agent = build_agent(&config, config.client_cert.as_ref())?;
        Ok(ApiClient {
            agent: Mutex::new((config.client_cert.clone(), agent)),
            base,
            auth,
            config,
        })
    }

    /// GET `path_and_query`; on 401 refreshes the credentials once and retries.
    pub fn get(
        &self,
        path_and_query: &str,
        timeout: Duration,
    ) -> Result<ureq::http::Response<ureq::Body>, ApiError> {
        let mut refreshed = false;
        loop {
            let (authorization, agent) = self.prepare()?;
            let url = format!("{}{path_and_query}", self.base);
            let mut req = agent.get(&url).header("Accept", "application/json");
            if let Some(a) = &authorization {
                req = req.header("Authorization", a);
            }
            let resp = req
                .config()
                .timeout_global(Some(timeout))
                .build()
                .call()
                .map_err(|e| ApiError::Transport(format!("{}: {e}", self.config.server)))?;
            let code = resp.status().as_u16();
            if code == 401 && !refreshed && self.refreshable() {
                log::info!("API server answered 401; refreshing credentials");
                self.invalidate();
                refreshed = true;
                continue;
            }
            if code >= 400 {
                // client-go's checkWait: a 429 or 5xx may say when to come back.
                let retry_after = (code == 429 || code >= 500)
                    .then(|| resp.headers().get("retry-after"))
                    .flatten()
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(|s| Duration::from_secs(s.min(MAX_RETRY_AFTER_SECS)));
                let mut body = Vec::new();
                let _ = resp
                    .into_body()
                    .into_reader()
                    .take(64 << 10)
                    .read_to_end(&mut body);
                let mut e = status_error(code, &body);
                if let ApiError::Status { retry_after: r, .. } = &mut e {
                    *r = retry_after;
                }
                return Err(e);
            }
            return Ok(resp);
        }
    }

    /// GET and read the whole body (list pages).
    pub fn get_body(&self, path_and_query: &str, timeout: Duration) -> Result<Vec<u8>, ApiError> {
        let resp = self.get(path_and_query, timeout)?;
        resp.into_body()
            .into_with_config()
            .limit(LIST_BODY_LIMIT)
            .read_to_vec()
            .map_err(|e| {
                ApiError::Transport(format!("{}: reading answer: {e}", self.config.server))
            })
    }

    fn refreshable(&self) -> bool {
        matches!(
            self.auth,
            AuthState::TokenFile { .. } | AuthState::Exec { .. }
        )
    }

    fn invalidate(&self) {
        match &self.auth {
            AuthState::TokenFile { cached, .. } => {
                *cached.lock().unwrap_or_else(|e| e.into_inner()) = None
            }
            AuthState::Exec { cached, .. } => {
                *cached.lock().unwrap_or_else(|e| e.into_inner()) = None
            }
            _ => {}
        }
    }

    /// The Authorization header and the agent for the next request.
    fn prepare(&self) -> Result<(Option<String>, ureq::Agent), ApiError> {
        let mut cert = None;
        let header = match &self.auth {
            AuthState::None => None,
            AuthState::Header(h) => Some(h.clone()),
            AuthState::TokenFile { path, cached } => {
                let mut c = cached.lock().unwrap_or_else(|e| e.into_inner());
                let fresh = c
                    .as_ref()
                    .is_some_and(|(_, at)| at.elapsed() < TOKEN_FILE_REFRESH);
                if !fresh {
                    match std::fs::read_to_string(path) {
                        Ok(t) => *c = Some((t.trim().to_string(), Instant::now())),
                        // Keep using the last token if the file is briefly missing mid-rotation.
                        Err(e) if c.is_none() => {
                            return Err(ApiError::Auth(format!("{}: {e}", path.display())))
                        }
                        Err(e) => log::warn!(
                            "re-reading token file {}: {e}; keeping the previous token",
                            path.display()
                        ),
                    }
                }
                c.as_ref().map(|(t, _)| format!("Bearer {t}"))
            }
            AuthState::Exec { config, cached } => {
                let mut c = cached.lock().unwrap_or_else(|e| e.into_inner());
                let valid = c.as_ref().is_some_and(|cred| match cred.expires {
                    Some(exp) => SystemTime::now() + EXEC_EXPIRY_MARGIN < exp,
                    None => true,
                });
                if !valid {
                    let info = exec::ClusterInfo {
                        server: &self.config.server,
                        ca_pem: self.config.ca_pem.as_deref(),
                        insecure: self.config.insecure,
                        tls_server_name: self.config.tls_server_name.as_deref(),
                    };
                    let cred = exec::run(config, &info).map_err(ApiError::Auth)?;
                    log::info!(
                        "credential plugin {} returned a credential{}",
                        config.command,
                        match cred.expires {
                            Some(t) => format!(
                                " valid until {}",
                                crate::sys::timestamp::format_rfc3339_millis(t)
                            ),
                            None => String::new(),
                        }
                    );
                    *c = Some(cred);
                }
                let cred = c.as_ref().expect("set above");
                cert = cred.client_cert.clone();
                cred.token.as_ref().map(|t| format!("Bearer {t}"))
            }
        };
        let mut agent = self.agent.lock().unwrap_or_else(|e| e.into_inner());
        let want = cert.or_else(|| self.config.client_cert.clone());
        if agent.0 != want {
            let new = build_agent(&self.config, want.as_ref()).map_err(ApiError::Auth)?;
            *agent = (want, new);
        }
        Ok((header, agent.1.clone()))
    }
}

/// The request base URL and the real `host:port` to connect to.
fn split_server(config: &ClusterConfig) -> Result<(String, String), String> {
    let (scheme, rest) = config
        .server
        .split_once("://")
        .ok_or_else(|| format!("server {:?} has no scheme", config.server))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let default_port = if scheme == "https" { 443 } else { 80 };
    let has_port = authority.rsplit_once(':').is_some_and(|(h, p)| {
        !p.is_empty()
            && p.bytes().all(|b| b.is_ascii_digit())
            && (!h.contains(':') || h.ends_with(']'))
    });
    let real = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:{default_port}")
    };
    let base = match &config.tls_server_name {
        // Connect to the real address but verify (and send SNI for) the
        // configured name: the URL carries the name, the resolver the address.
        Some(name) if scheme == "https" => {
            let port = real.rsplit_once(':').map(|(_, p)| p).unwrap_or("443");
            format!("https://{name}:{port}{path}")
        }
        _ => format!("{scheme}://{authority}{path}"),
    };
    Ok((base.trim_end_matches('/').to_string(), real))
}

/// Resolves the `tls-server-name` to the server's real address.
#[derive(Debug)]
struct ServerNameResolver {
    name: String,
    real: String,
}

impl ureq::unversioned::resolver::Resolver for ServerNameResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        if uri.host() == Some(self.name.as_str()) {
            let mut out = self.empty();
            for a in self
                .real
                .to_socket_addrs()
                .map_err(ureq::Error::Io)?
                .take(16)
            {
                out.push(a);
            }
            if out.is_empty() {
                return Err(ureq::Error::HostNotFound);
            }
            return Ok(out);
        }
        ureq::unversioned::resolver::DefaultResolver::default().resolve(uri, config, timeout)
    }
}

fn pem_certs(pem: &[u8], what: &str) -> Result<Vec<Certificate<'static>>, String> {
    let mut out = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        if let PemItem::Certificate(c) = item.map_err(|e| format!("{what}: not valid PEM ({e})"))? {
            out.push(c);
        }
    }
    if out.is_empty() {
        return Err(format!("{what}: no certificate found"));
    }
    Ok(out)
}

fn pem_key(pem: &[u8]) -> Result<PrivateKey<'static>, String> {
    for item in ureq::tls::parse_pem(pem) {
        if let Ok(PemItem::PrivateKey(k)) = item {
            return Ok(k);
        }
    }
    Err("client key: no private key found in PEM".into())
}

fn build_agent(config: &ClusterConfig, cert: Option<&ClientCert>) -> Result<ureq::Agent, String> {
    let mut tls = TlsConfig::builder().disable_verification(config.insecure);
    if let Some(ca) = &config.ca_pem {
        tls = tls.root_certs(RootCerts::new_with_certs(&pem_certs(
            ca,
            "certificate authority",
        )?));
    }
    if let Some(c) = cert {
        let chain = pem_certs(&c.cert_pem, "client certificate")?;
        tls = tls.client_cert(Some(UreqClientCert::new_with_certs(
            &chain,
            pem_key(&c.key_pem)?,
        )));
    }
    const APISERVER_INPUT_BUFFER: usize = 16 * 1024;
    const APISERVER_OUTPUT_BUFFER: usize = 8 * 1024;
    let mut builder = ureq::Agent::config_builder()
        .http_status_as_error(false)
        // A connection per watch stream: small buffers (see
        // registry::transport::INPUT_BUFFER). The apiserver's answer headers
        // are a few hundred bytes; ours carry at most a bearer token.
        .input_buffer_size(APISERVER_INPUT_BUFFER)
        .output_buffer_size(APISERVER_OUTPUT_BUFFER)
        .max_response_header_size(APISERVER_INPUT_BUFFER)
        .tls_config(tls.build())
        .timeout_connect(Some(Duration::from_secs(10)))
        .user_agent(crate::registry::transport::USER_AGENT)
        .max_redirects(0);
    // The kubeconfig's proxy-url wins; otherwise the environment, read as
    // client-go's default transport (http.ProxyFromEnvironment) reads it.
    let proxy = match &config.proxy_url {
        Some(p) => Some(ureq::Proxy::new(p).map_err(|e| format!("proxy-url {p:?}: {e}"))?),
        None => {
            let url = crate::registry::transport::Url::parse(&config.server)
                .ok_or_else(|| format!("server {:?} is not an http(s) URL", config.server))?;
            crate::registry::proxy::ProxyEnv::from_env()?
                .for_target(
                    url.scheme == crate::registry::transport::Scheme::Https,
                    url.host(),
                    url.port(),
                )
                .cloned()
        }
    };
    builder = builder.proxy(proxy);
    let agent_config = builder.build();
    let (_, real) = split_server(config)?;
    match &config.tls_server_name {
        Some(name) if config.server.starts_with("https://") => Ok(ureq::Agent::with_parts(
            agent_config,
            ureq::unversioned::transport::DefaultConnector::default(),
            ServerNameResolver {
                name: name.clone(),
                real,
            },
        )),
        _ => Ok(agent_config.new_agent()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(server: &str, name: Option<&str>) -> ClusterConfig {
        ClusterConfig {
            server: server.into(),
            ca_pem: None,
            insecure: false,
            tls_server_name: name.map(str::to_string),
            proxy_url: None,
            client_cert: None,
            auth: Auth::None,
            source: "test".into(),
        }
    }

    #[test]
    fn server_urls() {
        assert_eq!(
            split_server(&cfg("https://10.0.0.1:6443", None)).unwrap(),
            ("https://10.0.0.1:6443".into(), "10.0.0.1:6443".into())
        );
        assert_eq!(
            split_server(&cfg("https://k.example", None)).unwrap().1,
            "k.example:443"
        );
        assert_eq!(
            split_server(&cfg("https://[::1]:6443/prefix", None)).unwrap(),
            ("https://[::1]:6443/prefix".into(), "[::1]:6443".into())
        );
        assert_eq!(
            split_server(&cfg("https://[::1]", None)).unwrap().1,
            "[::1]:443"
        );
        assert_eq!(
            split_server(&cfg("https://10.0.0.1:6443", Some("kubernetes")))
                .unwrap()
                .0,
            "https://kubernetes:6443"
        );
    }

    #[test]
    fn status_errors() {
        let e = status_error(403, br#"{"kind":"Status","reason":"Forbidden","message":"deployments.apps is forbidden","code":403}"#);
        assert_eq!(
            e,
            ApiError::Status {
                code: 403,
                reason: "Forbidden".into(),
                message: "deployments.apps is forbidden".into(),
                retry_after: None,
            }
        );
        assert_eq!(
            status_error(502, b"bad gateway").to_string(),
            "HTTP 502: bad gateway"
        );
    }
}
