//! One image check: `HEAD /v2/<name>/manifests/<ref>` with the credentials a
//! pod would use, tried in the kubelet's order (anonymously only when none
//! matches), on each mirror and then the image's own registry.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::challenge::{self, Challenge};
use super::errors::{self, RegistryErrors};
use super::manifest::{self, DigestCache, Platforms};
use super::outcome::{parse_retry_after, CheckResult};
use super::pull_path::{self, Broken, PathCache};
use super::reader::{Reader, MANIFEST_BODY_LIMIT};
use super::session::{Ctx, Sender, Via, MANIFEST_ACCEPT};
use super::status::Status;
use super::token::{parse_token_response, Refusal, Token, TokenCache};
use super::transport::{
    host_of, is_internal_ip, Method, Response, Scheme, Transport, TransportConfig, TransportError,
    Url,
};

pub use super::session::RequestObserver;
use crate::credentials::provider::CredentialProviders;
use crate::credentials::Credential;
use crate::image::platform::{NodePlatforms, Platform};
use crate::image::reference::{Mirrored, Reference};

const TOKEN_BODY_LIMIT: u64 = 1 << 20;

/// Failed manifest answers whose status alone cannot say why: a HEAD's is
/// followed by a GET for the registry's error body.
const EXPLAINED: [u16; 4] = [400, 401, 403, 404];

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

/// What one credential (or anonymous) got.
enum Attempt {
    /// The manifest is there.
    Present {
        digest: Option<String>,
        authenticated: bool,
        /// The manifest is Docker's schema 1.
        schema1: bool,
        /// The digests its index lists (empty for a single manifest), when known.
        children: Option<Arc<[Box<str>]>>,
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
    sender: Sender,
    /// The digests each index lists, as read.
    listed: manifest::Listed,
    tokens: TokenCache,
    hints: Mutex<HashMap<String, AuthHint>>,
    schemes: Mutex<HashMap<String, Scheme>>,
    allow_plain_http: bool,
    plain_http: HashSet<String>,
    get_fallback: HashSet<String>,
    providers: Option<Arc<CredentialProviders>>,
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
        self.sender.observe(observer);
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
            listed: manifest::Listed::default(),
            sender: Sender::new(
                Transport::new(&config.transport)?,
                config.retries,
                config.retry_backoff,
            ),
            tokens: TokenCache::default(),
            hints: Mutex::default(),
            schemes: Mutex::default(),
            allow_plain_http: config.allow_plain_http,
            plain_http: lower(&config.plain_http_registries),
            get_fallback: lower(&config.get_fallback_registries),
            providers: config.providers,
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
        for (reference, rule) in image.candidates() {
            // containerd names the upstream on every request to a mirror.
            let ns = rule.map(|_| image.reference.registry.as_str());
            let mut r = self.check_on(reference, ns, credentials);
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
        self.check_on(reference, None, credentials)
    }

    /// [`Checker::check`] on a mirror of the registry `ns`, or on the
    /// image's own registry (`None`).
    fn check_on(
        &self,
        reference: &Reference,
        ns: Option<&str>,
        credentials: &[Arc<Credential>],
    ) -> CheckResult {
        let mut ctx = Ctx {
            ns: ns.map(str::to_string),
            ..Ctx::default()
        };
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
                    schema1,
                    children,
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
                        schema1,
                        children,
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
                        // A refusal remembered from a recent fetch: the
                        // token server said so moments ago.
                        Err((failure, true)) => return *failure,
                        Err((failure, false))
                            if relearned
                                || matches!(
                                    *failure,
                                    Attempt::Final {
                                        status: Status::RateLimited,
                                        ..
                                    }
                                ) =>
                        {
                            return *failure
                        }
                        Err((failure, false)) => {
                            relearned = true;
                            match self.relearn(ctx, r, &hint) {
                                Relearned::Changed => continue,
                                Relearned::Same => return *failure,
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
            let via = Via {
                scheme,
                auth: auth.as_deref(),
            };
            if resp.status == 401 {
                let challenges = challenges_of(&resp);
                let new_hint = match hint_from(&challenges, scheme, host) {
                    Ok(h) => Some(h),
                    // Harbor answers a project that does not exist so.
                    Err(_) if challenges.is_empty() => None,
                    Err(why) => return final_(Status::UnknownError, why),
                };
                // A refused request that carried credentials may be
                // challenged Basic by a registry that hands out tokens
                // (Harbor's getChallenge): that says "refused", not "send
                // the password from now on".
                let refusal_only = auth.is_some()
                    && new_hint == Some(AuthHint::Basic)
                    && matches!(hint, AuthHint::Bearer { .. });
                let challenged = new_hint.is_some();
                if let Some(h) = new_hint.filter(|h| *h != hint && !learnt && !refusal_only) {
                    self.set_hint(host, h);
                    learnt = true;
                    continue;
                }
                if let (Some(token), None) = (cached_token, &stale) {
                    // A cached token the registry no longer accepts: fetch one fresh token, once.
                    stale = Some(token);
                    continue;
                }
                let why = if challenged {
                    describe_401(&challenges)
                } else {
                    "HTTP 401 without a challenge: the registry gives no way in".into()
                };
                return Attempt::Unauthorized(self.explained(ctx, r, via, why));
            }
            if !self.hints_known(host) {
                self.set_hint(host, AuthHint::Open);
            }
            return self.classified(ctx, r, &resp, via);
        }
    }

    /// The answer's verdict; for a manifest that is there, with the image's
    /// platforms when they are wanted and what its pull path showed. Both
    /// read the manifest by digest through one [`Reader`]: one GET serves
    /// both. Without a usable `Docker-Content-Digest` the digest is learnt
    /// as containerd learns it: from the hash of the manifest's bytes.
    fn classified(&self, ctx: &mut Ctx, r: &Reference, resp: &Response, via: Via) -> Attempt {
        let mut a = self.classify(ctx, r, resp, via);
        if let Attempt::Present {
            digest,
            schema1,
            children,
            platforms,
            path,
            ..
        } = &mut a
        {
            let wants_platforms = self.platforms.as_ref().is_some_and(|p| p.is_on());
            let mut reader = Reader::new(&self.sender, self.quota_reserve, ctx, r, via);
            let mut no_digest = None;
            match (digest.as_deref(), resp.body.is_empty()) {
                // The GET fallback's answer: the manifest itself.
                (Some(d), false) => reader.keep(d, resp.header("content-type"), &resp.body),
                (None, false) => {
                    match reader.keep_hashed(resp.header("content-type"), &resp.body) {
                        Ok(d) => *digest = Some(d),
                        Err(why) => no_digest = Some(why),
                    }
                }
                (Some(_), true) => {}
                (None, true) if wants_platforms || self.verify_every.is_some() => {
                    match reader.digest_by_hashing() {
                        Ok(d) => *digest = Some(d),
                        Err(why) => no_digest = Some(why),
                    }
                }
                (None, true) => {}
            }
            if let Some(d) = digest.as_deref() {
                if wants_platforms {
                    *platforms = Some(self.platforms_of(&mut reader, d));
                }
            }
            *path = self.verify_path(&mut reader, digest.as_deref(), no_digest);
            *schema1 |=
                reader.schema1 || digest.as_deref().is_some_and(|d| reader.read_as_schema1(d));
            let single = resp
                .header("content-type")
                .is_some_and(|t| !manifest::is_index_type(t));
            *children = digest
                .as_deref()
                .and_then(|d| self.listed.of(d, reader.listed(d), single));
            if reader.confirmed > 0 {
                log::debug!(
                    "{r}: {} blob HEADs refused or missing, each asked again with GET",
                    reader.confirmed
                );
            }
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
    fn verify_path(
        &self,
        reader: &mut Reader,
        digest: Option<&str>,
        no_digest: Option<String>,
    ) -> PathNote {
        let Some(every) = self.verify_every else {
            return PathNote::default();
        };
        let Some(digest) = digest else {
            return PathNote {
                broken: Vec::new(),
                note: format!(
                    "; pull path not verified: the registry sent no usable Docker-Content-Digest{}",
                    no_digest.map(|why| format!(" ({why})")).unwrap_or_default()
                ),
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
        let (platforms, lasting) = match reader.platforms(digest) {
            Ok(p) => (p, true),
            Err(why) => {
                log::debug!("{}: cannot read its platforms: {why}", reader.r);
                (Platforms::Unknown(why), false)
            }
        };
        self.digests.put(digest, platforms, lasting, now)
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
            // No challenge at all: the registry gives no way in; the
            // failure stands.
            Err(_) if challenges.is_empty() => Relearned::Same,
            Err(why) => Relearned::Answered(final_(Status::UnknownError, why)),
        }
    }

    /// The class of a manifest answer. A HEAD's failure has no body: for
    /// those whose status alone cannot say why, [`Checker::error_body`]
    /// asks once more with GET, and the reason carries the registry's
    /// codes and messages.
    fn classify(&self, ctx: &mut Ctx, r: &Reference, resp: &Response, via: Via) -> Attempt {
        let authenticated = via.auth.is_some();
        let fin = |status: Status, reason: String| Attempt::Final {
            status,
            reason,
            retry_after: None,
            authenticated,
        };
        let host = r.api_host();
        if (200..300).contains(&resp.status) {
            // containerd validates the header and otherwise hashes the
            // manifest; an empty or malformed one is as good as none.
            let got = resp
                .header("docker-content-digest")
                .map(str::trim)
                .filter(|d| manifest::valid_digest(d))
                .map(str::to_string);
            if let (Some(want), Some(got)) = (&r.digest, &got) {
                if !want.eq_ignore_ascii_case(got) {
                    return fin(
                        Status::UnknownError,
                        format!("registry returned manifest {got} for {want}"),
                    );
                }
            }
            return Attempt::Present {
                digest: got.or_else(|| r.digest.clone()),
                authenticated,
                schema1: resp
                    .header("content-type")
                    .is_some_and(manifest::is_schema1_type),
                children: None,
                platforms: None,
                path: PathNote::default(),
            };
        }
        let (errors, get_note) = if resp.body.is_empty() && EXPLAINED.contains(&resp.status) {
            self.error_body(ctx, r, via)
        } else {
            (RegistryErrors::parse(&resp.body), String::new())
        };
        let detail = errors.detail();
        let ambiguous = || errors::ambiguous_refusal(host, &errors);
        let status = resp.status;
        let missing = || {
            format!(
                "manifest {} not found (HTTP {status}{detail}){get_note}",
                r.manifest_ref()
            )
        };
        match status {
            404 => fin(Status::Absent, missing()),
            403 => Attempt::Forbidden(format!(
                "access denied (HTTP 403{detail}){get_note}{}",
                ambiguous()
            )),
            429 => rate_limited(
                resp,
                format!("rate limited by {host} (HTTP 429{detail})"),
                authenticated,
            ),
            _ if errors::upstream_trouble(status, &errors) => fin(
                Status::RegistryUnavailable,
                format!(
                    "{host} could not get it from the registry it mirrors (HTTP {status}{detail})"
                ),
            ),
            _ if errors.has("MANIFEST_UNKNOWN") || errors.has("NAME_UNKNOWN") => {
                fin(Status::Absent, missing())
            }
            _ if errors.has("DENIED") => Attempt::Forbidden(format!(
                "access denied (HTTP {status}{detail}){get_note}{}",
                ambiguous()
            )),
            // Harbor's "prevent vulnerable images from running" (and other
            // download policies) refuse the manifest itself.
            412 => Attempt::Forbidden(format!("download refused (HTTP 412{detail})")),
            500..=599 => fin(
                Status::RegistryUnavailable,
                format!(
                    "{host} answered HTTP {status} after {} tries{detail}",
                    self.sender.retries() + 1
                ),
            ),
            s => fin(
                Status::UnknownError,
                format!("unexpected HTTP {s} from {host}{detail}{get_note}"),
            ),
        }
    }

    /// A refused request's reason (`why`, from its 401 challenge) with the
    /// registry's own words from its error body, and whether the registry
    /// tells a missing repository from a private one.
    fn explained(&self, ctx: &mut Ctx, r: &Reference, via: Via, why: String) -> String {
        let (errors, get_note) = self.error_body(ctx, r, via);
        let ambiguous = errors::ambiguous_refusal(r.api_host(), &errors);
        format!("{why}{}{get_note}{ambiguous}", errors.detail())
    }

    /// The error body a HEAD's failure could not carry: one GET of the
    /// manifest with the same credentials, as containerd sends after a
    /// refused HEAD to show the registry's message. Never a counted pull:
    /// a refused or missing manifest's GET is not one, and none is made
    /// while the quota is within the nodes' reserve. When the GET succeeds
    /// where the HEAD failed, the note says so.
    fn error_body(&self, ctx: &mut Ctx, r: &Reference, via: Via) -> (RegistryErrors, String) {
        if ctx.held_for_nodes(self.quota_reserve).is_some() {
            return (RegistryErrors::default(), String::new());
        }
        let path = Ctx::manifest_path(&r.repository, r.manifest_ref());
        let url = ctx.registry_url(via.scheme, r.api_host(), path);
        // A success's body is not wanted: read none of it.
        match self.sender.send(
            ctx,
            Method::Get,
            &url,
            via.auth,
            &[("Accept", MANIFEST_ACCEPT)],
            0,
        ) {
            Ok(get) if (200..300).contains(&get.status) => (
                RegistryErrors::default(),
                format!(
                    "; a GET of it answers HTTP {}: only the registry's HEAD fails (see --get-fallback-registries)",
                    get.status
                ),
            ),
            Ok(get) => (RegistryErrors::parse(&get.body), String::new()),
            Err(_) => (RegistryErrors::default(), String::new()),
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
        let path = Ctx::manifest_path(&r.repository, r.manifest_ref());
        let mut last = TransportError::Other("no scheme to try".into());
        for &scheme in order {
            let url = ctx.registry_url(scheme, host, path.clone());
            match self.sender.send(
                ctx,
                method,
                &url,
                auth,
                &[("Accept", MANIFEST_ACCEPT)],
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
    ) -> Result<(String, bool), (Box<Attempt>, bool)> {
        let scope = format!("repository:{}:pull", r.repository);
        let key = self.tokens.key(&realm.to_string(), service, &scope, cred);
        // A refusal is remembered like a token, for a short time of its
        // own: a credential the token server refused does not cost a token
        // request and a HEAD on every check.
        if let Some(refusal) = self.tokens.refused(&key) {
            let attempt = if refusal.forbidden {
                Attempt::Forbidden(refusal.reason)
            } else {
                Attempt::Unauthorized(refusal.reason)
            };
            return Err((Box::new(attempt), true));
        }
        self.tokens
            .get_or_fetch(&key, stale, || {
                self.fetch_token(ctx, realm, service, &scope, r, registry_scheme, cred)
            })
            .map_err(|a| {
                let refusal = match &a {
                    Attempt::Unauthorized(why) => Some((false, why)),
                    Attempt::Forbidden(why) => Some((true, why)),
                    _ => None,
                };
                if let Some((forbidden, why)) = refusal {
                    let reason = why.clone();
                    self.tokens.refuse(&key, Refusal { forbidden, reason });
                }
                (Box::new(a), false)
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
            .sender
            .send(
                ctx,
                Method::Get,
                &url,
                basic.as_deref(),
                &[("Accept", "application/json")],
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
            401 | 403 => {
                let errors = RegistryErrors::parse(&resp.body);
                let ambiguous = errors::ambiguous_refusal(r.api_host(), &errors);
                let (status, detail) = (resp.status, errors.detail());
                Err(if status == 401 {
                    Attempt::Unauthorized(format!(
                        "token server {server} rejected the credentials (HTTP 401{detail}){ambiguous}"
                    ))
                } else {
                    Attempt::Forbidden(format!(
                        "token server {server} denied access (HTTP 403{detail}){ambiguous}"
                    ))
                })
            }
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
}
