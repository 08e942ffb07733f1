//! Builds the running exporter from a validated configuration: watch loops
//! -> inventory -> scheduler and workers -> metrics and the HTTP server; and
//! the one-shot `--once` mode.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::check_command::{self, Row, WorkloadRef};
use crate::config::Config;
use crate::exporter::auth::Gate;
use crate::exporter::metrics::Metrics;
use crate::exporter::request::Limits;
use crate::exporter::scheduler::{self, Heartbeat, Results, Scheduler};
use crate::exporter::server;
use crate::inventory::{self, Inventory, SyncProgress};
use crate::kube::client::ApiClient;
use crate::kube::config::discover;
use crate::kube::watch::{self, Stream, StreamState};
use crate::registry::{CheckResult, Checker, Status};
use crate::sys::signal;

/// How long `--once` waits for the first lists.
const ONCE_SYNC_TIMEOUT: Duration = Duration::from_secs(120);

/// How long checks wait at most for credential sources that neither list nor refuse.
const GATE_TIMEOUT: Duration = Duration::from_secs(60);

/// Exit status for a configuration or environment problem.
const EXIT_USAGE: u8 = 2;

fn fail(msg: impl std::fmt::Display) -> u8 {
    eprintln!("error: {msg}");
    EXIT_USAGE
}

/// The Kubernetes half, started.
struct Watching {
    inventory: Arc<RwLock<Inventory>>,
    progress: Arc<SyncProgress>,
    streams: Vec<(Stream, Arc<StreamState>)>,
    /// The inventory's event channel, for the scheduler's verdict notices.
    events: crossbeam_channel::Sender<inventory::Input>,
}

fn start_watching(
    config: &Config,
    client: Arc<ApiClient>,
    changes: Option<crossbeam_channel::Sender<inventory::Change>>,
    stop: Arc<AtomicBool>,
) -> Watching {
    let streams = config.kube.streams();
    let progress = Arc::new(SyncProgress {
        expected: streams.len(),
        ..Default::default()
    });
    let inventory = Arc::new(RwLock::new(Inventory::new(
        config.kube.inventory_config(&config.registry),
    )));
    let (tx, rx) = crossbeam_channel::unbounded();
    let events = tx.clone();
    let states = watch::spawn_all(client, streams, config.kube.watch.clone(), tx, stop);
    let gate = settled_gate(&states, progress.clone());
    let (inv, prog) = (inventory.clone(), progress.clone());
    let spawned = std::thread::Builder::new()
        .name("inventory".into())
        .spawn(move || inventory::run(rx, inv, changes, prog, Some(gate)));
    if let Err(e) = spawned {
        log::error!("cannot start the inventory thread: {e}");
    }
    Watching {
        inventory,
        progress,
        streams: states,
        events,
    }
}

/// Opens when every stream has listed or been refused, or after
/// [`GATE_TIMEOUT`], saying which sources the checks go without.
fn settled_gate(
    states: &[(Stream, Arc<StreamState>)],
    progress: Arc<SyncProgress>,
) -> inventory::Gate {
    let streams = states.to_vec();
    let started = Instant::now();
    Arc::new(move || {
        let done = settled(&streams, &progress);
        if !done && started.elapsed() <= GATE_TIMEOUT {
            return false;
        }
        for (s, st) in &streams {
            if st.denied.load(Ordering::SeqCst) {
                log::warn!(
                    "{} could not be listed (refused); checking without it",
                    s.describe()
                );
            } else if !st.synced.load(Ordering::SeqCst) {
                log::warn!(
                    "starting checks before the first list of {} finished",
                    s.describe()
                );
            }
        }
        true
    })
}

/// Every stream has listed or been refused, and the inventory has applied
/// every list that arrived (a loop marks itself synced before the inventory
/// has read its objects from the channel).
fn settled(states: &[(Stream, Arc<StreamState>)], progress: &SyncProgress) -> bool {
    let synced = states
        .iter()
        .filter(|(_, s)| s.synced.load(Ordering::SeqCst))
        .count();
    states.iter().all(|(_, s)| s.settled()) && progress.synced.load(Ordering::SeqCst) >= synced
}

/// Runs the exporter (or `--once`); returns the exit status.
pub fn run(config: &Config) -> u8 {
    let cluster = match discover(
        config.kube.kubeconfig.as_deref(),
        config.kube.context.as_deref(),
    ) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    log::info!("API server {} from {}", cluster.server, cluster.source);
    let client = match ApiClient::new(cluster) {
        Ok(c) => Arc::new(c),
        Err(e) => return fail(format!("API server client: {e}")),
    };
    let metrics =
        Arc::new(Metrics::new().one_series_per_container(config.exporter.one_series_per_container));
    metrics.set_recheck_within(config.exporter.queue.recheck_within);
    if let Some(p) = &config.registry.checker.providers {
        for c in p.collectors() {
            metrics.register(c);
        }
    }
    let checker = match Checker::new(config.registry.checker.clone()) {
        Ok(c) => Arc::new(c.with_observer(metrics.clone())),
        Err(e) => return fail(e),
    };
    if config.exporter.once {
        return once(config, client, &checker);
    }
    let listener = match server::bind(&config.exporter.bind_address) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    // With TLS configured nothing is served without it; its certificates were
    // loaded (and a bad one stopped the start) when the flags were read.
    let tls = config.exporter.tls.clone();
    signal::install();
    let stop = Arc::new(AtomicBool::new(false));
    let (changes_tx, changes_rx) = crossbeam_channel::unbounded();
    let w = start_watching(config, client, Some(changes_tx), stop.clone());
    let results = Arc::new(Results::default());
    let heartbeat = Arc::new(Heartbeat::started());
    let sched = Scheduler {
        config: config.exporter.queue.clone(),
        workers: config.exporter.workers,
        checker,
        changes: changes_rx,
        results: results.clone(),
        heartbeat: heartbeat.clone(),
        observer: metrics.clone(),
        stop: stop.clone(),
        verdicts: Some(w.events.clone()),
    };
    if let Err(e) = std::thread::Builder::new()
        .name("scheduler".into())
        .spawn(move || sched.run())
    {
        return fail(format!("cannot start the scheduler: {e}"));
    }
    let state = Arc::new(server::State {
        metrics,
        inventory: w.inventory,
        results,
        streams: w.streams,
        progress: w.progress,
        heartbeat,
        stream_stall: config.kube.watch.watch_timeout.max(Duration::from_secs(1)),
        gate: Gate::new(&config.exporter.web),
        notes: if config.kube.no_secrets {
            vec!["pull secrets are not read (--no-secrets): images are checked anonymously or with --docker-config and credential provider credentials".into()]
        } else {
            Vec::new()
        },
    });
    let scheme = if tls.is_some() { "https" } else { "http" };
    let http = match server::spawn(listener, state, Limits::default(), tls) {
        Ok(f) => f,
        Err(e) => return fail(format!("cannot start the HTTP server: {e}")),
    };
    log::info!(
        "serving /metrics, /healthz and /readyz on {scheme}://{}{}; checking every {:?}, each image at least every {:?}",
        http.local_addr(),
        if config.exporter.web.users.is_empty() {
            ""
        } else {
            " (basic auth but for /healthz and /readyz)"
        },
        config.exporter.queue.period,
        config.exporter.queue.recheck_within
    );
    while !signal::requested() {
        std::thread::sleep(Duration::from_millis(50));
    }
    log::info!("stopping");
    stop.store(true, Ordering::SeqCst);
    http.stop();
    0
}

/// `--once`: first lists, one check of everything, a report, an exit status.
fn once(config: &Config, client: Arc<ApiClient>, checker: &Checker) -> u8 {
    let stop = Arc::new(AtomicBool::new(false));
    let w = start_watching(config, client, None, stop.clone());
    let deadline = Instant::now() + ONCE_SYNC_TIMEOUT;
    // Refused sources (no Secrets access) are warned about and done without.
    while !settled(&w.streams, &w.progress) {
        if Instant::now() > deadline {
            let waiting = watch::unsynced(&w.streams);
            return fail(format!(
                "the first list did not finish within {ONCE_SYNC_TIMEOUT:?} for: {}",
                waiting.join(", ")
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // A workload kind that cannot be listed means the report would be
    // silent about it: that is an error, not "0 not available".
    let refused: Vec<String> = w
        .streams
        .iter()
        .filter(|(s, _)| s.resource.required())
        .filter_map(|(s, st)| watch::refusal(s, st))
        .collect();
    if !refused.is_empty() {
        stop.store(true, Ordering::SeqCst);
        return fail(format!(
            "cannot report on every workload:\n  {}\n(see deploy/10-rbac.yaml)",
            refused.join("\n  ")
        ));
    }
    for (s, st) in &w.streams {
        if let Some(why) = watch::refusal(s, st) {
            log::warn!("{why}; checking without it");
        }
    }
    let specs: Vec<Arc<inventory::CheckSpec>> = w
        .inventory
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .checks()
        .cloned()
        .collect();
    let results: HashMap<inventory::CheckId, CheckResult> =
        run_all(checker, &specs, config.exporter.workers);
    stop.store(true, Ordering::SeqCst);
    let mut rows = Vec::new();
    let inv = w.inventory.read().unwrap_or_else(|e| e.into_inner());
    inv.for_each_container(|wl, i, id| {
        let Some(result) = results.get(&id) else {
            return;
        };
        let placement = inv.placement(wl).unwrap_or_default();
        let result = check_command::against(result.clone(), placement);
        if result.status == Status::Available {
            return;
        }
        let c = &wl.containers[i];
        let target = inv.check(id).and_then(|s| s.target.image());
        let workload = WorkloadRef {
            namespace: wl.key.namespace.to_string(),
            kind: wl.kind.as_str().to_string(),
            name: wl.key.name.to_string(),
            container: c.container.to_string(),
        };
        rows.push(Row::new(Some(workload), &c.image, target, result));
    });
    rows.sort_by(|a, b| {
        let key = |r: &Row| {
            r.workload.as_ref().map(|w| {
                (
                    w.namespace.clone(),
                    w.kind.clone(),
                    w.name.clone(),
                    w.container.clone(),
                )
            })
        };
        key(a).cmp(&key(b))
    });
    let s = inv.summary();
    drop(inv);
    log::info!(
        "checked {} distinct checks for {} containers: {} not available",
        specs.len(),
        s.containers,
        rows.len()
    );
    if let Err(e) = check_command::print(&rows, config.output, &mut std::io::stdout().lock()) {
        return fail(format!("writing output: {e}"));
    }
    if rows.is_empty() {
        0
    } else {
        1
    }
}

/// Runs every check once on `workers` threads.
fn run_all(
    checker: &Checker,
    specs: &[Arc<inventory::CheckSpec>],
    workers: usize,
) -> HashMap<inventory::CheckId, CheckResult> {
    let next = AtomicUsize::new(0);
    let out = std::sync::Mutex::new(HashMap::with_capacity(specs.len()));
    std::thread::scope(|scope| {
        for _ in 0..workers.min(specs.len()).max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(spec) = specs.get(i) else { return };
                let r = scheduler::run_check(checker, spec);
                out.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(spec.id, r);
            });
        }
    });
    out.into_inner().unwrap_or_else(|e| e.into_inner())
}
