//! The operator's view with the real programs: the exporter (fake apiserver,
//! real registry) scraped by a real Prometheus with the target labels a
//! ServiceMonitor gives and the PrometheusRule loaded; promtool on a real
//! scrape; every dashboard query against that Prometheus; and the status
//! page rendered by headless Chromium.

mod support;

use std::time::Duration;

use k8s_image_availability_exporter::sys::yaml::parse_yaml_documents;
use support::apiserver::{FakeApiServer, ServerAuth};
use support::exporter::{Exporter, FAST};
use support::objects::{running_pod, Runtime, Template};
use support::prometheus::{chromium_dom, Prometheus};
use support::registry::{Auth, Registry};
use support::{wait_until, TempDir};

const HOSTILE: &str = "<script>document.title='pwned'</script>";

/// The registry, the cluster and the exporter of every test here.
fn cluster() -> (Registry, FakeApiServer, Exporter) {
    cluster_with(&[])
}

fn cluster_with(extra: &[&str]) -> (Registry, FakeApiServer, Exporter) {
    let reg = Registry::start(Auth::None);
    reg.push("team/app", "v1");
    let api = FakeApiServer::start(ServerAuth::Tokens(vec!["ops".into()]));
    let kc = api.kubeconfig(&FakeApiServer::token_user("ops"));
    api.deploy("prod", "web", &reg.image("team/app:v1"));
    api.deploy("prod", "gone", &reg.image("team/app:v9"));
    api.deploy("attack", "hostile", HOSTILE);
    // A running pod of `web` on an older build: its tag has moved.
    let old = reg.push("team/app", "v0");
    let image = reg.image("team/app:v1");
    api.apply(
        "pods",
        running_pod(
            "prod",
            "web-5d4f8c7b9-a",
            Some(("apps/v1", "ReplicaSet", "web-5d4f8c7b9")),
            &[("pod-template-hash", "5d4f8c7b9")],
            &Template::image(&image),
            &[(
                "app",
                image.as_str(),
                Runtime::Containerd.image_id(&image, &old),
            )],
        ),
    );
    let mut args: Vec<&str> = FAST.to_vec();
    args.extend(["--plain-http-registries", &reg.host]);
    args.extend_from_slice(extra);
    let e = Exporter::start(&kc, &args);
    e.wait_status("prod", "gone", "app", "absent");
    e.wait_status("prod", "web", "app", "available");
    e.wait_status("attack", "hostile", "app", "bad_image_format");
    (reg, api, e)
}

fn rules() -> String {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/prometheus-operator/prometheusrule.yaml"
    ))
    .unwrap();
    let doc = &parse_yaml_documents(&text).unwrap()[0];
    serde_json::json!({ "groups": doc["spec"]["groups"] }).to_string()
}

/// The target labels prometheus-operator gives a ServiceMonitor endpoint
/// (namespace, service, pod, container, endpoint), with honorLabels as
/// deploy/prometheus-operator/servicemonitor.yaml sets it.
fn prometheus_for(e: &Exporter) -> Prometheus {
    let config = format!(
        r#"global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [rules.yaml]
scrape_configs:
  - job_name: k8s-image-availability-exporter
    honor_labels: true
    static_configs:
      - targets: ["{}"]
        labels:
          namespace: k8s-image-availability-exporter
          service: k8s-image-availability-exporter
          pod: k8s-image-availability-exporter-5d9c7b8f6-x2x9q
          container: exporter
          endpoint: http-metrics
"#,
        e.addr
    );
    Prometheus::start(&config, &[("rules.yaml", rules())])
}

const CLASSES: &str = "available|absent|authentication_failure|authorization_failure|registry_unavailable|bad_image_format|unknown_error|platform_unavailable";

#[test]
fn prometheus_scrapes_alerts_and_evaluates_every_dashboard_query() {
    operator_view(false);
}

#[test]
fn the_same_in_the_one_series_per_container_mode() {
    operator_view(true);
}

/// Everything shipped for Prometheus and Grafana, against the default
/// (every class gauge) or the lean (`--one-series-per-container`) format.
fn operator_view(lean: bool) {
    let (reg, api, e) = if lean {
        cluster_with(&["--one-series-per-container"])
    } else {
        cluster()
    };
    // Three containers: each has all eight class series, or exactly one
    // (the class that is 1) and none at 0.
    let m = e.metrics();
    let class_series: Vec<_> = m
        .iter()
        .filter(|s| {
            s.labels.contains_key("container")
                && s.labels.contains_key("kind")
                && s.name != "k8s_image_availability_exporter_tag_moved"
        })
        .collect();
    assert_eq!(class_series.len(), if lean { 3 } else { 24 });
    if lean {
        assert!(class_series.iter().all(|s| s.value == 1.0));
    }
    // And `web`'s tag moved (its running pod is on an older build).
    let moved: Vec<_> = m
        .iter()
        .filter(|s| s.name == "k8s_image_availability_exporter_tag_moved")
        .collect();
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(moved[0].labels["name"], "web");
    assert_eq!(moved[0].value, 1.0);
    // promtool's linter on a real scrape.
    let scrape = e.get("/metrics").1;
    let dir = TempDir::new("promtool-metrics");
    let path = dir.write("scrape.txt", &scrape);
    let out = std::process::Command::new("sh")
        .args(["-c", &format!("promtool check metrics < {path}")])
        .output()
        .unwrap();
    let lint = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && lint.trim().is_empty(),
        "promtool check metrics:\n{lint}"
    );

    let p = prometheus_for(&e);
    wait_until("the target to be up", Duration::from_secs(30), || {
        let t = p.api("/api/v1/targets");
        t["data"]["activeTargets"]
            .as_array()
            .is_some_and(|a| a.iter().any(|t| t["health"] == "up"))
    });
    let t = p.api("/api/v1/targets");
    let target = &t["data"]["activeTargets"][0];
    assert_eq!(target["lastError"], "", "{target}");

    // honorLabels: the workload's namespace, not the exporter's.
    wait_until(
        "the absent series in Prometheus",
        Duration::from_secs(30),
        || {
            let (_, r, _) = p.query(r#"k8s_image_availability_exporter_absent{name="gone"} == 1"#);
            !r.is_empty()
        },
    );
    let (_, r, _) = p.query(r#"k8s_image_availability_exporter_absent{name="gone"}"#);
    assert_eq!(r[0]["metric"]["namespace"], "prod", "{r:?}");
    assert_eq!(r[0]["metric"]["container"], "app", "{r:?}");

    // The missing image's alert is pending (its `for:` is 10m), with the
    // class in `status` and the workload's labels.
    wait_until("ImageAbsent to be pending", Duration::from_secs(30), || {
        p.api("/api/v1/alerts")["data"]["alerts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["labels"]["alertname"] == "ImageAbsent"))
    });
    let alerts = p.api("/api/v1/alerts");
    let absent: Vec<&serde_json::Value> = alerts["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["labels"]["alertname"] == "ImageAbsent")
        .collect();
    assert_eq!(absent.len(), 1, "{alerts}");
    let a = absent[0];
    assert_eq!(a["state"], "pending");
    for (k, v) in [
        ("status", "absent"),
        ("namespace", "prod"),
        ("kind", "deployment"),
        ("name", "gone"),
        ("container", "app"),
    ] {
        assert_eq!(a["labels"][k], v, "{a}");
    }
    assert!(a["annotations"]["description"]
        .as_str()
        .unwrap()
        .contains("Next step"));
    let for_available: Vec<&serde_json::Value> = alerts["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["labels"]["name"] == "web")
        .collect();
    // No class alert for the available image; its moved tag is pending.
    assert!(
        for_available
            .iter()
            .all(|a| a["labels"]["alertname"] == "ImageTagMoved" && a["state"] == "pending"),
        "{for_available:?}"
    );

    // Every dashboard query, with the variables as Grafana fills them for
    // "All": no error, and data (the scenario gives every panel some).
    wait_until("two scrapes for the rates", Duration::from_secs(30), || {
        let (_, r, _) = p.query("count_over_time(up[1m])");
        r.first()
            .and_then(|s| s["value"][1].as_str())
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(|n| n >= 3.0)
    });
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/grafana/k8s-image-availability-exporter.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let all_classes = "absent|authentication_failure|authorization_failure|registry_unavailable|bad_image_format|unknown_error|platform_unavailable";
    let mut evaluated = 0;
    for panel in dash["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$namespace", ".*")
                .replace("$kind", ".*")
                .replace("$status", all_classes);
            let (status, result, error) = p.query(&expr);
            assert_eq!(status, "success", "{}: {expr}: {error}", panel["title"]);
            assert!(!result.is_empty(), "{}: {expr}: no data", panel["title"]);
            println!(
                "panel {:?}: {expr} -> {} series",
                panel["title"],
                result.len()
            );
            evaluated += 1;
        }
    }
    assert!(evaluated >= 12, "{evaluated} queries");
    // The variables' label_values(...) queries, as Grafana asks them (the
    // series API): every namespace and kind with a container, including
    // `attack`, whose only container is not available.
    for v in dash["templating"]["list"].as_array().unwrap() {
        let Some(q) = v["query"]["query"].as_str() else {
            continue;
        };
        let (selector, label) = q
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .and_then(|q| q.rsplit_once(", "))
            .unwrap_or_else(|| panic!("{q}"));
        let values = p.api(&format!(
            "/api/v1/label/{label}/values?match[]={}",
            support::percent_encode(selector)
        ));
        let values: Vec<&str> = values["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let want: &[&str] = if label == "namespace" {
            &["attack", "prod"]
        } else {
            &["deployment"]
        };
        assert_eq!(values, want, "{q}");
    }
    // Prometheus holds one class series per container in the lean mode.
    let (_, r, _) = p.query(&format!(
        r#"count({{__name__=~"k8s_image_availability_exporter_({CLASSES})"}})"#
    ));
    assert_eq!(r[0]["value"][1], if lean { "3" } else { "24" }, "{r:?}");

    // A class change: the old class's series goes at once (the lean mode
    // stops writing it; Prometheus marks it stale on the next scrape), not
    // five minutes later; in the default mode it turns 0.
    api.deploy("prod", "web", &reg.image("team/app:v9"));
    e.wait_status("prod", "web", "app", "absent");
    let changed = std::time::Instant::now();
    wait_until(
        "Prometheus to see the class change",
        Duration::from_secs(30),
        || {
            let (_, r, _) = p.query(r#"k8s_image_availability_exporter_absent{name="web"} == 1"#);
            !r.is_empty()
        },
    );
    let (_, old, _) = p.query(r#"k8s_image_availability_exporter_available{name="web"}"#);
    if lean {
        wait_until(
            "the old class's series to be gone",
            Duration::from_secs(30),
            || {
                p.query(r#"k8s_image_availability_exporter_available{name="web"}"#)
                    .1
                    .is_empty()
            },
        );
        println!(
            "lean mode: the old class's series was gone from queries {:?} after the change",
            changed.elapsed()
        );
        let (_, r, _) = p.query(&format!(
            r#"count by (name) ({{__name__=~"k8s_image_availability_exporter_({CLASSES})", name="web"}})"#
        ));
        assert_eq!(r[0]["value"][1], "1", "{r:?}");
    } else {
        assert_eq!(old[0]["value"][1], "0", "{old:?}");
    }
    assert!(!p.log().contains("level=error"), "{}", p.log());
}

#[test]
fn the_status_page_in_a_real_browser() {
    let (_reg, _api, e) = cluster();
    let url = format!("http://{}/", e.addr);
    let dom = chromium_dom(&url);
    // Nothing from the cluster ran: the title is ours, the hostile image is text.
    assert!(
        dom.contains("<title>k8s-image-availability-exporter</title>"),
        "{dom}"
    );
    assert!(!dom.contains("pwned</title>"));
    assert!(
        dom.contains("&lt;script&gt;document.title='pwned'&lt;/script&gt;"),
        "{dom}"
    );
    assert_eq!(
        dom.matches("<script").count(),
        0,
        "no script element: {dom}"
    );
    // Totals, one table per namespace, a row per unavailable container.
    assert!(
        dom.contains(r#"data-status="absent"><b>1</b>absent</li>"#),
        "{dom}"
    );
    assert!(
        dom.contains(r#"data-status="available"><b>1</b>available</li>"#),
        "{dom}"
    );
    assert!(
        dom.contains(r#"<p id="summary" class="bad">2 of 3 checked containers cannot be pulled, the first of them since "#),
        "{dom}"
    );
    assert!(dom.contains("Namespace attack") && dom.contains("Namespace prod"));
    assert_eq!(dom.matches(r#"<tr data-status="#).count(), 2, "{dom}");
    assert!(dom.contains("deployment/gone") && dom.contains("manifest"));
    // Filters through the query string (the form's GET), no JavaScript.
    let dom = chromium_dom(&format!("{url}?namespace=prod&status=absent"));
    assert_eq!(
        dom.matches(r#"<tr data-status="absent">"#).count(),
        1,
        "{dom}"
    );
    assert!(!dom.contains("Namespace attack"), "{dom}");
    assert!(
        dom.contains(r#"<option value="prod" selected="">prod</option>"#),
        "{dom}"
    );
    let dom = chromium_dom(&format!("{url}?status=registry_unavailable"));
    assert!(dom.contains(r#"id="none""#), "{dom}");
    // The same data for scripts.
    let (status, body) = e.get("/status.json");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["totals"]["absent"], 1);
    let images: Vec<&str> = v["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["image"].as_str().unwrap())
        .collect();
    assert!(images.contains(&HOSTILE), "{images:?}");
}

/// A thousand workloads of three containers, every image missing, with
/// long names: the page opens with what is wrong and since when, fits a
/// 1280x800 window without horizontal scrolling, and pages its rows.
/// Screenshots are left in target/screenshots/ for a person to look at.
#[test]
fn the_status_page_fits_a_laptop_window_and_pages_many_containers() {
    let reg = Registry::start(Auth::None);
    reg.push("team/app", "v1");
    let api = FakeApiServer::start(ServerAuth::Tokens(vec!["ops".into()]));
    let kc = api.kubeconfig(&FakeApiServer::token_user("ops"));
    let long = "a-rather-long-repository-name-that-teams-like/with/several/levels";
    for w in 0..1000 {
        let t =
            support::objects::Template::image(&reg.image(&format!("{long}:release-{}", w % 20)))
                .container(
                    "sidecar-with-a-long-name",
                    &reg.image(&format!("{long}/sidecar:v{}", w % 7)),
                )
                .container("app", &reg.image("team/app:v1"))
                .init(
                    "migrations",
                    &reg.image(&format!("{long}/migrate:{}", w % 5)),
                );
        api.apply(
            "deployments",
            support::objects::deployment(
                &format!("team-{:02}", w % 12),
                &format!("service-with-a-descriptive-name-{w}"),
                1,
                &t,
            ),
        );
    }
    let mut args: Vec<&str> = FAST.to_vec();
    args.extend(["--plain-http-registries", &reg.host]);
    let e = Exporter::start(&kc, &args);
    wait_until("every container checked", Duration::from_secs(60), || {
        let (_, body) = e.get("/status.json");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["not_checked_yet"] == 0 && v["totals"]["available"] == 1000
    });
    let (_, body) = e.get("/status.json");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["cannot_be_pulled"], 3000, "{}", v["totals"]);
    assert_eq!(v["matching"], 3000);
    assert_eq!(v["pages"], 3);
    assert_eq!(v["containers"].as_array().unwrap().len(), 1000);

    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let mut b = support::browser::Browser::start(1280, 800);
    let url = format!("http://{}/", e.addr);
    b.open(&url);
    b.screenshot(&shots.join("status-page-1280x800.png"));
    let fits = b.eval("[document.documentElement.scrollWidth, window.innerWidth]");
    assert!(
        fits[0].as_u64().unwrap() <= fits[1].as_u64().unwrap(),
        "the page scrolls sideways at 1280x800: scrollWidth, innerWidth = {fits}"
    );
    assert_eq!(fits[1], 1280);
    let summary = b.eval("document.getElementById('summary').textContent");
    let summary = summary.as_str().unwrap();
    assert!(
        summary.starts_with(
            "3,000 of 4,000 checked containers cannot be pulled, the first of them since 20"
        ) && summary.contains(" UTC (")
            && summary.ends_with(" ago)."),
        "{summary}"
    );
    // The sentence and the class totals are on the first screen.
    let top = b.eval("document.getElementById('totals').getBoundingClientRect().bottom");
    assert!(top.as_f64().unwrap() < 800.0, "{top}");
    let pages = b.eval("document.querySelector('p.pages').textContent");
    assert_eq!(
        pages.as_str().unwrap(),
        "Rows 1\u{2013}100 of 3,000 \u{b7} page 1 of 30 \u{b7} next"
    );
    assert_eq!(
        b.eval("document.querySelectorAll('tr[data-status]').length"),
        100
    );
    // The next page, through its link, keeps the filter.
    let next = b.eval("document.querySelector('a[rel=next]').href");
    assert_eq!(next.as_str().unwrap(), format!("{url}?page=2"));
    b.open(&format!("{url}?namespace=team-03&status=absent&page=2"));
    b.screenshot(&shots.join("status-page-1280x800-page-2.png"));
    let pages = b.eval("document.querySelector('p.pages').textContent");
    assert_eq!(
        pages.as_str().unwrap(),
        "Rows 101\u{2013}200 of 252 \u{b7} page 2 of 3 \u{b7} previous \u{b7} next"
    );
    let fits = b.eval("document.documentElement.scrollWidth <= window.innerWidth");
    assert_eq!(fits, true);
    let prev = b.eval("document.querySelector('a[rel=prev]').href");
    assert_eq!(
        prev.as_str().unwrap(),
        format!("{url}?namespace=team-03&status=absent&page=1")
    );
    println!("screenshots in {}", shots.display());
}
