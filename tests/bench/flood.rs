//! A flood of slow and idle connections against the exporter: while they
//! are opened, `/healthz` and `/metrics` are timed every 100 ms; then the
//! exporter's RSS, threads and descriptors are read, and the time until
//! its head timeout (10 s) has closed them all. One exporter over a small
//! cluster (the HTTP side is what this measures).
//!
//! Run: cargo bench --bench flood            (10,000 connections)
//!      cargo bench --bench flood -- --help  (sizes are flags)
//! Under `cargo test` it runs at a smoke size.

#[path = "../support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use argh::FromArgs;
use support::apiserver::{FakeApiServer, ServerAuth};
use support::bench_registry::BenchRegistry;
use support::exporter::Exporter;
use support::flood::{open_fds, threads, timed_get, Flood};
use support::objects::{deployment, Template};
use support::{proc_status_kib, wait_until};

/// Slow and idle connections against the exporter's HTTP side.
#[derive(FromArgs)]
struct Opts {
    /// connections opened, half with part of a request head, half with
    /// nothing. Defaults to 10000.
    #[argh(option, default = "10000")]
    connections: usize,
    /// workloads in the cluster. Defaults to 100.
    #[argh(option, default = "100")]
    workloads: usize,
    /// accepted for `cargo bench` compatibility.
    #[argh(switch)]
    bench: bool,
}

fn main() {
    let o: Opts = support::bench_opts("flood");
    let o = if o.bench {
        o
    } else {
        println!("smoke size under cargo test; `cargo bench --bench flood` runs the full size");
        Opts {
            connections: 400,
            workloads: 10,
            ..o
        }
    };
    let reg = BenchRegistry::start(Duration::ZERO, "flood-password", 3600, true);
    let api = FakeApiServer::start(ServerAuth::Tokens(vec!["flood".into()]));
    for w in 0..o.workloads {
        let image = format!("{}/bench/repo-{}:v1", reg.host, w % 10);
        api.apply(
            "deployments",
            deployment("flood", &format!("w-{w}"), 1, &Template::image(&image)),
        );
    }
    let kc = api.kubeconfig(&FakeApiServer::token_user("flood"));
    let e = Exporter::start(
        &kc,
        &[
            "--plain-http-registries",
            &reg.host,
            "--no-platform-check",
            "--log-level",
            "warn",
        ],
    );
    wait_until("the first checks", Duration::from_secs(120), || {
        let (_, body) = e.get("/status.json");
        body.contains("\"available\":") && !body.contains("\"available\":0")
    });
    let pid = e.pid();
    let before = (proc_status_kib(pid, "VmRSS:"), threads(pid), open_fds(pid));

    // Timed requests beside the flood, every 100 ms.
    let done = Arc::new(AtomicBool::new(false));
    let addr = e.addr().to_string();
    let sampler = {
        let (done, addr) = (done.clone(), addr.clone());
        std::thread::spawn(move || {
            let mut worst = [(Duration::ZERO, 0usize, 0usize); 2];
            while !done.load(Ordering::SeqCst) {
                for (i, path) in ["/healthz", "/metrics"].iter().enumerate() {
                    match timed_get(&addr, path) {
                        Some((200, took)) => {
                            worst[i].0 = worst[i].0.max(took);
                            worst[i].1 += 1;
                        }
                        _ => worst[i].2 += 1,
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            worst
        })
    };
    let started = Instant::now();
    let slow = Flood::open(
        &addr,
        o.connections / 2,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\n",
    );
    let idle = Flood::open(&addr, o.connections - o.connections / 2, b"");
    let opened = started.elapsed();
    let held = slow.still_open() + idle.still_open();
    let during = (proc_status_kib(pid, "VmRSS:"), threads(pid), open_fds(pid));
    let closing = Instant::now();
    wait_until("the flood to be closed", Duration::from_secs(120), || {
        slow.still_open() + idle.still_open() == 0
    });
    let closed_after = closing.elapsed();
    done.store(true, Ordering::SeqCst);
    let worst = sampler.join().unwrap();
    let after = (proc_status_kib(pid, "VmRSS:"), threads(pid), open_fds(pid));

    println!();
    println!("| figure | value |");
    println!("|---|---|");
    println!(
        "| connections opened (slow + idle) | {} + {} in {:.1} s ({} refused) |",
        slow.len(),
        idle.len(),
        opened.as_secs_f64(),
        slow.refused + idle.refused
    );
    println!("| held open by the exporter once all were opened | {held} |");
    println!(
        "| /healthz: slowest of {} answers during the flood (failed) | {} ms ({}) |",
        worst[0].1,
        worst[0].0.as_millis(),
        worst[0].2
    );
    println!(
        "| /metrics: slowest of {} answers during the flood (failed) | {} ms ({}) |",
        worst[1].1,
        worst[1].0.as_millis(),
        worst[1].2
    );
    println!(
        "| RSS before, during, after | {:.1} / {:.1} / {:.1} MiB (+{:.1} MiB) |",
        before.0 as f64 / 1024.0,
        during.0 as f64 / 1024.0,
        after.0 as f64 / 1024.0,
        during.0.saturating_sub(before.0) as f64 / 1024.0
    );
    println!(
        "| threads before, during, after | {} / {} / {} |",
        before.1, during.1, after.1
    );
    println!(
        "| descriptors before, during, after | {} / {} / {} |",
        before.2, during.2, after.2
    );
    println!(
        "| all closed, after the last was opened | {:.1} s |",
        closed_after.as_secs_f64()
    );
}
