//! Where the API server is and how to authenticate, discovered as kubectl
//! does: `--kubeconfig`, else `KUBECONFIG` (a colon-separated list, merged
//! first-wins), else `~/.kube/config`, else the in-cluster service account.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Deserialize;

use crate::sys::yaml::parse_yaml_documents;

/// Where the in-cluster service account files live.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Overrides [`SERVICE_ACCOUNT_DIR`]; for tests and unusual mounts.
pub const SERVICE_ACCOUNT_DIR_ENV: &str = "KIAE_SERVICE_ACCOUNT_DIR";

/// A configuration problem, naming the file and field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeConfigError(pub String);

impl fmt::Display for KubeConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KubeConfigError {}

fn err<T>(msg: impl Into<String>) -> Result<T, KubeConfigError> {
    Err(KubeConfigError(msg.into()))
}

/// How requests authenticate, besides a client certificate.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// No credentials.
    None,
    /// A fixed bearer token.
    Token(String),
    /// A bearer token re-read from a file (rotated service account tokens).
    TokenFile(PathBuf),
    /// HTTP basic authentication.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// A client-go credential plugin.
    Exec(ExecConfig),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Token(_) => f.write_str("Token(<redacted>)"),
            Auth::TokenFile(p) => write!(f, "TokenFile({})", p.display()),
            Auth::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Auth::Exec(e) => write!(f, "Exec({})", e.command),
        }
    }
}

/// A kubeconfig `exec` credential plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecConfig {
    /// Program to run.
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// `client.authentication.k8s.io/v1` or `v1beta1`.
    pub api_version: String,
    /// Whether to pass the cluster's details in `KUBERNETES_EXEC_INFO`.
    pub provide_cluster_info: bool,
    /// Shown when the program cannot be run.
    pub install_hint: Option<String>,
    /// Directory relative commands are resolved against (the kubeconfig's).
    pub base_dir: PathBuf,
}

/// A client certificate and key, PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// Certificate chain, PEM.
    pub cert_pem: Vec<u8>,
    /// Private key, PEM.
    pub key_pem: Vec<u8>,
}

impl fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientCert(<redacted>)")
    }
}

/// Everything needed to talk to one API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `https://host:port` (no trailing slash), possibly with a path prefix.
    pub server: String,
    /// CA certificates, PEM; empty means the built-in roots.
    pub ca_pem: Option<Vec<u8>>,
    /// `insecure-skip-tls-verify`.
    pub insecure: bool,
    /// `tls-server-name`: the name to verify the server certificate against.
    pub tls_server_name: Option<String>,
    /// `proxy-url`.
    pub proxy_url: Option<String>,
    /// Client certificate authentication.
    pub client_cert: Option<ClientCert>,
    /// Other authentication.
    pub auth: Auth,
    /// Where this came from, for log lines and errors.
    pub source: String,
}

#[derive(Deserialize, Default)]
struct Kubeconfig {
    #[serde(default)]
    clusters: Vec<Named<Cluster>>,
    #[serde(default)]
    contexts: Vec<Named<Context>>,
    #[serde(default)]
    users: Vec<Named<User>>,
    #[serde(rename = "current-context", default)]
    current_context: Option<String>,
}

#[derive(Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "context", alias = "user")]
    value: Option<T>,
}

#[derive(Deserialize, Default, Clone)]
struct Cluster {
    server: Option<String>,
    #[serde(rename = "certificate-authority")]
    certificate_authority: Option<String>,
    #[serde(rename = "certificate-authority-data")]
    certificate_authority_data: Option<String>,
    #[serde(rename = "insecure-skip-tls-verify", default)]
    insecure_skip_tls_verify: bool,
    #[serde(rename = "tls-server-name")]
    tls_server_name: Option<String>,
    #[serde(rename = "proxy-url")]
    proxy_url: Option<String>,
}

#[derive(Deserialize, Default, Clone)]
struct Context {
    cluster: Option<String>,
    user: Option<String>,
}

#[derive(Deserialize, Default, Clone)]
struct User {
    #[serde(rename = "client-certificate")]
    client_certificate: Option<String>,
    #[serde(rename = "client-certificate-data")]
    client_certificate_data: Option<String>,
    #[serde(rename = "client-key")]
    client_key: Option<String>,
    #[serde(rename = "client-key-data")]
    client_key_data: Option<String>,
    token: Option<String>,
    #[serde(rename = "tokenFile")]
    token_file: Option<String>,
    username: Option<String>,
    password: Option<String>,
    exec: Option<Exec>,
    #[serde(rename = "auth-provider")]
    auth_provider: Option<serde_json::Value>,
}

#[derive(Deserialize, Clone)]
struct Exec {
    command: Option<String>,
    #[serde(default)]
    args: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<ExecEnv>>,
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    #[serde(rename = "interactiveMode")]
    interactive_mode: Option<String>,
    #[serde(rename = "provideClusterInfo", default)]
    provide_cluster_info: bool,
    #[serde(rename = "installHint")]
    install_hint: Option<String>,
}

#[derive(Deserialize, Clone)]
struct ExecEnv {
    name: String,
    #[serde(default)]
    value: String,
}

fn load_file(path: &Path) -> Result<Kubeconfig, KubeConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| KubeConfigError(format!("kubeconfig {}: {e}", path.display())))?;
    parse_text(&text, path)
}

fn parse_text(text: &str, path: &Path) -> Result<Kubeconfig, KubeConfigError> {
    let docs = parse_yaml_documents(text).map_err(|e| {
        KubeConfigError(format!(
            "kubeconfig {}: not valid YAML: {e}",
            path.display()
        ))
    })?;
    match docs.into_iter().next() {
        None | Some(serde_json::Value::Null) => Ok(Kubeconfig::default()),
        Some(v) => serde_json::from_value(v)
            .map_err(|e| KubeConfigError(format!("kubeconfig {}: {e}", path.display()))),
    }
}

/// A kubeconfig entry and the directory its relative paths resolve against.
struct Located<T> {
    value: T,
    dir: PathBuf,
    file: PathBuf,
}

/// Adds entries not defined by an earlier file.
fn locate<T: Default>(
    entries: Vec<Named<T>>,
    dir: &Path,
    file: &Path,
    into: &mut HashMap<String, Located<T>>,
) {
    for n in entries {
        let located = Located {
            value: n.value.unwrap_or_default(),
            dir: dir.to_path_buf(),
            file: file.to_path_buf(),
        };
        into.entry(n.name).or_insert(located);
    }
}

/// Loads and merges kubeconfig files: the first file to define a name wins,
/// as does the first `current-context`.
fn load_merged(paths: &[PathBuf], context: Option<&str>) -> Result<ClusterConfig, KubeConfigError> {
    let mut loaded = Vec::with_capacity(paths.len());
    for path in paths {
        loaded.push((load_file(path)?, path.clone()));
    }
    resolve_context(loaded, context)
}

/// Parses kubeconfig text as if it were the file `path` (relative paths in
/// it resolve against that file's directory) and resolves its context.
pub fn from_text(
    text: &str,
    path: &Path,
    context: Option<&str>,
) -> Result<ClusterConfig, KubeConfigError> {
    resolve_context(vec![(parse_text(text, path)?, path.to_path_buf())], context)
}

fn resolve_context(
    loaded: Vec<(Kubeconfig, PathBuf)>,
    context: Option<&str>,
) -> Result<ClusterConfig, KubeConfigError> {
    let paths: Vec<PathBuf> = loaded.iter().map(|(_, p)| p.clone()).collect();
    let mut clusters: HashMap<String, Located<Cluster>> = HashMap::new();
    let mut contexts: HashMap<String, Located<Context>> = HashMap::new();
    let mut users: HashMap<String, Located<User>> = HashMap::new();
    let mut current: Option<String> = None;
    for (kc, path) in loaded {
        let path = &path;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        locate(kc.clusters, &dir, path, &mut clusters);
        locate(kc.contexts, &dir, path, &mut contexts);
        locate(kc.users, &dir, path, &mut users);
        if current.is_none() {
            current = kc.current_context.filter(|c| !c.is_empty());
        }
    }
    let files = paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let context_name = match context.map(str::to_string).or(current) {
        Some(c) => c,
        None => {
            return err(format!(
                "kubeconfig {files}: current-context is not set and --context was not given"
            ))
        }
    };
    let Some(ctx) = contexts.get(&context_name) else {
        return err(format!(
            "kubeconfig {files}: context {context_name:?} not found"
        ));
    };
    let cfile = ctx.file.display().to_string();
    let cluster_name = ctx.value.cluster.clone().unwrap_or_default();
    let Some(cluster) = clusters.get(&cluster_name) else {
        return err(format!(
            "kubeconfig {cfile}: context {context_name:?}: cluster {cluster_name:?} not found"
        ));
    };
    let user = match ctx.value.user.as_deref().filter(|u| !u.is_empty()) {
        None => None,
        Some(u) => match users.get(u) {
            Some(l) => Some(l),
            None => {
                return err(format!(
                    "kubeconfig {cfile}: context {context_name:?}: user {u:?} not found"
                ))
            }
        },
    };
    let file = cluster.file.display().to_string();
    let c = &cluster.value;
    let Some(server) = c.server.clone().filter(|s| !s.is_empty()) else {
        return err(format!(
            "kubeconfig {file}: cluster {cluster_name:?}: server is not set"
        ));
    };
    if !(server.starts_with("https://") || server.starts_with("http://")) {
        return err(format!("kubeconfig {file}: cluster {cluster_name:?}: server {server:?} must start with https:// or http://"));
    }
    let ca_pem = match (&c.certificate_authority_data, &c.certificate_authority) {
        (Some(data), _) if !data.is_empty() => Some(decode_data(data).map_err(|e| {
            KubeConfigError(format!(
                "kubeconfig {file}: cluster {cluster_name:?}: certificate-authority-data: {e}"
            ))
        })?),
        (_, Some(path)) if !path.is_empty() => Some(read_relative(
            &cluster.dir,
            path,
            &file,
            &format!("cluster {cluster_name:?}: certificate-authority"),
        )?),
        _ => None,
    };
    let mut client_cert = None;
    let mut auth = Auth::None;
    if let Some(user) = user {
        let ufile = user.file.display().to_string();
        let uname = ctx.value.user.clone().unwrap_or_default();
        let u = &user.value;
        let field = |data: &Option<String>,
                     path: &Option<String>,
                     what: &str|
         -> Result<Option<Vec<u8>>, KubeConfigError> {
            match (data, path) {
                (Some(d), _) if !d.is_empty() => decode_data(d).map(Some).map_err(|e| {
                    KubeConfigError(format!(
                        "kubeconfig {ufile}: user {uname:?}: {what}-data: {e}"
                    ))
                }),
                (_, Some(p)) if !p.is_empty() => {
                    read_relative(&user.dir, p, &ufile, &format!("user {uname:?}: {what}"))
                        .map(Some)
                }
                _ => Ok(None),
            }
        };
        let cert = field(
            &u.client_certificate_data,
            &u.client_certificate,
            "client-certificate",
        )?;
        let key = field(&u.client_key_data, &u.client_key, "client-key")?;
        client_cert = match (cert, key) {
            (Some(cert_pem), Some(key_pem)) => Some(ClientCert { cert_pem, key_pem }),
            (None, None) => None,
            _ => return err(format!("kubeconfig {ufile}: user {uname:?}: client-certificate and client-key must be given together")),
        };
        auth = if let Some(t) = u.token.clone().filter(|t| !t.is_empty()) {
            Auth::Token(t)
        } else if let Some(p) = u.token_file.clone().filter(|t| !t.is_empty()) {
            Auth::TokenFile(resolve(&user.dir, &p))
        } else if let Some(e) = &u.exec {
            Auth::Exec(exec_config(e, &user.dir).map_err(|m| {
                KubeConfigError(format!("kubeconfig {ufile}: user {uname:?}: exec: {m}"))
            })?)
        } else if let (Some(username), Some(password)) = (u.username.clone(), u.password.clone()) {
            Auth::Basic { username, password }
        } else if u.auth_provider.is_some() {
            return err(format!(
                "kubeconfig {ufile}: user {uname:?}: auth-provider plugins were removed from Kubernetes; use an exec plugin"
            ));
        } else {
            Auth::None
        };
    }
    Ok(ClusterConfig {
        server: server.trim_end_matches('/').to_string(),
        ca_pem,
        insecure: c.insecure_skip_tls_verify,
        tls_server_name: c.tls_server_name.clone().filter(|s| !s.is_empty()),
        proxy_url: c.proxy_url.clone().filter(|s| !s.is_empty()),
        client_cert,
        auth,
        source: format!("kubeconfig {files}, context {context_name:?}"),
    })
}

fn exec_config(e: &Exec, dir: &Path) -> Result<ExecConfig, String> {
    let command = e
        .command
        .clone()
        .filter(|c| !c.is_empty())
        .ok_or("command is not set")?;
    let api_version = e.api_version.clone().unwrap_or_default();
    if !matches!(
        api_version.as_str(),
        "client.authentication.k8s.io/v1" | "client.authentication.k8s.io/v1beta1"
    ) {
        return Err(format!(
            "apiVersion {api_version:?} is not client.authentication.k8s.io/v1 or v1beta1"
        ));
    }
    if e.interactive_mode.as_deref() == Some("Always") {
        return Err("interactiveMode Always needs a terminal, and the exporter has none".into());
    }
    Ok(ExecConfig {
        command,
        args: e.args.clone().unwrap_or_default(),
        env: e
            .env
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|v| (v.name, v.value))
            .collect(),
        api_version,
        provide_cluster_info: e.provide_cluster_info,
        install_hint: e.install_hint.clone(),
        base_dir: dir.to_path_buf(),
    })
}

fn decode_data(data: &str) -> Result<Vec<u8>, String> {
    let clean: String = data.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(clean)
        .map_err(|_| "not valid base64".to_string())
}

fn resolve(dir: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

fn read_relative(
    dir: &Path,
    path: &str,
    file: &str,
    what: &str,
) -> Result<Vec<u8>, KubeConfigError> {
    let p = resolve(dir, path);
    std::fs::read(&p)
        .map_err(|e| KubeConfigError(format!("kubeconfig {file}: {what}: {}: {e}", p.display())))
}

/// The in-cluster configuration, when the service environment is set.
pub fn in_cluster() -> Result<Option<ClusterConfig>, KubeConfigError> {
    let (Ok(host), Ok(port)) = (
        std::env::var("KUBERNETES_SERVICE_HOST"),
        std::env::var("KUBERNETES_SERVICE_PORT"),
    ) else {
        return Ok(None);
    };
    if host.is_empty() || port.is_empty() {
        return Ok(None);
    }
    let dir = std::env::var(SERVICE_ACCOUNT_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(SERVICE_ACCOUNT_DIR));
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    };
    let ca = dir.join("ca.crt");
    let ca_pem = std::fs::read(&ca)
        .map_err(|e| KubeConfigError(format!("in-cluster configuration: {}: {e}", ca.display())))?;
    let token = dir.join("token");
    if let Err(e) = std::fs::metadata(&token) {
        return err(format!(
            "in-cluster configuration: {}: {e}",
            token.display()
        ));
    }
    Ok(Some(ClusterConfig {
        server: format!("https://{host}:{port}"),
        ca_pem: Some(ca_pem),
        insecure: false,
        tls_server_name: None,
        proxy_url: None,
        client_cert: None,
        auth: Auth::TokenFile(token),
        source: format!("in-cluster service account {}", dir.display()),
    }))
}

/// Finds the configuration the way kubectl does.
pub fn discover(
    kubeconfig: Option<&str>,
    context: Option<&str>,
) -> Result<ClusterConfig, KubeConfigError> {
    if let Some(path) = kubeconfig.filter(|p| !p.is_empty()) {
        return load_merged(&[PathBuf::from(path)], context);
    }
    if let Ok(list) = std::env::var("KUBECONFIG") {
        let paths: Vec<PathBuf> = std::env::split_paths(&list)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        let existing: Vec<PathBuf> = paths.iter().filter(|p| p.exists()).cloned().collect();
        if !existing.is_empty() {
            return load_merged(&existing, context);
        }
        if !paths.is_empty() {
            return err(format!("KUBECONFIG={list}: none of these files exists"));
        }
    }
    if let Some(home) = std::env::var_os("HOME") {
        let p = Path::new(&home).join(".kube").join("config");
        if p.exists() {
            return load_merged(&[p], context);
        }
    }
    match in_cluster()? {
        Some(c) => Ok(c),
        None => err("no kubeconfig found (--kubeconfig, KUBECONFIG, ~/.kube/config) and not running in a cluster (KUBERNETES_SERVICE_HOST is not set)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("kiae-kc-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    const BASE: &str = r#"
apiVersion: v1
kind: Config
current-context: main
clusters:
- name: c1
  cluster:
    server: https://127.0.0.1:6443/
    certificate-authority: ca.pem
    tls-server-name: kubernetes
contexts:
- name: main
  context: {cluster: c1, user: u1, namespace: ns}
- name: other
  context: {cluster: c1, user: u2}
- name: plugin
  context: {cluster: c1, user: u3}
users:
- name: u1
  user:
    token: abc
- name: u2
  user:
    client-certificate-data: Y2VydA==
    client-key-data: a2V5
- name: u3
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: ./plugin.sh
      args: [get-token]
      env: [{name: A, value: b}]
      provideClusterInfo: true
"#;

    #[test]
    fn contexts_users_and_relative_paths() {
        let d = tmp("ctx");
        write(&d, "ca.pem", "CA");
        let kc = write(&d, "config", BASE);
        let c = discover(Some(kc.to_str().unwrap()), None).unwrap();
        assert_eq!(c.server, "https://127.0.0.1:6443");
        assert_eq!(c.ca_pem.as_deref(), Some(&b"CA"[..]));
        assert_eq!(c.tls_server_name.as_deref(), Some("kubernetes"));
        assert_eq!(c.auth, Auth::Token("abc".into()));
        assert!(!format!("{c:?}").contains("abc"));
        let c = discover(Some(kc.to_str().unwrap()), Some("other")).unwrap();
        assert_eq!(c.client_cert.unwrap().key_pem, b"key");
        let c = discover(Some(kc.to_str().unwrap()), Some("plugin")).unwrap();
        match c.auth {
            Auth::Exec(e) => {
                assert_eq!(e.command, "./plugin.sh");
                assert_eq!(e.args, ["get-token"]);
                assert_eq!(e.env, [("A".to_string(), "b".to_string())]);
                assert!(e.provide_cluster_info);
                assert_eq!(e.base_dir, d);
            }
            a => panic!("{a:?}"),
        }
    }

    #[test]
    fn errors_name_file_and_field() {
        let d = tmp("err");
        let cases = [
            ("current-context: nope\ncontexts: []\n", "context \"nope\" not found"),
            ("contexts: []\n", "current-context is not set"),
            ("current-context: a\ncontexts: [{name: a, context: {cluster: x}}]\n", "cluster \"x\" not found"),
            ("current-context: a\ncontexts: [{name: a, context: {cluster: x}}]\nclusters: [{name: x, cluster: {}}]\n", "server is not set"),
            (
                "current-context: a\ncontexts: [{name: a, context: {cluster: x}}]\nclusters: [{name: x, cluster: {server: 'https://h', certificate-authority: missing.pem}}]\n",
                "certificate-authority",
            ),
            (
                "current-context: a\ncontexts: [{name: a, context: {cluster: x, user: u}}]\nclusters: [{name: x, cluster: {server: 'https://h'}}]\nusers: [{name: u, user: {exec: {command: x, apiVersion: client.authentication.k8s.io/v1alpha1}}}]\n",
                "apiVersion",
            ),
            ("{{{", "not valid YAML"),
            ("clusters: 5\n", "kubeconfig"),
        ];
        for (i, (text, want)) in cases.iter().enumerate() {
            let kc = write(&d, &format!("c{i}"), text);
            let e = discover(Some(kc.to_str().unwrap()), None).unwrap_err();
            assert!(
                e.0.contains(want) && e.0.contains(&format!("c{i}")),
                "{text}: {e}"
            );
        }
        assert!(discover(Some("/nonexistent/kubeconfig"), None)
            .unwrap_err()
            .0
            .contains("/nonexistent/kubeconfig"));
    }

    #[test]
    fn merged_files_first_wins() {
        let d = tmp("merge");
        write(&d, "ca.pem", "CA");
        let a = write(
            &d,
            "a",
            "current-context: second\nusers: [{name: u1, user: {token: from-a}}]\n",
        );
        let b = write(&d, "b", BASE);
        let c = load_merged(&[a, b], None);
        // "second" does not exist anywhere: the first file's current-context wins anyway.
        assert!(c.unwrap_err().0.contains("\"second\""));
        let a = write(&d, "a2", "users: [{name: u1, user: {token: from-a}}]\n");
        let c = load_merged(&[a, d.join("b")], None).unwrap();
        assert_eq!(c.auth, Auth::Token("from-a".into()));
    }
}
