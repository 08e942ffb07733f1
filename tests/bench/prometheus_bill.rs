//! What the exporter costs Prometheus, in both series formats: one
//! synthetic cluster in the fake apiserver, two exporters watching it (the
//! default format, and `--one-series-per-container`), each scraped by its
//! own real Prometheus (Debian's `prometheus`). Prints head series, class
//! series, Prometheus RSS, scrape sizes and /metrics times per format.
//!
//! Run: cargo bench --bench prometheus_bill            (defaults below)
//!      cargo bench --bench prometheus_bill -- --help  (sizes are flags)
//! Under `cargo test` it runs at a smoke size.

#[path = "../support/mod.rs"]
mod support;

use std::time::Duration;

use argh::FromArgs;
use support::apiserver::{FakeApiServer, ServerAuth};
use support::bench_registry::BenchRegistry;
use support::exporter::Exporter;
use support::objects::*;
use support::prometheus::Prometheus;
use support::wait_until;

/// The Prometheus bill of both series formats.
#[derive(FromArgs)]
struct Opts {
    /// workloads (Deployments). Defaults to 10000.
    #[argh(option, default = "10000")]
    workloads: usize,
    /// containers per workload. Defaults to 3.
    #[argh(option, default = "3")]
    containers: usize,
    /// distinct images (one in ten missing from the registry). Defaults to 5000.
    #[argh(option, default = "5000")]
    images: usize,
    /// namespaces. Defaults to 200.
    #[argh(option, default = "200")]
    namespaces: usize,
    /// scrapes each Prometheus takes before it is measured. Defaults to 5.
    #[argh(option, default = "5")]
    scrapes: usize,
    /// accepted for `cargo bench` compatibility.
    #[argh(switch)]
    bench: bool,
}

const CLASSES: &str = "available|absent|bad_image_format|registry_unavailable|authentication_failure|authorization_failure|unknown_error|platform_unavailable";

/// One format's figures.
struct Bill {
    head_series: f64,
    class_series: f64,
    prometheus_rss_kib: u64,
    scrape_plain: (Duration, usize),
    scrape_gzip: (Duration, usize),
}

fn main() {
    let o: Opts = support::bench_opts("prometheus_bill");
    let o = if o.bench {
        o
    } else {
        println!(
            "smoke size under cargo test; `cargo bench --bench prometheus_bill` runs the full size"
        );
        Opts {
            workloads: 100,
            images: 50,
            namespaces: 5,
            scrapes: 2,
            ..o
        }
    };
    let reg = BenchRegistry::start(Duration::ZERO, "bill-password", 3600, true);
    let api = FakeApiServer::start(ServerAuth::Tokens(vec!["bill".into()]));
    let kc = api.kubeconfig(&FakeApiServer::token_user("bill"));
    // Ten tags per repository, the last of them missing.
    let image = |i: usize| {
        let tag = if i % 10 == 9 {
            "missing".into()
        } else {
            format!("v{}", i % 10)
        };
        format!("{}/bench/repo-{}:{tag}", reg.host, i / 10)
    };
    let mut containers = 0;
    for w in 0..o.workloads {
        let mut t = Template::image(&image(0));
        t.containers.clear();
        for c in 0..o.containers {
            t.containers
                .push((format!("c{c}"), image((w * o.containers + c) % o.images)));
            containers += 1;
        }
        api.apply(
            "deployments",
            deployment(
                &format!("ns-{:03}", w % o.namespaces),
                &format!("w-{w}"),
                2,
                &t,
            ),
        );
    }
    // Only the series format differs; the pull path and platforms are not
    // what this measures.
    let common = [
        "--plain-http-registries",
        &reg.host,
        "--no-platform-check",
        "--verify-pull-path-every",
        "0",
        "--no-pod-checks",
        "--log-level",
        "warn",
    ];
    let mut bills = Vec::new();
    for lean in [false, true] {
        let mut args = common.to_vec();
        if lean {
            args.push("--one-series-per-container");
        }
        let e = Exporter::start(&kc, &args);
        wait_until("every container checked", Duration::from_secs(600), || {
            let (_, body) = e.get("/status.json");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let checked: u64 = v["totals"]
                .as_object()
                .map(|t| t.values().filter_map(|n| n.as_u64()).sum())
                .unwrap_or(0);
            checked as usize >= containers
        });
        let (plain, gzip) = e.time_scrapes(5);
        let config = format!(
            "global:\n  scrape_interval: 5s\n  scrape_timeout: 5s\nscrape_configs:\n  - job_name: k8s-image-availability-exporter\n    honor_labels: true\n    static_configs:\n      - targets: [\"{}\"]\n",
            e.addr
        );
        let p = Prometheus::start(&config, &[]);
        let want = o.scrapes;
        wait_until("the scrapes", Duration::from_secs(600), || {
            let (_, r, _) = p.query("count_over_time(up[10m])");
            r.first()
                .and_then(|s| s["value"][1].as_str())
                .and_then(|v| v.parse::<usize>().ok())
                .is_some_and(|n| n >= want)
        });
        let (_, r, _) = p.query(&format!(
            r#"count({{__name__=~"k8s_image_availability_exporter_({CLASSES})"}})"#
        ));
        let class_series = r
            .first()
            .and_then(|s| s["value"][1].as_str())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        bills.push(Bill {
            head_series: p.own_metric("prometheus_tsdb_head_series").unwrap_or(0.0),
            class_series,
            prometheus_rss_kib: support::proc_status_kib(p.pid(), "VmRSS:"),
            scrape_plain: plain[plain.len() / 2],
            scrape_gzip: gzip[gzip.len() / 2],
        });
    }
    let (d, l) = (&bills[0], &bills[1]);
    println!(
        "\n## Prometheus bill: {} workloads, {containers} containers, {} images, {} scrapes at 5 s\n",
        o.workloads, o.images, o.scrapes
    );
    println!("| measure | default (every class gauge) | --one-series-per-container | ratio |");
    println!("|---|---|---|---|");
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    println!(
        "| class series in Prometheus | {} | {} | {:.1}x |",
        d.class_series,
        l.class_series,
        ratio(d.class_series, l.class_series)
    );
    println!(
        "| prometheus_tsdb_head_series (everything the job brings, `up` and friends included) | {} | {} | {:.1}x |",
        d.head_series,
        l.head_series,
        ratio(d.head_series, l.head_series)
    );
    println!(
        "| Prometheus RSS after the scrapes | {:.1} MiB | {:.1} MiB | {:.1}x |",
        d.prometheus_rss_kib as f64 / 1024.0,
        l.prometheus_rss_kib as f64 / 1024.0,
        ratio(d.prometheus_rss_kib as f64, l.prometheus_rss_kib as f64)
    );
    println!(
        "| scrape size, plain | {} bytes | {} bytes | {:.1}x |",
        d.scrape_plain.1,
        l.scrape_plain.1,
        ratio(d.scrape_plain.1 as f64, l.scrape_plain.1 as f64)
    );
    println!(
        "| scrape size, gzip | {} bytes | {} bytes | {:.1}x |",
        d.scrape_gzip.1,
        l.scrape_gzip.1,
        ratio(d.scrape_gzip.1 as f64, l.scrape_gzip.1 as f64)
    );
    println!(
        "| /metrics time, plain / gzip (median of 5) | {:.0?} / {:.0?} | {:.0?} / {:.0?} | |",
        d.scrape_plain.0, d.scrape_gzip.0, l.scrape_plain.0, l.scrape_gzip.0
    );
    assert!(
        l.class_series * 6.0 <= d.class_series,
        "the lean format must hold at least 6x fewer class series"
    );
}
