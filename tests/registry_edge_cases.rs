//! Registry answers that Docker Distribution never gives but real registries
//! do: rate limits, 5xx, redirects to other hosts, hostile token realms,
//! broken HEAD support, stale tokens, timeouts. A scripted server plays them.

mod support;

use std::time::Duration;

use support::fake_registry::{FakeRegistry, Reply};
use support::{check, TempDir};

const DIGEST_A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const DIGEST_B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn found() -> Reply {
    Reply::status(200).header("Docker-Content-Digest", DIGEST_A)
}

fn run(host: &str, extra: &[&str], image: &str) -> support::CheckRun {
    let mut args = vec!["--plain-http-registries", host, "--connect-timeout", "2s"];
    args.extend_from_slice(extra);
    args.push("check");
    args.push(image);
    check(&args)
}

#[test]
fn rate_limit_reports_retry_after_bounded() {
    let fake = FakeRegistry::start(|s, _| {
        if s.url.contains("/a/") {
            Reply::status(429).header("Retry-After", "30")
        } else {
            // A Unix timestamp where seconds belong: must not become a wait of decades.
            Reply::status(429).header("Retry-After", "9999999999")
        }
    });
    let image = format!("{}/team/a:v1", fake.host);
    let r = run(&fake.host, &[], &image);
    assert_eq!(r.status(&image), "rate_limited");
    assert_eq!(r.row(&image)["retry_after_seconds"], 30);
    assert_eq!(r.code, 1);
    let image = format!("{}/team/b:v1", fake.host);
    let r = run(&fake.host, &[], &image);
    assert_eq!(r.status(&image), "rate_limited");
    assert!(r.row(&image)["retry_after_seconds"].as_u64().unwrap() <= 900);
}

#[test]
fn server_errors_are_retried_then_unavailable() {
    let fake = FakeRegistry::start(|s, _| {
        if s.url.contains("/down/") {
            Reply::status(503)
        } else {
            Reply::status(502)
        }
    });
    let image = format!("{}/team/down:v1", fake.host);
    let r = run(&fake.host, &[], &image);
    r.assert_status(&image, "registry_unavailable");
    // https attempt, then three plain http tries (one try plus two retries).
    assert_eq!(r.row(&image)["requests"], 4);
    assert_eq!(fake.seen().len(), 3);

    // One 500, then success: the retry hides a blip.
    let fake = FakeRegistry::start(|_, n| if n == 0 { Reply::status(500) } else { found() });
    let image = format!("{}/team/blip:v1", fake.host);
    let r = run(&fake.host, &[], &image);
    r.assert_status(&image, "available");
}

#[test]
fn unexpected_answers_are_unknown_errors_with_reasons() {
    let fake = FakeRegistry::start(|s, _| {
        if s.url.contains(DIGEST_A) {
            // Asked for A, answers B: a registry that serves the wrong manifest.
            Reply::status(200).header("Docker-Content-Digest", DIGEST_B)
        } else {
            Reply::status(418)
        }
    });
    let image = format!("{}/team/a:v1", fake.host);
    let r = run(&fake.host, &[], &image);
    assert_eq!(r.status(&image), "unknown_error");
    assert!(r.row(&image)["reason"].as_str().unwrap().contains("418"));
    let image = format!("{}/team/a@{DIGEST_A}", fake.host);
    let r = run(&fake.host, &[], &image);
    assert_eq!(r.status(&image), "unknown_error");
    assert!(r.row(&image)["reason"].as_str().unwrap().contains(DIGEST_B));
}

#[test]
fn head_carries_every_manifest_type() {
    let fake = FakeRegistry::start(|_, _| found());
    let image = format!("{}/team/a:v1", fake.host);
    assert_eq!(run(&fake.host, &[], &image).status(&image), "available");
    let seen = fake.seen();
    assert_eq!(seen[0].method, "HEAD");
    assert_eq!(seen[0].url, "/v2/team/a/manifests/v1");
    let accept = seen[0].accept.clone().unwrap();
    for t in [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "application/vnd.docker.distribution.manifest.v1+json",
    ] {
        assert!(accept.contains(t), "{t} missing from {accept}");
    }
}

#[test]
fn get_fallback_only_for_listed_registries() {
    let fake = FakeRegistry::start(|s, _| {
        if s.method == "HEAD" {
            Reply::status(405)
        } else {
            found().body("{}")
        }
    });
    let image = format!("{}/team/a:v1", fake.host);
    let r = run(&fake.host, &[], &image);
    assert_eq!(r.status(&image), "unknown_error");
    assert!(
        fake.seen().iter().all(|s| s.method == "HEAD"),
        "no GET unless asked"
    );
    let r = run(
        &fake.host,
        &["--get-fallback-registries", &fake.host],
        &image,
    );
    r.assert_status(&image, "available");
    assert_eq!(fake.seen().last().unwrap().method, "GET");
}

#[test]
fn credentials_do_not_follow_redirects_to_other_hosts() {
    let other = FakeRegistry::start(|_, _| found());
    let target = format!("http://{}/v2/team/a/manifests/v1", other.host);
    let fake = FakeRegistry::start(move |s, _| match &s.authorization {
        None => Reply::status(401).header("WWW-Authenticate", r#"Basic realm="fake""#),
        Some(_) if s.url.contains("/same/") && !s.url.contains("moved") => {
            Reply::status(307).header("Location", "/v2/team/same/manifests/moved")
        }
        Some(_) if s.url.contains("moved") => found(),
        Some(_) => Reply::status(307).header("Location", &target),
    });
    let dir = TempDir::new("redirect");
    let config = dir.write("config.json", serde_json::json!({"auths": {fake.host.clone(): {"username": "u", "password": "redirect-secret"}}}).to_string());
    let image = format!("{}/team/a:v1", fake.host);
    let r = run(&fake.host, &["--docker-config", &config], &image);
    r.assert_status(&image, "available");
    // The manifest HEAD, and the pull path walk's GET, both redirected.
    let seen = other.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen.iter().all(|s| s.authorization.is_none()),
        "Authorization must be dropped on a cross-host redirect"
    );
    assert!(fake.seen().iter().any(|s| s.authorization.is_some()));

    // A redirect within the same origin keeps the credentials.
    let image = format!("{}/team/same:v1", fake.host);
    let r = run(&fake.host, &["--docker-config", &config], &image);
    r.assert_status(&image, "available");
    let last = fake.seen().last().unwrap().clone();
    assert!(last.url.contains("moved") && last.authorization.is_some());
}

#[test]
fn hostile_token_realms_are_refused() {
    let fake = FakeRegistry::start(|_, _| {
        Reply::status(401).header(
            "WWW-Authenticate",
            r#"Bearer realm="http://169.254.169.254/latest/meta-data",service="x""#,
        )
    });
    let dir = TempDir::new("realm");
    let config = dir.write("config.json", serde_json::json!({"auths": {fake.host.clone(): {"username": "u", "password": "ssrf-secret"}}}).to_string());
    let image = format!("{}/team/a:v1", fake.host);
    let r = run(&fake.host, &["--docker-config", &config], &image);
    r.assert_status(&image, "unknown_error");
    assert!(r.row(&image)["reason"]
        .as_str()
        .unwrap()
        .contains("refused"));
    assert!(!r.stdout.contains("ssrf-secret") && !r.stderr.contains("ssrf-secret"));
}

#[test]
fn a_stale_cached_token_is_refreshed_once() {
    // The token endpoint numbers its tokens; manifests of tag v2 accept only
    // a token issued after the first, as if the first had been revoked.
    let fake = FakeRegistry::start(|s, n| {
        if s.url.starts_with("/token") {
            return Reply::status(200).body(&format!(r#"{{"token":"tok-{n}","expires_in":300}}"#));
        }
        let auth = s.authorization.clone().unwrap_or_default();
        let ok = match auth.strip_prefix("Bearer tok-") {
            Some(k) => {
                !s.url.contains("/v2") || !s.url.ends_with("v2") || k.parse::<usize>().unwrap() > 2
            }
            None => false,
        };
        if ok {
            found()
        } else {
            Reply::status(401).header(
                "WWW-Authenticate",
                r#"Bearer realm="/token",service="fake",error="invalid_token""#,
            )
        }
    });
    let (v1, v2) = (
        format!("{}/team/a:v1", fake.host),
        format!("{}/team/a:v2", fake.host),
    );
    let r = check(&[
        "--verify-pull-path-every=0",
        "--plain-http-registries",
        &fake.host,
        "check",
        &v1,
        &v2,
    ]);
    r.assert_status(&v1, "available");
    r.assert_status(&v2, "available");
    // Stale token HEAD (401), fresh token, HEAD.
    assert_eq!(r.row(&v2)["requests"], 3);
}

#[test]
fn a_stuck_registry_times_out() {
    let fake = FakeRegistry::start(|_, _| {
        std::thread::sleep(Duration::from_secs(3));
        found()
    });
    let image = format!("{}/team/a:v1", fake.host);
    let started = std::time::Instant::now();
    let r = check(&[
        "--plain-http-registries",
        &fake.host,
        "--request-timeout",
        "1s",
        "check",
        &image,
    ]);
    r.assert_status(&image, "registry_unavailable");
    assert!(r.row(&image)["reason"]
        .as_str()
        .unwrap()
        .contains("timed out"));
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn harbor_policy_refusals_are_authorization_failures() {
    // Harbor's "prevent vulnerable images from running": 412 on the
    // manifest, on HEAD in some versions (no body), on GET in others.
    const POLICY: &str = r#"{"errors":[{"code":"PROJECTPOLICYVIOLATION","message":"current image with 3 vulnerabilities cannot be pulled due to configured policy"}]}"#;
    let fake = FakeRegistry::start(|s, _| {
        if s.url.contains("/on-head/") {
            return Reply::status(412);
        }
        if s.method == "GET" && s.url.contains("/manifests/sha256:") {
            return Reply::status(412)
                .header("Content-Type", "application/json")
                .body(POLICY);
        }
        found()
    });
    let (head, get) = (
        format!("{}/team/on-head:v1", fake.host),
        format!("{}/team/on-get:v1", fake.host),
    );
    let r = run(&fake.host, &[], &head);
    r.assert_status(&head, "authorization_failure");
    let why = r.row(&head)["reason"].as_str().unwrap().to_string();
    assert!(why.contains("HTTP 412"), "{why}");
    let r = run(&fake.host, &[], &get);
    r.assert_status(&get, "authorization_failure");
    let why = r.row(&get)["reason"].as_str().unwrap().to_string();
    assert!(
        why.contains(&format!("download refused: GET manifest {DIGEST_A}"))
            && why.contains("PROJECTPOLICYVIOLATION: current image with 3 vulnerabilities"),
        "{why}"
    );
}
