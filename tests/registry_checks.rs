//! Every outcome class through a real Docker Distribution registry, driven
//! through the `check` command as an operator or a pipeline would run it.

mod support;

use support::registry::{Auth, Registry};
use support::token_server::Policy;
use support::{check, TempDir};

fn docker_config(dir: &TempDir, name: &str, entries: &[(&str, &str, &str)]) -> String {
    let mut auths = serde_json::Map::new();
    for (key, user, pass) in entries {
        auths.insert(
            key.to_string(),
            serde_json::json!({"username": user, "password": pass}),
        );
    }
    dir.write(name, serde_json::json!({ "auths": auths }).to_string())
}

#[test]
fn open_registry_tags_digests_indexes_and_deletion() {
    let reg = Registry::start(Auth::None);
    let digest = reg.push("team/app", "v1");
    let index = reg.push_index("team/multi", "v1");
    let only_digest = reg.push("team/bydigest", "");
    let missing_digest = format!("sha256:{}", "0".repeat(64));

    let present = reg.image("team/app:v1");
    let by_digest = reg.image(&format!("team/app@{digest}"));
    let tag_and_digest = reg.image(&format!("team/app:v1@{digest}"));
    let multi = reg.image("team/multi:v1");
    let digest_only = reg.image(&format!("team/bydigest@{only_digest}"));
    let absent_tag = reg.image("team/app:v2");
    let absent_repo = reg.image("team/nothing:v1");
    let absent_digest = reg.image(&format!("team/app@{missing_digest}"));
    let run = check(&[
        "--allow-plain-http",
        "check",
        &present,
        &by_digest,
        &tag_and_digest,
        &multi,
        &digest_only,
        &absent_tag,
        &absent_repo,
        &absent_digest,
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    for image in [&present, &by_digest, &tag_and_digest, &multi, &digest_only] {
        assert_eq!(
            run.status(image),
            "available",
            "{image}: {:?}",
            run.row(image)
        );
        assert_eq!(run.row(image)["credential"], "anonymous");
    }
    assert_eq!(run.row(&present)["digest"], digest.as_str());
    // The index itself, not one platform's manifest, is what was found.
    assert_eq!(run.row(&multi)["digest"], index.as_str());
    assert_eq!(
        run.row(&present)["reference"],
        format!("{}/team/app:v1", reg.host)
    );
    for image in [&absent_tag, &absent_repo, &absent_digest] {
        assert_eq!(run.status(image), "absent", "{image}: {:?}", run.row(image));
    }

    // The registry's cleanup deletes the manifest: the next check says absent.
    reg.delete("team/app", &digest);
    let run = check(&["--allow-plain-http", "check", &present]);
    assert_eq!(run.status(&present), "absent");
    assert_eq!(run.code, 1);
}

#[test]
fn steady_state_is_one_request_per_check() {
    let reg = Registry::start(Auth::None);
    reg.push("team/app", "v1");
    let image = reg.image("team/app:v1");
    // The tag check alone (the pull path walk is counted in tests/pull_path.rs).
    let tag_only = ["--verify-pull-path-every", "0"];
    let run = check(
        &[
            &tag_only[..],
            &["--plain-http-registries", &reg.host, "check", &image],
        ]
        .concat(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    // https is tried first (TLS fails against a plain registry), then http.
    assert_eq!(run.row(&image)["requests"], 2);

    let run = check(&[
        "--verify-pull-path-every=0",
        "--plain-http-registries",
        &reg.host,
        "check",
        &image,
        &reg.image("team/app:v1"),
        &reg.image("team/app"),
    ]);
    // The same image written twice is checked once.
    assert_eq!(run.rows[1]["requests"], 0);
    assert_eq!(run.rows[1]["status"], "available");
    assert_eq!(run.status(&reg.image("team/app")), "absent");
    // The scheme is remembered per registry (no https try): its HEAD, and
    // the GET that fetches the error body a HEAD cannot carry.
    assert_eq!(run.rows[2]["requests"], 2);
    assert!(
        run.rows[2]["reason"]
            .as_str()
            .unwrap()
            .contains("MANIFEST_UNKNOWN: manifest unknown"),
        "{}",
        run.rows[2]
    );
}

#[test]
fn plain_http_only_when_allowed() {
    let reg = Registry::start(Auth::None);
    reg.push("team/app", "v1");
    let image = reg.image("team/app:v1");
    let run = check(&["check", &image]);
    assert_eq!(run.status(&image), "registry_unavailable");
    assert!(
        run.row(&image)["reason"].as_str().unwrap().contains("TLS"),
        "{:?}",
        run.row(&image)
    );
    let run = check(&[
        "--plain-http-registries",
        "other.example:5000",
        "check",
        &image,
    ]);
    assert_eq!(run.status(&image), "registry_unavailable");
    let run = check(&[
        "--plain-http-registries",
        &format!("other.example:5000,{}", reg.host),
        "check",
        &image,
    ]);
    assert_eq!(run.status(&image), "available");
    let run = check(&["--allow-plain-http", "check", &image]);
    assert_eq!(run.status(&image), "available");
}

#[test]
fn tls_with_custom_ca() {
    let reg = Registry::start_tls(Auth::None);
    reg.push("team/app", "v1");
    let image = reg.image("team/app:v1");
    let run = check(&["check", &image]);
    run.assert_status(&image, "registry_unavailable");
    assert!(run.row(&image)["reason"].as_str().unwrap().contains("TLS"));
    let run = check(&["--capath", reg.ca_pem(), "check", &image]);
    run.assert_status(&image, "available");
    // The HEAD, then the pull path: GET of the manifest, HEAD of 2 blobs.
    assert_eq!(run.row(&image)["requests"], 4);
    let run = check(&["--skip-registry-cert-verification", "check", &image]);
    assert_eq!(run.status(&image), "available");
    // The extra CA adds to the built-in roots; it does not make plain http acceptable.
    let run = check(&[
        "--capath",
        reg.ca_pem(),
        "check",
        &reg.image("team/app:nope"),
    ]);
    assert_eq!(run.status(&reg.image("team/app:nope")), "absent");
}

#[test]
fn registry_down_is_registry_unavailable() {
    let port = support::free_port();
    let image = format!("127.0.0.1:{port}/team/app:v1");
    let run = check(&["--allow-plain-http", "check", &image]);
    assert_eq!(run.status(&image), "registry_unavailable");
    assert_eq!(run.code, 1);
    let mut reg = Registry::start(Auth::None);
    reg.push("team/app", "v1");
    let image = reg.image("team/app:v1");
    assert_eq!(
        check(&["--allow-plain-http", "check", &image]).status(&image),
        "available"
    );
    reg.stop();
    assert_eq!(
        check(&["--allow-plain-http", "check", &image]).status(&image),
        "registry_unavailable"
    );
}

#[test]
fn basic_auth_credentials() {
    let reg = Registry::start(Auth::Basic(vec![("alice".into(), "alice-pw-1".into())]));
    reg.push("private/app", "v1");
    let image = reg.image("private/app:v1");
    let dir = TempDir::new("basic");
    let good = docker_config(&dir, "good.json", &[(&reg.host, "alice", "alice-pw-1")]);
    let bad = docker_config(
        &dir,
        "bad.json",
        &[(&reg.host, "alice", "wrong-pw-hunter2")],
    );

    let run = check(&[
        "--allow-plain-http",
        "--docker-config",
        &good,
        "check",
        &image,
    ]);
    run.assert_status(&image, "available");
    assert_eq!(
        run.row(&image)["credential"],
        format!("docker-config {good} ({})", reg.host)
    );
    assert!(!run.stdout.contains("alice-pw-1") && !run.stderr.contains("alice-pw-1"));

    let run = check(&[
        "--allow-plain-http",
        "--docker-config",
        &bad,
        "check",
        &image,
    ]);
    run.assert_status(&image, "authentication_failure");
    assert!(!run.stdout.contains("hunter2") && !run.stderr.contains("hunter2"));

    let run = check(&["--allow-plain-http", "check", &image]);
    assert_eq!(run.status(&image), "authentication_failure");
}

fn token_policy() -> Policy {
    Policy::default()
        .user("reader", "reader-pw", "private/", &["pull"])
        .user("other", "other-pw", "elsewhere/", &["pull"])
        .forbid("banned", "banned-pw")
        .anonymous_pull("public/")
}

#[test]
fn token_auth_outcomes() {
    let reg = Registry::start(Auth::Token(token_policy()));
    reg.push("private/app", "v1");
    reg.push("public/app", "v1");
    let private = reg.image("private/app:v1");
    let public = reg.image("public/app:v1");
    let dir = TempDir::new("token");
    let reader = docker_config(&dir, "reader.json", &[(&reg.host, "reader", "reader-pw")]);
    let other = docker_config(&dir, "other.json", &[(&reg.host, "other", "other-pw")]);
    let banned = docker_config(&dir, "banned.json", &[(&reg.host, "banned", "banned-pw")]);
    let wrong = docker_config(&dir, "wrong.json", &[(&reg.host, "reader", "not-the-pw")]);

    let run = check(&[
        "--allow-plain-http",
        "--docker-config",
        &reader,
        "check",
        &private,
        &public,
        &reg.image("private/app:v9"),
    ]);
    run.assert_status(&private, "available");
    assert!(run.row(&private)["credential"]
        .as_str()
        .unwrap()
        .starts_with("docker-config"));
    assert_eq!(run.status(&public), "available");
    assert_eq!(run.status(&reg.image("private/app:v9")), "absent");

    // No credentials for a private repository.
    let run = check(&["--allow-plain-http", "check", &private, &public]);
    run.assert_status(&private, "authentication_failure");
    assert_eq!(run.status(&public), "available");
    assert_eq!(run.row(&public)["credential"], "anonymous");

    // Wrong password: the token server answers 401.
    let run = check(&[
        "--allow-plain-http",
        "--docker-config",
        &wrong,
        "check",
        &private,
    ]);
    run.assert_status(&private, "authentication_failure");
    assert!(!run.stdout.contains("not-the-pw") && !run.stderr.contains("not-the-pw"));

    // Valid credentials the token server refuses with 403.
    let run = check(&[
        "--allow-plain-http",
        "--docker-config",
        &banned,
        "check",
        &private,
    ]);
    run.assert_status(&private, "authorization_failure");

    // Valid credentials whose token lacks the scope: the registry answers 401 insufficient_scope.
    let run = check(&[
        "--allow-plain-http",
        "--docker-config",
        &other,
        "check",
        &private,
    ]);
    run.assert_status(&private, "authentication_failure");
    assert!(run.row(&private)["reason"]
        .as_str()
        .unwrap()
        .contains("insufficient_scope"));
}

#[test]
fn second_matching_credential_wins() {
    let reg = Registry::start(Auth::Token(token_policy()));
    reg.push("private/app", "v1");
    let image = reg.image("private/app:v1");
    let dir = TempDir::new("multi");
    // The more specific key comes first, as in the kubelet; it holds the wrong user.
    let config = docker_config(
        &dir,
        "config.json",
        &[
            (&format!("{}/private", reg.host), "other", "other-pw"),
            (&reg.host, "reader", "reader-pw"),
        ],
    );
    let run = check(&[
        "--allow-plain-http",
        "--docker-config",
        &config,
        "check",
        &image,
    ]);
    run.assert_status(&image, "available");
    assert_eq!(
        run.row(&image)["credential"],
        format!("docker-config {config} ({})", reg.host)
    );
    let tokens = reg.tokens.as_ref().unwrap();
    let users: Vec<String> = tokens.users();
    assert_eq!(
        users,
        ["other", "reader"],
        "each credential is tried in order"
    );
}

#[test]
fn token_is_reused_for_the_same_repository() {
    let reg = Registry::start(Auth::Token(token_policy()));
    reg.push("private/app", "v1");
    reg.push("private/app", "v2");
    let dir = TempDir::new("reuse");
    let reader = docker_config(&dir, "reader.json", &[(&reg.host, "reader", "reader-pw")]);
    let tokens = reg.tokens.as_ref().unwrap();
    let before = tokens.count();
    let (v1, v2) = (reg.image("private/app:v1"), reg.image("private/app:v2"));
    let run = check(&[
        "--verify-pull-path-every=0",
        "--plain-http-registries",
        &reg.host,
        "--docker-config",
        &reader,
        "check",
        &v1,
        &v2,
    ]);
    run.assert_status(&v1, "available");
    assert_eq!(run.status(&v2), "available");
    // First check: https attempt, HEAD (401 challenge), token, HEAD.
    assert_eq!(run.row(&v1)["requests"], 4, "{:?}", run.row(&v1));
    // Second check of the same repository: one HEAD with the cached token.
    assert_eq!(run.row(&v2)["requests"], 1, "{:?}", run.row(&v2));
    assert_eq!(
        tokens.count() - before,
        1,
        "one token fetch for both checks"
    );
}

#[test]
fn mirrors_and_default_registry() {
    let reg = Registry::start(Auth::None);
    reg.push("hub/library/nginx", "1.25");
    reg.push("team/app", "v1");
    reg.push("library/busybox", "1");

    let run = check(&[
        "--allow-plain-http",
        "--image-mirror",
        &format!("docker.io={}/hub", reg.host),
        "check",
        "nginx:1.25",
    ]);
    run.assert_status("nginx:1.25", "available");
    assert_eq!(
        run.row("nginx:1.25")["reference"],
        format!("{}/hub/library/nginx:1.25", reg.host)
    );
    assert_eq!(
        run.row("nginx:1.25")["mirror"],
        format!("docker.io={}/hub", reg.host)
    );
    assert_eq!(run.row("nginx:1.25")["host"], reg.host);
    // A tag the mirror lacks would go on to Docker Hub, as containerd does;
    // tests reach only 127.0.0.1, so that case is in kubelet_parity.rs with
    // two local registries.

    // Short names go to --default-registry; with a registry other than Docker
    // Hub no library/ is added (as go-containerregistry does).
    let run = check(&[
        "--allow-plain-http",
        "--default-registry",
        &reg.host,
        "check",
        "team/app:v1",
        "library/busybox:1",
        "busybox:1",
    ]);
    run.assert_status("team/app:v1", "available");
    assert_eq!(
        run.row("team/app:v1")["reference"],
        format!("{}/team/app:v1", reg.host)
    );
    assert_eq!(run.status("library/busybox:1"), "available");
    assert_eq!(run.status("busybox:1"), "absent");
}

#[test]
fn bad_image_format_and_exit_codes() {
    let reg = Registry::start(Auth::None);
    reg.push("team/app", "v1");
    let good = reg.image("team/app:v1");
    let run = check(&["--allow-plain-http", "check", &good]);
    assert_eq!(run.code, 0);
    let run = check(&[
        "--allow-plain-http",
        "check",
        &good,
        "Bad/Image:tag",
        "nginx:-x",
    ]);
    assert_eq!(run.code, 1);
    assert_eq!(run.status("Bad/Image:tag"), "bad_image_format");
    assert_eq!(run.row("Bad/Image:tag")["requests"], 0);
    assert!(run.row("nginx:-x")["reason"]
        .as_str()
        .unwrap()
        .contains("tag"));
    assert_eq!(check(&["check"]).code, 2);
    assert_eq!(
        check(&["--connect-timeout", "forever", "check", &good]).code,
        2
    );
    assert_eq!(check(&["--no-such-flag", "check", &good]).code, 2);
}
