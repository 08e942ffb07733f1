//! Cluster-scale benchmark: a synthetic cluster in the fake apiserver, a fast
//! in-process registry with bearer tokens and latency, and the real exporter
//! binary as a separate process. Prints a table of what it measured.
//!
//! Run: cargo bench --bench cluster            (defaults below)
//!      cargo bench --bench cluster -- --help  (sizes are flags)
//! Under `cargo test` it runs at a smoke size.

#[path = "../support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use argh::FromArgs;
use support::apiserver::{FakeApiServer, ServerAuth};
use support::bench_registry::BenchRegistry;
use support::exporter::{parse_metrics, Exporter, Sample};
use support::objects::*;
use support::wait_until;

/// Cluster-scale benchmark of the exporter.
#[derive(FromArgs)]
struct Opts {
    /// workloads (mixed kinds). Defaults to 10000.
    #[argh(option, default = "10000")]
    workloads: usize,
    /// namespaces. Defaults to 200.
    #[argh(option, default = "200")]
    namespaces: usize,
    /// containers per workload. Defaults to 3.
    #[argh(option, default = "3")]
    containers: usize,
    /// distinct images (10 tags per repository). Defaults to 5000.
    #[argh(option, default = "5000")]
    images: usize,
    /// pull secrets. Defaults to 1000.
    #[argh(option, default = "1000")]
    pull_secrets: usize,
    /// other secrets (Helm-release-like, 50-100 KiB). Defaults to 19000.
    #[argh(option, default = "19000")]
    helm_secrets: usize,
    /// registry latency per request in ms. Defaults to 20.
    #[argh(option, default = "20")]
    latency_ms: u64,
    /// token lifetime the registry grants, seconds. Defaults to 3600.
    #[argh(option, default = "3600")]
    token_lifetime: u64,
    /// seconds of steady state to measure. Defaults to 60.
    #[argh(option, default = "60")]
    steady_seconds: u64,
    /// nodes (two in three amd64, the rest arm64); every image is an index
    /// of both. Defaults to 100.
    #[argh(option, default = "100")]
    nodes: usize,
    /// pods of the workloads' controllers (ReplicaSets, StatefulSets,
    /// DaemonSets, CronJobs' Jobs), which the exporter covers through the
    /// templates: each with a 2 KiB annotation and 20 env vars. Defaults to 10000.
    #[argh(option, default = "10000")]
    pods: usize,
    /// bare pods (no controller), each checked as kind=pod. Defaults to 100.
    #[argh(option, default = "100")]
    bare_pods: usize,
    /// workloads changed at once for the watch throughput figure. Defaults to 1000.
    #[argh(option, default = "1000")]
    changes: usize,
    /// which pull secrets workloads name: `shared` (every workload names
    /// one robot account's secret), `mixed` (half of each namespace's
    /// workloads name it, half none), `per-namespace` (each namespace has
    /// its own robot account). Defaults to shared.
    #[argh(option, default = "String::from(\"shared\")")]
    credentials: String,
    /// the registry never asks for credentials (no 401 challenge).
    #[argh(switch)]
    open_registry: bool,
    /// stop (SIGTERM) right after the initial sync: for a heap profiler
    /// wrapped around the exporter (KIAE_EXPORTER_BIN), which writes its
    /// profile when the process exits.
    #[argh(switch)]
    stop_after_sync: bool,
    /// accepted for `cargo bench` compatibility.
    #[argh(switch)]
    bench: bool,
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (n(11) + n(12)) / 100.0
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn counter(samples: &[Sample], name: &str) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .map(|s| s.value)
        .sum()
}

/// One tag in ten is missing from the registry, so the status page has rows.
fn image(registry: &str, i: usize) -> String {
    match i % 10 {
        9 => format!("{registry}/bench/repo-{}:missing9", i / 10),
        t => format!("{registry}/bench/repo-{}:v{t}", i / 10),
    }
}

fn main() {
    let o: Opts = support::bench_opts("cluster");
    // `cargo test --all-targets` runs this file too (without --bench): a
    // smoke size proves it works in seconds; the full size is for `cargo bench`.
    let o = if o.bench {
        o
    } else {
        println!("smoke size under cargo test; `cargo bench --bench cluster` runs the full size");
        Opts {
            workloads: 200,
            namespaces: 10,
            images: 100,
            pull_secrets: 20,
            helm_secrets: 50,
            steady_seconds: 2,
            changes: 20,
            nodes: 6,
            pods: 200,
            bare_pods: 5,
            ..o
        }
    };
    if !["shared", "mixed", "per-namespace"].contains(&o.credentials.as_str()) {
        println!("--credentials: shared, mixed or per-namespace");
        std::process::exit(2);
    }
    let reg = BenchRegistry::start(
        Duration::from_millis(o.latency_ms),
        "bench-password",
        o.token_lifetime,
        o.open_registry,
    );
    let api = FakeApiServer::start(ServerAuth::Tokens(vec!["bench".into()]));
    let kc = api.kubeconfig(&FakeApiServer::token_user("bench"));

    let t = Instant::now();
    let per_ns = o.pull_secrets.div_ceil(o.namespaces).max(1);
    let ns = |i: usize| format!("ns-{:03}", i % o.namespaces);
    for i in 0..o.pull_secrets {
        // One robot account replicated into every namespace, as is common;
        // or one per namespace.
        let user = if o.credentials == "per-namespace" {
            format!("robot-{}", ns(i))
        } else {
            "bench".to_string()
        };
        api.apply(
            "secrets",
            pull_secret(
                &ns(i),
                &format!("regcred-{}", i / o.namespaces),
                &reg.host,
                &user,
                "bench-password",
            ),
        );
    }
    for i in 0..o.helm_secrets {
        let size = 50 * 1024 + (i * 7919) % (50 * 1024);
        api.apply(
            "secrets",
            helm_secret(&ns(i), &format!("sh.helm.release.v1.app-{i}.v1"), size),
        );
    }
    for n in 0..o.namespaces {
        api.apply(
            "serviceaccounts",
            service_account(&ns(n), "default", &["regcred-0"]),
        );
        api.apply("serviceaccounts", service_account(&ns(n), "bare", &[]));
    }
    for n in 0..o.nodes {
        let arch = if n % 3 == 2 { "arm64" } else { "amd64" };
        let name = format!("node-{n}");
        api.apply(
            "nodes",
            serde_json::json!({
                "metadata": {"name": name, "labels": {"kubernetes.io/arch": arch, "kubernetes.io/os": "linux", "kubernetes.io/hostname": name}},
                "status": {"nodeInfo": {"architecture": arch, "operatingSystem": "linux"}},
            }),
        );
    }
    let mut containers = 0;
    for w in 0..o.workloads {
        // In `mixed`, every other workload of a namespace names no secret
        // (and its service account none either).
        let names_secret = o.credentials != "mixed" || (w / o.namespaces) % 2 == 0;
        let mut t = Template {
            containers: vec![],
            init_containers: vec![],
            pull_secrets: if names_secret {
                vec![format!("regcred-{}", w % per_ns)]
            } else {
                vec![]
            },
            service_account: Some(if names_secret { "default" } else { "bare" }.into()),
        };
        for c in 0..o.containers {
            t.containers.push((
                format!("c{c}"),
                image(&reg.host, (w * o.containers + c) % o.images),
            ));
            containers += 1;
        }
        let (namespace, name) = (ns(w), format!("w-{w}"));
        match w % 5 {
            0 | 1 => api.apply("deployments", deployment(&namespace, &name, 2, &t)),
            2 => api.apply("statefulsets", statefulset(&namespace, &name, 1, &t)),
            3 => api.apply("daemonsets", daemonset(&namespace, &name, 3, &t)),
            _ => api.apply("cronjobs", cronjob(&namespace, &name, false, &t)),
        };
    }
    // Pods as their controllers make them: most covered by a template we
    // check, a few bare. Sized as a real apiserver sends them (the fake adds
    // status and managedFields): a 2 KiB annotation, 20 env vars.
    let note: String = "x".repeat(2048);
    let pod_of = |i: usize, owner: Option<(&str, &str, &str)>, name: &str, w: usize| {
        let mut t = Template::image(&image(&reg.host, (w * o.containers) % o.images));
        t.pull_secrets = vec![format!("regcred-{}", w % per_ns)];
        let mut p = serde_json::to_value(pod(&ns(w), name, owner, "Running", &t)).unwrap();
        p["metadata"]["annotations"] = serde_json::json!({"example.com/config": note});
        p["spec"]["nodeName"] = serde_json::json!(format!("node-{}", i % o.nodes.max(1)));
        p["spec"]["containers"][0]["env"] = (0..20)
            .map(|k| serde_json::json!({"name": format!("SETTING_{k}"), "value": format!("value-{k}-of-{name}")}))
            .collect();
        // What its runtime reports, as containerd writes it: the digest
        // each pod runs (for tag_moved).
        let img = t.containers[0].1.clone();
        let repo = img
            .rsplit_once(':')
            .map_or(img.as_str(), |(r, _)| r)
            .to_string();
        let image_index = (w * o.containers) % o.images;
        p["status"]["containerStatuses"] = serde_json::json!([{
            "name": "app",
            "image": img,
            "imageID": format!("{repo}@sha256:{image_index:064x}"),
            "containerID": format!("containerd://{i:064x}"),
            "ready": true,
            "restartCount": 0,
            "started": true,
            "state": {"running": {"startedAt": "2026-12-01T10:00:00Z"}},
        }]);
        p
    };
    for i in 0..o.pods {
        let w = i % o.workloads.max(1);
        let base = format!("w-{w}");
        let (owner_kind, api_version, owner) = match w % 5 {
            0 | 1 => ("ReplicaSet", "apps/v1", format!("{base}-5d4f8c7b9")),
            2 => ("StatefulSet", "apps/v1", base.clone()),
            3 => ("DaemonSet", "apps/v1", base.clone()),
            _ => ("Job", "batch/v1", format!("{base}-29012345")),
        };
        let name = format!("{owner}-{i}");
        let mut p = pod_of(i, Some((api_version, owner_kind, owner.as_str())), &name, w);
        if owner_kind == "ReplicaSet" {
            p["metadata"]["labels"]["pod-template-hash"] = serde_json::json!("5d4f8c7b9");
        }
        api.apply("pods", p);
    }
    for i in 0..o.bare_pods {
        api.apply("pods", pod_of(i, None, &format!("bare-{i}"), i));
        containers += 1;
    }
    let generated = t.elapsed();
    eprintln!("generated the cluster in {generated:.1?}");

    let started = Instant::now();
    let mut e = Exporter::start(
        &kc,
        &["--plain-http-registries", &reg.host, "--log-level", "warn"],
    );
    let pid = e.pid();
    wait_until("initial sync", Duration::from_secs(600), || {
        e.get("/readyz").0 == 200
    });
    let sync_time = started.elapsed();
    let cpu_sync = cpu_seconds(pid);
    let rss_sync = support::proc_status_kib(pid, "VmRSS:");
    let heap = |m: &[Sample], state: &str| {
        m.iter()
            .find(|s| {
                s.name == "k8s_image_availability_exporter_heap_bytes"
                    && s.labels.get("state").map(String::as_str) == Some(state)
            })
            .map(|s| (s.value / 1024.0) as u64)
            .unwrap_or(0)
    };
    let m = e.metrics();
    let heap_sync = (heap(&m, "in_use"), heap(&m, "free"));
    if o.stop_after_sync {
        let (code, _) = e.terminate();
        println!(
            "initial sync: {sync_time:.2?}, RSS {}, heap in use {}, free {}; exit {code:?}",
            mib(rss_sync),
            mib(heap_sync.0),
            mib(heap_sync.1)
        );
        return;
    }

    wait_until("every image checked", Duration::from_secs(600), || {
        reg.counters.answered() >= o.images
    });
    let all_requested = started.elapsed();
    // Every container has a series once its check's result is stored.
    let mut scrapes = 0;
    wait_until("every container reported", Duration::from_secs(120), || {
        scrapes += 1;
        let m = e.metrics();
        m.iter()
            .filter(|s| {
                s.name == "k8s_image_availability_exporter_available"
                    || s.name == "k8s_image_availability_exporter_absent"
            })
            .count()
            >= containers
    });
    let all_results = started.elapsed();
    let cpu_first = cpu_seconds(pid);
    let (m1, t1, x1) = reg.counters.snapshot();
    let images1 = reg.counters.per_image();
    let g1 = reg
        .counters
        .platform_gets
        .load(std::sync::atomic::Ordering::SeqCst);
    let b1 = reg
        .counters
        .blob_requests
        .load(std::sync::atomic::Ordering::SeqCst);
    let samples = e.metrics();
    let completed1 = counter(
        &samples,
        "k8s_image_availability_exporter_completed_rechecks_total",
    );
    let checks = counter(&samples, "k8s_image_availability_exporter_checks");
    let shared1 = counter(
        &samples,
        "k8s_image_availability_exporter_shared_results_total",
    );
    let peak_after_first = support::proc_status_kib(pid, "VmHWM:");

    // Steady state.
    let cpu_s0 = cpu_seconds(pid);
    std::thread::sleep(Duration::from_secs(o.steady_seconds));
    let cpu_s1 = cpu_seconds(pid);
    // The registry's counters just before the scrape, whose counters are
    // rendered as it starts: reading them after a 245,000-sample scrape
    // counted the requests of checks finished meanwhile, not the checks.
    let (m2, t2, _) = reg.counters.snapshot();
    let images2 = reg.counters.per_image();
    let samples = e.metrics();
    let completed2 = counter(
        &samples,
        "k8s_image_availability_exporter_completed_rechecks_total",
    );
    let shared_results = counter(
        &samples,
        "k8s_image_availability_exporter_shared_results_total",
    );
    // Steady state per image: requests over the images asked about again.
    let (steady_images, steady_requests) = images2
        .iter()
        .map(|(path, n)| n - images1.get(path).copied().unwrap_or(0))
        .filter(|d| *d > 0)
        .fold((0u64, 0u64), |(i, r), d| (i + 1, r + d));
    let g2 = reg
        .counters
        .platform_gets
        .load(std::sync::atomic::Ordering::SeqCst);
    let b2 = reg
        .counters
        .blob_requests
        .load(std::sync::atomic::Ordering::SeqCst);
    let steady_rss = support::proc_status_kib(pid, "VmRSS:");
    let heap_steady = (heap(&samples, "in_use"), heap(&samples, "free"));

    // /metrics cost for the full series set.
    // Seven of each: on two cores the scrape shares them with the client,
    // the fake apiserver and the steady rechecks, and single runs vary.
    let (plain, gzip) = e.time_scrapes(7);
    let series = parse_metrics(&e.get("/metrics").1).len();
    // The status page and its JSON over every container.
    let mut page = Vec::new();
    let mut json = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let (_, body) = e.get("/");
        page.push((t.elapsed(), body.len()));
        let t = Instant::now();
        let (_, body) = e.get("/status.json");
        json.push((t.elapsed(), body.len()));
    }
    page.sort();
    json.sort();

    // Watch throughput: change many workloads (every kind) at once, each to
    // an image never seen, so each change adds one check.
    let before = reg.counters.answered();
    let checks_before = checks;
    let changed = o.changes.min(o.workloads);
    let t = Instant::now();
    for w in 0..changed {
        let mut tpl = Template::image(&format!("{}/bench/changed-{}:v{w}", reg.host, w / 10));
        tpl.pull_secrets = vec![format!("regcred-{}", w % per_ns)];
        let (namespace, name) = (ns(w), format!("w-{w}"));
        match w % 5 {
            0 | 1 => api.apply("deployments", deployment(&namespace, &name, 2, &tpl)),
            2 => api.apply("statefulsets", statefulset(&namespace, &name, 1, &tpl)),
            3 => api.apply("daemonsets", daemonset(&namespace, &name, 3, &tpl)),
            _ => api.apply("cronjobs", cronjob(&namespace, &name, false, &tpl)),
        };
    }
    let applied = t.elapsed();
    // The inventory has every change once the checks gauge counts the new images.
    let mut polls = 0;
    wait_until(
        "the inventory to reflect the changes",
        Duration::from_secs(300),
        || {
            polls += 1;
            let m = e.metrics();
            counter(&m, "k8s_image_availability_exporter_checks") >= checks_before + changed as f64
        },
    );
    let inventory_updated = t.elapsed();
    wait_until(
        "changed workloads checked",
        Duration::from_secs(300),
        || reg.counters.answered() >= before + changed,
    );
    let changes_checked = t.elapsed();
    let peak = support::proc_status_kib(pid, "VmHWM:");
    let secrets_served = api.served("secrets");
    let pods_served = api.served("pods");
    let (code, stop_time) = e.terminate();

    // A check that took a shared answer counts as a check that made no request.
    let first_checks = (completed1 + shared1).max(1.0);
    let steady_checks = (completed2 + shared_results - completed1 - shared1).max(1.0);
    println!("\n## Benchmark: {} workloads, {} covered pods + {} bare pods, {} containers, {} images, {} pull secrets + {} other secrets, {} ms registry latency, credentials {}, registry {}\n", o.workloads, o.pods, o.bare_pods, containers, o.images, o.pull_secrets, o.helm_secrets, o.latency_ms, o.credentials, if o.open_registry { "open (never challenges)" } else { "bearer tokens" });
    println!("| measure | value |");
    println!("|---|---|");
    println!("| cluster generation in the fake apiserver (not the exporter) | {generated:.1?} |");
    println!("| time to initial sync (/readyz 200) | {sync_time:.2?} |");
    println!("| time until every image was requested | {all_requested:.2?} |");
    println!("| time until every container has a result (/metrics) | {all_results:.2?} |");
    println!("| distinct checks | {checks} |");
    println!(
        "| checks per second, first round | {:.0} |",
        checks / (all_requested - sync_time).as_secs_f64().max(1e-3)
    );
    println!(
        "| requests per check, first round: manifest / token / other | {:.3} / {:.3} / {:.4} |",
        m1 as f64 / first_checks,
        t1 as f64 / first_checks,
        x1 as f64 / first_checks
    );
    println!(
        "| manifest requests per image, first round ({} images) / steady state ({} images asked again) | {:.3} / {:.3} |",
        images1.len(),
        steady_images,
        m1 as f64 / images1.len().max(1) as f64,
        steady_requests as f64 / steady_images.max(1) as f64
    );
    println!("| checks that took another check's open answer (no request) | {shared_results} |");
    println!(
        "| requests per check, steady state ({} s, {} checks): manifest / token | {:.3} / {:.3} |",
        o.steady_seconds,
        steady_checks,
        (m2 - m1) as f64 / steady_checks,
        (t2 - t1) as f64 / steady_checks
    );
    println!(
        "| platform check and pull path over {} nodes: manifest GETs by digest in the first round (for {} images, of which {} exist) / in the steady state | {} / {} |",
        o.nodes,
        o.images,
        o.images - o.images / 10,
        g1,
        g2 - g1
    );
    println!(
        "| pull path: blob HEADs in the first round / in the steady state | {} / {} |",
        b1,
        b2 - b1
    );
    println!(
        "| peak RSS (VmHWM) after the first round / at the end | {} / {} |",
        mib(peak_after_first),
        mib(peak)
    );
    println!(
        "| RSS right after the initial sync (before checks finish) | {} |",
        mib(rss_sync)
    );
    println!("| steady RSS | {} |", mib(steady_rss));
    println!(
        "| heap after the initial sync / steady: in use, free in the allocator | {}, {} / {}, {} |",
        mib(heap_sync.0),
        mib(heap_sync.1),
        mib(heap_steady.0),
        mib(heap_steady.1)
    );
    println!("| CPU seconds: initial sync / first round / steady per minute | {:.2} / {:.2} / {:.2} ({:.2}% of a core) |", cpu_sync, cpu_first - cpu_sync, (cpu_s1 - cpu_s0) * 60.0 / o.steady_seconds as f64, (cpu_s1 - cpu_s0) * 100.0 / o.steady_seconds as f64);
    println!(
        "| /metrics: {} samples, plain: median {:.0?} (fastest {:.0?}), {} bytes | gzip: median {:.0?} (fastest {:.0?}), {} bytes |",
        series, plain[3].0, plain[0].0, plain[3].1, gzip[3].0, gzip[0].0, gzip[3].1
    );
    println!(
        "| status page over {containers} containers: / median {:.0?} ({} bytes), /status.json median {:.0?} ({} bytes) |",
        page[1].0, page[1].1, json[1].0, json[1].1
    );
    println!(
        "| {} workloads changed at once (all kinds, each to a new image): written to the apiserver in / all in the inventory after / all new images checked after | {:.2?} / {:.2?} ({:.0} events/s; {} /metrics polls) / {:.2?} |",
        changed,
        applied,
        inventory_updated,
        changed as f64 / inventory_updated.as_secs_f64(),
        polls,
        changes_checked
    );
    println!(
        "| Secrets objects sent by the apiserver (pull secrets only) | {secrets_served} of {} |",
        o.pull_secrets + o.helm_secrets
    );
    println!(
        "| Pods sent by the apiserver / checked as kind=pod | {pods_served} / {} |",
        o.bare_pods
    );
    println!("| SIGTERM to exit | {stop_time:.0?} (status {code:?}) |");
    println!("| /metrics scrapes while waiting | {scrapes} |");
}
