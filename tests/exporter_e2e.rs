//! The exporter end to end: the real binary against the fake apiserver and a
//! real registry, scraped over HTTP as Prometheus would.

mod support;

use std::io::Read;
use std::time::{Duration, Instant};

use support::apiserver::{FakeApiServer, ServerAuth};
use support::exporter::{parse_metrics, status_in, Exporter, FAST};
use support::fake_registry::{FakeRegistry, Reply};
use support::objects::*;
use support::registry::{Auth, Registry};
use support::token_server::Policy;
use support::wait_until;

fn api() -> (FakeApiServer, String) {
    let api = FakeApiServer::start(ServerAuth::Tokens(vec!["e2e".into()]));
    let kc = api.kubeconfig(&FakeApiServer::token_user("e2e"));
    (api, kc)
}

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v: Vec<&str> = FAST.to_vec();
    v.extend_from_slice(extra);
    v
}

#[test]
fn available_then_absent_after_the_registry_deletes_it() {
    let reg = Registry::start(Auth::None);
    let digest = reg.push("team/app", "v1");
    let (api, kc) = api();
    api.apply(
        "deployments",
        deployment(
            "prod",
            "web",
            1,
            &Template::image(&reg.image("team/app:v1")).init("init", &reg.image("team/app:v1")),
        ),
    );
    let e = Exporter::start(&kc, &args(&["--plain-http-registries", &reg.host]));
    e.wait_status("prod", "web", "app", "available");
    assert_eq!(
        e.status_of("prod", "web", "init").as_deref(),
        Some("available")
    );
    let samples = e.metrics();
    let s = samples
        .iter()
        .find(|s| {
            s.name == "k8s_image_availability_exporter_available" && s.labels["container"] == "app"
        })
        .unwrap();
    assert_eq!(
        s.labels["image"],
        reg.image("team/app:v1"),
        "the image label is the image as written"
    );
    assert_eq!(s.labels["kind"], "deployment");
    reg.delete("team/app", &digest);
    let took = e.wait_status("prod", "web", "app", "absent");
    assert!(
        took < Duration::from_secs(10),
        "flipped within a recheck window ({took:?})"
    );
    println!("absent detected {took:?} after deletion");
}

#[test]
fn no_series_before_the_first_check_and_quick_first_check() {
    // A registry that takes 1.5 s to answer: while the check runs, no series.
    let slow = FakeRegistry::start(|_, _| {
        std::thread::sleep(Duration::from_millis(1500));
        Reply::status(200).header(
            "Docker-Content-Digest",
            &format!("sha256:{}", "a".repeat(64)),
        )
    });
    let reg = Registry::start(Auth::None);
    reg.push("team/fast", "v1");
    let (api, kc) = api();
    let e = Exporter::start(&kc, &args(&["--allow-plain-http"]));
    wait_until("readiness", Duration::from_secs(10), || {
        e.get("/readyz").0 == 200
    });
    api.deploy("a", "slow", &format!("{}/team/slow:v1", slow.host));
    let created = Instant::now();
    api.deploy("a", "fast", &reg.image("team/fast:v1"));
    e.wait_status("a", "fast", "app", "available");
    let first_series = created.elapsed();
    println!("time from ADDED to first series: {first_series:?}");
    assert!(first_series < Duration::from_secs(5));
    assert_eq!(
        e.status_of("a", "slow", "app"),
        None,
        "never reported before its first check completes"
    );
    e.wait_status("a", "slow", "app", "available");
}

#[test]
fn private_image_pullable_only_where_the_secret_is() {
    let reg = Registry::start(Auth::Token(Policy::default().user(
        "puller",
        "puller-pw",
        "private/",
        &["pull"],
    )));
    reg.push("private/app", "v1");
    let image = reg.image("private/app:v1");
    let (api, kc) = api();
    api.apply(
        "secrets",
        pull_secret("team-a", "regcred", &reg.host, "puller", "puller-pw"),
    );
    api.apply(
        "deployments",
        deployment(
            "team-a",
            "app",
            1,
            &Template::image(&image).pull_secret("regcred"),
        ),
    );
    api.apply(
        "deployments",
        deployment(
            "team-b",
            "app",
            1,
            &Template::image(&image).pull_secret("regcred"),
        ),
    );
    let e = Exporter::start(&kc, &args(&["--plain-http-registries", &reg.host]));
    e.wait_status("team-a", "app", "app", "available");
    e.wait_status("team-b", "app", "app", "authentication_failure");
    let (_, body) = e.get("/metrics");
    assert!(!body.contains("puller-pw"));
    // One check per credential set: team-a's secret, and anonymous for team-b.
    let mut creds: Vec<String> = parse_metrics(&body)
        .into_iter()
        .filter(|s| {
            s.name == "k8s_image_availability_exporter_last_check_timestamp_seconds"
                && s.labels["reference"] == image
        })
        .map(|s| s.labels["credentials"].clone())
        .collect();
    creds.sort();
    assert_eq!(
        creds,
        [
            "anonymous".to_string(),
            format!("secret team-a/regcred ({})", reg.host)
        ]
    );
    assert!(
        !e.log().contains("puller-pw"),
        "secrets never reach the log"
    );
}

#[test]
fn deleted_and_disabled_workloads() {
    let reg = Registry::start(Auth::None);
    reg.push("team/app", "v1");
    let image = reg.image("team/app:v1");
    let (api, kc) = api();
    api.deploy("a", "gone-soon", &image);
    api.apply(
        "deployments",
        deployment("a", "scaled-down", 0, &Template::image(&image)),
    );
    api.apply(
        "statefulsets",
        statefulset("a", "db", 0, &Template::image(&image)),
    );
    api.apply(
        "cronjobs",
        cronjob("a", "nightly", true, &Template::image(&image)),
    );
    api.apply(
        "daemonsets",
        daemonset("a", "agent", 0, &Template::image(&image)),
    );
    let e = Exporter::start(
        &kc,
        &args(&[
            "--plain-http-registries",
            &reg.host,
            "--force-check-disabled-controllers",
            "StatefulSet,cronjob",
        ]),
    );
    e.wait_status("a", "gone-soon", "app", "available");
    e.wait_status("a", "db", "app", "available");
    e.wait_status("a", "nightly", "app", "available");
    let m = e.metrics();
    assert_eq!(
        status_in(&m, "a", "scaled-down", "app"),
        None,
        "a disabled deployment is not reported"
    );
    assert_eq!(
        status_in(&m, "a", "agent", "app"),
        None,
        "a daemonset scheduled nowhere is not reported"
    );
    api.delete("deployments", "a", "gone-soon");
    wait_until(
        "series of the deleted workload to go",
        Duration::from_secs(10),
        || e.status_of("a", "gone-soon", "app").is_none(),
    );
    // Scaling up enables it.
    api.apply(
        "deployments",
        deployment("a", "scaled-down", 2, &Template::image(&image)),
    );
    e.wait_status("a", "scaled-down", "app", "available");
}

#[test]
fn registry_down_and_back() {
    let mut reg = Registry::start(Auth::None);
    reg.push("team/app", "v1");
    let (api, kc) = api();
    api.deploy("a", "web", &reg.image("team/app:v1"));
    let e = Exporter::start(
        &kc,
        &args(&[
            "--plain-http-registries",
            &reg.host,
            "--connect-timeout",
            "1s",
        ]),
    );
    e.wait_status("a", "web", "app", "available");
    reg.stop();
    e.wait_status("a", "web", "app", "registry_unavailable");
    reg.restart();
    e.wait_status("a", "web", "app", "available");
}

#[test]
fn bad_image_format_is_reported_without_requests() {
    let (api, kc) = api();
    api.deploy("a", "typo", "Registry.Example.com/UPPER/app:v1");
    let e = Exporter::start(&kc, &args(&[]));
    e.wait_status("a", "typo", "app", "bad_image_format");
    let requests: f64 = e
        .metrics()
        .iter()
        .filter(|s| s.name == "k8s_image_availability_exporter_registry_requests_total")
        .map(|s| s.value)
        .sum();
    assert_eq!(requests, 0.0);
}

#[test]
fn health_readiness_metrics_and_sigterm() {
    let reg = Registry::start(Auth::None);
    reg.push("team/app", "v1");
    let (api, kc) = api();
    api.forbid("secrets");
    api.deploy("a", "web", &reg.image("team/app:v1"));
    let mut e = Exporter::start(&kc, &args(&["--plain-http-registries", &reg.host]));
    assert_eq!(e.get("/healthz"), (200, "ok\n".to_string()));
    println!("GET /healthz -> {:?}", e.get("/healthz"));
    // Secrets are forbidden: checks run without them, so the exporter is
    // ready, and the answer warns about what it cannot see.
    e.wait_status("a", "web", "app", "available");
    let (status, body) = e.get("/readyz");
    println!("GET /readyz -> {status} {body:?}");
    let excerpt: Vec<String> = e
        .get("/metrics")
        .1
        .lines()
        .filter(|l| {
            l.contains("namespace=\"a\"")
                || l.contains("completed_rechecks_total ")
                || l.contains("build_info{")
        })
        .map(str::to_string)
        .collect();
    println!("/metrics excerpt:\n{}", excerpt.join("\n"));
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("warning: secrets(dockerconfigjson) cannot be listed")
            && body.contains("list and watch on secrets"),
        "{body}"
    );
    let log = e.log();
    assert_eq!(
        log.matches("list of secrets(dockerconfigjson) failed")
            .count(),
        1,
        "a lasting 403 is logged once:\n{log}"
    );
    assert!(log.contains("initial sync") || log.contains("watching deployments"));
    let (status, body) = e.get("/");
    assert_eq!(status, 200);
    assert!(body.contains("/metrics"));
    assert_eq!(e.get("/nope").0, 404);
    // Fixed metrics are there.
    let m = e.metrics();
    for name in [
        "k8s_image_availability_exporter_completed_rechecks_total",
        "k8s_image_availability_exporter_build_info",
        "k8s_image_availability_exporter_check_duration_seconds_count",
        "k8s_image_availability_exporter_registry_requests_total",
        "k8s_image_availability_exporter_watched_objects",
        "k8s_image_availability_exporter_last_check_timestamp_seconds",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    ] {
        assert!(m.iter().any(|s| s.name == name), "{name} missing");
    }
    // gzip when asked, the same content.
    let raw = e.get_gzip("/metrics");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&raw[..])
        .read_to_string(&mut text)
        .unwrap();
    assert!(status_in(&parse_metrics(&text), "a", "web", "app").is_some());
    let (code, took) = e.terminate();
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(3), "SIGTERM took {took:?}");
}

#[test]
fn readiness_after_the_first_lists() {
    let (api, kc) = api();
    let e = Exporter::start(&kc, &args(&[]));
    wait_until("ready", Duration::from_secs(10), || {
        e.get("/readyz").0 == 200
    });
    assert!(api
        .requests()
        .iter()
        .any(|r| r.path == "/apis/batch/v1/cronjobs"));
}

#[test]
fn once_mode_exit_codes() {
    let reg = Registry::start(Auth::None);
    reg.push("team/app", "v1");
    let (api, kc) = api();
    api.deploy("a", "ok", &reg.image("team/app:v1"));
    let run = |extra: &[&str]| {
        let out = std::process::Command::new(support::exporter_bin())
            .args([
                "--kubeconfig",
                &kc,
                "--once",
                "--output",
                "json",
                "--plain-http-registries",
                &reg.host,
            ])
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = run(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.trim().is_empty());
    api.deploy("b", "broken", &reg.image("team/app:v9"));
    let (code, stdout, _) = run(&[]);
    assert_eq!(code, Some(1));
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["status"], "absent");
    assert_eq!(rows[0]["namespace"], "b");
    assert_eq!(rows[0]["kind"], "deployment");
    assert_eq!(rows[0]["name"], "broken");
    assert_eq!(rows[0]["container"], "app");
    let (code, _, stderr) = run(&["--kubeconfig", "/nonexistent/kubeconfig"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("/nonexistent/kubeconfig"));
}

#[test]
fn no_check_runs_before_the_pull_secrets_are_listed() {
    let reg = Registry::start(Auth::Token(Policy::default().user(
        "puller",
        "puller-pw",
        "private/",
        &["pull"],
    )));
    reg.push("private/app", "v1");
    let (api, kc) = api();
    for i in 0..40 {
        api.apply(
            "deployments",
            deployment(
                "team-a",
                &format!("app-{i}"),
                1,
                &Template::image(&reg.image("private/app:v1")).pull_secret("regcred"),
            ),
        );
    }
    api.apply(
        "secrets",
        pull_secret("team-a", "regcred", &reg.host, "puller", "puller-pw"),
    );
    let e = Exporter::start(&kc, &args(&["--plain-http-registries", &reg.host]));
    e.wait_status("team-a", "app-0", "app", "available");
    // Had a check run before the secret was listed, it would have gone out
    // anonymously and been reported as an authentication failure.
    let tokens = reg.tokens.as_ref().unwrap();
    let users: Vec<String> = tokens.users();
    assert!(users.iter().all(|u| u == "puller"), "{users:?}");
    assert!(!e.log().contains("authentication_failure"), "{}", e.log());
}

/// Issue 14 item 10: a workload kind the exporter may not list is never a
/// silent "all available": `--once` exits 2 naming the permission, `/readyz`
/// stays 503 naming it, and a metric says the stream is not synced.
#[test]
fn a_workload_kind_that_cannot_be_listed_is_reported() {
    let (api, kc) = api();
    api.forbid("deployments");
    let out = std::process::Command::new(support::exporter_bin())
        .args(["--kubeconfig", &kc, "--once", "--output", "json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("deployments cannot be listed")
            && stderr.contains("list and watch on deployments.apps"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "no report that looks complete");

    let e = Exporter::start(&kc, &args(&[]));
    wait_until("the refusal to show", Duration::from_secs(20), || {
        let (status, body) = e.get("/readyz");
        // Once the other kinds have listed, only the refused one is named.
        status == 503
            && body.contains("list and watch on deployments.apps")
            && !body.contains("waiting for")
    });
    let (_, body) = e.get("/readyz");
    println!("GET /readyz -> {body:?}");
    assert!(!body.contains("statefulsets"), "{body}");
    let m = e.metrics();
    let synced = |resource: &str| {
        m.iter()
            .find(|s| {
                s.name == "k8s_image_availability_exporter_watch_synced"
                    && s.labels["resource"] == resource
            })
            .map(|s| s.value)
    };
    assert_eq!(synced("deployments"), Some(0.0));
    assert_eq!(synced("statefulsets"), Some(1.0));
    // Refused is not dead: /healthz leaves RBAC to /readyz.
    assert_eq!(e.get("/healthz").0, 200);
}

/// Issue 14 item 2: a pull secret with one valid and one undecodable entry
/// makes the kubelet fail every pull of the pod (MakeDockerKeyring), so
/// every container of the workload is reported, naming the secret and the
/// entry and nothing of its content; a workload not naming it is unaffected.
#[test]
fn a_broken_pull_secret_fails_every_container_of_its_workloads() {
    let reg = Registry::start(Auth::None);
    reg.push("team/app", "v1");
    let (api, kc) = api();
    let payload = format!(
        r#"{{"auths":{{"{}":{{"auth":"dTpw"}},"other.example.com":{{"auth":"not*base64*hunter2"}}}}}}"#,
        reg.host
    );
    api.apply(
        "secrets",
        secret(
            "a",
            "half-broken",
            "kubernetes.io/dockerconfigjson",
            ".dockerconfigjson",
            payload.into_bytes(),
        ),
    );
    let image = reg.image("team/app:v1");
    api.apply(
        "deployments",
        deployment(
            "a",
            "uses-it",
            1,
            &Template::image(&image)
                .init("init", &image)
                .pull_secret("half-broken"),
        ),
    );
    api.deploy("a", "plain", &image);
    let e = Exporter::start(&kc, &args(&["--plain-http-registries", &reg.host]));
    e.wait_status("a", "plain", "app", "available");
    e.wait_status("a", "uses-it", "app", "authentication_failure");
    assert_eq!(
        e.status_of("a", "uses-it", "init").as_deref(),
        Some("authentication_failure")
    );
    let log = e.log();
    assert!(
        log.contains("secret a/half-broken") && log.contains("other.example.com"),
        "{log}"
    );
    assert!(!log.contains("hunter2") && !e.get("/metrics").1.contains("hunter2"));
}

/// A registry whose token endpoint answers the user `new` slowly (or with
/// 429), and everyone else at once: what a secret rotation meets.
fn rotation_registry(new_user: Reply, delay: Duration) -> FakeRegistry {
    let own: std::sync::Arc<std::sync::OnceLock<String>> = Default::default();
    let known = own.clone();
    let basic = |u: &str| {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:pw"))
        )
    };
    let (old_auth, new_auth) = (basic("old"), basic("new"));
    let fake = FakeRegistry::start(move |s, _| {
        if s.url.starts_with("/token") {
            let auth = s.authorization.as_deref();
            if auth == Some(new_auth.as_str()) {
                std::thread::sleep(delay);
                return new_user.clone();
            }
            if auth == Some(old_auth.as_str()) {
                return Reply::status(200).body(r#"{"token":"old"}"#);
            }
            return Reply::status(401);
        }
        match s.authorization.as_deref() {
            Some("Bearer old") | Some("Bearer new") => Reply::status(200).header(
                "Docker-Content-Digest",
                &format!("sha256:{}", "a".repeat(64)),
            ),
            _ => Reply::status(401).header(
                "WWW-Authenticate",
                &format!(
                    r#"Bearer realm="http://{}/token",service="reg""#,
                    known.get().unwrap()
                ),
            ),
        }
    });
    own.set(fake.host.clone()).unwrap();
    fake
}

/// Scrapes every 100 ms for `how_long`; returns the statuses seen.
fn scrape_statuses(e: &Exporter, how_long: Duration) -> Vec<Option<String>> {
    let mut seen = Vec::new();
    let until = Instant::now() + how_long;
    while Instant::now() < until {
        seen.push(e.status_of("a", "web", "app"));
        std::thread::sleep(Duration::from_millis(100));
    }
    seen
}

/// An exporter showing `available` for a workload whose pull secret has
/// just rotated from the user `old` to `new` (see [`rotation_registry`]).
fn rotated(new_user: Reply, delay: Duration) -> (FakeRegistry, FakeApiServer, Exporter) {
    let fake = rotation_registry(new_user, delay);
    let (api, kc) = api();
    let image = format!("{}/team/app:v1", fake.host);
    api.apply(
        "secrets",
        pull_secret("a", "regcred", &fake.host, "old", "pw"),
    );
    api.apply(
        "deployments",
        deployment(
            "a",
            "web",
            1,
            &Template::image(&image).pull_secret("regcred"),
        ),
    );
    let e = Exporter::start(&kc, &args(&["--plain-http-registries", &fake.host]));
    e.wait_status("a", "web", "app", "available");
    api.apply(
        "secrets",
        pull_secret("a", "regcred", &fake.host, "new", "pw"),
    );
    (fake, api, e)
}

/// Issue 14 item 4: a secret rotates while the new credential's token is
/// slow. Scraped every 100 ms, the container always has its series: the
/// old verdict until the new check has one.
#[test]
fn a_rotated_secret_never_leaves_a_container_without_series() {
    let (fake, _api, e) = rotated(
        Reply::status(200).body(r#"{"token":"new"}"#),
        Duration::from_millis(1500),
    );
    let seen = scrape_statuses(&e, Duration::from_secs(3));
    assert!(
        seen.iter().all(|s| s.as_deref() == Some("available")),
        "{seen:?}\n{}",
        e.log()
    );
    wait_until(
        "the new credential to be checked",
        Duration::from_secs(20),
        || {
            fake.seen()
                .iter()
                .any(|s| s.authorization.as_deref() == Some("Bearer new"))
        },
    );
    // The old check's verdict is gone once the new one has its own: one
    // series per gauge for the container, and still available.
    wait_until(
        "one series for the container",
        Duration::from_secs(10),
        || {
            let m = e.metrics();
            let rows: Vec<&support::exporter::Sample> = m
                .iter()
                .filter(|s| {
                    s.name == "k8s_image_availability_exporter_available"
                        && s.labels.get("name").map(String::as_str) == Some("web")
                })
                .collect();
            rows.len() == 1 && rows[0].value == 1.0
        },
    );
}

/// Issue 14 item 4: a new check that is rate-limited keeps showing the
/// previous verdict.
#[test]
fn a_rate_limited_new_check_keeps_the_previous_verdict() {
    let (_fake, _api, e) = rotated(
        Reply::status(429).header("Retry-After", "60"),
        Duration::ZERO,
    );
    wait_until(
        "the new check to be rate limited",
        Duration::from_secs(10),
        || e.log().contains("rate limited by token server"),
    );
    let seen = scrape_statuses(&e, Duration::from_secs(1));
    assert!(
        seen.iter().all(|s| s.as_deref() == Some("available")),
        "{seen:?}"
    );
}

/// Three workloads run one image: one names pull secret `a`, one `b`, one
/// none. That is three checks (image plus credentials).
fn three_ways(api: &FakeApiServer, reg: &Registry, image: &str) {
    for (name, user) in [("a", "alice"), ("b", "bob")] {
        api.apply(
            "secrets",
            pull_secret("prod", name, &reg.host, user, &format!("{user}-pw")),
        );
    }
    let img = reg.image(image);
    api.apply(
        "deployments",
        deployment("prod", "with-a", 1, &Template::image(&img).pull_secret("a")),
    );
    api.apply(
        "deployments",
        deployment("prod", "with-b", 1, &Template::image(&img).pull_secret("b")),
    );
    api.apply(
        "deployments",
        deployment("prod", "none", 1, &Template::image(&img)),
    );
}

/// The exporter with slow rechecks (so the first round alone is counted),
/// once the three workloads of [`three_ways`] are available.
fn first_round_of_three(kc: &str, reg: &Registry) -> Exporter {
    let e = Exporter::start(
        kc,
        &[
            "--check-period",
            "30s",
            "--recheck-within",
            "10m",
            "--plain-http-registries",
            &reg.host,
        ],
    );
    for name in ["with-a", "with-b", "none"] {
        e.wait_status("prod", name, "app", "available");
    }
    e
}

#[test]
fn one_request_per_image_while_the_registry_asks_for_no_credentials() {
    let reg = Registry::start(Auth::None);
    reg.push("team/app", "v1");
    let (api, kc) = api();
    three_ways(&api, &reg, "team/app:v1");
    let e = first_round_of_three(&kc, &reg);
    assert_eq!(
        reg.count("HEAD", "/v2/team/app/manifests/v1"),
        1,
        "three checks, one request: {:#?}",
        reg.requests()
    );
    let m = e.metrics();
    let shared: f64 = m
        .iter()
        .filter(|s| s.name == "k8s_image_availability_exporter_shared_results_total")
        .map(|s| s.value)
        .sum();
    assert_eq!(shared, 2.0);
}

#[test]
fn a_registry_that_challenges_gets_each_credential_checked() {
    let reg = Registry::start(Auth::Token(
        Policy::default()
            .user("alice", "alice-pw", "team/", &["pull"])
            .user("bob", "bob-pw", "team/", &["pull"])
            .anonymous_pull("team/"),
    ));
    reg.push("team/app", "v1");
    let (api, kc) = api();
    three_ways(&api, &reg, "team/app:v1");
    let _exporter = first_round_of_three(&kc, &reg);
    // Each check asked the token server with its own credentials, as the
    // kubelet would: nothing was shared.
    let users = reg.tokens.as_ref().unwrap().users();
    for who in ["alice", "bob"] {
        assert!(users.iter().any(|u| u == who), "{users:?}");
    }
    assert!(reg.count("HEAD", "/v2/team/app/manifests/v1") >= 3);
}
