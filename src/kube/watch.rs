//! One list/watch loop per watched resource (and namespace), each on its own
//! thread, as client-go's reflector does it: a paginated list, then a watch
//! from the list's resourceVersion; resume from the last seen version when a
//! stream ends or breaks, relist on 410 Gone or an ERROR event. Events go to
//! the inventory over a channel (of whatever input type it takes, made from
//! an [`Event`]); objects deleted while we were away are
//! found by comparing a relist with what we knew.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::client::{ApiClient, ApiError};
use super::resources::{meta, Kind, Object, ObjectKey, PullSecret, Resource};
use crate::sys::backoff::{Backoff, RateLimiter};

/// What a watch loop tells the inventory.
#[derive(Debug, Clone)]
pub enum Event {
    /// An object exists in this state (added, modified, or seen in a relist).
    Upsert(Resource, Object),
    /// An object is gone.
    Delete(Resource, ObjectKey),
    /// A running pod known only by its key's id ([`ObjectKey::id`]) is gone
    /// (a relist did not find it running).
    Gone(Resource, u64),
    /// The stream's first full list has been delivered.
    Synced(Resource, Option<String>),
}

/// What a list saw of one object: its key, or (a covered running pod) its
/// key's id.
enum Seen {
    Key(ObjectKey),
    Id(u64),
}

/// One list/watch stream: a resource, optionally in one namespace.
#[derive(Debug, Clone)]
pub struct Stream {
    /// What to watch.
    pub resource: Resource,
    /// `None` for all namespaces.
    pub namespace: Option<String>,
    /// A label selector the server filters with.
    pub label_selector: Option<String>,
}

impl Stream {
    /// For log lines: `deployments in namespace a`, `secrets(dockercfg)`.
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) if self.resource.namespaced() => {
                format!("{} in namespace {ns}", self.resource.name())
            }
            _ => self.resource.name().to_string(),
        }
    }

    /// The request path with these query parameters plus the selectors.
    pub fn path(&self, params: &[(&str, &str)]) -> String {
        let (prefix, plural) = self.resource.api();
        let mut path = match &self.namespace {
            Some(ns) if self.resource.namespaced() => format!("{prefix}/namespaces/{ns}/{plural}"),
            _ => format!("{prefix}/{plural}"),
        };
        let mut all: Vec<(&str, &str)> = params.to_vec();
        if let Some(f) = self.resource.field_selector() {
            all.push(("fieldSelector", f));
        }
        if let Some(l) = &self.label_selector {
            all.push(("labelSelector", l));
        }
        for (i, (k, v)) in all.iter().enumerate() {
            path.push(if i == 0 { '?' } else { '&' });
            path.push_str(k);
            path.push('=');
            path.push_str(&crate::registry::transport::percent_encode(v));
        }
        path
    }
}

/// Loop settings.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Items per list page.
    pub page_size: u32,
    /// Minimum server-side watch timeout; each watch asks for 1-2x this, as client-go does.
    pub watch_timeout: Duration,
    /// Limit for one list page request.
    pub list_timeout: Duration,
    /// How often discovery is asked whether a custom resource (a CRD) is
    /// served, while it is not.
    pub discovery_interval: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            page_size: 500,
            watch_timeout: Duration::from_secs(300),
            list_timeout: Duration::from_secs(60),
            discovery_interval: Duration::from_secs(120),
        }
    }
}

/// Shared view of one loop, for health, readiness and metrics.
#[derive(Debug, Default)]
pub struct StreamState {
    /// The first list has been delivered.
    pub synced: AtomicBool,
    /// The thread is running (cleared when it ends, also by a panic).
    pub alive: AtomicBool,
    /// Objects currently known.
    pub objects: AtomicUsize,
    /// The last list was refused (401/403): no data will come until that changes.
    pub denied: AtomicBool,
    /// The last list was refused with 403: only a change of RBAC helps.
    pub forbidden: AtomicBool,
    /// A custom resource whose CRD is not installed: nothing to watch.
    pub absent: AtomicBool,
    /// List and watch requests sent.
    pub requests: AtomicU64,
    /// Lists and watches that failed, were very short, or ended in an ERROR event.
    pub failures: AtomicU64,
    /// Since when every request has failed, and the last failure; `None`
    /// while the stream makes progress.
    pub failing: Mutex<Option<(Instant, String)>>,
}

impl StreamState {
    /// Synced, or refused: either way nothing more is coming soon.
    pub fn settled(&self) -> bool {
        self.synced.load(Ordering::SeqCst) || self.denied.load(Ordering::SeqCst)
    }

    /// How long the stream has made no progress, and why, if it is failing.
    pub fn failing_for(&self) -> Option<(Duration, String)> {
        self.failing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|(since, why)| (since.elapsed(), why.clone()))
    }

    fn failed(&self, why: &str) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut f = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        let since = f.as_ref().map_or_else(Instant::now, |(since, _)| *since);
        *f = Some((since, why.to_string()));
    }

    fn progressed(&self) {
        *self.failing.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

struct AliveGuard<'a>(&'a AtomicBool);

impl Drop for AliveGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// How a watch request ended without error.
enum WatchEnd {
    /// The server closed the stream after this many events: watch again
    /// from the last version.
    Closed(usize),
    /// The version is gone or the server reported an error: list again.
    Relist(String),
}

/// client-go's reflector: a watch that ends sooner than this with no event
/// is an error ("very short watch"), not a normal end.
const SHORT_WATCH: Duration = Duration::from_secs(1);

#[derive(Deserialize)]
struct ListPage<'a> {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(borrow, default)]
    items: Option<Vec<&'a RawValue>>,
}

#[derive(Deserialize, Default)]
struct ListMeta {
    #[serde(rename = "resourceVersion", default)]
    resource_version: String,
    #[serde(rename = "continue", default)]
    continue_: Option<String>,
}

#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(borrow)]
    object: &'a RawValue,
}

#[derive(Deserialize, Default)]
struct StatusObject {
    #[serde(default)]
    code: u16,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    message: String,
}

/// One decoded watch event line.
#[derive(Debug, PartialEq, Eq)]
pub enum WatchEvent<'a> {
    /// ADDED or MODIFIED, with the raw object.
    Upsert(&'a str),
    /// DELETED, with the object's last state.
    Deleted(&'a str),
    /// BOOKMARK: only the resourceVersion matters.
    Bookmark(String),
    /// ERROR, with the Status's code, reason and message.
    Error(u16, String, String),
    /// A type we do not know; ignored.
    Unknown(String),
}

/// Decodes one line of a watch stream. Blank lines are `Ok(None)`.
pub fn decode_event(line: &[u8]) -> Result<Option<WatchEvent<'_>>, String> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let event: RawEvent =
        serde_json::from_slice(line).map_err(|e| format!("malformed watch event: {e}"))?;
    let raw = event.object.get();
    Ok(Some(match event.kind {
        "ADDED" | "MODIFIED" => WatchEvent::Upsert(raw),
        "DELETED" => WatchEvent::Deleted(raw),
        "BOOKMARK" => {
            WatchEvent::Bookmark(meta(raw).map(|m| m.resource_version).unwrap_or_default())
        }
        "ERROR" => {
            let s: StatusObject = serde_json::from_str(raw).unwrap_or_default();
            WatchEvent::Error(s.code, s.reason, s.message)
        }
        other => WatchEvent::Unknown(other.to_string()),
    }))
}

/// Longest watch event line we accept (objects are at most ~1.5 MiB in etcd).
const MAX_EVENT_LINE: usize = 16 << 20;
/// Largest line buffer kept between events.
const LINE_KEPT: usize = 256 << 10;

/// The loop state of one stream.
struct Loop<'a, E> {
    client: &'a ApiClient,
    stream: &'a Stream,
    opts: &'a WatchOptions,
    tx: &'a Sender<E>,
    state: &'a StreamState,
    known: HashSet<ObjectKey>,
    /// Covered running pods sent, by the id of their key: they are many,
    /// and their names are not needed to tell the inventory they are gone.
    known_running: HashSet<u64>,
    /// Namespaces of the known keys, shared: a stream of ten thousand pods
    /// holds a few dozen namespace strings, not ten thousand copies.
    namespaces: HashSet<Arc<str>>,
    /// The last failure reported, so a lasting one (403) is logged once.
    last_error: Option<String>,
    /// Decode problems already logged at warn level.
    decode_errors: HashSet<String>,
    /// The last watch was accepted and then closed at once: accepting the
    /// next one is not progress yet.
    short_watches: bool,
}

/// Runs the loop until `stop` is set or the inventory hangs up.
///
/// Events go out as `E`: the inventory's input, which carries other news
/// besides (this module does not need to know what).
pub fn run<E: From<Event>>(
    client: &ApiClient,
    stream: &Stream,
    opts: &WatchOptions,
    tx: &Sender<E>,
    state: &StreamState,
    stop: &AtomicBool,
) {
    // `spawn_all` set `alive` before starting the thread; the guard clears it.
    let _guard = AliveGuard(&state.alive);
    let mut l = Loop {
        client,
        stream,
        opts,
        tx,
        state,
        known: HashSet::new(),
        known_running: HashSet::new(),
        namespaces: HashSet::new(),
        last_error: None,
        decode_errors: HashSet::new(),
        short_watches: false,
    };
    // As client-go's reflector (tools/cache/reflector.go): failed lists,
    // failed or very short watches, and ERROR events wait 0.8 s doubling to
    // 30 s with jitter before the next request; only a healthy watch (one
    // that ran its course) resets that. A Retry-After from the apiserver
    // is honoured. The rate limiter bounds the loop whatever the server does.
    let mut backoff = Backoff::new(Duration::from_millis(800), Duration::from_secs(30));
    let mut limiter = RateLimiter::new(5.0, 10);
    let what = stream.describe();
    log::info!("watching {what}");
    let pace = |limiter: &mut RateLimiter| {
        std::thread::sleep(limiter.reserve(Instant::now()));
        state.requests.fetch_add(1, Ordering::Relaxed);
    };
    'list: while !stop.load(Ordering::Relaxed) {
        if stream.resource.optional() {
            pace(&mut limiter);
            match l.served() {
                Ok(true) => {
                    if state.absent.swap(false, Ordering::SeqCst) {
                        log::info!("{what} is served now; watching it");
                    }
                }
                Ok(false) => {
                    // Not installed: nothing to list, and objects seen
                    // before are gone (their series with them).
                    if l.forget_all().is_err() {
                        return;
                    }
                    state.progressed();
                    if !state.absent.swap(true, Ordering::SeqCst) {
                        log::info!(
                            "{what} is not served (its CRD is not installed); asking again every {:?}",
                            opts.discovery_interval
                        );
                    }
                    if l.first_sync().is_err() {
                        return;
                    }
                    sleep_unless_stopped(opts.discovery_interval, stop);
                    continue;
                }
                Err(Stop::HungUp) => return,
                Err(Stop::Failed(why, retry_after)) => {
                    l.back_off(&mut backoff, retry_after, ("discovery", &why), "retrying");
                    continue;
                }
            }
        }
        pace(&mut limiter);
        let started = Instant::now();
        let mut rv = match l.list() {
            Ok(rv) => rv,
            Err(Stop::HungUp) => return,
            Err(Stop::Failed(why, retry_after)) => {
                l.back_off(&mut backoff, retry_after, ("list", &why), "retrying");
                continue;
            }
        };
        l.last_error = None;
        state.progressed();
        state.denied.store(false, Ordering::SeqCst);
        state.forbidden.store(false, Ordering::SeqCst);
        if !state.synced.load(Ordering::SeqCst) {
            log::info!(
                "listed {what}: {} objects in {:.1?}",
                l.known.len(),
                started.elapsed()
            );
        }
        if l.first_sync().is_err() {
            return;
        }
        while !stop.load(Ordering::Relaxed) {
            pace(&mut limiter);
            let started = Instant::now();
            let failure = match l.watch(&mut rv) {
                Ok(WatchEnd::Closed(events)) if events == 0 && started.elapsed() < SHORT_WATCH => {
                    l.short_watches = true;
                    (
                        format!(
                            "very short watch: the server closed it after {:.0?} with no event",
                            started.elapsed()
                        ),
                        None,
                    )
                }
                Ok(WatchEnd::Closed(events)) => {
                    log::debug!("watch of {what} ended after {events} events; resuming from resourceVersion {rv}");
                    l.short_watches = false;
                    state.progressed();
                    if started.elapsed() >= SHORT_WATCH {
                        backoff.reset();
                    }
                    continue;
                }
                Ok(WatchEnd::Relist(why)) => {
                    state.failed(&why);
                    let d = backoff.next_delay();
                    log::info!("watch of {what}: {why}; listing again in {d:.1?}");
                    std::thread::sleep(d);
                    continue 'list;
                }
                Err(Stop::HungUp) => return,
                Err(Stop::Failed(why, retry_after)) => (why, retry_after),
            };
            let (why, retry_after) = failure;
            l.back_off(
                &mut backoff,
                retry_after,
                ("watch", &why),
                &format!("resuming from resourceVersion {rv}"),
            );
        }
    }
}

/// Why a list or watch request stopped early.
enum Stop {
    /// The inventory is gone: the process is shutting down.
    HungUp,
    /// The request failed, for this reason; the server may have said when
    /// to come back.
    Failed(String, Option<Duration>),
}

impl Stop {
    fn from_api(e: &ApiError, resource: Resource) -> Stop {
        let retry_after = match e {
            ApiError::Status { retry_after, .. } => *retry_after,
            _ => None,
        };
        Stop::Failed(explain(e, resource), retry_after)
    }
}

impl<E: From<Event>> Loop<'_, E> {
    /// Whether the apiserver serves this resource now (discovery of its
    /// group version), learning its kind.
    fn served(&self) -> Result<bool, Stop> {
        let (prefix, plural) = self.stream.resource.api();
        let body = match self.client.get_body(prefix, self.opts.list_timeout) {
            Ok(b) => b,
            Err(e) if e.code() == Some(404) => return Ok(false),
            Err(e) => return Err(Stop::from_api(&e, self.stream.resource)),
        };
        #[derive(Deserialize)]
        struct ResourceList {
            #[serde(default)]
            resources: Vec<ApiResource>,
        }
        #[derive(Deserialize)]
        struct ApiResource {
            name: String,
            #[serde(default)]
            kind: String,
        }
        let list: ResourceList = serde_json::from_slice(&body)
            .map_err(|e| Stop::Failed(format!("malformed discovery answer: {e}"), None))?;
        match list.resources.iter().find(|r| r.name == plural) {
            Some(r) => {
                self.stream.resource.discovered(&r.kind);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Tells the inventory, once, that the first full list is delivered.
    fn first_sync(&self) -> Result<(), Stop> {
        if self.state.synced.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.send(Event::Synced(
            self.stream.resource,
            self.stream.namespace.clone(),
        ))
    }

    /// Every object known is gone (the resource stopped being served).
    fn forget_all(&mut self) -> Result<(), Stop> {
        for key in std::mem::take(&mut self.known) {
            self.send(Event::Delete(self.stream.resource, key))?;
        }
        for id in std::mem::take(&mut self.known_running) {
            self.send(Event::Gone(self.stream.resource, id))?;
        }
        self.state.objects.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// Records a failure, logs it, and waits the backoff (or the server's
    /// Retry-After, when longer) before `next`.
    fn back_off(
        &mut self,
        backoff: &mut Backoff,
        retry_after: Option<Duration>,
        (request, why): (&str, &str),
        next: &str,
    ) {
        let d = backoff.next_delay().max(retry_after.unwrap_or_default());
        self.state.failed(why);
        let failure = format!("{request} of {} failed: {why}", self.stream.describe());
        self.report(&failure, &format!("; {next} in {d:.1?}"));
        std::thread::sleep(d);
    }

    /// Logs a failure at warn level the first time, at debug level while it repeats.
    fn report(&mut self, failure: &str, next: &str) {
        if self.last_error.as_deref() == Some(failure) {
            log::debug!("{failure}{next}");
        } else {
            log::warn!("{failure}{next}");
            self.last_error = Some(failure.to_string());
        }
    }

    /// An object is gone: the inventory hears of it if it was sent on
    /// (no event at all for the many pods nobody checks one by one).
    fn forget(&mut self, key: ObjectKey) -> Result<(), Stop> {
        if !self.known.remove(&key) && !self.known_running.remove(&key.id()) {
            return Ok(());
        }
        self.count();
        self.send(Event::Delete(self.stream.resource, key))
    }

    /// Publishes how many objects are known.
    fn count(&self) {
        self.state.objects.store(
            self.known.len() + self.known_running.len(),
            Ordering::Relaxed,
        );
    }

    fn send(&self, e: Event) -> Result<(), Stop> {
        self.tx.send(E::from(e)).map_err(|_| Stop::HungUp)
    }

    /// Lists every page; sends each object, then deletes for objects that
    /// vanished since the last list. Returns the list's resourceVersion.
    fn list(&mut self) -> Result<String, Stop> {
        let what = self.stream.describe();
        let limit = self.opts.page_size.to_string();
        'restart: loop {
            let mut seen: HashSet<ObjectKey> = HashSet::with_capacity(self.known.len());
            let mut seen_running: HashSet<u64> = HashSet::with_capacity(self.known_running.len());
            let mut cont: Option<String> = None;
            let mut rv;
            loop {
                let mut params = vec![("limit", limit.as_str())];
                if let Some(c) = &cont {
                    params.push(("continue", c.as_str()));
                }
                let body = match self
                    .client
                    .get_body(&self.stream.path(&params), self.opts.list_timeout)
                {
                    Ok(b) => b,
                    Err(ApiError::Status { code: 410, .. }) if cont.is_some() => {
                        log::info!(
                            "list of {what}: continue token expired (410); listing from the start"
                        );
                        continue 'restart;
                    }
                    Err(e) => {
                        // 401/403 is an answer, not an outage: callers waiting
                        // for this stream can stop waiting (see `settled`).
                        if matches!(e.code(), Some(401 | 403)) {
                            self.state.denied.store(true, Ordering::SeqCst);
                        }
                        self.state
                            .forbidden
                            .store(e.code() == Some(403), Ordering::SeqCst);
                        return Err(Stop::from_api(&e, self.stream.resource));
                    }
                };
                let page: ListPage = match serde_json::from_slice(&body) {
                    Ok(p) => p,
                    Err(e) => return Err(Stop::Failed(format!("malformed answer: {e}"), None)),
                };
                rv = page.metadata.resource_version;
                for raw in page.items.unwrap_or_default() {
                    match self.apply(raw.get(), true)? {
                        Some(Seen::Key(key)) => {
                            seen.insert(key);
                        }
                        Some(Seen::Id(id)) => {
                            seen_running.insert(id);
                        }
                        None => {}
                    }
                }
                cont = page.metadata.continue_.filter(|c| !c.is_empty());
                if cont.is_none() {
                    break;
                }
            }
            let gone: Vec<ObjectKey> = self.known.difference(&seen).cloned().collect();
            for key in gone {
                log::debug!("{what}: {key} was deleted while we were not watching");
                self.send(Event::Delete(self.stream.resource, key))?;
            }
            self.known = seen;
            let gone: Vec<u64> = self
                .known_running
                .difference(&seen_running)
                .copied()
                .collect();
            for id in gone {
                self.send(Event::Gone(self.stream.resource, id))?;
            }
            self.known_running = seen_running;
            self.count();
            return Ok(rv);
        }
    }

    /// Decodes and sends one object; returns its key (None if unusable or
    /// not ours to check).
    fn apply(&mut self, raw: &str, listing: bool) -> Result<Option<Seen>, Stop> {
        let what = self.stream.resource.name();
        let key = match self.stream.resource.decode(raw) {
            // Nothing is kept of an object we do not check (most pods): if
            // it was checked until now, it is gone. A list finds that by
            // comparing what it saw with what was known.
            Ok(Object::Skipped(key)) => {
                if !listing {
                    self.forget(key)?;
                }
                return Ok(None);
            }
            // A covered running pod: kept by its key's id only.
            Ok(obj @ Object::Running(..)) => {
                let id = obj.key().id();
                self.send(Event::Upsert(self.stream.resource, obj))?;
                if !listing {
                    self.known_running.insert(id);
                    self.count();
                }
                return Ok(Some(Seen::Id(id)));
            }
            Ok(obj) if !obj.key().name.is_empty() => {
                let key = obj.key().clone();
                self.send(Event::Upsert(self.stream.resource, obj))?;
                key
            }
            // Only an object that cannot be decoded is read a second time,
            // for the name to log and to forget it by.
            decoded => {
                let m = match meta(raw) {
                    Ok(m) if !m.name.is_empty() => m,
                    _ => {
                        log::warn!("{what}: skipping an object without a readable metadata.name");
                        return Ok(None);
                    }
                };
                let key = ObjectKey {
                    namespace: m.namespace.into(),
                    name: m.name.into(),
                };
                let why = decoded.err().unwrap_or_else(|| "no metadata.name".into());
                // The same problem on every object (a wrong template path)
                // is reported once per resource.
                if self.decode_errors.insert(why.clone()) {
                    log::warn!("{what}: skipping {key}: {why}");
                } else {
                    log::debug!("{what}: skipping {key}: {why}");
                }
                // A pull secret that cannot be read fails the pulls of the
                // pods naming it; other kinds keep their last good state.
                if matches!(
                    self.stream.resource,
                    Resource::DockerConfigJsonSecrets | Resource::DockerCfgSecrets
                ) {
                    let empty = PullSecret {
                        key: key.clone(),
                        credentials: Err(Arc::from(format!("secret {key} could not be decoded"))),
                    };
                    self.send(Event::Upsert(
                        self.stream.resource,
                        Object::PullSecret(empty),
                    ))?;
                }
                key
            }
        };
        let key = self.share_namespace(key);
        if !listing {
            self.known.insert(key.clone());
            self.count();
        }
        Ok(Some(Seen::Key(key)))
    }

    /// The key with the stream's shared copy of its namespace.
    fn share_namespace(&mut self, mut key: ObjectKey) -> ObjectKey {
        match self.namespaces.get(&key.namespace) {
            Some(ns) => key.namespace = ns.clone(),
            None => {
                if self.namespaces.len() > 4 * self.known.len().max(1024) {
                    // Namespaces come and go; drop those no key uses.
                    self.namespaces.retain(|n| Arc::strong_count(n) > 1);
                }
                self.namespaces.insert(key.namespace.clone());
            }
        }
        key
    }

    /// One watch request, from `rv`, which advances with every event.
    fn watch(&mut self, rv: &mut String) -> Result<WatchEnd, Stop> {
        let failed = |why: String| Stop::Failed(why, None);
        let mut events = 0;
        let timeout = self
            .opts
            .watch_timeout
            .mul_f64(1.0 + crate::sys::backoff::random_unit());
        let secs = timeout.as_secs().max(1).to_string();
        let params = [
            ("allowWatchBookmarks", "true"),
            ("resourceVersion", rv.as_str()),
            ("timeoutSeconds", secs.as_str()),
            ("watch", "1"),
        ];
        let path = self.stream.path(&params);
        // The server ends the stream after timeoutSeconds; allow for slack.
        let resp = match self.client.get(&path, timeout + Duration::from_secs(30)) {
            Ok(r) => r,
            Err(ApiError::Status {
                code: 410, message, ..
            }) => {
                return Ok(WatchEnd::Relist(format!(
                    "resourceVersion too old (410: {message})"
                )))
            }
            // A custom resource whose CRD was deleted: list (and discover) again.
            Err(e) if e.code() == Some(404) && self.stream.resource.optional() => {
                return Ok(WatchEnd::Relist(
                    "the resource is not served any more (404)".into(),
                ))
            }
            Err(e) => return Err(Stop::from_api(&e, self.stream.resource)),
        };
        // An accepted watch is progress (a quiet one may run for minutes
        // before its first event), unless watches keep being cut at once.
        if !self.short_watches {
            self.state.progressed();
        }
        // Small: the connection has its own input buffer, and a stream per
        // resource holds this for as long as it watches.
        let mut reader = BufReader::with_capacity(8 << 10, resp.into_body().into_reader());
        let mut line = Vec::new();
        loop {
            // One huge object must not keep its size reserved for good.
            if line.capacity() > LINE_KEPT {
                line = Vec::new();
            }
            line.clear();
            let n = (&mut reader)
                .take(MAX_EVENT_LINE as u64)
                .read_until(b'\n', &mut line)
                .map_err(|e| failed(format!("stream broken: {e}")))?;
            if n == 0 {
                return Ok(WatchEnd::Closed(events));
            }
            if line.len() >= MAX_EVENT_LINE && !line.ends_with(b"\n") {
                return Err(failed("watch event larger than 16 MiB".into()));
            }
            let event = match decode_event(&line) {
                Ok(Some(e)) => e,
                Ok(None) => continue,
                Err(e) => return Err(failed(e)),
            };
            events += 1;
            if events == 1 {
                self.state.progressed();
            }
            match event {
                WatchEvent::Upsert(raw) => {
                    self.apply(raw, false)?;
                    bump(rv, raw);
                }
                WatchEvent::Deleted(raw) => {
                    let Ok(m) = meta(raw) else { continue };
                    let key = ObjectKey {
                        namespace: m.namespace.into(),
                        name: m.name.into(),
                    };
                    self.forget(key)?;
                    if !m.resource_version.is_empty() {
                        *rv = m.resource_version;
                    }
                }
                WatchEvent::Bookmark(v) => {
                    if !v.is_empty() {
                        *rv = v;
                    }
                }
                WatchEvent::Error(code, reason, message) => {
                    return Ok(WatchEnd::Relist(format!(
                        "server sent an ERROR event ({code} {reason}: {message})"
                    )));
                }
                WatchEvent::Unknown(other) => {
                    log::warn!(
                        "{}: ignoring watch event of unknown type {other:?}",
                        self.stream.describe()
                    )
                }
            }
        }
    }
}

fn bump(rv: &mut String, raw: &str) {
    if let Ok(m) = meta(raw) {
        if !m.resource_version.is_empty() {
            *rv = m.resource_version;
        }
    }
}

/// An API error with advice for the two an operator must fix.
fn explain(e: &ApiError, resource: Resource) -> String {
    match e.code() {
        Some(401) => format!(
            "{e} (the credentials were rejected: check the kubeconfig or service account token)"
        ),
        Some(403) => {
            let or = match resource {
                Resource::DockerConfigJsonSecrets | Resource::DockerCfgSecrets => {
                    ", or run with --no-secrets"
                }
                Resource::Nodes => {
                    "; until then platform checks are off, or run with --no-platform-check"
                }
                Resource::Pods(_) | Resource::Workload(Kind::Job | Kind::Pod) => {
                    "; until then bare pods and Jobs are not checked, or run with --no-pod-checks"
                }
                _ => "",
            };
            format!(
                "{e} (the exporter needs {}: see deploy/10-rbac.yaml{or})",
                resource.permission()
            )
        }
        _ => e.to_string(),
    }
}

/// Sleeps `d`, or less if `stop` is set meanwhile.
fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) {
    let until = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(200)));
    }
}

/// The streams whose first list has not arrived, for `/readyz` and errors.
pub fn unsynced(streams: &[(Stream, Arc<StreamState>)]) -> Vec<String> {
    streams
        .iter()
        .filter(|(_, st)| !st.synced.load(Ordering::SeqCst))
        .map(|(s, _)| s.describe())
        .collect()
}

/// Why the exporter cannot see a stream it needs, in words that say what to
/// grant: `None` while the stream is listed or not refused.
pub fn refusal(stream: &Stream, state: &StreamState) -> Option<String> {
    if state.synced.load(Ordering::SeqCst) || !state.denied.load(Ordering::SeqCst) {
        return None;
    }
    let why = state
        .failing_for()
        .map(|(_, why)| why)
        .unwrap_or_else(|| "refused".into());
    Some(format!("{} cannot be listed: {why}", stream.describe()))
}

/// Starts one thread per stream.
pub fn spawn_all<E: From<Event> + Send + 'static>(
    client: Arc<ApiClient>,
    streams: Vec<Stream>,
    opts: WatchOptions,
    tx: Sender<E>,
    stop: Arc<AtomicBool>,
) -> Vec<(Stream, Arc<StreamState>)> {
    streams
        .into_iter()
        .map(|stream| {
            let state = Arc::new(StreamState::default());
            state.alive.store(true, Ordering::SeqCst);
            let (c, s, o, t, st, stop) = (
                client.clone(),
                stream.clone(),
                opts.clone(),
                tx.clone(),
                state.clone(),
                stop.clone(),
            );
            let name = format!("watch-{}", stream.resource.name());
            let spawned = std::thread::Builder::new()
                .name(name)
                .spawn(move || run(&c, &s, &o, &t, &st, &stop));
            if let Err(e) = spawned {
                log::error!("cannot start the watch of {}: {e}", stream.describe());
                state.alive.store(false, Ordering::SeqCst);
            }
            (stream, state)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_transcript_events() {
        let stream = include_str!("../../tests/data/watch-stream.ndjson");
        let events: Vec<WatchEvent> = stream
            .lines()
            .filter_map(|l| decode_event(l.as_bytes()).unwrap())
            .collect();
        assert!(matches!(events[0], WatchEvent::Upsert(_)));
        assert!(events.iter().any(|e| matches!(e, WatchEvent::Deleted(_))));
        assert!(events
            .iter()
            .any(|e| *e == WatchEvent::Bookmark("200".into())));
        let err = br#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old","reason":"Expired","code":410}}"#;
        assert_eq!(
            decode_event(err).unwrap(),
            Some(WatchEvent::Error(410, "Expired".into(), "too old".into()))
        );
        assert_eq!(decode_event(b"  \r").unwrap(), None);
        assert!(decode_event(b"{\"type\":").is_err());
        assert!(decode_event(b"[1]").is_err());
    }

    #[test]
    fn paths() {
        let s = Stream {
            resource: Resource::Workload(Kind::Deployment),
            namespace: None,
            label_selector: None,
        };
        assert_eq!(
            s.path(&[("limit", "500")]),
            "/apis/apps/v1/deployments?limit=500"
        );
        let s = Stream {
            resource: Resource::DockerCfgSecrets,
            namespace: Some("a".into()),
            label_selector: None,
        };
        assert_eq!(
            s.path(&[("watch", "1")]),
            "/api/v1/namespaces/a/secrets?watch=1&fieldSelector=type%3Dkubernetes.io%2Fdockercfg"
        );
        let s = Stream {
            resource: Resource::Namespaces,
            namespace: Some("a".into()),
            label_selector: Some("team=x".into()),
        };
        assert_eq!(s.path(&[]), "/api/v1/namespaces?labelSelector=team%3Dx");
    }
}
