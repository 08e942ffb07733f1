//! Watch loops against an apiserver (or a proxy in front of one) that
//! misbehaves: every watch closed at once, every watch answered with an
//! ERROR event, every request throttled with 429. Whatever the server does,
//! a stream stays within a few requests per second, says it is failing, and
//! recovers when the server does (client-go's reflector is the reference).

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use k8s_image_availability_exporter::inventory::InventoryConfig;
use k8s_image_availability_exporter::kube::resources::{Kind, Resource};
use k8s_image_availability_exporter::kube::watch::{Stream, WatchOptions};
use support::apiserver::{FakeApiServer, Misbehaviour, ServerAuth};
use support::cluster::{fast_watch, registry_config, Watching};
use support::wait_until;

/// How long each misbehaviour is watched.
const WINDOW: Duration = Duration::from_secs(8);

fn start() -> (FakeApiServer, Watching) {
    start_with(fast_watch())
}

fn start_with(opts: WatchOptions) -> (FakeApiServer, Watching) {
    let api = FakeApiServer::start(ServerAuth::Tokens(vec!["t".into()]));
    let kc = api.kubeconfig(&FakeApiServer::token_user("t"));
    api.deploy("a", "web", "reg.io/web:1");
    let streams = vec![Stream {
        resource: Resource::Workload(Kind::Deployment),
        namespace: None,
        label_selector: None,
    }];
    let config = InventoryConfig {
        registry: Some(registry_config()),
        ..Default::default()
    };
    let w = Watching::start(&kc, streams, opts, config);
    w.wait_synced();
    (api, w)
}

/// (lists, watches) the server has answered for deployments.
fn counts(api: &FakeApiServer) -> (usize, usize) {
    let reqs: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.path == "/apis/apps/v1/deployments")
        .collect();
    let watches = reqs
        .iter()
        .filter(|r| r.query.contains_key("watch"))
        .count();
    (reqs.len() - watches, watches)
}

/// Runs `m` for [`WINDOW`], prints and returns the requests per second, and
/// checks the stream reports itself failing; then lets the server recover
/// and checks a new object arrives.
fn measure(m: Misbehaviour) -> f64 {
    let (api, w) = start();
    let (l0, w0) = counts(&api);
    api.misbehave(m);
    let started = Instant::now();
    // Let the current healthy watch end (fast_watch: 2-4 s) and the
    // misbehaviour take hold, then count over the window.
    let state = w.streams[0].1.clone();
    wait_until("the stream to notice", Duration::from_secs(10), || {
        state.failures.load(Ordering::Relaxed) > 0
    });
    let f1 = state.failures.load(Ordering::Relaxed);
    let (l1, w1) = counts(&api);
    let t1 = Instant::now();
    std::thread::sleep(WINDOW);
    let (l2, w2) = counts(&api);
    let secs = t1.elapsed().as_secs_f64();
    let rate = ((l2 - l1) + (w2 - w1)) as f64 / secs;
    println!(
        "{m:?}: {} lists and {} watches in {secs:.1} s ({rate:.2} requests/s); before: {} lists, {} watches; noticed after {:.1?}",
        l2 - l1,
        w2 - w1,
        l1 - l0,
        w1 - w0,
        t1 - started
    );
    assert!(
        state.failures.load(Ordering::Relaxed) > f1,
        "failures are counted"
    );
    if m != Misbehaviour::ErrorEveryWatch {
        // Nothing gets through: the stream says so, for as long as it lasts.
        // (With ERROR events each relist still brings the current state.)
        let (failing, why) = state.failing_for().expect("still failing");
        assert!(failing >= WINDOW, "failing for {failing:?}: {why}");
    }
    api.misbehave(Misbehaviour::None);
    api.deploy("a", "after", "reg.io/after:1");
    // The backoff is at most 30 s (with jitter up to 37.5 s).
    let deadline = Instant::now() + Duration::from_secs(45);
    while Instant::now() < deadline {
        if w.seen().iter().any(|s| s.image == "reg.io/after:1") {
            wait_until(
                "the stream to say it recovered",
                Duration::from_secs(10),
                || state.failing_for().is_none(),
            );
            return rate;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the stream did not recover after {m:?}");
}

#[test]
fn watches_closed_at_once_back_off() {
    let rate = measure(Misbehaviour::CloseWatchesAtOnce);
    // 0.8 s doubling: about 4 requests in 8 s. Without backoff it was thousands.
    assert!(rate < 1.5, "{rate:.2} requests/s");
}

#[test]
fn error_events_back_off_before_relisting() {
    let rate = measure(Misbehaviour::ErrorEveryWatch);
    assert!(rate < 1.5, "{rate:.2} requests/s");
}

#[test]
fn throttling_honours_retry_after() {
    // Retry-After: 3 is longer than the first backoff steps (0.8, 1.6 s).
    let rate = measure(Misbehaviour::Throttle(3));
    assert!(rate <= 1.0 / 3.0 + 0.15, "{rate:.2} requests/s");
}

/// One broken watch, then a quiet healthy one: the stream is not reported
/// failing for the minutes the quiet watch may last before its first event.
#[test]
fn a_broken_watch_followed_by_a_quiet_one_is_progress() {
    // Watches that stay open (and quiet) far longer than the wait below.
    let (api, w) = start_with(WatchOptions {
        watch_timeout: Duration::from_secs(60),
        ..fast_watch()
    });
    let state = w.streams[0].1.clone();
    api.drop_watches();
    wait_until("the break to be noticed", Duration::from_secs(10), || {
        state.failures.load(Ordering::Relaxed) > 0
    });
    wait_until(
        "the new watch to count as progress",
        Duration::from_secs(10),
        || state.failing_for().is_none(),
    );
}
