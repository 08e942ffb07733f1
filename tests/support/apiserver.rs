//! A fake Kubernetes API server that answers like the real one does for what
//! the exporter uses (see ../shared/apiserver-transcripts): paginated lists
//! with `limit`/`continue` and consistent snapshots, continue tokens that
//! expire (410) after a compaction, watches as chunked newline-delimited JSON
//! with ADDED/MODIFIED/DELETED/BOOKMARK/ERROR, server-side timeouts, field
//! selectors on Secrets by type, label selectors, namespaced and cluster-wide
//! paths, bearer-token and client-certificate authentication, 401/403 Status
//! answers, and hooks to drop connections and compact history.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use super::tls::{self, ServerCert};
use super::{percent_decode, TempDir};

/// (API prefix, plural, kind, apiVersion, namespaced) of every served resource.
const RESOURCES: &[(&str, &str, &str, &str, bool)] = &[
    (
        "/apis/apps/v1",
        "deployments",
        "Deployment",
        "apps/v1",
        true,
    ),
    (
        "/apis/apps/v1",
        "statefulsets",
        "StatefulSet",
        "apps/v1",
        true,
    ),
    ("/apis/apps/v1", "daemonsets", "DaemonSet", "apps/v1", true),
    ("/apis/batch/v1", "cronjobs", "CronJob", "batch/v1", true),
    ("/apis/batch/v1", "jobs", "Job", "batch/v1", true),
    ("/api/v1", "pods", "Pod", "v1", true),
    ("/api/v1", "secrets", "Secret", "v1", true),
    ("/api/v1", "serviceaccounts", "ServiceAccount", "v1", true),
    ("/api/v1", "namespaces", "Namespace", "v1", false),
    ("/api/v1", "nodes", "Node", "v1", false),
    // Custom resources: served only while their CRD is installed.
    (
        "/apis/argoproj.io/v1alpha1",
        "rollouts",
        "Rollout",
        "argoproj.io/v1alpha1",
        true,
    ),
    (
        "/apis/apps.kruise.io/v1alpha1",
        "clonesets",
        "CloneSet",
        "apps.kruise.io/v1alpha1",
        true,
    ),
];

/// Resources that exist only once their CRD is installed.
const CUSTOM: &[&str] = &["rollouts", "clonesets"];

fn resource(plural: &str) -> (&'static str, &'static str, &'static str, &'static str, bool) {
    *RESOURCES
        .iter()
        .find(|r| r.1 == plural)
        .unwrap_or_else(|| panic!("fake apiserver does not serve {plural}"))
}

#[derive(Clone)]
struct HistEvent {
    rv: u64,
    plural: String,
    kind: &'static str,
    namespace: String,
    name: String,
    /// The object after the change (for DELETED: its last state).
    object: Arc<Value>,
    /// The object before the change, for selector transitions.
    prev: Option<Arc<Value>>,
}

#[derive(Default)]
struct Store {
    rv: u64,
    /// (plural, namespace, name) -> (rv, object with kind/apiVersion)
    objects: BTreeMap<(String, String, String), (u64, Arc<Value>)>,
    history: Vec<HistEvent>,
    /// History at or below this version is gone.
    compacted: u64,
    /// Bumped to drop every open watch.
    drop_generation: u64,
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Logged {
    /// Path without query.
    pub path: String,
    /// Decoded query parameters.
    pub query: HashMap<String, String>,
    /// Authenticated user (token, or certificate CN), or "anonymous".
    pub user: String,
    /// Response status (0 while a watch is still streaming).
    pub status: u16,
}

struct Options {
    /// The next list request with a continue token gets 410, as after a compaction.
    expire_next_continue: bool,
    tokens: HashSet<String>,
    cert_users: bool,
    anonymous: bool,
    forbidden: HashSet<String>,
    bookmark_interval: Duration,
    default_watch_timeout: Duration,
    misbehaviour: Misbehaviour,
    /// Custom resources whose CRD is installed.
    installed: HashSet<String>,
}

/// How the server misbehaves, as a proxy in front of an apiserver, or an
/// apiserver under strain, really does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Answer as the apiserver does.
    None,
    /// Accept every watch (200, chunked) and close it at once with no
    /// event, as a proxy with a very short idle timeout does.
    CloseWatchesAtOnce,
    /// Answer every watch with one ERROR event (500 InternalError, as when
    /// the watch cache cannot serve) and close it.
    ErrorEveryWatch,
    /// Answer every list and watch 429 TooManyRequests with this
    /// Retry-After (seconds), as API Priority and Fairness does.
    Throttle(u64),
}

struct Shared {
    store: Mutex<Store>,
    changed: Condvar,
    options: Mutex<Options>,
    log: Mutex<Vec<Logged>>,
    /// (plural) -> objects sent in list pages and watch events.
    served: Mutex<HashMap<String, usize>>,
    stopping: AtomicBool,
    connections: AtomicU64,
    /// (resourceVersion) of every BOOKMARK sent.
    bookmarks: Mutex<Vec<u64>>,
}

/// How clients authenticate.
pub enum ServerAuth {
    /// Anyone.
    Anonymous,
    /// Bearer tokens from this list (changeable later with `set_tokens`).
    Tokens(Vec<String>),
    /// Client certificates signed by the server's CA (and tokens from the list).
    ClientCerts(Vec<String>),
}

/// A running fake API server on 127.0.0.1 over https.
pub struct FakeApiServer {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// TLS material: the CA to trust, and the CA key to sign client certificates.
    pub tls: ServerCert,
    shared: Arc<Shared>,
    dir: TempDir,
}

impl FakeApiServer {
    /// Starts a server with this authentication.
    pub fn start(auth: ServerAuth) -> FakeApiServer {
        let dir = TempDir::new("apiserver");
        let cert = tls::server_cert(&dir);
        let (tokens, cert_users, anonymous) = match auth {
            ServerAuth::Anonymous => (Vec::new(), false, true),
            ServerAuth::Tokens(t) => (t, false, false),
            ServerAuth::ClientCerts(t) => (t, true, false),
        };
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            changed: Condvar::new(),
            options: Mutex::new(Options {
                expire_next_continue: false,
                tokens: tokens.into_iter().collect(),
                cert_users,
                anonymous,
                forbidden: HashSet::new(),
                bookmark_interval: Duration::from_secs(60),
                default_watch_timeout: Duration::from_secs(1800),
                misbehaviour: Misbehaviour::None,
                installed: HashSet::new(),
            }),
            log: Mutex::new(Vec::new()),
            served: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
            connections: AtomicU64::new(0),
            bookmarks: Mutex::new(Vec::new()),
        });
        let tls_config = server_tls(&cert);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!(
            "https://127.0.0.1:{}",
            listener.local_addr().unwrap().port()
        );
        let s = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(tcp) = conn else { continue };
                let (s2, cfg) = (s.clone(), tls_config.clone());
                s.connections.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || serve_connection(tcp, cfg, &s2));
            }
        });
        FakeApiServer {
            url,
            tls: cert,
            shared,
            dir,
        }
    }

    /// Writes a kubeconfig for this server and returns its path.
    pub fn kubeconfig(&self, user: &str) -> String {
        let ca = std::fs::read(&self.tls.ca_pem).unwrap();
        let ca64 = base64::engine::general_purpose::STANDARD.encode(ca);
        let text = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: test\nclusters:\n- name: fake\n  cluster:\n    server: {}\n    certificate-authority-data: {ca64}\ncontexts:\n- name: test\n  context:\n    cluster: fake\n    user: u\nusers:\n- name: u\n  user:\n{user}",
            self.url
        );
        static N: AtomicU64 = AtomicU64::new(0);
        self.dir.write(
            &format!("kubeconfig-{}", N.fetch_add(1, Ordering::SeqCst)),
            text,
        )
    }

    /// A kubeconfig user block with a bearer token.
    pub fn token_user(token: &str) -> String {
        format!("    token: {token}\n")
    }

    /// Creates a client certificate for `cn`; returns (cert PEM path, key PEM path).
    pub fn client_cert(&self, cn: &str, rsa: bool) -> (String, String) {
        tls::client_cert(&self.dir, &self.tls, cn, rsa)
    }

    /// Creates or replaces an object; returns its new resourceVersion.
    pub fn apply(&self, plural: &str, object: impl serde::Serialize) -> u64 {
        let (_, _, kind, api_version, namespaced) = resource(plural);
        let mut obj = serde_json::to_value(object).expect("serialize");
        obj["kind"] = json!(kind);
        obj["apiVersion"] = json!(api_version);
        as_in_a_cluster(&mut obj, api_version);
        let name = obj["metadata"]["name"]
            .as_str()
            .expect("metadata.name")
            .to_string();
        let namespace = if namespaced {
            obj["metadata"]["namespace"]
                .as_str()
                .expect("metadata.namespace")
                .to_string()
        } else {
            String::new()
        };
        let mut st = self.shared.store.lock().unwrap();
        st.rv += 1;
        let rv = st.rv;
        let key = (plural.to_string(), namespace.clone(), name.clone());
        let prev = st.objects.get(&key).map(|(_, o)| o.clone());
        let meta = obj["metadata"].as_object_mut().unwrap();
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        let uid = prev
            .as_ref()
            .and_then(|p| p["metadata"]["uid"].as_str().map(str::to_string))
            .unwrap_or_else(|| format!("uid-{plural}-{rv}"));
        meta.insert("uid".into(), json!(uid));
        meta.entry("creationTimestamp")
            .or_insert(json!("2026-11-27T23:51:39Z"));
        let obj = Arc::new(obj);
        st.objects.insert(key, (rv, obj.clone()));
        let kind = if prev.is_some() { "MODIFIED" } else { "ADDED" };
        st.history.push(HistEvent {
            rv,
            plural: plural.to_string(),
            kind,
            namespace,
            name,
            object: obj,
            prev,
        });
        drop(st);
        self.shared.changed.notify_all();
        rv
    }

    /// Creates or replaces a one-replica Deployment running `image`.
    pub fn deploy(&self, namespace: &str, name: &str, image: &str) -> u64 {
        self.apply(
            "deployments",
            super::objects::deployment(namespace, name, 1, &super::objects::Template::image(image)),
        )
    }

    /// Deletes an object (no-op if absent).
    pub fn delete(&self, plural: &str, namespace: &str, name: &str) {
        let mut st = self.shared.store.lock().unwrap();
        let key = (plural.to_string(), namespace.to_string(), name.to_string());
        let Some((_, last)) = st.objects.remove(&key) else {
            return;
        };
        st.rv += 1;
        let rv = st.rv;
        let mut obj = (*last).clone();
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        st.history.push(HistEvent {
            rv,
            plural: plural.to_string(),
            kind: "DELETED",
            namespace: namespace.to_string(),
            name: name.to_string(),
            object: Arc::new(obj),
            prev: Some(last),
        });
        drop(st);
        self.shared.changed.notify_all();
    }

    /// Forgets history up to now: older watches and continue tokens get 410.
    pub fn compact(&self) {
        let mut st = self.shared.store.lock().unwrap();
        st.compacted = st.rv;
        drop(st);
        self.shared.changed.notify_all();
    }

    /// Makes the next continue token the server receives expired (410).
    pub fn expire_next_continue(&self) {
        self.shared.options.lock().unwrap().expire_next_continue = true;
    }

    /// Breaks every open watch connection mid-stream.
    pub fn drop_watches(&self) {
        self.shared.store.lock().unwrap().drop_generation += 1;
        self.shared.changed.notify_all();
    }

    /// Replaces the accepted bearer tokens.
    pub fn set_tokens(&self, tokens: &[&str]) {
        self.shared.options.lock().unwrap().tokens = tokens.iter().map(|t| t.to_string()).collect();
    }

    /// Makes every request for `plural` answer 403.
    pub fn forbid(&self, plural: &str) {
        self.shared
            .options
            .lock()
            .unwrap()
            .forbidden
            .insert(plural.to_string());
    }

    /// Installs the CRD of a custom resource (`rollouts`, `clonesets`): it is
    /// served and listed in discovery from now on.
    pub fn install_crd(&self, plural: &str) {
        assert!(
            CUSTOM.contains(&plural),
            "{plural} is not a custom resource here"
        );
        self.shared
            .options
            .lock()
            .unwrap()
            .installed
            .insert(plural.to_string());
    }

    /// Deletes the CRD: its objects are deleted (DELETED events to open
    /// watches), then its watches end and its paths answer 404, as when the
    /// apiserver stops serving a deleted CRD.
    pub fn uninstall_crd(&self, plural: &str) {
        let objects: Vec<(String, String)> = {
            let st = self.shared.store.lock().unwrap();
            st.objects
                .keys()
                .filter(|(p, _, _)| p == plural)
                .map(|(_, ns, n)| (ns.clone(), n.clone()))
                .collect()
        };
        for (ns, n) in objects {
            self.delete(plural, &ns, &n);
        }
        self.shared.options.lock().unwrap().installed.remove(plural);
        self.drop_watches();
    }

    /// Makes the server misbehave from now on (or behave again).
    pub fn misbehave(&self, m: Misbehaviour) {
        self.shared.options.lock().unwrap().misbehaviour = m;
    }

    /// How often watches with allowWatchBookmarks get a BOOKMARK.
    pub fn set_bookmark_interval(&self, d: Duration) {
        self.shared.options.lock().unwrap().bookmark_interval = d;
    }

    /// The resourceVersions of the BOOKMARK events sent so far.
    pub fn bookmarks(&self) -> Vec<u64> {
        self.shared.bookmarks.lock().unwrap().clone()
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store.lock().unwrap().rv
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Logged> {
        self.shared.log.lock().unwrap().clone()
    }

    /// Objects of `plural` sent so far in lists and watches.
    pub fn served(&self, plural: &str) -> usize {
        self.shared
            .served
            .lock()
            .unwrap()
            .get(plural)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.drop_watches();
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.url.trim_start_matches("https://"));
    }
}

fn server_tls(cert: &ServerCert) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert.cert_pem)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(&cert.key_pem).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&cert.ca_pem).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .unwrap();
    Arc::new(cfg)
}

fn serve_connection(tcp: TcpStream, cfg: Arc<rustls::ServerConfig>, shared: &Shared) {
    let _ = tcp.set_nodelay(true);
    let tcp2 = match tcp.try_clone() {
        Ok(t) => t,
        Err(_) => return,
    };
    let conn = match rustls::ServerConnection::new(cfg) {
        Ok(c) => c,
        Err(_) => return,
    };
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    // Read the request head.
    let mut head = Vec::new();
    let mut buf = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tls.read(&mut buf) {
            Ok(1) => head.push(buf[0]),
            _ => return,
        }
        if head.len() > 64 << 10 {
            return;
        }
    }
    let cn = tls
        .conn
        .peer_certificates()
        .and_then(|c| c.first().map(|c| common_name(c.as_ref())));
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = BufReader::new(text.as_bytes())
        .lines()
        .map_while(Result::ok);
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or("/").to_string(),
    );
    let mut authorization = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            if k.trim().eq_ignore_ascii_case("authorization") {
                authorization = Some(v.trim().to_string());
            }
        }
    }
    let (path, query) = split_query(&target);
    let user = authenticate(shared, authorization.as_deref(), cn.flatten());
    let mut out = Out {
        tls: &mut tls,
        tcp: tcp2,
    };
    // Logged when it arrives (a watch may last long); the status is filled in at the end.
    let index = log(
        shared,
        &path,
        &query,
        user.as_deref().unwrap_or("unauthenticated"),
    );
    let status = match user {
        None => out.status(401, "Unauthorized", "Unauthorized", None),
        Some(user) => handle(shared, &mut out, method, &path, &query, &user),
    };
    shared.log.lock().unwrap()[index].status = status;
}

fn log(shared: &Shared, path: &str, query: &HashMap<String, String>, user: &str) -> usize {
    let mut log = shared.log.lock().unwrap();
    log.push(Logged {
        path: path.to_string(),
        query: query.clone(),
        user: user.to_string(),
        status: 0,
    });
    log.len() - 1
}

fn authenticate(
    shared: &Shared,
    authorization: Option<&str>,
    cn: Option<String>,
) -> Option<String> {
    let o = shared.options.lock().unwrap();
    if let Some(t) = authorization.and_then(|a| a.strip_prefix("Bearer ")) {
        return o.tokens.contains(t).then(|| format!("token:{t}"));
    }
    if o.cert_users {
        if let Some(cn) = cn {
            return Some(format!("cert:{cn}"));
        }
    }
    o.anonymous.then(|| "anonymous".to_string())
}

/// Extracts the CN from a DER certificate without an X.509 parser: finds
/// the commonName OID and reads the string after it.
fn common_name(der: &[u8]) -> Option<String> {
    let oid = [0x06, 0x03, 0x55, 0x04, 0x03];
    let mut last = None;
    for i in 0..der.len().saturating_sub(oid.len() + 2) {
        if der[i..i + oid.len()] == oid {
            let len = der[i + oid.len() + 1] as usize;
            let start = i + oid.len() + 2;
            last = der
                .get(start..start + len)
                .map(|b| String::from_utf8_lossy(b).into_owned());
        }
    }
    // The subject comes after the issuer: the last CN is the subject's.
    last
}

fn split_query(target: &str) -> (String, HashMap<String, String>) {
    let (path, q) = target.split_once('?').unwrap_or((target, ""));
    let query = q
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    (path.to_string(), query)
}

struct Out<'a> {
    tls: &'a mut rustls::StreamOwned<rustls::ServerConnection, TcpStream>,
    tcp: TcpStream,
}

impl Out<'_> {
    fn write_response(&mut self, status: u16, reason: &str, body: &[u8]) -> u16 {
        self.write_response_with(status, reason, "", body)
    }

    /// An answer with extra header lines (each ending in CRLF).
    fn write_response_with(&mut self, status: u16, reason: &str, extra: &str, body: &[u8]) -> u16 {
        let head = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nCache-Control: no-cache, private\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = self.tls.write_all(head.as_bytes());
        let _ = self.tls.write_all(body);
        let _ = self.tls.flush();
        self.tls.conn.send_close_notify();
        let _ = self.tls.flush();
        status
    }

    /// A plain-text answer, as the apiserver's own 404 for unknown paths.
    fn write_plain(&mut self, status: u16, reason: &str, body: &str) -> u16 {
        let head = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = self.tls.write_all(head.as_bytes());
        let _ = self.tls.write_all(body.as_bytes());
        let _ = self.tls.flush();
        self.tls.conn.send_close_notify();
        let _ = self.tls.flush();
        status
    }

    /// A `Status` answer shaped like the transcripts.
    fn status(&mut self, code: u16, reason: &str, message: &str, details: Option<Value>) -> u16 {
        let mut body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code});
        if let Some(d) = details {
            body["details"] = d;
        }
        let text = match code {
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            410 => "Gone",
            400 => "Bad Request",
            _ => "Error",
        };
        self.write_response(
            code,
            text,
            serde_json::to_string_pretty(&body).unwrap().as_bytes(),
        )
    }

    fn start_chunked(&mut self) {
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: no-cache, private\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
        let _ = self.tls.write_all(head.as_bytes());
        let _ = self.tls.flush();
    }

    fn chunk(&mut self, line: &str) -> bool {
        let data = format!("{line}\n");
        let framed = format!("{:x}\r\n{data}\r\n", data.len());
        self.tls.write_all(framed.as_bytes()).is_ok() && self.tls.flush().is_ok()
    }

    fn end_chunked(&mut self) {
        let _ = self.tls.write_all(b"0\r\n\r\n");
        let _ = self.tls.flush();
        self.tls.conn.send_close_notify();
        let _ = self.tls.flush();
    }

    /// Cuts the connection without finishing the chunked body or TLS.
    fn drop_connection(&mut self) {
        let _ = self.tcp.shutdown(std::net::Shutdown::Both);
    }
}

struct Route {
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
}

fn route(path: &str) -> Option<Route> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match segs.as_slice() {
        ["api", "v1", rest @ ..] => rest,
        ["apis", _, _, rest @ ..] => rest,
        _ => return None,
    };
    let prefix = if segs[0] == "api" {
        "/api/v1".to_string()
    } else {
        format!("/apis/{}/{}", segs[1], segs[2])
    };
    let known = |plural: &str| RESOURCES.iter().any(|r| r.0 == prefix && r.1 == plural);
    let r = match rest {
        [plural] => Route {
            plural: plural.to_string(),
            namespace: None,
            name: None,
        },
        ["namespaces", ns, plural] if known(plural) => Route {
            plural: plural.to_string(),
            namespace: Some(ns.to_string()),
            name: None,
        },
        ["namespaces", ns, plural, name] => Route {
            plural: plural.to_string(),
            namespace: Some(ns.to_string()),
            name: Some(name.to_string()),
        },
        ["namespaces", name] => Route {
            plural: "namespaces".into(),
            namespace: None,
            name: Some(name.to_string()),
        },
        [plural, name] => Route {
            plural: plural.to_string(),
            namespace: None,
            name: Some(name.to_string()),
        },
        _ => return None,
    };
    known(&r.plural).then_some(r)
}

/// Whether an object passes `fieldSelector` and `labelSelector`.
fn selected(obj: &Value, fields: &[(String, bool, String)], labels: &[LabelReq]) -> bool {
    for (field, eq, value) in fields {
        let actual = match field.as_str() {
            "metadata.name" => obj["metadata"]["name"].as_str().unwrap_or(""),
            "metadata.namespace" => obj["metadata"]["namespace"].as_str().unwrap_or(""),
            "type" => obj["type"].as_str().unwrap_or(""),
            "status.phase" => obj["status"]["phase"].as_str().unwrap_or(""),
            _ => return false,
        };
        if (actual == value) != *eq {
            return false;
        }
    }
    let obj_labels = &obj["metadata"]["labels"];
    labels.iter().all(|l| {
        let v = obj_labels.get(&l.key).and_then(|v| v.as_str());
        match &l.op {
            LabelOp::Exists => v.is_some(),
            LabelOp::NotExists => v.is_none(),
            LabelOp::Eq(x) => v == Some(x.as_str()),
            LabelOp::Ne(x) => v != Some(x.as_str()),
        }
    })
}

enum LabelOp {
    Exists,
    NotExists,
    Eq(String),
    Ne(String),
}

struct LabelReq {
    key: String,
    op: LabelOp,
}

fn parse_fields(plural: &str, s: &str) -> Result<Vec<(String, bool, String)>, String> {
    let mut out = Vec::new();
    for term in s.split(',').filter(|t| !t.is_empty()) {
        let (k, eq, v) = if let Some((k, v)) = term.split_once("!=") {
            (k, false, v)
        } else if let Some((k, v)) = term.split_once("==") {
            (k, true, v)
        } else if let Some((k, v)) = term.split_once('=') {
            (k, true, v)
        } else {
            return Err(format!("invalid field selector {term:?}"));
        };
        let supported = matches!(k, "metadata.name" | "metadata.namespace")
            || (plural == "secrets" && k == "type")
            || (plural == "pods" && k == "status.phase");
        if !supported {
            return Err(format!("\"{k}\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""));
        }
        out.push((k.to_string(), eq, v.to_string()));
    }
    Ok(out)
}

fn parse_labels(s: &str) -> Vec<LabelReq> {
    s.split(',')
        .filter(|t| !t.is_empty())
        .map(|t| {
            if let Some(k) = t.strip_prefix('!') {
                LabelReq {
                    key: k.into(),
                    op: LabelOp::NotExists,
                }
            } else if let Some((k, v)) = t.split_once("!=") {
                LabelReq {
                    key: k.into(),
                    op: LabelOp::Ne(v.into()),
                }
            } else if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
                LabelReq {
                    key: k.into(),
                    op: LabelOp::Eq(v.into()),
                }
            } else {
                LabelReq {
                    key: t.into(),
                    op: LabelOp::Exists,
                }
            }
        })
        .collect()
}

fn in_scope(route: &Route, ns: &str) -> bool {
    route.namespace.as_deref().is_none_or(|want| want == ns)
}

fn handle(
    shared: &Shared,
    out: &mut Out,
    method: &str,
    path: &str,
    query: &HashMap<String, String>,
    user: &str,
) -> u16 {
    if let Some(list) = discovery(shared, path) {
        return out.write_response(200, "OK", list.to_string().as_bytes());
    }
    let Some(route) = route(path) else {
        return out.status(
            404,
            "NotFound",
            "the server could not find the requested resource",
            None,
        );
    };
    if CUSTOM.contains(&route.plural.as_str())
        && !shared
            .options
            .lock()
            .unwrap()
            .installed
            .contains(&route.plural)
    {
        // What the apiserver answers for a group it does not serve.
        return out.write_plain(404, "Not Found", "404 page not found\n");
    }
    let (_, plural, kind, api_version, _) = resource(&route.plural);
    if method != "GET" {
        return out.status(405, "MethodNotAllowed", "the fake serves GET only", None);
    }
    if shared.options.lock().unwrap().forbidden.contains(plural) {
        let group = if api_version.contains('/') {
            api_version.split('/').next().unwrap()
        } else {
            ""
        };
        let dotted = if group.is_empty() {
            plural.to_string()
        } else {
            format!("{plural}.{group}")
        };
        let scope = match &route.namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".to_string(),
        };
        let who = user.split_once(':').map(|(_, u)| u).unwrap_or(user);
        let msg = format!("{dotted} is forbidden: User \"{who}\" cannot list resource \"{plural}\" in API group \"{group}\" {scope}");
        return out.status(
            403,
            "Forbidden",
            &msg,
            Some(json!({"group": group, "kind": plural})),
        );
    }
    let misbehaviour = shared.options.lock().unwrap().misbehaviour;
    let watching = query.get("watch").is_some_and(|w| w == "1" || w == "true");
    match misbehaviour {
        Misbehaviour::Throttle(secs) => {
            let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "Too many requests, please try again later.", "reason": "TooManyRequests", "details": {"retryAfterSeconds": secs}, "code": 429});
            return out.write_response_with(
                429,
                "Too Many Requests",
                &format!("Retry-After: {secs}\r\n"),
                body.to_string().as_bytes(),
            );
        }
        Misbehaviour::CloseWatchesAtOnce if watching => {
            out.start_chunked();
            out.end_chunked();
            return 200;
        }
        Misbehaviour::ErrorEveryWatch if watching => {
            out.start_chunked();
            let e = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "Internal error occurred: etcdserver: request timed out", "reason": "InternalError", "details": {"causes": [{"message": "etcdserver: request timed out"}]}, "code": 500}});
            out.chunk(&e.to_string());
            out.end_chunked();
            return 200;
        }
        _ => {}
    }
    let fields = match parse_fields(
        plural,
        query.get("fieldSelector").map(String::as_str).unwrap_or(""),
    ) {
        Ok(f) => f,
        Err(e) => return out.status(400, "BadRequest", &e, None),
    };
    let labels = parse_labels(query.get("labelSelector").map(String::as_str).unwrap_or(""));
    if let Some(name) = &route.name {
        let st = shared.store.lock().unwrap();
        let key = (
            plural.to_string(),
            route.namespace.clone().unwrap_or_default(),
            name.clone(),
        );
        return match st.objects.get(&key) {
            Some((_, o)) => {
                let body = o.to_string();
                drop(st);
                out.write_response(200, "OK", body.as_bytes())
            }
            None => {
                drop(st);
                out.status(
                    404,
                    "NotFound",
                    &format!("{plural} \"{name}\" not found"),
                    Some(json!({"name": name, "kind": plural})),
                )
            }
        };
    }
    let sel = Selection {
        route: &route,
        kind,
        api_version,
        query,
        fields: &fields,
        labels: &labels,
    };
    if query.get("watch").is_some_and(|w| w == "1" || w == "true") {
        return watch(shared, out, sel);
    }
    list(shared, out, sel)
}

/// `GET /apis/GROUP/VERSION`: the APIResourceList of what is served there,
/// or None (a 404 "page not found") when nothing is.
fn discovery(shared: &Shared, path: &str) -> Option<Value> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let prefix = match segs.as_slice() {
        ["api", "v1"] => "/api/v1".to_string(),
        ["apis", group, version] => format!("/apis/{group}/{version}"),
        _ => return None,
    };
    let installed = shared.options.lock().unwrap().installed.clone();
    let resources: Vec<Value> = RESOURCES
        .iter()
        .filter(|r| r.0 == prefix && (!CUSTOM.contains(&r.1) || installed.contains(r.1)))
        .map(|(_, plural, kind, _, namespaced)| {
            json!({"name": plural, "singularName": kind.to_lowercase(), "namespaced": namespaced, "kind": kind, "verbs": ["get", "list", "watch"]})
        })
        .collect();
    if resources.is_empty() {
        return None;
    }
    let gv = prefix
        .trim_start_matches("/apis/")
        .trim_start_matches("/api/");
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

/// The objects of `plural` as of version `rv`, sorted by (namespace, name).
fn snapshot(st: &Store, plural: &str, rv: u64) -> Vec<(String, String, Arc<Value>)> {
    if rv >= st.rv {
        let from = (plural.to_string(), String::new(), String::new());
        return st
            .objects
            .range(from..)
            .take_while(|((p, _, _), _)| p == plural)
            .map(|((_, ns, n), (_, o))| (ns.clone(), n.clone(), o.clone()))
            .collect();
    }
    let mut m: BTreeMap<(String, String), Arc<Value>> = BTreeMap::new();
    for e in st
        .history
        .iter()
        .take_while(|e| e.rv <= rv)
        .filter(|e| e.plural == plural)
    {
        let key = (e.namespace.clone(), e.name.clone());
        if e.kind == "DELETED" {
            m.remove(&key);
        } else {
            m.insert(key, e.object.clone());
        }
    }
    m.into_iter().map(|((ns, n), o)| (ns, n, o)).collect()
}

/// What a list or watch request asks for.
#[derive(Clone, Copy)]
struct Selection<'a> {
    route: &'a Route,
    kind: &'a str,
    api_version: &'a str,
    query: &'a HashMap<String, String>,
    fields: &'a [(String, bool, String)],
    labels: &'a [LabelReq],
}

fn count_served(shared: &Shared, plural: &str, n: usize) {
    *shared
        .served
        .lock()
        .unwrap()
        .entry(plural.to_string())
        .or_default() += n;
}

fn continue_token(rv: i64, start: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({"v": "meta.k8s.io/v1", "rv": rv, "start": start}).to_string())
}

fn list(shared: &Shared, out: &mut Out, sel: Selection) -> u16 {
    let Selection {
        route,
        kind,
        api_version,
        query,
        fields,
        labels,
    } = sel;
    let st = shared.store.lock().unwrap();
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let (rv, start) = match query.get("continue").filter(|c| !c.is_empty()) {
        None => {
            if query.get("resourceVersionMatch").map(String::as_str) == Some("Exact") {
                let want: u64 = query
                    .get("resourceVersion")
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(0);
                if want <= st.compacted {
                    drop(st);
                    return out.status(
                        410,
                        "Expired",
                        "The resourceVersion for the provided list is too old.",
                        None,
                    );
                }
            }
            (st.rv, String::new())
        }
        Some(token) => {
            let parsed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token.trim_end_matches('='))
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
            let Some(p) = parsed else {
                drop(st);
                return out.status(
                    400,
                    "BadRequest",
                    "continue key is not valid: illegal base64 data",
                    None,
                );
            };
            let rv = p["rv"].as_i64().unwrap_or(0);
            let start = p["start"].as_str().unwrap_or("").to_string();
            let expire = std::mem::take(&mut shared.options.lock().unwrap().expire_next_continue);
            if expire || rv <= st.compacted as i64 {
                let fresh = continue_token(-1, &start);
                let msg = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";
                let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {"continue": fresh}, "status": "Failure", "message": msg, "reason": "Expired", "code": 410});
                drop(st);
                return out.write_response(
                    410,
                    "Gone",
                    serde_json::to_string_pretty(&body).unwrap().as_bytes(),
                );
            }
            (rv as u64, start)
        }
    };
    let all = snapshot(&st, &route.plural, rv);
    drop(st);
    // The real server pages in etcd key order: "namespace/name" as a string.
    let mut all = all;
    all.sort_by(|a, b| format!("{}/{}", a.0, a.1).cmp(&format!("{}/{}", b.0, b.1)));
    let matching: Vec<(String, Arc<Value>)> = all
        .into_iter()
        .filter(|(ns, _, o)| in_scope(route, ns) && selected(o, fields, labels))
        .map(|(ns, n, o)| {
            (
                if ns.is_empty() {
                    n
                } else {
                    format!("{ns}/{n}")
                },
                o,
            )
        })
        .filter(|(k, _)| start.is_empty() || k.as_str() >= start.as_str())
        .collect();
    let page: Vec<&(String, Arc<Value>)> = matching.iter().take(limit).collect();
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if matching.len() > page.len() {
        let last = &page.last().unwrap().0;
        meta["continue"] = json!(continue_token(rv as i64, &format!("{last}\u{0}")));
        meta["remainingItemCount"] = json!(matching.len() - page.len());
    }
    // Items of a list carry no kind/apiVersion: only the list does.
    let items: Vec<Value> = page
        .iter()
        .map(|(_, o)| {
            let mut o = (**o).clone();
            if let Some(m) = o.as_object_mut() {
                m.remove("kind");
                m.remove("apiVersion");
            }
            o
        })
        .collect();
    count_served(shared, &route.plural, items.len());
    let body = json!({"kind": format!("{kind}List"), "apiVersion": api_version, "metadata": meta, "items": items});
    out.write_response(200, "OK", body.to_string().as_bytes())
}

fn watch(shared: &Shared, out: &mut Out, sel: Selection) -> u16 {
    let Selection {
        route,
        kind,
        api_version,
        query,
        fields,
        labels,
    } = sel;
    let (bookmark_every, default_timeout) = {
        let o = shared.options.lock().unwrap();
        (o.bookmark_interval, o.default_watch_timeout)
    };
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true" || v == "1");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(default_timeout);
    let deadline = Instant::now() + timeout;
    let requested = query.get("resourceVersion").cloned().unwrap_or_default();
    let st = shared.store.lock().unwrap();
    let generation = st.drop_generation;
    out.start_chunked();
    let mut initial: Vec<String> = Vec::new();
    let mut cursor: u64 = match requested.as_str() {
        // "" and "0": start with the current state as synthetic ADDED events.
        "" | "0" => {
            for (ns, _, o) in snapshot(&st, &route.plural, st.rv) {
                if in_scope(route, &ns) && selected(&o, fields, labels) {
                    initial.push(json!({"type": "ADDED", "object": *o}).to_string());
                }
            }
            st.rv
        }
        v => match v.parse::<u64>() {
            Ok(rv) if rv < st.compacted => {
                drop(st);
                let e = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "The resourceVersion for the provided watch is too old.", "reason": "Expired", "code": 410}});
                out.chunk(&e.to_string());
                out.end_chunked();
                return 200;
            }
            Ok(rv) => rv,
            Err(_) => {
                drop(st);
                out.chunk(&json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": format!("invalid resource version: {v}"), "reason": "BadRequest", "code": 400}}).to_string());
                out.end_chunked();
                return 200;
            }
        },
    };
    drop(st);
    count_served(shared, &route.plural, initial.len());
    for line in initial {
        if !out.chunk(&line) {
            return 200;
        }
    }
    let mut last_bookmark = Instant::now();
    loop {
        let st = shared.store.lock().unwrap();
        if st.drop_generation != generation {
            drop(st);
            out.drop_connection();
            return 200;
        }
        let mut lines = Vec::new();
        for e in st
            .history
            .iter()
            .filter(|e| e.rv > cursor && e.plural == route.plural && in_scope(route, &e.namespace))
        {
            let now = selected(&e.object, fields, labels) && e.kind != "DELETED";
            let before = e.prev.as_ref().is_some_and(|p| selected(p, fields, labels));
            let typ = match (e.kind, before, now) {
                ("DELETED", true, _) => "DELETED",
                (_, false, true) => "ADDED",
                (_, true, true) => "MODIFIED",
                // It stopped matching the selectors: gone from this watch's view.
                (_, true, false) => "DELETED",
                _ => continue,
            };
            lines.push(json!({"type": typ, "object": *e.object}).to_string());
        }
        cursor = st.rv;
        if lines.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                drop(st);
                out.end_chunked();
                return 200;
            }
            if bookmarks && now.duration_since(last_bookmark) >= bookmark_every {
                last_bookmark = now;
                let b = json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": st.rv.to_string(), "creationTimestamp": null}}});
                shared.bookmarks.lock().unwrap().push(st.rv);
                drop(st);
                if !out.chunk(&b.to_string()) {
                    return 200;
                }
                continue;
            }
            let wait = (deadline - now).min(Duration::from_millis(100));
            let _ = shared.changed.wait_timeout(st, wait).unwrap();
            continue;
        }
        drop(st);
        count_served(shared, &route.plural, lines.len());
        for l in lines {
            if !out.chunk(&l) {
                return 200;
            }
        }
    }
}

/// Gives an object what the same object carries in a real cluster, so that
/// what the exporter reads (and the memory it takes to read it) is true to
/// size: the status its controller writes (when the test gave none), the
/// `kubectl.kubernetes.io/last-applied-configuration` annotation of
/// `kubectl apply` on the kinds people apply, and the `metadata.managedFields`
/// the apiserver itself records on every write.
fn as_in_a_cluster(obj: &mut Value, api_version: &str) {
    let kind = obj["kind"].as_str().unwrap_or("").to_string();
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    let stamp = "2026-11-27T23:51:39Z";
    let condition = |t: &str, reason: &str, message: &str| json!({"type": t, "status": "True", "lastUpdateTime": stamp, "lastTransitionTime": stamp, "reason": reason, "message": message});
    let replicas = obj["spec"]["replicas"].as_i64().unwrap_or(1);
    if obj.get("status").is_none_or(Value::is_null) {
        let status = match kind.as_str() {
            "Deployment" => Some(json!({
            "observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
            "readyReplicas": replicas, "availableReplicas": replicas,
            "conditions": [
                condition("Available", "MinimumReplicasAvailable", "Deployment has minimum availability."),
                condition("Progressing", "NewReplicaSetAvailable", &format!("ReplicaSet \"{name}-5d4f8c7b9\" has successfully progressed.")),
            ]})),
            "StatefulSet" => Some(json!({
                "observedGeneration": 1, "replicas": replicas, "readyReplicas": replicas,
                "currentReplicas": replicas, "updatedReplicas": replicas, "availableReplicas": replicas,
                "currentRevision": format!("{name}-7c9d8f6b5d"), "updateRevision": format!("{name}-7c9d8f6b5d"),
                "collisionCount": 0})),
            "CronJob" => Some(json!({"lastScheduleTime": stamp, "lastSuccessfulTime": stamp})),
            _ => None,
        };
        if let Some(status) = status {
            obj["status"] = status;
        }
    }
    if kind == "Pod" && obj["status"].get("containerStatuses").is_none() {
        let statuses: Vec<Value> = obj["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let image = c["image"].as_str().unwrap_or("");
                json!({"name": c["name"], "image": image, "imageID": format!("{image}@sha256:{}", "0f".repeat(32)),
                       "ready": true, "started": true, "restartCount": 0,
                       "containerID": format!("containerd://{}", "ab".repeat(32)),
                       "state": {"running": {"startedAt": stamp}}, "lastState": {}})
            })
            .collect();
        if let Some(status) = obj["status"].as_object_mut() {
            status.insert("containerStatuses".into(), json!(statuses));
            status.insert("hostIP".into(), json!("10.0.3.17"));
            status.insert("podIP".into(), json!("10.244.3.41"));
            status.insert("podIPs".into(), json!([{"ip": "10.244.3.41"}]));
            status.insert("qosClass".into(), json!("BestEffort"));
            status.insert("startTime".into(), json!(stamp));
            status.entry("conditions").or_insert(json!([
                {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": stamp},
                {"type": "Initialized", "status": "True", "lastTransitionTime": stamp},
                {"type": "Ready", "status": "True", "lastTransitionTime": stamp},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": stamp},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp},
            ]));
        }
    }
    let applied = matches!(
        kind.as_str(),
        "Deployment" | "StatefulSet" | "DaemonSet" | "CronJob"
    );
    let meta = obj["metadata"].clone();
    if applied && meta["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].is_null()
    {
        let mut sent = obj.clone();
        if let Some(m) = sent.as_object_mut() {
            m.remove("status");
        }
        let annotations = obj["metadata"]
            .as_object_mut()
            .unwrap()
            .entry("annotations")
            .or_insert(json!({}));
        if let Some(a) = annotations.as_object_mut() {
            a.insert(
                "kubectl.kubernetes.io/last-applied-configuration".into(),
                json!(sent.to_string() + "\n"),
            );
        }
    }
    if meta.get("managedFields").is_none() {
        let mut spec = obj.clone();
        let m = spec.as_object_mut().unwrap();
        m.remove("status");
        m.remove("kind");
        m.remove("apiVersion");
        let own = json!({"labels": meta["labels"], "annotations": obj["metadata"]["annotations"], "ownerReferences": meta["ownerReferences"]});
        m.insert("metadata".into(), own);
        let manager = if applied {
            "kubectl-client-side-apply"
        } else {
            "kube-controller-manager"
        };
        let mut entries = vec![
            json!({"manager": manager, "operation": "Update", "apiVersion": api_version,
            "time": stamp, "fieldsType": "FieldsV1", "fieldsV1": fields_v1(&spec)}),
        ];
        if let Some(status) = obj.get("status").filter(|s| !s.is_null()) {
            let writer = if kind == "Pod" {
                "kubelet"
            } else {
                "kube-controller-manager"
            };
            entries.push(json!({"manager": writer, "operation": "Update", "apiVersion": api_version,
                "time": stamp, "fieldsType": "FieldsV1", "fieldsV1": {"f:status": fields_v1(status)}, "subresource": "status"}));
        }
        obj["metadata"]["managedFields"] = json!(entries);
    }
}

/// The `FieldsV1` set of an object: its field names, list items by name
/// where they have one, as structured-merge-diff records them.
fn fields_v1(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m {
                if v.is_null() {
                    continue;
                }
                out.insert(format!("f:{k}"), fields_v1(v));
            }
            if !out.is_empty() {
                out.insert(".".into(), json!({}));
            }
            Value::Object(out)
        }
        Value::Array(items) => {
            let mut out = serde_json::Map::new();
            for (i, item) in items.iter().enumerate() {
                let key = match item.get("name").and_then(Value::as_str) {
                    Some(n) => format!("k:{{\"name\":\"{n}\"}}"),
                    None => format!("v:{i}"),
                };
                let mut f = fields_v1(item);
                if let Some(o) = f.as_object_mut() {
                    o.insert(".".into(), json!({}));
                }
                out.insert(key, f);
            }
            Value::Object(out)
        }
        _ => json!({}),
    }
}
