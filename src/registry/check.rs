//! One image check: `HEAD /v2/<name>/manifests/<ref>` with the credentials a
//! pod would use, tried in the kubelet's order (anonymously only when none
//! matches), on each mirror and then the image's own registry.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::challenge::{self, Challenge};
use super::manifest::{self, DigestCache, Manifest, Platforms};
use super::outcome::{parse_retry_after, CheckResult};
use super::pull_path::{self, Broken, Failure, Fetch, PathCache};
use super::quota::Quota;
use super::status::Status;
use super::token::{parse_token_response, Token, TokenCache};
use super::transport::{
    host_of, is_internal_ip, Method, Response, Scheme, Transport, TransportConfig, TransportError,
    Url,
};
use crate::credentials::provider::CredentialProviders;
use crate::credentials::Credential;
use crate::image::platform::{NodePlatforms, Platform};
use crate::image::reference::{Mirrored, Reference};

/// Every manifest type a node may pull; without this list some registries
/// answer 404 or convert to a legacy schema.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.v1+prettyjws, \
application/vnd.docker.distribution.manifest.v1+json";

const MAX_REDIRECTS: usize = 5;
const TOKEN_BODY_LIMIT: u64 = 1 << 20;
/// Manifests are at most 4 MiB by spec; the GET fallback reads no more.
const MANIFEST_BODY_LIMIT: u64 = 4 << 20;

/// Told about every HTTP request the checker sends (for metrics).
pub trait RequestObserver: Send + Sync {
    /// A request to `host` got `status`, or no answer (`None`).
    fn request(&self, host: &str, status: Option<u16>);

    /// An answer from `host` announced its pull quota.
    fn rate_limit(&self, _host: &str, _quota: Quota) {}
}

/// Checker settings taken from flags.
#[derive(Debug, Clone)]
pub struct CheckerConfig {
    /// TLS and timeouts.
    pub transport: TransportConfig,
    /// `--allow-plain-http`: any registry may fall back to plain http.
    pub allow_plain_http: bool,
    /// `--plain-http-registries`: these registries may fall back to plain http.
    pub plain_http_registries: Vec<String>,
    /// `--get-fallback-registries`: retry a failed HEAD with GET for these.
    pub get_fallback_registries: Vec<String>,
    /// Extra tries after a 5xx or a broken connection.
    pub retries: u32,
    /// Pause before the first retry; doubles after each.
    pub retry_backoff: Duration,
    /// The nodes' image credential provider plugins, if configured.
    pub providers: Option<Arc<CredentialProviders>>,
    /// Whether to read the platforms of available images (one GET per new
    /// digest): `None` with `--no-platform-check`; otherwise what the
    /// inventory says of the cluster's nodes once it knows them.
    pub platforms: Option<Arc<NodePlatforms>>,
    /// `--verify-pull-path-every`: how long a digest's verified pull path
    /// is trusted; `None` (`0`) to verify nothing past the tag.
    pub verify_every: Option<Duration>,
    /// `--pull-quota-reserve`: the percentage of a registry's announced
    /// pull quota that no counted request of ours may touch.
    pub quota_reserve: u8,
}

/// The platform whose pull path is verified while the nodes' are unknown
/// (`--no-platform-check`, no Nodes access yet), and for `check` without
/// `--platform`: what most nodes run.
pub const DEFAULT_PLATFORM: (&str, &str) = ("linux", "amd64");

/// Pieces of verified pull paths remembered (about 32 bytes each).
const PATH_CACHE_SIZE: usize = 65_536;

/// Digests whose platforms are remembered. An entry is about 200 bytes.
const DIGEST_CACHE_SIZE: usize = 16_384;

/// How a registry wants to be authenticated, learnt from its 401s.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AuthHint {
    /// Not asked yet, or it answered without a challenge.
    Open,
    /// `Basic`: send the credential with every request.
    Basic,
    /// `Bearer`: fetch a token from the realm.
    Bearer { realm: Url, service: Option<String> },
}

/// How the manifest answer was reached: the platform reads that follow go
/// the same way (the same scheme, whatever another check learnt meanwhile,
/// and the same credentials).
#[derive(Clone, Copy)]
struct Via<'a> {
    scheme: Scheme,
    auth: Option<&'a str>,
}

/// Counts requests for one check, and holds the pull quota its answers
/// announced (for the credential it used: Docker Hub counts per account,
/// or per address when anonymous).
#[derive(Debug, Default)]
struct Ctx {
    requests: u32,
    quota: Option<Quota>,
}

/// What one credential (or anonymous) got.
enum Attempt {
    /// The manifest is there.
    Present {
        digest: Option<String>,
        authenticated: bool,
        platforms: Option<Platforms>,
        /// Past the tag: what a node cannot get, and what the reason adds.
        path: PathNote,
    },
    /// 401: try the next credential.
    Unauthorized(String),
    /// 403: try the next credential.
    Forbidden(String),
    /// A verdict that no other credential would change.
    Final {
        status: Status,
        reason: String,
        retry_after: Option<Duration>,
        authenticated: bool,
    },
}

fn final_(status: Status, reason: impl Into<String>) -> Attempt {
    Attempt::Final {
        status,
        reason: reason.into(),
        retry_after: None,
        authenticated: false,
    }
}

/// What the pull path walk of a check found, for its result.
#[derive(Debug, Default)]
struct PathNote {
    broken: Vec<Broken>,
    /// Appended to the reason: `; pull path verified`, or what was not.
    note: String,
}

/// What a fresh unauthenticated request said about a host's auth.
enum Relearned {
    /// A different challenge, now stored: try again with it.
    Changed,
    /// The same challenge: the failure stands.
    Same,
    /// An answer that settles the attempt (the registry no longer asks, or failed).
    Answered(Attempt),
}

/// Checks images against registries. Shared by all worker threads.
pub struct Checker {
    transport: Transport,
    tokens: TokenCache,
    hints: Mutex<HashMap<String, AuthHint>>,
    schemes: Mutex<HashMap<String, Scheme>>,
    allow_plain_http: bool,
    plain_http: HashSet<String>,
    get_fallback: HashSet<String>,
    retries: u32,
    retry_backoff: Duration,
    providers: Option<Arc<CredentialProviders>>,
    observer: Option<Arc<dyn RequestObserver>>,
    platforms: Option<Arc<NodePlatforms>>,
    digests: DigestCache,
    paths: PathCache,
    /// [`DEFAULT_PLATFORM`], walked while the nodes' platforms are unknown.
    default_platforms: Arc<[Platform]>,
    verify_every: Option<Duration>,
    quota_reserve: u8,
}

impl Checker {
    /// Reports every request to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn RequestObserver>) -> Checker {
        self.observer = Some(observer);
        self
    }

    /// Builds a checker; fails only on unusable TLS settings.
    pub fn new(config: CheckerConfig) -> Result<Checker, String> {
        let lower = |v: &[String]| {
            v.iter()
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect()
        };
        Ok(Checker {
            transport: Transport::new(&config.transport)?,
            tokens: TokenCache::default(),
            hints: Mutex::default(),
            schemes: Mutex::default(),
            allow_plain_http: config.allow_plain_http,
            plain_http: lower(&config.plain_http_registries),
            get_fallback: lower(&config.get_fallback_registries),
            retries: config.retries,
            retry_backoff: config.retry_backoff,
            providers: config.providers,
            observer: None,
            platforms: config.platforms,
            digests: DigestCache::new(DIGEST_CACHE_SIZE),
            paths: PathCache::new(PATH_CACHE_SIZE),
            default_platforms: Arc::from([Platform::new(
                DEFAULT_PLATFORM.0,
                DEFAULT_PLATFORM.1,
                "",
            )]),
            verify_every: config.verify_every,
            quota_reserve: config.quota_reserve,
        })
    }

    /// Checks an image as a node pulls it: each host in containerd's order
    /// (the mirrors, then the image's own registry), the first that serves
    /// the manifest wins; when none does, the most informative failure is
    /// reported and the reason names every host tried. The same credentials
    /// (looked up by the image's own name, as the kubelet does) go to every
    /// host: the CRI auth config carries no server address.
    ///
    /// `credentials` are the pod's and `--docker-config`'s; the credential
    /// provider plugins' come after them, as in the kubelet's union keyring
    /// (the pod's secrets, then the node's). A plugin that fails gives no
    /// credentials (the node then pulls without them), and a verdict other
    /// than `available` names it.
    pub fn check_mirrored(&self, image: &Mirrored, credentials: &[Arc<Credential>]) -> CheckResult {
        let provided = self
            .providers
            .as_ref()
            .map(|p| p.credentials(&image.reference))
            .unwrap_or_default();
        let all: Vec<Arc<Credential>>;
        let credentials = if provided.credentials.is_empty() {
            credentials
        } else {
            let mut v = credentials.to_vec();
            for c in provided.credentials {
                if !v.iter().any(|x| x.same_secret(&c)) {
                    v.push(c);
                }
            }
            all = v;
            &all
        };
        let mut result = self.check_hosts(image, credentials);
        if result.status != Status::Available && !provided.failures.is_empty() {
            result.reason = format!("{}; {}", result.reason, provided.failures.join("; "));
        }
        result
    }

    fn check_hosts(&self, image: &Mirrored, credentials: &[Arc<Credential>]) -> CheckResult {
        if image.mirrors.is_empty() {
            return self.check(&image.reference, credentials);
        }
        let mut requests = 0;
        let mut failures: Vec<(String, CheckResult)> = Vec::new();
        for (reference, _) in image.candidates() {
            let mut r = self.check(reference, credentials);
            requests += r.requests;
            if r.status == Status::Available {
                r.requests = requests;
                r.shared &= all_shared(&failures);
                if !failures.is_empty() {
                    r.reason = format!("{} (after {})", r.reason, who_got_what(&failures));
                }
                return r;
            }
            failures.push((reference.api_host().to_string(), r));
        }
        let reason = format!("no host serves it: {}", who_got_what(&failures));
        let mut worst = most_informative(failures);
        worst.reason = reason;
        worst.requests = requests;
        worst
    }

    /// Checks `reference` as the kubelet's PullImage does
    /// (pkg/kubelet/kuberuntime/kuberuntime_image.go): when credentials
    /// match the image, each is tried in turn and the first success wins;
    /// if all fail, the pull fails, with no anonymous attempt after refused
    /// credentials. Only when none matches is the pull anonymous. When all
    /// fail, the most informative failure is the verdict (see
    /// [`informative`]); the reason lists what each credential got.
    ///
    /// Two shortcuts change no verdict: a failure that did not depend on the
    /// credential (the registry answered without asking for one, could not
    /// be reached, or asked us to slow down) is the answer every other
    /// credential would get too.
    pub fn check(&self, reference: &Reference, credentials: &[Arc<Credential>]) -> CheckResult {
        let mut ctx = Ctx::default();
        let mut failures: Vec<(String, CheckResult)> = Vec::new();
        let anonymous = [None];
        let attempts: Vec<Option<&Credential>> = if credentials.is_empty() {
            anonymous.to_vec()
        } else {
            credentials.iter().map(|c| Some(c.as_ref())).collect()
        };
        for cred in attempts {
            let who = cred
                .map(Credential::describe)
                .unwrap_or_else(|| "anonymous".to_string());
            // containerd sends no credentials for an entry without a user
            // name (ParseAuth): the runtime pulls anonymously with it.
            let sent = cred.filter(|c| !c.username.is_empty());
            let described =
                |authenticated: bool| sent.filter(|_| authenticated).map(Credential::describe);
            let (result, independent) = match self.attempt(&mut ctx, reference, sent) {
                Attempt::Present {
                    digest,
                    authenticated,
                    platforms,
                    path,
                } => {
                    return CheckResult {
                        status: Status::Available,
                        reason: format!("manifest {} found{}", reference.manifest_ref(), path.note),
                        credential: described(authenticated),
                        requests: ctx.requests,
                        digest,
                        retry_after: None,
                        host: Some(reference.api_host().to_string()),
                        platforms,
                        // No credential went out, so no 401 was answered:
                        // the registry served it to anyone.
                        shared: !authenticated,
                        broken: path.broken,
                    };
                }
                Attempt::Unauthorized(why) => (
                    CheckResult {
                        credential: described(true),
                        ..CheckResult::without_requests(Status::AuthenticationFailure, why)
                    },
                    false,
                ),
                Attempt::Forbidden(why) => (
                    CheckResult {
                        credential: described(true),
                        ..CheckResult::without_requests(Status::AuthorizationFailure, why)
                    },
                    false,
                ),
                Attempt::Final {
                    status,
                    reason,
                    retry_after,
                    authenticated,
                } => {
                    let independent = !authenticated
                        || matches!(status, Status::RegistryUnavailable | Status::RateLimited);
                    let r = CheckResult {
                        credential: described(authenticated),
                        retry_after,
                        shared: !authenticated && status != Status::RateLimited,
                        ..CheckResult::without_requests(status, reason)
                    };
                    (r, independent)
                }
            };
            failures.push((who, result));
            if independent {
                break;
            }
        }
        // An anonymous pull alone needs no "anonymous:" in front of its reason.
        let reason = match failures.as_slice() {
            [(who, f)] if who == "anonymous" => f.reason.clone(),
            _ => who_got_what(&failures),
        };
        let mut worst = most_informative(failures);
        worst.reason = reason;
        worst.requests = ctx.requests;
        worst.host = Some(reference.api_host().to_string());
        worst
    }

    fn hint(&self, host: &str) -> AuthHint {
        self.hints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(host)
            .cloned()
            .unwrap_or(AuthHint::Open)
    }

    fn hints_known(&self, host: &str) -> bool {
        self.hints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(host)
    }

    fn set_hint(&self, host: &str, hint: AuthHint) {
        self.hints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(host.to_string(), hint);
    }

    fn listed(set: &HashSet<String>, r: &Reference) -> bool {
        set.contains(&r.registry.to_ascii_lowercase())
            || set.contains(&r.api_host().to_ascii_lowercase())
    }

    /// One credential's try: at most one challenge round trip, one token
    /// refresh, and one fresh look at the challenge when a token cannot be had.
    ///
    /// What was learnt about a host's auth is a hint, not a truth: like
    /// containerd's authorizer (remotes/docker/authorizer.go), which reads
    /// the challenge of every 401 again, a Basic hint with nothing to send
    /// asks without credentials (another repository of the host may be
    /// public), and a token that cannot be fetched leads to one request
    /// without credentials to learn the challenge again (a moved realm, or a
    /// registry that changed its auth).
    fn attempt(&self, ctx: &mut Ctx, r: &Reference, cred: Option<&Credential>) -> Attempt {
        let host = r.api_host();
        let mut learnt = false;
        let mut relearned = false;
        // A cached token the registry refused: replaced once, never reused.
        let mut stale: Option<String> = None;
        loop {
            let hint = self.hint(host);
            let mut cached_token = None;
            let auth = match &hint {
                AuthHint::Open => None,
                AuthHint::Basic => cred.map(Credential::basic_authorization),
                AuthHint::Bearer { realm, service } => {
                    let scheme = self.learnt_scheme(host).unwrap_or(Scheme::Https);
                    match self.token(
                        ctx,
                        realm,
                        service.as_deref(),
                        r,
                        scheme,
                        cred,
                        stale.as_deref(),
                    ) {
                        Ok((token, cached)) => {
                            let header = format!("Bearer {token}");
                            cached_token = cached.then_some(token);
                            Some(header)
                        }
                        Err(failure)
                            if relearned
                                || matches!(
                                    failure,
                                    Attempt::Final {
                                        status: Status::RateLimited,
                                        ..
                                    }
                                ) =>
                        {
                            return failure
                        }
                        Err(failure) => {
                            relearned = true;
                            match self.relearn(ctx, r, &hint) {
                                Relearned::Changed => continue,
                                Relearned::Same => return failure,
                                Relearned::Answered(a) => return a,
                            }
                        }
                    }
                }
            };
            let (resp, scheme) = match self.request(ctx, r, auth.as_deref()) {
                Ok(x) => x,
                Err(a) => return a,
            };
            if resp.status == 401 {
                let challenges = challenges_of(&resp);
                let new_hint = match hint_from(&challenges, scheme, host) {
                    Ok(h) => h,
                    Err(why) => return final_(Status::UnknownError, why),
                };
                if new_hint != hint && !learnt {
                    self.set_hint(host, new_hint);
                    learnt = true;
                    continue;
                }
                if let (Some(token), None) = (cached_token, &stale) {
                    // A cached token the registry no longer accepts: fetch one fresh token, once.
                    stale = Some(token);
                    continue;
                }
                return Attempt::Unauthorized(describe_401(&challenges));
            }
            if !self.hints_known(host) {
                self.set_hint(host, AuthHint::Open);
            }
            let via = Via {
                scheme,
                auth: auth.as_deref(),
            };
            return self.classified(ctx, r, &resp, via);
        }
    }

    /// The answer's verdict; for a manifest that is there, with the image's
    /// platforms when they are wanted and what its pull path showed. Both
    /// read the manifest by digest through one [`Reader`]: one GET serves both.
    fn classified(&self, ctx: &mut Ctx, r: &Reference, resp: &Response, via: Via) -> Attempt {
        let mut a = self.classify(r, resp, via.auth.is_some());
        if let Attempt::Present {
            digest,
            platforms,
            path,
            ..
        } = &mut a
        {
            let mut reader = Reader::new(self, ctx, r, via);
            if let Some(d) = digest.as_deref() {
                if !resp.body.is_empty() {
                    // The GET fallback's answer: the manifest itself.
                    let m = manifest::parse_manifest(resp.header("content-type"), &resp.body)
                        .map_err(Failure::Unverified);
                    reader.manifests.push((d.to_string(), m));
                }
                if self.platforms.as_ref().is_some_and(|p| p.is_on()) {
                    *platforms = Some(self.platforms_of(&mut reader, d));
                }
            }
            *path = self.verify_path(&mut reader, digest.as_deref());
        }
        a
    }

    /// The platforms whose pull path is verified: the nodes', or the default.
    fn wanted_platforms(&self) -> Arc<[Platform]> {
        self.platforms
            .as_ref()
            .and_then(|p| p.platforms())
            .unwrap_or_else(|| self.default_platforms.clone())
    }

    /// Walks the pull path of `digest` unless it was verified within the
    /// verification interval (see [`pull_path`]).
    fn verify_path(&self, reader: &mut Reader, digest: Option<&str>) -> PathNote {
        let Some(every) = self.verify_every else {
            return PathNote::default();
        };
        let Some(digest) = digest else {
            return PathNote {
                broken: Vec::new(),
                note: "; pull path not verified: the registry sent no Docker-Content-Digest".into(),
            };
        };
        let (host, repository) = (reader.r.api_host(), reader.r.repository.as_str());
        let key = |p: Option<&Platform>| PathCache::key(host, repository, digest, p);
        let now = Instant::now();
        let wanted = self.wanted_platforms();
        let mut walk = pull_path::walk(reader, digest, &wanted, &|p| {
            self.paths.fresh(key(p), now, every)
        });
        self.paths.record(&key, &mut walk, now, every);
        PathNote {
            note: walk.note(),
            broken: walk.broken,
        }
    }

    /// The platforms of the manifest `digest`, from the cache or read once:
    /// an index (or manifest list) by one GET, a single manifest by a GET
    /// of it and of its config blob.
    fn platforms_of(&self, reader: &mut Reader, digest: &str) -> Platforms {
        let now = Instant::now();
        if let Some(p) = self.digests.get(digest, now) {
            return p;
        }
        // What was read lasts (an artifact stays one); a failure is retried.
        let (platforms, lasting) = match read_platforms(reader, digest) {
            Ok(p) => (p, true),
            Err(why) => {
                log::debug!("{}: cannot read its platforms: {why}", reader.r);
                (Platforms::Unknown(why), false)
            }
        };
        self.digests.put(digest, platforms, lasting, now)
    }

    /// A manifest GET by digest: a counted pull on Docker Hub, so never
    /// made while the quota this check's answers announced is within the
    /// nodes' reserve.
    fn counted_get(
        &self,
        ctx: &mut Ctx,
        r: &Reference,
        via: Via,
        digest: &str,
    ) -> Result<Manifest, Failure> {
        if let Some(q) = ctx
            .quota
            .filter(|q| q.reserved_for_nodes(self.quota_reserve))
        {
            return Err(Failure::Unverified(
                q.describe_reserve(r.api_host(), self.quota_reserve),
            ));
        }
        let path = format!("/v2/{}/manifests/{digest}", r.repository);
        let resp = self.download(ctx, r, Method::Get, path, via, Some(MANIFEST_ACCEPT))?;
        manifest::parse_manifest(resp.header("content-type"), &resp.body)
            .map_err(Failure::Unverified)
    }

    /// A download request on the image's registry, by the scheme the
    /// manifest request used; blob redirects to storage elsewhere lose the
    /// credentials. An answer other than 2xx is classified as a node's
    /// pull would fail on it.
    fn download(
        &self,
        ctx: &mut Ctx,
        r: &Reference,
        method: Method,
        path: String,
        via: Via,
        accept: Option<&str>,
    ) -> Result<Response, Failure> {
        let url = Url::new(via.scheme, r.api_host(), path);
        let resp = self
            .send(ctx, method, &url, via.auth, accept, MANIFEST_BODY_LIMIT)
            .map_err(|e| Failure::Unverified(e.to_string()))?;
        if (200..300).contains(&resp.status) {
            return Ok(resp);
        }
        // Only a failed answer's body is a registry error (a manifest's is
        // read once, by its caller).
        let errors = RegistryErrors::parse(&resp.body);
        let detail = || format!("HTTP {}{}", resp.status, errors.detail());
        match resp.status {
            404 if method == Method::Head && errors.codes().is_empty() => {
                Err(Failure::Missing("HTTP 404, blob unknown".into()))
            }
            404 => Err(Failure::Missing(detail())),
            401 | 403 | 412 => Err(Failure::Refused(detail())),
            429 => Err(Failure::Unverified(format!("{}, rate limited", detail()))),
            _ if errors.has("BLOB_UNKNOWN")
                || errors.has("MANIFEST_UNKNOWN")
                || errors.has("NAME_UNKNOWN") =>
            {
                Err(Failure::Missing(detail()))
            }
            _ if errors.has("DENIED") => Err(Failure::Refused(detail())),
            _ => Err(Failure::Unverified(detail())),
        }
    }

    /// The manifest request, with the GET fallback where it is enabled.
    fn request(
        &self,
        ctx: &mut Ctx,
        r: &Reference,
        auth: Option<&str>,
    ) -> Result<(Response, Scheme), Attempt> {
        let unavailable = |what: &str, e: TransportError| {
            final_(
                Status::RegistryUnavailable,
                format!("{}: {what}{e}", r.api_host()),
            )
        };
        let (resp, scheme) = self
            .manifest_request(ctx, r, Method::Head, auth)
            .map_err(|e| unavailable("", e))?;
        if !(Checker::listed(&self.get_fallback, r) && matches!(resp.status, 400 | 403 | 404 | 405))
        {
            return Ok((resp, scheme));
        }
        let (get, _) = self
            .manifest_request(ctx, r, Method::Get, auth)
            .map_err(|e| unavailable("GET fallback: ", e))?;
        Ok((get, scheme))
    }

    /// Asks without credentials how the host wants to be authenticated now.
    fn relearn(&self, ctx: &mut Ctx, r: &Reference, hint: &AuthHint) -> Relearned {
        let host = r.api_host();
        let (resp, scheme) = match self.request(ctx, r, None) {
            Ok(x) => x,
            Err(a) => return Relearned::Answered(a),
        };
        if resp.status != 401 {
            // It no longer asks for credentials at all.
            self.set_hint(host, AuthHint::Open);
            let via = Via { scheme, auth: None };
            return Relearned::Answered(self.classified(ctx, r, &resp, via));
        }
        let challenges = challenges_of(&resp);
        match hint_from(&challenges, scheme, host) {
            Ok(h) if h == *hint => Relearned::Same,
            Ok(h) => {
                log::info!("{host} changed how it authenticates; using its new challenge");
                self.set_hint(host, h);
                Relearned::Changed
            }
            Err(why) => Relearned::Answered(final_(Status::UnknownError, why)),
        }
    }

    fn classify(&self, r: &Reference, resp: &Response, authenticated: bool) -> Attempt {
        let errors = RegistryErrors::parse(&resp.body);
        let fin = |status: Status, reason: String| Attempt::Final {
            status,
            reason,
            retry_after: None,
            authenticated,
        };
        match resp.status {
            200..=299 => {
                let got = resp.header("docker-content-digest").map(str::to_string);
                if let (Some(want), Some(got)) = (&r.digest, &got) {
                    if !want.eq_ignore_ascii_case(got) {
                        return fin(
                            Status::UnknownError,
                            format!("registry returned manifest {got} for {want}"),
                        );
                    }
                }
                Attempt::Present {
                    digest: got.or_else(|| r.digest.clone()),
                    authenticated,
                    platforms: None,
                    path: PathNote::default(),
                }
            }
            404 => fin(
                Status::Absent,
                format!(
                    "manifest {} not found (HTTP 404{})",
                    r.manifest_ref(),
                    errors.codes_suffix()
                ),
            ),
            403 => Attempt::Forbidden(format!("access denied (HTTP 403{})", errors.codes_suffix())),
            429 => rate_limited(
                resp,
                format!("rate limited by {} (HTTP 429)", r.api_host()),
                authenticated,
            ),
            _ if errors.has("MANIFEST_UNKNOWN") || errors.has("NAME_UNKNOWN") => fin(
                Status::Absent,
                format!(
                    "manifest {} not found (HTTP {}{})",
                    r.manifest_ref(),
                    resp.status,
                    errors.codes_suffix()
                ),
            ),
            _ if errors.has("DENIED") => Attempt::Forbidden(format!(
                "access denied (HTTP {}{})",
                resp.status,
                errors.codes_suffix()
            )),
            // Harbor's "prevent vulnerable images from running" (and other
            // download policies) refuse the manifest itself.
            412 => Attempt::Forbidden(format!("download refused (HTTP 412{})", errors.detail())),
            500..=599 => fin(
                Status::RegistryUnavailable,
                format!(
                    "{} answered HTTP {} after {} tries",
                    r.api_host(),
                    resp.status,
                    self.retries + 1
                ),
            ),
            s => fin(
                Status::UnknownError,
                format!(
                    "unexpected HTTP {s} from {}{}",
                    r.api_host(),
                    errors.codes_suffix()
                ),
            ),
        }
    }

    fn learnt_scheme(&self, host: &str) -> Option<Scheme> {
        self.schemes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(host)
            .copied()
    }

    /// The manifest request, over https, or over plain http where allowed and
    /// https does not work (as docker does for insecure registries).
    fn manifest_request(
        &self,
        ctx: &mut Ctx,
        r: &Reference,
        method: Method,
        auth: Option<&str>,
    ) -> Result<(Response, Scheme), TransportError> {
        let host = r.api_host();
        let plain_ok = self.allow_plain_http || Checker::listed(&self.plain_http, r);
        let order: &[Scheme] = match (plain_ok, self.learnt_scheme(host)) {
            (false, _) => &[Scheme::Https],
            (true, Some(Scheme::Http)) => &[Scheme::Http],
            (true, Some(Scheme::Https)) => &[Scheme::Https],
            (true, None) => &[Scheme::Https, Scheme::Http],
        };
        let path = format!("/v2/{}/manifests/{}", r.repository, r.manifest_ref());
        let mut last = TransportError::Other("no scheme to try".into());
        for &scheme in order {
            let url = Url::new(scheme, host, path.clone());
            match self.send(
                ctx,
                method,
                &url,
                auth,
                Some(MANIFEST_ACCEPT),
                MANIFEST_BODY_LIMIT,
            ) {
                Ok(resp) => {
                    if plain_ok {
                        self.schemes
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(host.to_string(), scheme);
                    }
                    return Ok((resp, scheme));
                }
                Err(e) => {
                    self.schemes
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(host);
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// Fetches (or reuses) a pull token for `r`'s repository.
    #[allow(clippy::too_many_arguments)]
    fn token(
        &self,
        ctx: &mut Ctx,
        realm: &Url,
        service: Option<&str>,
        r: &Reference,
        registry_scheme: Scheme,
        cred: Option<&Credential>,
        stale: Option<&str>,
    ) -> Result<(String, bool), Attempt> {
        let scope = format!("repository:{}:pull", r.repository);
        let key = self.tokens.key(&realm.to_string(), service, &scope, cred);
        self.tokens.get_or_fetch(&key, stale, || {
            self.fetch_token(ctx, realm, service, &scope, r, registry_scheme, cred)
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn fetch_token(
        &self,
        ctx: &mut Ctx,
        realm: &Url,
        service: Option<&str>,
        scope: &str,
        r: &Reference,
        registry_scheme: Scheme,
        cred: Option<&Credential>,
    ) -> Result<Token, Attempt> {
        check_realm(realm, registry_scheme, r.api_host())
            .map_err(|why| final_(Status::UnknownError, why))?;
        let mut params: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = service {
            params.push(("service", s));
        }
        params.push(("scope", scope));
        if let Some(c) = cred {
            params.push(("account", &c.username));
        }
        let url = realm.with_query(&params);
        let basic = cred.map(Credential::basic_authorization);
        let resp = self
            .send(
                ctx,
                Method::Get,
                &url,
                basic.as_deref(),
                Some("application/json"),
                TOKEN_BODY_LIMIT,
            )
            .map_err(|e| {
                final_(
                    Status::RegistryUnavailable,
                    format!("token server {}: {e}", realm.authority),
                )
            })?;
        let server = &realm.authority;
        match resp.status {
            200 => parse_token_response(&resp.body, SystemTime::now()).map_err(|why| {
                final_(
                    Status::UnknownError,
                    format!("token server {server}: {why}"),
                )
            }),
            401 => Err(Attempt::Unauthorized(format!(
                "token server {server} rejected the credentials (HTTP 401)"
            ))),
            403 => Err(Attempt::Forbidden(format!(
                "token server {server} denied access (HTTP 403)"
            ))),
            429 => Err(rate_limited(
                &resp,
                format!("rate limited by token server {server} (HTTP 429)"),
                false,
            )),
            500..=599 => Err(final_(
                Status::RegistryUnavailable,
                format!("token server {server} answered HTTP {}", resp.status),
            )),
            s => Err(final_(
                Status::UnknownError,
                format!("token server {server} answered HTTP {s}"),
            )),
        }
    }

    /// Sends with retries on 5xx and broken connections, following redirects
    /// and dropping credentials when a redirect leaves the origin.
    fn send(
        &self,
        ctx: &mut Ctx,
        method: Method,
        url: &Url,
        auth: Option<&str>,
        accept: Option<&str>,
        limit: u64,
    ) -> Result<Response, TransportError> {
        let mut url = url.clone();
        let mut auth = auth;
        for _ in 0..=MAX_REDIRECTS {
            let resp = self.send_retrying(ctx, method, &url, auth, accept, limit)?;
            let location = resp
                .header("location")
                .filter(|_| matches!(resp.status, 301 | 302 | 303 | 307 | 308));
            let Some(next) = location.and_then(|l| url.join(l)) else {
                return Ok(resp);
            };
            if !next.same_origin(&url) {
                auth = None;
            }
            url = next;
        }
        Err(TransportError::Other(format!(
            "more than {MAX_REDIRECTS} redirects"
        )))
    }

    fn send_retrying(
        &self,
        ctx: &mut Ctx,
        method: Method,
        url: &Url,
        auth: Option<&str>,
        accept: Option<&str>,
        limit: u64,
    ) -> Result<Response, TransportError> {
        let mut headers: Vec<(&str, &str)> = Vec::with_capacity(2);
        if let Some(a) = auth {
            headers.push(("Authorization", a));
        }
        if let Some(a) = accept {
            headers.push(("Accept", a));
        }
        let mut backoff = self.retry_backoff;
        let mut tries = 0;
        loop {
            tries += 1;
            ctx.requests += 1;
            let result = self.transport.send(method, url, &headers, limit);
            if let Some(o) = &self.observer {
                o.request(&url.authority, result.as_ref().ok().map(|r| r.status));
            }
            if let Some(q) = result.as_ref().ok().and_then(Quota::of) {
                ctx.quota = Some(q);
                if let Some(o) = &self.observer {
                    o.rate_limit(&url.authority, q);
                }
            }
            let retry = match &result {
                Ok(resp) => matches!(resp.status, 500 | 502 | 503 | 504),
                Err(e) => e.is_retryable(),
            };
            if !retry || tries > self.retries {
                return result;
            }
            log::debug!("{} {}: retrying in {:?}", method_name(method), url, backoff);
            std::thread::sleep(backoff);
            backoff *= 2;
        }
    }
}

/// The requests of one check past the manifest answer, with its
/// credentials and scheme; manifests read once per check (the platform read
/// and the pull path walk share them), blobs asked once.
struct Reader<'c, 'x> {
    checker: &'c Checker,
    ctx: &'x mut Ctx,
    r: &'x Reference,
    via: Via<'x>,
    manifests: Vec<(String, Result<Manifest, Failure>)>,
    blobs: Vec<String>,
}

impl<'c, 'x> Reader<'c, 'x> {
    fn new(checker: &'c Checker, ctx: &'x mut Ctx, r: &'x Reference, via: Via<'x>) -> Self {
        Reader {
            checker,
            ctx,
            r,
            via,
            manifests: Vec::new(),
            blobs: Vec::new(),
        }
    }

    /// The platform of an image config blob (a GET, which blob requests
    /// are: not counted).
    fn config(&mut self, digest: &str) -> Result<Platform, String> {
        let path = format!("/v2/{}/blobs/{digest}", self.r.repository);
        let resp = self
            .checker
            .download(self.ctx, self.r, Method::Get, path, self.via, None)
            .map_err(|f| format!("GET config {digest}: {}", f.text()))?;
        self.blobs.push(digest.to_string());
        manifest::parse_config(&resp.body)
    }
}

impl Fetch for Reader<'_, '_> {
    fn manifest(&mut self, digest: &str) -> Result<Manifest, Failure> {
        if let Some((_, m)) = self.manifests.iter().find(|(d, _)| d == digest) {
            return m.clone();
        }
        let m = self.checker.counted_get(self.ctx, self.r, self.via, digest);
        self.manifests.push((digest.to_string(), m.clone()));
        m
    }

    fn blob(&mut self, digest: &str) -> Result<(), Failure> {
        if self.blobs.iter().any(|b| b == digest) {
            return Ok(());
        }
        let path = format!("/v2/{}/blobs/{digest}", self.r.repository);
        self.checker
            .download(self.ctx, self.r, Method::Head, path, self.via, None)?;
        self.blobs.push(digest.to_string());
        Ok(())
    }
}

/// Reads the platforms of manifest `digest`: an index lists them (entries
/// without one are read, a few, as containerd does); a single manifest's
/// config blob says it.
fn read_platforms(reader: &mut Reader, digest: &str) -> Result<Platforms, String> {
    let text = |what: &str, d: &str, f: Failure| format!("GET {what} {d}: {}", f.text());
    let top = reader
        .manifest(digest)
        .map_err(|f| text("manifest", digest, f))?;
    let mut found = Vec::new();
    match top {
        Manifest::Index(entries) => {
            let mut unlabelled = 0;
            for e in entries {
                if let Some(p) = e.platform {
                    found.push(p);
                    continue;
                }
                // containerd reads an entry without a platform to learn
                // it; so do we, for a few.
                unlabelled += 1;
                if unlabelled > manifest::MAX_UNLABELLED_ENTRIES {
                    continue;
                }
                match reader
                    .manifest(&e.digest)
                    .map_err(|f| text("manifest", &e.digest, f))?
                {
                    Manifest::Image { config, .. } => found.push(reader.config(&config)?),
                    Manifest::Schema1 { platform, .. } => found.push(platform),
                    Manifest::Index(_) | Manifest::NotImage(_) => {}
                }
            }
        }
        Manifest::Image { config, .. } => found.push(reader.config(&config)?),
        Manifest::Schema1 { platform, .. } => found.push(platform),
        Manifest::NotImage(why) => return Ok(Platforms::Unknown(why)),
    }
    Ok(Platforms::Known(manifest::distinct(found)))
}

/// A 429, with the pause its `Retry-After` asks for.
fn rate_limited(resp: &Response, reason: String, authenticated: bool) -> Attempt {
    Attempt::Final {
        status: Status::RateLimited,
        reason,
        retry_after: Some(parse_retry_after(
            resp.header("retry-after"),
            SystemTime::now(),
        )),
        authenticated,
    }
}

/// `who: what they got; ...`, for the reason of a check that tried several
/// credentials or hosts.
fn who_got_what(failures: &[(String, CheckResult)]) -> String {
    failures
        .iter()
        .map(|(who, f)| format!("{who}: {}", f.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether every attempt's answer was independent of credentials.
fn all_shared(failures: &[(String, CheckResult)]) -> bool {
    failures.iter().all(|(_, f)| f.shared)
}

/// The failure that tells the operator the most (see [`informative`]); it
/// is `shared` only if every attempt's answer was.
fn most_informative(failures: Vec<(String, CheckResult)>) -> CheckResult {
    let shared = all_shared(&failures);
    let mut worst = failures
        .into_iter()
        .map(|(_, f)| f)
        .max_by_key(|f| informative(f.status))
        .expect("at least one attempt");
    worst.shared = shared;
    worst
}

/// How much a failure tells the operator, when several credentials or hosts
/// failed in different ways: a 429 first (the image's state is unknown, so
/// the last verdict stays), then a manifest that an accepted credential was
/// told is not there, access denied to an accepted credential, credentials
/// refused, anything unexpected, and last a host that could not be reached.
fn informative(status: Status) -> u8 {
    match status {
        Status::RateLimited => 7,
        Status::Absent => 6,
        Status::AuthorizationFailure => 5,
        Status::AuthenticationFailure => 4,
        Status::UnknownError => 3,
        Status::RegistryUnavailable => 2,
        Status::BadImageFormat => 1,
        // Never a check's status: decided per container after the check.
        Status::Available | Status::PlatformUnavailable => 0,
    }
}

/// Every challenge of a 401's `WWW-Authenticate` headers.
fn challenges_of(resp: &Response) -> Vec<Challenge> {
    resp.headers_named("www-authenticate")
        .flat_map(challenge::parse)
        .collect()
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Head => "HEAD",
        Method::Get => "GET",
    }
}

/// Picks the scheme to use from a 401's challenges: Bearer over Basic.
fn hint_from(
    challenges: &[Challenge],
    registry_scheme: Scheme,
    host: &str,
) -> Result<AuthHint, String> {
    if let Some(b) = challenges.iter().find(|c| c.scheme == "bearer") {
        let realm = b
            .param("realm")
            .ok_or_else(|| format!("{host} sent a Bearer challenge without realm"))?;
        // A relative realm is resolved against the registry, as browsers do.
        let base = Url::new(registry_scheme, host, "/v2/".into());
        let realm = base
            .join(realm)
            .ok_or_else(|| format!("{host} sent an unusable token realm {realm:?}"))?;
        return Ok(AuthHint::Bearer {
            realm,
            service: b.param("service").map(str::to_string),
        });
    }
    if challenges.iter().any(|c| c.scheme == "basic") {
        return Ok(AuthHint::Basic);
    }
    Err(format!(
        "{host} answered 401 without a Bearer or Basic challenge{}",
        challenges
            .first()
            .map(|c| format!(" (scheme {:?})", c.scheme))
            .unwrap_or_default()
    ))
}

/// A token realm must not turn a registry into a way to reach internal
/// services or to leak credentials in clear text.
fn check_realm(
    realm: &Url,
    registry_scheme: Scheme,
    registry_authority: &str,
) -> Result<(), String> {
    if realm.scheme == Scheme::Http && registry_scheme == Scheme::Https {
        return Err(format!(
            "token realm {realm} is plain http for an https registry; refused"
        ));
    }
    let host = realm.host();
    if host.eq_ignore_ascii_case(host_of(registry_authority)) {
        return Ok(());
    }
    let refuse = || {
        Err(format!("token realm {realm} points to an internal address that is not the registry's own host; refused"))
    };
    if let Ok(ip) = host.parse::<IpAddr>() {
        return if is_internal_ip(ip) { refuse() } else { Ok(()) };
    }
    if host == "localhost" || host.ends_with(".localhost") {
        return refuse();
    }
    // A name may hide loopback or link-local (cloud metadata) addresses.
    // Private ranges stay allowed for names: self-hosted registries often
    // keep their auth service on another internal host.
    let port = match realm.scheme {
        Scheme::Http => 80,
        Scheme::Https => 443,
    };
    if let Ok(addrs) = (host, port).to_socket_addrs() {
        for a in addrs {
            let ip = a.ip();
            let bad = ip.is_loopback()
                || ip.is_unspecified()
                || match ip {
                    IpAddr::V4(v4) => v4.is_link_local(),
                    IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
                };
            if bad {
                return refuse();
            }
        }
    }
    Ok(())
}

fn describe_401(challenges: &[Challenge]) -> String {
    let bearer = challenges.iter().find(|c| c.param("error").is_some());
    match bearer.and_then(|c| c.param("error")) {
        Some("insufficient_scope") => {
            "HTTP 401 insufficient_scope: the repository does not exist or these credentials may not pull it".into()
        }
        Some("invalid_token") => "HTTP 401 invalid_token: the registry did not accept the token".into(),
        Some(e) => format!("HTTP 401 {e}"),
        None => "HTTP 401: credentials missing or rejected".into(),
    }
}

/// The errors of a registry error body,
/// `{"errors":[{"code":"...","message":"..."}]}`, read once per answer:
/// `(code, message)`, either possibly empty; messages cut to 200
/// characters, control characters dropped.
#[derive(Debug, Default)]
struct RegistryErrors(Vec<(String, String)>);

impl RegistryErrors {
    fn parse(body: &[u8]) -> RegistryErrors {
        if body.is_empty() {
            return RegistryErrors::default();
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
            return RegistryErrors::default();
        };
        let Some(errors) = v.get("errors").and_then(|e| e.as_array()) else {
            return RegistryErrors::default();
        };
        let text = |e: &serde_json::Value, field: &str| -> String {
            e.get(field)
                .and_then(|m| m.as_str())
                .unwrap_or("")
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect()
        };
        RegistryErrors(
            errors
                .iter()
                .map(|e| (text(e, "code"), text(e, "message")))
                .collect(),
        )
    }

    fn has(&self, code: &str) -> bool {
        self.0.iter().any(|(c, _)| c == code)
    }

    fn codes(&self) -> Vec<&str> {
        self.0
            .iter()
            .map(|(c, _)| c.as_str())
            .filter(|c| !c.is_empty())
            .collect()
    }

    /// `, CODE, CODE`, after a status code.
    fn codes_suffix(&self) -> String {
        let codes = self.codes();
        if codes.is_empty() {
            String::new()
        } else {
            format!(", {}", codes.join(", "))
        }
    }

    /// `, CODE: message` for the first three errors: download policies
    /// say why in them ("download blocked", the violated policy).
    fn detail(&self) -> String {
        let mut out = String::new();
        for (code, message) in self.0.iter().take(3) {
            match (code.is_empty(), message.is_empty()) {
                (true, true) => {}
                (false, true) => out.push_str(&format!(", {code}")),
                (true, false) => out.push_str(&format!(", {message}")),
                (false, false) => out.push_str(&format!(", {code}: {message}")),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realm_rules() {
        let realm = |s: &str| Url::parse(s).unwrap();
        assert!(check_realm(
            &realm("http://auth.example.com/t"),
            Scheme::Https,
            "r.example.com"
        )
        .is_err());
        assert!(check_realm(
            &realm("http://127.0.0.1:9000/t"),
            Scheme::Http,
            "127.0.0.1:5000"
        )
        .is_ok());
        assert!(check_realm(
            &realm("https://127.0.0.1:9000/t"),
            Scheme::Https,
            "127.0.0.1:5000"
        )
        .is_ok());
        assert!(check_realm(
            &realm("https://169.254.169.254/latest/meta-data"),
            Scheme::Https,
            "r.example.com"
        )
        .is_err());
        assert!(check_realm(&realm("https://10.0.0.1/t"), Scheme::Https, "r.example.com").is_err());
        assert!(check_realm(&realm("https://[::1]/t"), Scheme::Https, "r.example.com").is_err());
        assert!(check_realm(
            &realm("https://localhost/t"),
            Scheme::Https,
            "r.example.com"
        )
        .is_err());
        assert!(check_realm(&realm("https://8.8.8.8/t"), Scheme::Https, "r.example.com").is_ok());
    }

    #[test]
    fn hints_prefer_bearer_and_resolve_relative_realms() {
        let c = challenge::parse(r#"Basic realm="x", Bearer realm="/token",service="svc""#);
        match hint_from(&c, Scheme::Https, "r.io:5000").unwrap() {
            AuthHint::Bearer { realm, service } => {
                assert_eq!(realm.to_string(), "https://r.io:5000/token");
                assert_eq!(service.as_deref(), Some("svc"));
            }
            h => panic!("{h:?}"),
        }
        assert_eq!(
            hint_from(&challenge::parse("Basic realm=x"), Scheme::Https, "r").unwrap(),
            AuthHint::Basic
        );
        assert!(hint_from(&challenge::parse("Negotiate"), Scheme::Https, "r").is_err());
        assert!(hint_from(&challenge::parse("Bearer service=x"), Scheme::Https, "r").is_err());
    }

    #[test]
    fn error_bodies() {
        assert_eq!(
            RegistryErrors::parse(
                br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"m"},{"code":"DENIED"}]}"#
            )
            .codes(),
            ["MANIFEST_UNKNOWN", "DENIED"]
        );
        assert!(RegistryErrors::parse(b"<html>").codes().is_empty());
        assert!(RegistryErrors::parse(br#"{"errors":"x"}"#)
            .codes()
            .is_empty());
    }
}
