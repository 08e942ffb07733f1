//! A reverse proxy in front of a real registry that behaves as registries
//! in the field do past the tag, which Docker Distribution never does: a
//! download policy that refuses GETs while HEAD passes (Artifactory Xray,
//! Harbor), a proxy cache whose tag answers a digest it cannot serve, pull
//! quota headers (Docker Hub's `ratelimit-limit` / `ratelimit-remaining`),
//! and blob requests that fail with 5xx. And a profile per registry family
//! whose answers differ from Distribution's (shared/REGISTRIES.md says
//! where each comes from): ECR Public's blob HEADs, storage presigned for
//! GET, a Harbor proxy cache's blob table, schema 1 manifests, Docker Hub
//! at its pull limit, missing or empty digests, mirrors routed by `?ns=`,
//! Harbor's challenges and Quay's proxy-cache 400. Records every request.

use std::collections::HashSet;

use std::sync::{Arc, Mutex};

use super::http::{Request, Response, Server};

/// A request head as received: method, url, and the scheme of the
/// Authorization it carried (`basic`, `bearer`).
pub type Head = (String, String, Option<String>);

/// What the proxy does instead of forwarding.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// GETs of paths containing one of these get 403 DENIED "download blocked".
    pub refuse_gets: Vec<String>,
    /// (manifest path part such as `team/app/manifests/v1`, digest): the
    /// tag answers this digest, without asking the registry.
    pub stale_tags: Vec<(String, String)>,
    /// Blob requests of paths containing one of these get 503.
    pub failing_blobs: Vec<String>,
    /// (limit, remaining) announced on every answer.
    pub quota: Option<(u64, u64)>,
    /// How blob requests are answered.
    pub blobs: Blobs,
    /// Docker Hub with the pull quota used up: manifest GETs get 429
    /// TOOMANYREQUESTS "You have reached your pull rate limit"; HEAD passes.
    pub pull_limit_reached: bool,
    /// What becomes of `Docker-Content-Digest` on manifest answers.
    pub digest_header: DigestHeader,
    /// (tag path part such as `team/old/manifests/v1`, schema 1 manifest
    /// body): the tag, and the body's digest, answer this manifest.
    pub schema1: Vec<(String, String)>,
    /// Harbor's challenges: a refused request that carried Authorization
    /// gets `Basic realm="harbor"`; requests with Authorization to these
    /// projects (first path component) get 401 with an empty challenge.
    pub harbor: Option<Vec<String>>,
    /// Quay's proxy cache with its upstream down: manifest requests of
    /// paths containing one of these get 400 INVALID_REQUEST.
    pub upstream_down: Vec<String>,
    /// (`ns` value, upstream `127.0.0.1:PORT`): requests naming the `ns`
    /// go there instead (a multi-upstream mirror).
    pub ns_upstreams: Vec<(String, String)>,
}

/// How a registry family answers blob requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Blobs {
    /// As Distribution does.
    #[default]
    Forward,
    /// ECR Public: every blob HEAD gets 401 with a `scope="aws"` challenge
    /// and DENIED, whatever the token; GET works.
    EcrPublic,
    /// A registry that redirects blobs (307) to storage presigned for GET:
    /// the storage answers HEAD 403 `SignatureDoesNotMatch`, GET the blob.
    PresignedStorage,
    /// A Harbor proxy cache: blob HEAD answers from its own table, 404 for
    /// blobs nobody has GET through it yet; GET fetches and records.
    HarborProxyCache,
}

/// What becomes of `Docker-Content-Digest` on manifest answers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DigestHeader {
    /// As the registry sends it.
    #[default]
    Keep,
    /// Removed (registry.redhat.io).
    Strip,
    /// Sent empty (a Harbor proxy cache's GET by tag).
    Empty,
}

/// A running proxy.
pub struct PolicyProxy {
    /// `127.0.0.1:PORT`, what image references start with.
    pub host: String,
    rules: Arc<Mutex<Rules>>,
    seen: Arc<Mutex<Vec<(String, String)>>>,
    /// Request heads as received.
    heads: Arc<Mutex<Vec<Head>>>,
    _server: Server,
}

impl PolicyProxy {
    /// Proxies `upstream` (`127.0.0.1:PORT`, plain http).
    pub fn start(upstream: &str) -> PolicyProxy {
        let rules = Arc::new(Mutex::new(Rules::default()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let fetched = Arc::new(Mutex::new(HashSet::new()));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .timeout_global(Some(std::time::Duration::from_secs(10)))
            .build()
            .new_agent();
        let (r, s, up) = (rules.clone(), seen.clone(), upstream.to_string());
        let (h, f) = (heads.clone(), fetched.clone());
        let server = Server::start(
            Arc::new(move |req: &Request| {
                s.lock()
                    .unwrap()
                    .push((req.method.clone(), req.url.clone()));
                h.lock().unwrap().push((
                    req.method.clone(),
                    req.url.clone(),
                    req.header("authorization").map(|a| {
                        a.split_whitespace()
                            .next()
                            .unwrap_or("")
                            .to_ascii_lowercase()
                    }),
                ));
                let rules = r.lock().unwrap().clone();
                let mut resp = answer(&agent, &up, req, &rules, &f);
                if let Some((limit, remaining)) = rules.quota {
                    resp.headers
                        .push(("ratelimit-limit".into(), format!("{limit};w=21600")));
                    resp.headers
                        .push(("ratelimit-remaining".into(), format!("{remaining};w=21600")));
                }
                resp
            }),
            Arc::new(|| {}),
        );
        PolicyProxy {
            host: server.host.clone(),
            rules,
            seen,
            heads,
            _server: server,
        }
    }

    /// Changes the rules.
    pub fn set(&self, f: impl FnOnce(&mut Rules)) {
        f(&mut self.rules.lock().unwrap());
    }

    /// A full image reference through the proxy.
    pub fn image(&self, repo_and_ref: &str) -> String {
        format!("{}/{repo_and_ref}", self.host)
    }

    /// Requests received as (method, url, the scheme of the Authorization
    /// they carried: `basic`, `bearer`).
    pub fn heads(&self) -> Vec<Head> {
        self.heads.lock().unwrap().clone()
    }

    /// Requests with `method` whose path contains `part`.
    pub fn count(&self, method: &str, part: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, u)| m == method && u.contains(part))
            .count()
    }
}

/// A registry error body.
fn error(status: u16, code: &str, message: &str) -> Response {
    Response {
        status,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: format!(r#"{{"errors":[{{"code":"{code}","message":"{message}"}}]}}"#),
    }
}

fn answer(
    agent: &ureq::Agent,
    upstream: &str,
    req: &Request,
    rules: &Rules,
    fetched: &Mutex<HashSet<String>>,
) -> Response {
    let (path, query) = req.url.split_once('?').unwrap_or((&req.url, ""));
    let ns = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("ns="))
        .map(super::percent_decode);
    let upstream = ns
        .as_deref()
        .and_then(|ns| rules.ns_upstreams.iter().find(|(n, _)| n == ns))
        .map(|(_, u)| u.as_str())
        .unwrap_or(upstream);
    let is_manifest = path.contains("/manifests/");
    let is_blob = path.contains("/blobs/");
    let digest_of_path = path.rsplit('/').next().unwrap_or("").to_string();
    if let Some(resp) = family(req, path, rules, fetched, &digest_of_path) {
        return resp;
    }
    if is_manifest
        && rules
            .upstream_down
            .iter()
            .any(|p| path.contains(p.as_str()))
    {
        return error(
            400,
            "INVALID_REQUEST",
            "upstream registry unavailable: connection refused",
        );
    }
    if is_manifest && req.method == "GET" && rules.pull_limit_reached {
        return error(
            429,
            "TOOMANYREQUESTS",
            "You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit",
        );
    }
    let mut resp = forward(agent, upstream, req, rules);
    if is_blob && req.method == "GET" && (200..300).contains(&resp.status) {
        fetched.lock().unwrap().insert(digest_of_path);
    }
    if is_manifest && (200..300).contains(&resp.status) {
        match rules.digest_header {
            DigestHeader::Keep => {}
            DigestHeader::Strip => resp.headers.retain(|(k, _)| k != "docker-content-digest"),
            DigestHeader::Empty => {
                for (k, v) in resp.headers.iter_mut() {
                    if k == "docker-content-digest" {
                        v.clear();
                    }
                }
            }
        }
    }
    if let Some(missing) = &rules.harbor {
        harbor_challenges(req, path, missing, &mut resp);
    }
    resp
}

/// Answers the registry families give before the request reaches the
/// registry behind: schema 1 tags and the blob profiles.
fn family(
    req: &Request,
    path: &str,
    rules: &Rules,
    fetched: &Mutex<HashSet<String>>,
    last: &str,
) -> Option<Response> {
    if path.contains("/manifests/") {
        let (tag, body) = rules.schema1.iter().find(|(tag, body)| {
            path.ends_with(tag.as_str()) || super::sha256(body.as_bytes()) == last
        })?;
        let _ = tag;
        return Some(Response {
            status: 200,
            headers: vec![
                (
                    "Content-Type".into(),
                    "application/vnd.docker.distribution.manifest.v1+prettyjws".into(),
                ),
                (
                    "Docker-Content-Digest".into(),
                    super::sha256(body.as_bytes()),
                ),
            ],
            body: body.clone(),
        });
    }
    if let Some(rest) = path.strip_prefix("/s3/") {
        // Storage whose URL was presigned for GET: the method is signed.
        if req.method != "GET" {
            return Some(Response {
                status: 403,
                headers: vec![("Content-Type".into(), "application/xml".into())],
                body: "<Error><Code>SignatureDoesNotMatch</Code></Error>".into(),
            });
        }
        let _ = rest;
        return None;
    }
    if !path.contains("/blobs/") {
        return None;
    }
    match rules.blobs {
        Blobs::Forward => None,
        Blobs::EcrPublic if req.method == "HEAD" => {
            let mut resp = error(401, "DENIED", "Not Authorized");
            resp.headers.push((
                "WWW-Authenticate".into(),
                r#"Bearer realm="https://public.ecr.aws/token/",service="public.ecr.aws",scope="aws""#
                    .into(),
            ));
            Some(resp)
        }
        Blobs::EcrPublic => None,
        Blobs::PresignedStorage => Some(Response {
            status: 307,
            headers: vec![(
                "Location".into(),
                format!("/s3{path}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=0f1e2d"),
            )],
            body: String::new(),
        }),
        Blobs::HarborProxyCache if req.method == "HEAD" => {
            if fetched.lock().unwrap().contains(last) {
                None
            } else {
                Some(error(404, "NOT_FOUND", &format!("blob {last} not found")))
            }
        }
        Blobs::HarborProxyCache => None,
    }
}

/// Harbor's challenges (src/server/middleware/v2auth/auth.go): a refused
/// request that carried credentials is challenged Basic; a project that
/// does not exist gets 401 with an empty challenge.
fn harbor_challenges(req: &Request, path: &str, missing: &[String], resp: &mut Response) {
    if req.header("authorization").is_none() {
        return;
    }
    let project = path
        .strip_prefix("/v2/")
        .and_then(|p| p.split('/').next())
        .unwrap_or("");
    if missing.iter().any(|m| m == project) {
        *resp = error(401, "UNAUTHORIZED", "unauthorized to access repository");
        resp.headers
            .push(("WWW-Authenticate".into(), String::new()));
        return;
    }
    if resp.status == 401 {
        resp.headers.retain(|(k, _)| k != "www-authenticate");
        resp.headers
            .push(("WWW-Authenticate".into(), r#"Basic realm="harbor""#.into()));
    }
}

fn forward(agent: &ureq::Agent, upstream: &str, req: &Request, rules: &Rules) -> Response {
    let reply = |status: u16, headers: Vec<(String, String)>, body: &str| Response {
        status,
        headers,
        body: body.to_string(),
    };
    if req.method == "GET"
        && rules
            .refuse_gets
            .iter()
            .any(|p| req.url.contains(p.as_str()))
    {
        return reply(
            403,
            vec![("Content-Type".into(), "application/json".into())],
            r#"{"errors":[{"code":"DENIED","message":"download blocked by policy: critical vulnerability"}]}"#,
        );
    }
    if let Some((_, digest)) = rules
        .stale_tags
        .iter()
        .find(|(p, _)| req.url.ends_with(p.as_str()))
    {
        return reply(
            200,
            vec![
                ("Docker-Content-Digest".into(), digest.clone()),
                (
                    "Content-Type".into(),
                    "application/vnd.docker.distribution.manifest.v2+json".into(),
                ),
            ],
            "",
        );
    }
    if req.url.contains("/blobs/")
        && rules
            .failing_blobs
            .iter()
            .any(|p| req.url.contains(p.as_str()))
    {
        return reply(503, vec![], "");
    }
    // `/s3/...` is the storage: the blob, from the registry, without
    // the signature's query.
    let url = match req.url.strip_prefix("/s3") {
        Some(rest) => rest.split('?').next().unwrap_or(rest).to_string(),
        None => req.url.clone(),
    };
    let mut forward = ureq::http::Request::builder()
        .method(req.method.as_str())
        .uri(format!("http://{upstream}{url}"));
    for name in ["accept", "authorization", "range"] {
        if let Some(v) = req.header(name) {
            forward = forward.header(name, v);
        }
    }
    let Ok(mut resp) = agent.run(forward.body(Vec::new()).unwrap()) else {
        return reply(502, vec![], "");
    };
    let mut headers = Vec::new();
    for name in [
        "content-type",
        "docker-content-digest",
        "www-authenticate",
        "location",
        "docker-distribution-api-version",
    ] {
        if let Some(v) = resp.headers().get(name).and_then(|v| v.to_str().ok()) {
            headers.push((name.to_string(), v.to_string()));
        }
    }
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_vec().unwrap_or_default();
    reply(status, headers, &String::from_utf8_lossy(&body))
}
