//! Sending the requests of one check: retries on 5xx and broken
//! connections, redirects (credentials dropped when one leaves the origin),
//! the per-check request count and announced quota, the `?ns=` a mirror
//! gets, and the observer that turns every request into metrics.

use std::sync::Arc;
use std::time::Duration;

use super::quota::Quota;
use super::transport::{Method, Response, Scheme, Transport, TransportError, Url};

/// Every manifest type a node may pull; without this list some registries
/// answer 404 or convert to a legacy schema.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.v1+prettyjws, \
application/vnd.docker.distribution.manifest.v1+json";

const MAX_REDIRECTS: usize = 5;

/// Told about every HTTP request the checker sends (for metrics).
pub trait RequestObserver: Send + Sync {
    /// A request to `host` got `status`, or no answer (`None`).
    fn request(&self, host: &str, status: Option<u16>);

    /// An answer from `host` announced its pull quota.
    fn rate_limit(&self, _host: &str, _quota: Quota) {}
}

/// Counts requests for one check, holds the pull quota its answers
/// announced (for the credential it used: Docker Hub counts per account,
/// or per address when anonymous), and the upstream a mirror is asked for.
#[derive(Debug, Default)]
pub struct Ctx {
    /// Requests sent, retries and redirects included.
    pub requests: u32,
    /// The last quota an answer announced.
    pub quota: Option<Quota>,
    /// On a mirror: the image's own registry host, sent as `?ns=` on every
    /// request to the mirror, as containerd does (hosts.toml): mirrors that
    /// serve several upstreams (Spegel, the k3s and rke2 embedded
    /// registry, zot, hubproxy) route by it.
    pub ns: Option<String>,
}

impl Ctx {
    /// The URL of `path` on the registry `host` being checked, with `?ns=`
    /// on a mirror.
    pub fn registry_url(&self, scheme: Scheme, host: &str, path: String) -> Url {
        let url = Url::new(scheme, host, path);
        match &self.ns {
            Some(ns) => url.with_query(&[("ns", ns)]),
            None => url,
        }
    }

    /// The announced quota when it is within the nodes' reserve
    /// (`reserve_percent`): a counted request is held back then, so that
    /// the exporter never takes the pulls the nodes will need.
    pub fn held_for_nodes(&self, reserve_percent: u8) -> Option<Quota> {
        self.quota.filter(|q| q.reserved_for_nodes(reserve_percent))
    }

    /// The path of a manifest, by tag or digest.
    pub fn manifest_path(repository: &str, reference: &str) -> String {
        format!("/v2/{repository}/manifests/{reference}")
    }
}

/// How the manifest answer was reached: the reads that follow go the same
/// way (the same scheme, whatever another check learnt meanwhile, and the
/// same credentials).
#[derive(Clone, Copy)]
pub struct Via<'a> {
    /// The scheme the manifest answer came over.
    pub scheme: Scheme,
    /// The `Authorization` it carried.
    pub auth: Option<&'a str>,
}

/// Sends requests for every check; shared by all worker threads.
pub struct Sender {
    transport: Transport,
    retries: u32,
    retry_backoff: Duration,
    observer: Option<Arc<dyn RequestObserver>>,
}

impl Sender {
    /// `retries` extra tries after a 5xx or a broken connection, the first
    /// after `retry_backoff`, doubling.
    pub fn new(transport: Transport, retries: u32, retry_backoff: Duration) -> Sender {
        Sender {
            transport,
            retries,
            retry_backoff,
            observer: None,
        }
    }

    /// Reports every request to `observer`.
    pub fn observe(&mut self, observer: Arc<dyn RequestObserver>) {
        self.observer = Some(observer);
    }

    /// Extra tries after a 5xx, for reasons.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// Sends with retries on 5xx and broken connections, following redirects
    /// (with the same method and headers) and dropping credentials when a
    /// redirect leaves the origin. Reads at most `limit` bytes of a GET's
    /// body.
    pub fn send(
        &self,
        ctx: &mut Ctx,
        method: Method,
        url: &Url,
        auth: Option<&str>,
        headers: &[(&str, &str)],
        limit: u64,
    ) -> Result<Response, TransportError> {
        let mut url = url.clone();
        let mut auth = auth;
        for _ in 0..=MAX_REDIRECTS {
            let resp = self.send_retrying(ctx, method, &url, auth, headers, limit)?;
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
        extra: &[(&str, &str)],
        limit: u64,
    ) -> Result<Response, TransportError> {
        let mut headers: Vec<(&str, &str)> = Vec::with_capacity(1 + extra.len());
        if let Some(a) = auth {
            headers.push(("Authorization", a));
        }
        headers.extend_from_slice(extra);
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

/// The method's name, for logs and reasons.
pub fn method_name(m: Method) -> &'static str {
    match m {
        Method::Head => "HEAD",
        Method::Get => "GET",
    }
}
