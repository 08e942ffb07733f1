//! Decides which check runs next and feeds the worker pool.
//!
//! A binary heap orders checks: never-checked first (a new image is reported
//! within seconds), then failed checks whose backoff has passed, then the
//! least recently checked. Every period a batch of the last kind is allowed,
//! sized so every check is re-run within `recheck_within`. At most
//! `max_per_registry` checks run against one registry at a time, and a
//! registry that answered 429 is left alone until its Retry-After passes.
//!
//! Checks of one image with different credentials run one at a time: when
//! the registry answered without asking for credentials (the result is
//! `shared`), that answer is every such check's, and they are not sent.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{select, Receiver, Sender};

use crate::image::platform::{NodeGroup, Platform};
use crate::inventory::{Change, CheckId, CheckSpec, Target};
use crate::registry::manifest::Platforms;
use crate::registry::pull_path::{judge, Broken, Judged};
use crate::registry::{CheckResult, Checker, Status};

/// Queue settings.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// How often a batch of rechecks is released (`--check-period`).
    pub period: Duration,
    /// Every check is re-run within this time (`--recheck-within`).
    pub recheck_within: Duration,
    /// Concurrent checks per registry host (`--max-per-registry`).
    pub max_per_registry: usize,
    /// Concurrent checks in all (the worker count).
    pub max_in_flight: usize,
}

/// Priority classes, in dispatch order.
const NEW: u8 = 0;
const FAILED: u8 = 1;
const ROUTINE: u8 = 2;

/// How far the scan for a dispatchable check goes past registries at their
/// limit before giving up until the next completion.
const MAX_DEFERRED: usize = 256;

#[derive(Debug)]
struct State {
    spec: Arc<CheckSpec>,
    registry: Arc<str>,
    /// The image (`CheckSpec::image_key`), shared by its checks with other
    /// credentials; `None` for checks that make no request.
    image: Option<Arc<str>>,
    last_checked: Option<Instant>,
    failures: u32,
    generation: u64,
    in_flight: bool,
}

type Ready = Reverse<(u8, Instant, u64, CheckId)>;
type Waiting = Reverse<(Instant, u64, CheckId)>;

/// The priority queue of checks. Pure logic: the caller supplies the time.
#[derive(Debug)]
pub struct Queue {
    config: QueueConfig,
    states: HashMap<CheckId, State>,
    ready: BinaryHeap<Ready>,
    waiting: BinaryHeap<Waiting>,
    allowance: usize,
    generation: u64,
    paused: HashMap<Arc<str>, Instant>,
    per_registry: HashMap<Arc<str>, usize>,
    in_flight: usize,
    /// Image -> its checks (one per set of credentials).
    by_image: HashMap<Arc<str>, Vec<CheckId>>,
    /// Images with a check in flight, and the image of each running check
    /// (kept apart from `states`: a check removed while running still
    /// frees its image when it completes).
    images_in_flight: HashMap<Arc<str>, usize>,
    running_image: HashMap<CheckId, Arc<str>>,
}

impl Queue {
    /// An empty queue.
    pub fn new(config: QueueConfig) -> Queue {
        Queue {
            config,
            states: HashMap::new(),
            ready: BinaryHeap::new(),
            waiting: BinaryHeap::new(),
            allowance: 0,
            generation: 0,
            paused: HashMap::new(),
            per_registry: HashMap::new(),
            in_flight: 0,
            by_image: HashMap::new(),
            images_in_flight: HashMap::new(),
            running_image: HashMap::new(),
        }
    }

    /// Whether no check is known.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// Whether the check is still wanted.
    pub fn contains(&self, id: CheckId) -> bool {
        self.states.contains_key(&id)
    }

    /// Rechecks released per period: enough that all are re-run within `recheck_within`.
    pub fn batch_size(&self) -> usize {
        let n = self.states.len();
        if n == 0 {
            return 0;
        }
        let per =
            self.config.period.as_secs_f64() / self.config.recheck_within.as_secs_f64().max(1e-3);
        ((n as f64 * per).ceil() as usize).clamp(1, n)
    }

    fn next_generation(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    /// A new check: it goes to the front.
    pub fn add(&mut self, spec: Arc<CheckSpec>, now: Instant) {
        let id = spec.id;
        let generation = self.next_generation();
        let registry: Arc<str> = Arc::from(spec.registry());
        // A check added again (not expected) is not listed twice.
        if let Some(old) = self.states.get(&id).and_then(|s| s.image.clone()) {
            self.unlink(&old, id);
        }
        let image = spec.image_key().map(|k| {
            // One allocation per image, whatever its number of checks.
            let key = match self.by_image.get_key_value(k.as_str()) {
                Some((existing, _)) => existing.clone(),
                None => Arc::from(k),
            };
            self.by_image.entry(key.clone()).or_default().push(id);
            key
        });
        self.states.insert(
            id,
            State {
                spec,
                registry,
                image,
                last_checked: None,
                failures: 0,
                generation,
                in_flight: false,
            },
        );
        self.ready.push(Reverse((NEW, now, generation, id)));
    }

    /// A check no longer needed; a running one finishes but is not requeued.
    pub fn remove(&mut self, id: CheckId) {
        if let Some(image) = self.states.remove(&id).and_then(|s| s.image) {
            self.unlink(&image, id);
        }
    }

    fn unlink(&mut self, image: &Arc<str>, id: CheckId) {
        if let Some(ids) = self.by_image.get_mut(image) {
            ids.retain(|x| *x != id);
            if ids.is_empty() {
                self.by_image.remove(image);
            }
        }
    }

    /// After a `shared` result of check `id`: the image's other checks,
    /// not running now, take it as their own (they are marked checked at
    /// `now`, as if they had run). Returns them.
    pub fn share(&mut self, id: CheckId, result: &CheckResult, now: Instant) -> Vec<CheckId> {
        let Some(image) = self.states.get(&id).and_then(|s| s.image.clone()) else {
            return Vec::new();
        };
        let others: Vec<CheckId> = self
            .by_image
            .get(&image)
            .map(|ids| ids.iter().copied().filter(|x| *x != id).collect())
            .unwrap_or_default();
        let mut shared = Vec::with_capacity(others.len());
        for other in others {
            if self.states.get(&other).is_some_and(|s| !s.in_flight) {
                self.record(other, result, now);
                shared.push(other);
            }
        }
        shared
    }

    /// Releases the next batch of routine rechecks.
    pub fn tick(&mut self) {
        let b = self.batch_size();
        self.allowance = (self.allowance + b).min(2 * b);
    }

    fn promote_waiting(&mut self, now: Instant) {
        while let Some(Reverse((due, generation, id))) = self.waiting.peek().copied() {
            if due > now {
                break;
            }
            self.waiting.pop();
            if let Some(s) = self.states.get(&id).filter(|s| s.generation == generation) {
                let class = if s.last_checked.is_none() {
                    NEW
                } else if s.failures > 0 {
                    FAILED
                } else {
                    ROUTINE
                };
                let key = if class == ROUTINE {
                    s.last_checked.unwrap_or(due)
                } else {
                    due
                };
                self.ready.push(Reverse((class, key, generation, id)));
            }
        }
    }

    /// The next check to run now, if any may run.
    pub fn next(&mut self, now: Instant) -> Option<Arc<CheckSpec>> {
        if self.in_flight >= self.config.max_in_flight {
            return None;
        }
        self.promote_waiting(now);
        let mut deferred: Vec<Ready> = Vec::new();
        let mut found = None;
        while let Some(&Reverse((class, key, generation, id))) = self.ready.peek() {
            let Some(s) = self
                .states
                .get(&id)
                .filter(|s| s.generation == generation && !s.in_flight)
            else {
                self.ready.pop();
                continue;
            };
            if class == ROUTINE {
                let recent = s
                    .last_checked
                    .is_some_and(|t| now.duration_since(t) < self.config.period);
                if self.allowance == 0 || recent {
                    break;
                }
            }
            if let Some(until) = self.paused.get(&s.registry).copied().filter(|u| *u > now) {
                self.ready.pop();
                self.waiting.push(Reverse((until, generation, id)));
                continue;
            }
            let image_busy = s
                .image
                .as_ref()
                .is_some_and(|i| self.images_in_flight.contains_key(i));
            if image_busy
                || self.per_registry.get(&s.registry).copied().unwrap_or(0)
                    >= self.config.max_per_registry
            {
                deferred.push(self.ready.pop().expect("peeked"));
                if deferred.len() >= MAX_DEFERRED {
                    break;
                }
                continue;
            }
            self.ready.pop();
            if class == ROUTINE {
                self.allowance -= 1;
            }
            found = Some((id, key));
            break;
        }
        self.ready.extend(deferred);
        let (id, _) = found?;
        let s = self.states.get_mut(&id).expect("checked above");
        s.in_flight = true;
        *self.per_registry.entry(s.registry.clone()).or_default() += 1;
        if let Some(i) = &s.image {
            *self.images_in_flight.entry(i.clone()).or_default() += 1;
            self.running_image.insert(id, i.clone());
        }
        self.in_flight += 1;
        Some(s.spec.clone())
    }

    /// Records a finished check and requeues it.
    pub fn complete(&mut self, id: CheckId, registry: &str, result: &CheckResult, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Some(n) = self.per_registry.get_mut(registry) {
            *n = n.saturating_sub(1);
        }
        if let Some(key) = self.running_image.remove(&id) {
            if let Some(n) = self.images_in_flight.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    self.images_in_flight.remove(&key);
                }
            }
        }
        self.record(id, result, now);
    }

    /// Requeues check `id` after `result`.
    fn record(&mut self, id: CheckId, result: &CheckResult, now: Instant) {
        let generation = self.next_generation();
        let (period, recheck) = (self.config.period, self.config.recheck_within);
        let Some(s) = self.states.get_mut(&id) else {
            return;
        };
        s.in_flight = false;
        s.generation = generation;
        match result.status {
            Status::RateLimited => {
                let until = now + result.retry_after.unwrap_or(Duration::from_secs(60));
                let registry = s.registry.clone();
                self.waiting.push(Reverse((until, generation, id)));
                let p = self.paused.entry(registry).or_insert(until);
                *p = (*p).max(until);
            }
            Status::Available | Status::BadImageFormat => {
                s.failures = 0;
                s.last_checked = Some(now);
                self.ready.push(Reverse((ROUTINE, now, generation, id)));
            }
            _ => {
                s.failures += 1;
                s.last_checked = Some(now);
                let backoff = period
                    .saturating_mul(1 << (s.failures - 1).min(16))
                    .min(recheck);
                self.waiting.push(Reverse((now + backoff, generation, id)));
            }
        }
    }

    /// When the queue next has something to do on its own.
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.waiting.peek().map(|Reverse((due, _, _))| *due)
    }
}

/// The last verdict of each check, as the metrics show it.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// One of the Go exporter's seven gauge classes (the check's verdict;
    /// `platform_unavailable` is decided per container from it).
    pub status: Status,
    /// Why.
    pub reason: String,
    /// When the check finished.
    pub checked_at: SystemTime,
    /// Since when the check has had this verdict (the first check that
    /// gave it, while later ones agree).
    pub since: SystemTime,
    /// The credential that got the answer (by secret or file, and key), or
    /// `None` for anonymous.
    pub credential: Option<String>,
    /// For `Available`: the platforms the image offers, when they were read.
    pub platforms: Option<Arc<[Platform]>>,
    /// For `Available`: pieces of the pull path a node cannot get.
    pub broken: Option<Arc<[Broken]>>,
    /// For `Available`: the manifest is Docker's schema 1.
    pub schema1: bool,
    /// For `Available`: the digest the tag (or digest) answered.
    pub digest: Option<Arc<str>>,
    /// For `Available`: the digests its index lists (empty for a single
    /// manifest), when known.
    pub children: Option<Arc<[Box<str>]>>,
}

impl Outcome {
    /// The verdict of a finished check, as the metrics keep it.
    pub fn of(r: &CheckResult) -> Outcome {
        let now = SystemTime::now();
        Outcome {
            status: r.status,
            reason: r.reason.clone(),
            checked_at: now,
            since: now,
            credential: r.credential.clone(),
            platforms: match &r.platforms {
                Some(Platforms::Known(p)) => Some(p.clone()),
                _ => None,
            },
            broken: (!r.broken.is_empty()).then(|| r.broken.as_slice().into()),
            schema1: r.schema1,
            digest: r.digest.as_deref().map(Arc::from),
            children: r.children.clone(),
        }
    }

    /// A check's verdict as a container shows it: an available image whose
    /// pull path is broken for a node its pods can land on is what the
    /// broken piece says (`absent`, `authorization_failure`); one that
    /// lacks a platform of those nodes (`placement`) is
    /// `platform_unavailable`; every other class wins.
    pub fn status_for(&self, placement: Option<&[NodeGroup]>) -> Status {
        self.judged(placement).map_or(self.status, |j| j.status())
    }

    /// The reason that goes with [`Outcome::status_for`].
    pub fn reason_for(&self, placement: Option<&[NodeGroup]>) -> String {
        self.judged(placement)
            .map_or_else(|| self.reason.clone(), |j| j.reason())
    }

    /// How a container whose pods can land on `placement` differs from an
    /// available check, if it does.
    fn judged<'a>(&'a self, placement: Option<&'a [NodeGroup]>) -> Option<Judged<'a>> {
        if self.status != Status::Available {
            return None;
        }
        judge(
            self.platforms.as_deref(),
            self.broken.as_deref().unwrap_or_default(),
            self.schema1,
            placement,
        )
    }
}

/// What a container shows: its check's verdict, or, while that check has
/// none yet, the verdict of the check it moved from (with the image label of
/// those series when the image changed). `None` when neither has a verdict.
pub fn shown<'a>(
    table: &'a HashMap<CheckId, Outcome>,
    check: CheckId,
    previous: Option<&'a crate::inventory::Previous>,
) -> Option<(&'a Outcome, Option<&'a str>)> {
    match (table.get(&check), previous) {
        (Some(o), _) => Some((o, None)),
        (None, Some(p)) => table.get(&p.check).map(|o| (o, p.image.as_deref())),
        (None, None) => None,
    }
}

/// Verdicts by check, written by the scheduler, read by `/metrics`.
#[derive(Debug, Default)]
pub struct Results {
    map: RwLock<HashMap<CheckId, Outcome>>,
}

impl Results {
    /// The verdict of a check, if it has one.
    pub fn get(&self, id: CheckId) -> Option<Outcome> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    /// Runs `f` with the whole table under one read lock.
    pub fn with<R>(&self, f: impl FnOnce(&HashMap<CheckId, Outcome>) -> R) -> R {
        f(&self.map.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Stores a verdict; one that repeats the last keeps its `since`.
    fn set(&self, id: CheckId, mut o: Outcome) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = map.get(&id) {
            if old.status == o.status && old.broken.is_some() == o.broken.is_some() {
                o.since = old.since;
            }
        }
        map.insert(id, o);
    }

    fn remove(&self, id: CheckId) {
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }
}

/// What the scheduler reports for each completed check (metrics).
pub trait Observer: Send + Sync {
    /// A check finished.
    fn completed(&self, spec: &CheckSpec, result: &CheckResult, duration: Duration);

    /// `checks` other checks took a finished check's shared answer.
    fn shared(&self, _checks: usize) {}
}

/// A finished check.
struct Done {
    spec: Arc<CheckSpec>,
    result: CheckResult,
    duration: Duration,
}

/// Runs one check (no request for an invalid reference).
pub fn run_check(checker: &Checker, spec: &CheckSpec) -> CheckResult {
    match &spec.target {
        Target::Image(m) => checker.check_mirrored(m, &spec.credentials),
        Target::Invalid(why) => CheckResult::without_requests(Status::BadImageFormat, why.clone()),
        Target::BrokenPullSecret(why) => {
            CheckResult::without_requests(Status::AuthenticationFailure, why.clone())
        }
    }
}

/// Starts `n` worker threads.
fn spawn_workers(
    n: usize,
    checker: Arc<Checker>,
    work: Receiver<Arc<CheckSpec>>,
    done: Sender<Done>,
) {
    for i in 0..n {
        let (checker, work, done) = (checker.clone(), work.clone(), done.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("check-{i}"))
            .spawn(move || {
                while let Ok(spec) = work.recv() {
                    let started = Instant::now();
                    let result = run_check(&checker, &spec);
                    if done
                        .send(Done {
                            spec,
                            result,
                            duration: started.elapsed(),
                        })
                        .is_err()
                    {
                        return;
                    }
                }
            });
        if let Err(e) = spawned {
            log::error!("cannot start check worker {i}: {e}");
        }
    }
}

/// Shared liveness of the scheduler, for `/healthz`.
#[derive(Debug, Default)]
pub struct Heartbeat {
    /// Unix milliseconds of the scheduler's last loop.
    pub last: AtomicU64,
}

impl Heartbeat {
    /// A heartbeat that has just beaten: the scheduler counts as alive
    /// from its start, before its thread first runs.
    pub fn started() -> Heartbeat {
        let h = Heartbeat::default();
        h.beat();
        h
    }

    fn beat(&self) {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        self.last.store(ms, Ordering::Relaxed);
    }

    /// Whether the scheduler looped within `within`.
    pub fn alive(&self, within: Duration) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        now.saturating_sub(self.last.load(Ordering::Relaxed)) <= within.as_millis() as u64
    }
}

/// Everything the scheduler thread needs.
pub struct Scheduler {
    /// Queue settings.
    pub config: QueueConfig,
    /// Worker threads.
    pub workers: usize,
    /// The registry checker shared by the workers.
    pub checker: Arc<Checker>,
    /// Check changes from the inventory.
    pub changes: Receiver<Change>,
    /// Verdicts for `/metrics`.
    pub results: Arc<Results>,
    /// Liveness.
    pub heartbeat: Arc<Heartbeat>,
    /// Metrics hooks.
    pub observer: Arc<dyn Observer>,
    /// Set to stop.
    pub stop: Arc<AtomicBool>,
    /// Where to say that a check has its first verdict (the inventory's
    /// event channel), so containers that moved to it stop showing their
    /// previous verdict.
    pub verdicts: Option<Sender<crate::inventory::Input>>,
}

impl Scheduler {
    /// Runs until `stop` is set or the inventory hangs up.
    pub fn run(self) {
        let (work_tx, work_rx) = crossbeam_channel::unbounded::<Arc<CheckSpec>>();
        let (done_tx, done_rx) = crossbeam_channel::unbounded::<Done>();
        spawn_workers(self.workers, self.checker.clone(), work_rx, done_tx);
        let mut queue = Queue::new(self.config.clone());
        let period = self.config.period;
        let mut next_tick = Instant::now() + period;
        self.heartbeat.beat();
        while !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let mut wake = next_tick.min(now + Duration::from_secs(1));
            if let Some(w) = queue.next_wakeup() {
                wake = wake.min(w);
            }
            let timeout = wake.saturating_duration_since(now);
            select! {
                recv(self.changes) -> c => match c {
                    Ok(Change::Added(spec)) => queue.add(spec, Instant::now()),
                    Ok(Change::Removed { id, keep_result }) => {
                        queue.remove(id);
                        if !keep_result {
                            self.results.remove(id);
                        }
                    }
                    Ok(Change::Forget(id)) => self.results.remove(id),
                    Err(_) => return,
                },
                recv(done_rx) -> d => if let Ok(d) = d {
                    let now = Instant::now();
                    queue.complete(d.spec.id, d.spec.registry(), &d.result, now);
                    self.observer.completed(&d.spec, &d.result, d.duration);
                    let previous = self.results.get(d.spec.id).map(|o| o.status);
                    log_result(&d.spec, &d.result, previous);
                    // A rate-limited check keeps its last known verdict.
                    if d.result.status != Status::RateLimited && queue.contains(d.spec.id) {
                        let outcome = Outcome::of(&d.result);
                        // The registry asked for no credentials: the image's
                        // checks with other credentials get this answer too.
                        let mut ids = vec![d.spec.id];
                        if d.result.shared {
                            ids.extend(queue.share(d.spec.id, &d.result, now));
                            self.observer.shared(ids.len() - 1);
                        }
                        for id in ids {
                            let first = self.results.get(id).is_none();
                            self.results.set(id, outcome.clone());
                            if first {
                                if let Some(tx) = &self.verdicts {
                                    let _ = tx.send(crate::inventory::Input::Verdict(id));
                                }
                            }
                        }
                    }
                },
                default(timeout) => {}
            }
            let now = Instant::now();
            if now >= next_tick {
                queue.tick();
                next_tick = now + period;
            }
            while let Some(spec) = queue.next(now) {
                if work_tx.send(spec).is_err() {
                    return;
                }
            }
            self.heartbeat.beat();
        }
    }
}

/// Logs a verdict at info level when it changes, at debug level when it repeats.
fn log_result(spec: &CheckSpec, r: &CheckResult, previous: Option<Status>) {
    let name = match &spec.target {
        Target::Image(m) => m.reference.to_string(),
        Target::Invalid(_) => "invalid image".to_string(),
        Target::BrokenPullSecret(_) => "image of a pod with a broken pull secret".to_string(),
    };
    let changed = previous != Some(r.status);
    match r.status {
        Status::RateLimited => log::warn!("{name}: {}", r.reason),
        Status::Available if changed && previous.is_some() => log::info!("{name}: available again"),
        s if changed && s != Status::Available => log::info!("{name}: {s}: {}", r.reason),
        s => log::debug!("{name}: {s} ({} requests): {}", r.requests, r.reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::reference::{Mirrored, Reference};

    fn spec(id: CheckId, image: &str) -> Arc<CheckSpec> {
        let reference = Reference::parse(image).unwrap();
        Arc::new(CheckSpec {
            id,
            target: Target::Image(Mirrored::direct(reference)),
            credentials: vec![],
        })
    }

    fn cfg() -> QueueConfig {
        QueueConfig {
            period: Duration::from_secs(15),
            recheck_within: Duration::from_secs(600),
            max_per_registry: 2,
            max_in_flight: 100,
        }
    }

    fn result(status: Status) -> CheckResult {
        CheckResult {
            retry_after: Some(Duration::from_secs(30)),
            ..CheckResult::without_requests(status, "")
        }
    }

    fn drain(q: &mut Queue, now: Instant) -> Vec<CheckId> {
        std::iter::from_fn(|| q.next(now).map(|s| s.id)).collect()
    }

    fn with_credentials(id: CheckId, image: &str, user: &str) -> Arc<CheckSpec> {
        let reference = Reference::parse(image).unwrap();
        Arc::new(CheckSpec {
            id,
            target: Target::Image(Mirrored::direct(reference)),
            credentials: vec![Arc::new(crate::credentials::Credential::new(
                format!("secret ns/{user}"),
                "r.io",
                user,
                "pw",
            ))],
        })
    }

    #[test]
    fn checks_of_one_image_run_one_at_a_time_and_share_an_open_answer() {
        let mut q = Queue::new(cfg());
        let t = Instant::now();
        q.add(spec(1, "r.io/a:1"), t);
        q.add(with_credentials(2, "r.io/a:1", "u"), t);
        q.add(with_credentials(3, "r.io/a:1", "v"), t);
        q.add(spec(4, "r.io/b:1"), t);
        // One check of image a at a time; b is another image.
        assert_eq!(drain(&mut q, t), vec![1, 4]);
        // The registry asked for no credentials: 2 and 3 take the answer.
        let open = CheckResult {
            shared: true,
            ..result(Status::Available)
        };
        assert_eq!(q.share(1, &open, t), vec![2, 3]);
        q.complete(1, "r.io", &open, t);
        assert!(drain(&mut q, t).is_empty(), "nothing left to send");
        // It asked: the next check of the image runs after this one.
        q.add(with_credentials(5, "r.io/c:1", "u"), t);
        q.add(with_credentials(6, "r.io/c:1", "v"), t);
        assert_eq!(drain(&mut q, t), vec![5]);
        q.complete(5, "r.io", &result(Status::Available), t);
        assert_eq!(drain(&mut q, t), vec![6]);
        q.complete(4, "r.io", &result(Status::Available), t);
        q.complete(6, "r.io", &result(Status::Available), t);
        // A check removed while it runs still frees its image.
        q.add(with_credentials(7, "r.io/d:1", "u"), t);
        q.add(with_credentials(8, "r.io/d:1", "v"), t);
        assert_eq!(drain(&mut q, t), vec![7]);
        q.remove(7);
        q.complete(7, "r.io", &result(Status::Available), t);
        assert_eq!(drain(&mut q, t), vec![8]);
    }

    #[test]
    fn batch_size_covers_everything_within_the_window() {
        let mut q = Queue::new(cfg());
        let t = Instant::now();
        assert_eq!(q.batch_size(), 0);
        for i in 0..5000 {
            q.add(spec(i, &format!("r{}.io/a:{i}", i % 50)), t);
        }
        // 5000 checks, 15 s period, 10 min window: 40 periods, 125 per period.
        assert_eq!(q.batch_size(), 125);
        let mut q = Queue::new(QueueConfig {
            recheck_within: Duration::from_secs(5),
            ..cfg()
        });
        q.add(spec(1, "a"), t);
        assert_eq!(q.batch_size(), 1);
    }

    #[test]
    fn new_checks_first_then_failures_then_least_recent() {
        let t0 = Instant::now();
        let mut q = Queue::new(QueueConfig {
            max_per_registry: 100,
            ..cfg()
        });
        for i in 1..=4 {
            q.add(spec(i, &format!("r.io/a:{i}")), t0);
        }
        assert_eq!(
            drain(&mut q, t0),
            [1, 2, 3, 4],
            "new checks run at once, in arrival order"
        );
        let t1 = t0 + Duration::from_secs(1);
        q.complete(1, "r.io", &result(Status::Available), t1);
        q.complete(2, "r.io", &result(Status::Absent), t1);
        q.complete(
            3,
            "r.io",
            &result(Status::Available),
            t1 + Duration::from_secs(1),
        );
        q.complete(
            4,
            "r.io",
            &result(Status::Available),
            t1 + Duration::from_secs(2),
        );
        // A newcomer jumps the queue even without allowance.
        q.add(spec(5, "r.io/a:5"), t1);
        let t2 = t1 + Duration::from_secs(20);
        assert_eq!(
            drain(&mut q, t2),
            [5, 2],
            "new, then the failure whose backoff (15 s) passed; routine ones wait for a tick"
        );
        q.tick(); // allowance 1 for 5 checks
        assert_eq!(drain(&mut q, t2), [1], "the least recently checked");
        q.tick();
        assert_eq!(drain(&mut q, t2), [3]);
    }

    #[test]
    fn failures_back_off_exponentially() {
        let t0 = Instant::now();
        let mut q = Queue::new(cfg());
        q.add(spec(1, "r.io/a"), t0);
        let mut t = t0;
        for expected in [15u64, 30, 60, 120, 240, 480, 600, 600] {
            assert_eq!(drain(&mut q, t), [1]);
            q.complete(1, "r.io", &result(Status::RegistryUnavailable), t);
            assert!(drain(
                &mut q,
                t + Duration::from_secs(expected) - Duration::from_millis(1)
            )
            .is_empty());
            t += Duration::from_secs(expected);
        }
    }

    #[test]
    fn per_registry_limit_and_rate_limit_pause() {
        let t0 = Instant::now();
        let mut q = Queue::new(cfg());
        for i in 1..=3 {
            q.add(spec(i, &format!("busy.io/a:{i}")), t0);
        }
        q.add(spec(4, "other.io/b"), t0);
        assert_eq!(
            drain(&mut q, t0),
            [1, 2, 4],
            "two per registry; the third waits"
        );
        q.complete(1, "busy.io", &result(Status::RateLimited), t0);
        assert!(
            drain(&mut q, t0).is_empty(),
            "busy.io is paused for its Retry-After"
        );
        q.complete(2, "busy.io", &result(Status::Available), t0);
        assert!(drain(&mut q, t0 + Duration::from_secs(29)).is_empty());
        let mut after = drain(&mut q, t0 + Duration::from_secs(31));
        after.sort();
        assert_eq!(
            after,
            [1, 3],
            "after the pause the rate-limited check (still never checked) and the waiting one run"
        );
    }

    #[test]
    fn removed_checks_are_not_run() {
        let t0 = Instant::now();
        let mut q = Queue::new(cfg());
        q.add(spec(1, "a"), t0);
        q.add(spec(2, "b"), t0);
        q.remove(1);
        assert_eq!(drain(&mut q, t0), [2]);
        q.complete(2, "registry-1.docker.io", &result(Status::Available), t0);
        q.remove(2);
        q.tick();
        assert!(drain(&mut q, t0 + Duration::from_secs(100)).is_empty());
        assert!(q.is_empty());
    }
}
