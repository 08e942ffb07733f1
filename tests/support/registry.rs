//! Starts Debian's Docker Distribution (`docker-registry`) on 127.0.0.1 with a
//! free port, with no auth, htpasswd basic auth or token auth, optionally with
//! TLS, and pushes and deletes images through the registry API itself.

use std::process::{Child, Command};
use std::time::Duration;

use super::tls::{self, ServerCert, SigningKey};
use super::token_server::{Policy, TokenServer, ISSUER, SERVICE};
use super::{free_port, sha256, wait_until, TempDir};

const SCHEMA2: &str = "application/vnd.docker.distribution.manifest.v2+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// How the registry authenticates.
pub enum Auth {
    /// Anyone may pull and push.
    None,
    /// htpasswd users (name, password); all of them may push and pull everything.
    Basic(Vec<(String, String)>),
    /// Our token server with this policy; the harness pushes as `admin`.
    Token(Policy),
}

/// A running registry.
pub struct Registry {
    /// `127.0.0.1:PORT`, what image references start with.
    pub host: String,
    /// The token server, in token mode.
    pub tokens: Option<TokenServer>,
    /// The TLS material, when serving https.
    pub tls: Option<ServerCert>,
    scheme: &'static str,
    push_auth: PushAuth,
    config_path: String,
    child: Child,
    agent: ureq::Agent,
    dir: TempDir,
}

enum PushAuth {
    None,
    Basic(String),
    Token { realm: String, header: String },
}

/// Password of the harness's own pushing user in token mode.
const ADMIN_PASSWORD: &str = "admin-secret-pw";

impl Registry {
    /// A registry over plain http.
    pub fn start(auth: Auth) -> Registry {
        Registry::launch(auth, false)
    }

    /// A registry over https with a certificate from a fresh test CA.
    pub fn start_tls(auth: Auth) -> Registry {
        Registry::launch(auth, true)
    }

    fn launch(auth: Auth, with_tls: bool) -> Registry {
        let dir = TempDir::new("registry");
        let tls = with_tls.then(|| tls::server_cert(&dir));
        let (auth_yaml, tokens, push_auth) = match auth {
            Auth::None => (String::new(), None, PushAuth::None),
            Auth::Basic(users) => {
                let mut lines = String::new();
                for (u, p) in &users {
                    let out = super::run("htpasswd", &["-Bbn", u, p]);
                    lines.push_str(String::from_utf8_lossy(&out).trim());
                    lines.push('\n');
                }
                let path = dir.write("htpasswd", lines);
                let (u, p) = &users[0];
                (
                    format!("auth:\n  htpasswd:\n    realm: kiae-basic\n    path: {path}\n"),
                    None,
                    PushAuth::Basic(TokenServer::basic_header(u, p)),
                )
            }
            Auth::Token(policy) => {
                let key: SigningKey = tls::signing_key(&dir);
                let policy = policy.user("admin", ADMIN_PASSWORD, "", &["pull", "push"]);
                let server = TokenServer::start(&key, policy);
                let yaml = format!(
                    "auth:\n  token:\n    realm: {}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
                    server.realm, key.cert_pem
                );
                let realm = server.realm.clone();
                (
                    yaml,
                    Some(server),
                    PushAuth::Token {
                        realm,
                        header: TokenServer::basic_header("admin", ADMIN_PASSWORD),
                    },
                )
            }
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(10)))
            .proxy(None)
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .disable_verification(true)
                    .build(),
            )
            .build()
            .new_agent();
        // A port can be taken between probing and binding: try a few.
        for _ in 0..5 {
            let port = free_port();
            let host = format!("127.0.0.1:{port}");
            let tls_yaml = tls
                .as_ref()
                .map(|t| {
                    format!(
                        "  tls:\n    certificate: {}\n    key: {}\n",
                        t.cert_pem, t.key_pem
                    )
                })
                .unwrap_or_default();
            let config = format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n  secret: kiae-test-secret\n{tls_yaml}{auth_yaml}",
                dir.join("data").display()
            );
            let config_path = dir.write("config.yml", config);
            let log = std::fs::File::create(dir.join("registry.log")).unwrap();
            let access = std::fs::File::create(dir.join("access.log")).unwrap();
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config_path)
                .stdout(access)
                .stderr(log)
                .spawn()
                .expect("start docker-registry (apt-get install docker-registry; see .ci/run)");
            let scheme = if tls.is_some() { "https" } else { "http" };
            let url = format!("{scheme}://{host}/v2/");
            let mut exited = false;
            wait_until("docker-registry to answer", Duration::from_secs(20), || {
                if let Ok(Some(_)) = child.try_wait() {
                    exited = true;
                    return true;
                }
                agent.get(&url).call().is_ok()
            });
            if exited {
                let _ = child.wait();
                continue;
            }
            return Registry {
                host,
                tokens,
                tls,
                scheme,
                push_auth,
                config_path,
                child,
                agent,
                dir,
            };
        }
        let log = std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default();
        panic!("docker-registry did not start: {log}");
    }

    /// The PEM file of the CA that signed this registry's certificate.
    pub fn ca_pem(&self) -> &str {
        &self
            .tls
            .as_ref()
            .expect("registry started without TLS")
            .ca_pem
    }

    /// A full image reference in this registry.
    pub fn image(&self, repo_and_ref: &str) -> String {
        format!("{}/{repo_and_ref}", self.host)
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}://{}{path}", self.scheme, self.host)
        }
    }

    fn auth_for(&self, repo: &str) -> Option<String> {
        match &self.push_auth {
            PushAuth::None => None,
            PushAuth::Basic(h) => Some(h.clone()),
            PushAuth::Token { realm, header } => {
                let url =
                    format!("{realm}?service={SERVICE}&scope=repository:{repo}:pull,push,delete");
                let mut resp = self
                    .agent
                    .get(&url)
                    .header("Authorization", header)
                    .call()
                    .expect("token for push");
                assert_eq!(resp.status().as_u16(), 200, "token for push");
                let v: serde_json::Value =
                    serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
                Some(format!("Bearer {}", v["token"].as_str().unwrap()))
            }
        }
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        auth: &Option<String>,
        content_type: Option<&str>,
        body: &[u8],
    ) -> (u16, Option<String>, Option<String>) {
        let url = self.url(path);
        let mut req = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        if let Some(ct) = content_type {
            req = req.header("Content-Type", ct);
        }
        let req = req.body(body.to_vec()).unwrap();
        let mut resp = self
            .agent
            .run(req)
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (location, digest) = (header("location"), header("docker-content-digest"));
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        assert!(status < 300, "{method} {url}: HTTP {status}: {text}");
        (status, location, digest)
    }

    fn put_blob(&self, repo: &str, auth: &Option<String>, data: &[u8]) -> String {
        let digest = sha256(data);
        let (_, location, _) = self.send(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/"),
            auth,
            None,
            b"",
        );
        let location = location.expect("upload location");
        let sep = if location.contains('?') { '&' } else { '?' };
        self.send(
            "PUT",
            &format!("{location}{sep}digest={digest}"),
            auth,
            Some("application/octet-stream"),
            data,
        );
        digest
    }

    /// Pushes a minimal single-layer image; returns its manifest digest. An
    /// empty `tag` pushes by digest only.
    pub fn push(&self, repo: &str, tag: &str) -> String {
        self.push_platform(repo, tag, "linux/amd64")
    }

    /// Pushes another build of a single-platform image under `tag` (the
    /// tag moves: a new digest); returns its digest.
    pub fn push_build(&self, repo: &str, tag: &str, build: &str) -> String {
        self.push_schema2(repo, tag, "linux/amd64", &format!(" build {build}"))
    }

    /// Pushes a single-platform Docker schema 2 image whose config says
    /// `platform` (`os/arch[/variant]`); returns its digest.
    pub fn push_platform(&self, repo: &str, tag: &str, platform: &str) -> String {
        self.push_schema2(repo, tag, platform, "")
    }

    fn push_schema2(&self, repo: &str, tag: &str, platform: &str, build: &str) -> String {
        self.push_manifest(
            repo,
            tag,
            SCHEMA2,
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            platform,
            build,
        )
    }

    /// Pushes an index of single-platform images, one per `platforms`
    /// entry: an OCI index of OCI manifests, or (`docker_list`) a Docker
    /// manifest list of schema 2 manifests. An `unknown/unknown` entry is
    /// added as buildx adds attestations. Returns the index digest.
    pub fn push_index_of(
        &self,
        repo: &str,
        tag: &str,
        platforms: &[&str],
        docker_list: bool,
    ) -> String {
        let (list_type, manifest_type, config_type, layer_type) = if docker_list {
            (
                "application/vnd.docker.distribution.manifest.list.v2+json",
                SCHEMA2,
                "application/vnd.docker.container.image.v1+json",
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
            )
        } else {
            (
                OCI_INDEX,
                OCI_MANIFEST,
                "application/vnd.oci.image.config.v1+json",
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        };
        let mut entries = Vec::new();
        for p in platforms.iter().chain(["unknown/unknown"].iter()) {
            let d = self.push_manifest(repo, "", manifest_type, config_type, layer_type, p, "");
            let size = self.manifest_size(repo, &d, manifest_type);
            let parts: Vec<&str> = p.split('/').collect();
            let mut platform = serde_json::json!({"os": parts[0], "architecture": parts[1]});
            if let Some(v) = parts.get(2) {
                platform["variant"] = serde_json::json!(v);
            }
            entries.push(serde_json::json!({"mediaType": manifest_type, "digest": d, "size": size, "platform": platform}));
        }
        let index =
            serde_json::json!({"schemaVersion": 2, "mediaType": list_type, "manifests": entries})
                .to_string()
                .into_bytes();
        let auth = self.auth_for(repo);
        let digest = sha256(&index);
        self.send(
            "PUT",
            &format!("/v2/{repo}/manifests/{tag}"),
            &auth,
            Some(list_type),
            &index,
        );
        digest
    }

    #[allow(clippy::too_many_arguments)]
    fn push_manifest(
        &self,
        repo: &str,
        tag: &str,
        media_type: &str,
        config_type: &str,
        layer_type: &str,
        platform: &str,
        build: &str,
    ) -> String {
        let auth = self.auth_for(repo);
        // Unique content per image so digests differ between tags.
        let layer = format!("layer of {repo}:{tag}:{platform}:{media_type}{build}").into_bytes();
        let layer_digest = self.put_blob(repo, &auth, &layer);
        let parts: Vec<&str> = platform.split('/').collect();
        let mut config = serde_json::json!({
            "architecture": parts[1], "os": parts[0],
            "rootfs": {"type": "layers", "diff_ids": [sha256(&layer)]},
            "history": [{"created_by": format!("kiae test {repo}:{tag}")}],
        });
        if let Some(v) = parts.get(2) {
            config["variant"] = serde_json::json!(v);
        }
        let config = config.to_string().into_bytes();
        let config_digest = self.put_blob(repo, &auth, &config);
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": media_type,
            "config": {"mediaType": config_type, "size": config.len(), "digest": config_digest},
            "layers": [{"mediaType": layer_type, "size": layer.len(), "digest": layer_digest}],
        })
        .to_string()
        .into_bytes();
        let digest = sha256(&manifest);
        let reference = if tag.is_empty() {
            digest.clone()
        } else {
            tag.to_string()
        };
        let (_, _, got) = self.send(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &auth,
            Some(media_type),
            &manifest,
        );
        assert_eq!(got.as_deref(), Some(digest.as_str()));
        digest
    }

    /// Pushes an OCI index of two OCI manifests (amd64, arm64, plus an
    /// attestation entry) under `tag`; returns the index digest.
    pub fn push_index(&self, repo: &str, tag: &str) -> String {
        self.push_index_of(repo, tag, &["linux/amd64", "linux/arm64"], false)
    }

    fn manifest_size(&self, repo: &str, digest: &str, media_type: &str) -> usize {
        self.manifest_bytes(repo, digest, media_type).len()
    }

    /// A manifest as the registry stores it (`accept` its media types).
    fn manifest_bytes(&self, repo: &str, reference: &str, accept: &str) -> Vec<u8> {
        let mut req = self
            .agent
            .get(self.url(&format!("/v2/{repo}/manifests/{reference}")))
            .header("Accept", accept);
        if let Some(a) = &self.auth_for(repo) {
            req = req.header("Authorization", a);
        }
        let mut resp = req.call().unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        resp.body_mut().read_to_vec().unwrap()
    }

    fn manifest_json(&self, repo: &str, reference: &str, accept: &str) -> serde_json::Value {
        serde_json::from_slice(&self.manifest_bytes(repo, reference, accept)).unwrap()
    }

    /// The config and layer digests of a single-platform manifest.
    pub fn blobs_of(&self, repo: &str, digest: &str) -> (String, Vec<String>) {
        let m = self.manifest_json(repo, digest, &format!("{SCHEMA2}, {OCI_MANIFEST}"));
        let layers = m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect();
        (m["config"]["digest"].as_str().unwrap().to_string(), layers)
    }

    /// The platform manifests of an index, by platform (`os/arch[/variant]`).
    pub fn entries_of(&self, repo: &str, digest: &str) -> Vec<(String, String)> {
        self.manifest_json(repo, digest, OCI_INDEX)["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let p = &e["platform"];
                let mut name = format!(
                    "{}/{}",
                    p["os"].as_str().unwrap(),
                    p["architecture"].as_str().unwrap()
                );
                if let Some(v) = p["variant"].as_str() {
                    name = format!("{name}/{v}");
                }
                (name, e["digest"].as_str().unwrap().to_string())
            })
            .collect()
    }

    /// Removes a blob's data from the registry's storage, as a garbage
    /// collection racing a push or a lifecycle rule on a bucket does: the
    /// manifests naming it stay.
    pub fn remove_blob_data(&self, digest: &str) {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        let path = self
            .dir
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data");
        std::fs::remove_file(&path).unwrap_or_else(|e| panic!("remove {}: {e}", path.display()));
    }

    /// Deletes a manifest by digest, so the image stops being pullable.
    pub fn delete(&self, repo: &str, digest: &str) {
        let auth = self.auth_for(repo);
        self.send(
            "DELETE",
            &format!("/v2/{repo}/manifests/{digest}"),
            &auth,
            None,
            b"",
        );
    }

    /// Requests served so far, from the access log (combined log format):
    /// `(method, path)`, e.g. `("HEAD", "/v2/team/app/manifests/v1")`.
    pub fn requests(&self) -> Vec<(String, String)> {
        let log = std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
        log.lines()
            .filter_map(|l| {
                let quoted = l.split('"').nth(1)?;
                let mut parts = quoted.split(' ');
                Some((parts.next()?.to_string(), parts.next()?.to_string()))
            })
            .collect()
    }

    /// How many requests so far had `method` and a path containing `part`.
    pub fn count(&self, method: &str, part: &str) -> usize {
        self.requests()
            .iter()
            .filter(|(m, p)| m == method && p.contains(part))
            .count()
    }

    /// The registry's own log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }

    /// Starts the registry again on the same port with the same storage.
    pub fn restart(&mut self) {
        self.stop();
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("registry.log"))
            .unwrap();
        let access = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("access.log"))
            .unwrap();
        self.child = Command::new("docker-registry")
            .arg("serve")
            .arg(&self.config_path)
            .stdout(access)
            .stderr(log)
            .spawn()
            .expect("restart docker-registry");
        let url = format!("{}://{}/v2/", self.scheme, self.host);
        let agent = self.agent.clone();
        wait_until(
            "docker-registry to answer again",
            Duration::from_secs(20),
            || agent.get(&url).call().is_ok(),
        );
    }

    /// Stops the registry process (its port then refuses connections).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}
