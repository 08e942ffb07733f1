//! A reverse proxy in front of a real registry that behaves as registries
//! in the field do past the tag, which Docker Distribution never does: a
//! download policy that refuses GETs while HEAD passes (Artifactory Xray,
//! Harbor), a proxy cache whose tag answers a digest it cannot serve, pull
//! quota headers (Docker Hub's `ratelimit-limit` / `ratelimit-remaining`),
//! and blob requests that fail with 5xx. Records every request.

use std::sync::{Arc, Mutex};

use super::http::{Request, Response, Server};

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
}

/// A running proxy.
pub struct PolicyProxy {
    /// `127.0.0.1:PORT`, what image references start with.
    pub host: String,
    rules: Arc<Mutex<Rules>>,
    seen: Arc<Mutex<Vec<(String, String)>>>,
    _server: Server,
}

impl PolicyProxy {
    /// Proxies `upstream` (`127.0.0.1:PORT`, plain http).
    pub fn start(upstream: &str) -> PolicyProxy {
        let rules = Arc::new(Mutex::new(Rules::default()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .timeout_global(Some(std::time::Duration::from_secs(10)))
            .build()
            .new_agent();
        let (r, s, up) = (rules.clone(), seen.clone(), upstream.to_string());
        let server = Server::start(
            Arc::new(move |req: &Request| {
                s.lock()
                    .unwrap()
                    .push((req.method.clone(), req.url.clone()));
                let rules = r.lock().unwrap().clone();
                let mut resp = answer(&agent, &up, req, &rules);
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

fn answer(agent: &ureq::Agent, upstream: &str, req: &Request, rules: &Rules) -> Response {
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
    let mut forward = ureq::http::Request::builder()
        .method(req.method.as_str())
        .uri(format!("http://{upstream}{}", req.url));
    for name in ["accept", "authorization"] {
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
