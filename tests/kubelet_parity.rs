//! Verdicts as the node would get them (kubelet PullImage, credentialprovider,
//! containerd's resolver and authorizer), against the real Docker
//! Distribution registry where it can play the case, and a scripted one
//! where it cannot.

mod support;

use std::sync::{Arc, OnceLock};

use base64::Engine;
use support::fake_registry::{FakeRegistry, Reply};
use support::registry::{Auth, Registry};
use support::token_server::Policy;
use support::{check, TempDir};

const DIGEST: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A config.json with `auths` written as given (raw JSON entries).
fn raw_config(dir: &TempDir, name: &str, auths: &str) -> String {
    dir.write(name, format!(r#"{{"auths":{{{auths}}}}}"#))
}

fn policy() -> Policy {
    Policy::default()
        .user("reader", "reader-pw", "private/", &["pull"])
        .anonymous_pull("public/")
}

/// Item 1: the kubelet pulls anonymously only when no credential matches.
/// A wrong password for a public repository fails on the node (the token
/// server refuses it), so it must not read `available`; nor may a 401
/// followed by an anonymous 404 read `absent`.
#[test]
fn refused_credentials_never_fall_back_to_anonymous() {
    let reg = Registry::start(Auth::Token(policy()));
    reg.push("public/app", "v1");
    let public = reg.image("public/app:v1");
    let missing = reg.image("public/app:v9");
    let dir = TempDir::new("wrong-pw");
    let wrong = raw_config(
        &dir,
        "wrong.json",
        &format!(
            r#""{}":{{"username":"reader","password":"revoked-hunter2"}}"#,
            reg.host
        ),
    );
    let run = check(&[
        "--allow-plain-http",
        "--docker-config",
        &wrong,
        "check",
        &public,
        &missing,
    ]);
    run.assert_status(&public, "authentication_failure");
    run.assert_status(&missing, "authentication_failure");
    assert!(run.row(&public)["reason"]
        .as_str()
        .unwrap()
        .contains("rejected the credentials"));
    assert!(!run.stdout.contains("hunter2") && !run.stderr.contains("hunter2"));
    let tokens = reg.tokens.as_ref().unwrap();
    assert!(
        tokens
            .log
            .lock()
            .unwrap()
            .iter()
            .all(|(u, _)| u != "anonymous"),
        "no anonymous token request after refused credentials"
    );

    // With no matching credential the same images are pulled anonymously.
    let run = check(&["--allow-plain-http", "check", &public, &missing]);
    run.assert_status(&public, "available");
    run.assert_status(&missing, "absent");
    assert_eq!(run.row(&public)["credential"], "anonymous");

    // Credentials for another registry do not match: anonymous again.
    let elsewhere = raw_config(
        &dir,
        "elsewhere.json",
        r#""registry.example.com":{"username":"reader","password":"x"}"#,
    );
    let run = check(&[
        "--allow-plain-http",
        "--docker-config",
        &elsewhere,
        "check",
        &public,
    ]);
    run.assert_status(&public, "available");
}

/// Item 1: the next credential is tried after any failure of one, and the
/// verdict comes from the matching credentials only.
#[test]
fn every_matching_credential_is_tried_and_the_best_failure_reported() {
    let reg = Registry::start(Auth::Token(policy()));
    reg.push("private/app", "v1");
    let missing = reg.image("private/app:v2");
    let dir = TempDir::new("order");
    // Most specific key first: a wrong password, then the reader, who is
    // told the tag is not there.
    let config = raw_config(
        &dir,
        "config.json",
        &format!(
            r#""{host}/private":{{"username":"reader","password":"wrong"}},"{host}":{{"username":"reader","password":"reader-pw"}}"#,
            host = reg.host
        ),
    );
    let run = check(&[
        "--allow-plain-http",
        "--docker-config",
        &config,
        "check",
        &missing,
    ]);
    run.assert_status(&missing, "absent");
    let reason = run.row(&missing)["reason"].as_str().unwrap().to_string();
    assert!(
        reason.contains("rejected the credentials") && reason.contains("not found"),
        "the reason says what each credential got: {reason}"
    );
}

/// Item 2: the password is used as decoded. `echo reader:reader-pw | base64`
/// carries a newline, and the node's pull fails with it.
#[test]
fn auth_fields_decode_as_the_kubelet_decodes_them() {
    let reg = Registry::start(Auth::Basic(vec![("alice".into(), "alice-pw".into())]));
    reg.push("team/app", "v1");
    let image = reg.image("team/app:v1");
    let dir = TempDir::new("decode");
    let newline = raw_config(
        &dir,
        "newline.json",
        &format!(r#""{}":{{"auth":"{}"}}"#, reg.host, b64("alice:alice-pw\n")),
    );
    let run = check(&[
        "--allow-plain-http",
        "--docker-config",
        &newline,
        "check",
        &image,
    ]);
    run.assert_status(&image, "authentication_failure");

    // Unpadded base64 with a line break in it, and field names in any case,
    // are read as Go's decoders read them.
    let unpadded = b64("alice:alice-pw").trim_end_matches('=').to_string();
    let (a, b) = unpadded.split_at(6);
    let odd = dir.write(
        "odd.json",
        format!(
            r#"{{"AUTHS":{{"someone@{}":{{"Auth":"{a}\r\n{b}"}}}}}}"#,
            reg.host
        ),
    );
    let run = check(&[
        "--allow-plain-http",
        "--docker-config",
        &odd,
        "check",
        &image,
    ]);
    run.assert_status(&image, "available");

    let fields = raw_config(
        &dir,
        "fields.json",
        &format!(
            r#""{}":{{"UserName":"alice","PassWord":"alice-pw"}}"#,
            reg.host
        ),
    );
    let run = check(&[
        "--allow-plain-http",
        "--docker-config",
        &fields,
        "check",
        &image,
    ]);
    run.assert_status(&image, "available");
}

/// Item 2: a `--docker-config` the kubelet could not parse is an error at
/// start, naming the file and the entry, never a value.
#[test]
fn an_unparsable_docker_config_is_an_error_at_start() {
    let dir = TempDir::new("bad-config");
    let bad = raw_config(
        &dir,
        "bad.json",
        r#""good.example.com":{"auth":"dTpw"},"bad.example.com":{"auth":"hunter2!!"}"#,
    );
    let run = check(&["--docker-config", &bad, "check", "nginx"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains(&bad) && run.stderr.contains("bad.example.com"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("hunter2"), "{}", run.stderr);
    assert!(run.rows.is_empty());
}

/// Item 3: a token realm that moved. The cached Bearer hint points at the
/// old realm, which now answers 404; one unauthenticated request learns the
/// new challenge and the check succeeds without a restart.
#[test]
fn a_moved_token_realm_is_learnt_again() {
    let own: Arc<OnceLock<String>> = Arc::default();
    let known = own.clone();
    let fake = FakeRegistry::start(move |s, _| {
        let host = known.get().cloned().unwrap_or_default();
        let challenge = |realm: &str| {
            Reply::status(401).header(
                "WWW-Authenticate",
                &format!(r#"Bearer realm="http://{host}/{realm}",service="reg""#),
            )
        };
        let moved = !s.url.contains("first");
        if s.url.starts_with("/token-old") {
            return if moved {
                Reply::status(404)
            } else {
                Reply::status(200).body(r#"{"token":"old"}"#)
            };
        }
        if s.url.starts_with("/token-new") {
            return Reply::status(200).body(r#"{"token":"new"}"#);
        }
        match (s.authorization.as_deref(), moved) {
            (Some("Bearer old"), false) | (Some("Bearer new"), true) => {
                Reply::status(200).header("Docker-Content-Digest", DIGEST)
            }
            (_, false) => challenge("token-old"),
            (_, true) => challenge("token-new"),
        }
    });
    own.set(fake.host.clone()).unwrap();
    let first = format!("{}/first/app:v1", fake.host);
    let second = format!("{}/second/app:v1", fake.host);
    let run = check(&[
        "--plain-http-registries",
        &fake.host,
        "check",
        &first,
        &second,
    ]);
    run.assert_status(&first, "available");
    run.assert_status(&second, "available");
}

/// Item 3: a Basic hint learnt from one repository does not stop an
/// anonymous pull of another repository of the same host.
#[test]
fn a_basic_hint_with_nothing_to_send_asks_anonymously() {
    let fake = FakeRegistry::start(|s, _| {
        if s.url.contains("/private/") {
            Reply::status(401).header("WWW-Authenticate", r#"Basic realm="reg""#)
        } else {
            Reply::status(200).header("Docker-Content-Digest", DIGEST)
        }
    });
    let private = format!("{}/private/app:v1", fake.host);
    let public = format!("{}/public/app:v1", fake.host);
    let run = check(&[
        "--plain-http-registries",
        &fake.host,
        "check",
        &private,
        &public,
    ]);
    run.assert_status(&private, "authentication_failure");
    run.assert_status(&public, "available");
}

/// Item 5: mirrors first, then the image's own registry, as containerd's
/// resolver does; the output says which host answered.
#[test]
fn a_mirror_that_lacks_the_tag_falls_back_to_the_registry() {
    let upstream = Registry::start(Auth::None);
    let mirror = Registry::start(Auth::None);
    upstream.push("team/app", "v1");
    upstream.push("team/app", "v2");
    mirror.push("cache/team/app", "v1");
    let rule = format!("{}={}/cache", upstream.host, mirror.host);
    let (v1, v2, v3) = (
        upstream.image("team/app:v1"),
        upstream.image("team/app:v2"),
        upstream.image("team/app:v3"),
    );
    let run = check(&[
        "--allow-plain-http",
        "--image-mirror",
        &rule,
        "check",
        &v1,
        &v2,
        &v3,
    ]);
    run.assert_status(&v1, "available");
    assert_eq!(run.row(&v1)["host"], mirror.host);
    assert_eq!(run.row(&v1)["mirror"], rule);
    assert_eq!(
        run.row(&v1)["reference"],
        format!("{}/cache/team/app:v1", mirror.host)
    );
    run.assert_status(&v2, "available");
    assert_eq!(run.row(&v2)["host"], upstream.host);
    assert_eq!(run.row(&v2)["reference"], v2);
    assert!(run.row(&v2)["mirror"].is_null());
    run.assert_status(&v3, "absent");
    let reason = run.row(&v3)["reason"].as_str().unwrap();
    assert!(
        reason.contains(&mirror.host) && reason.contains(&upstream.host),
        "both hosts are named: {reason}"
    );

    // The mirror down: the registry still serves.
    let down = format!("{}=127.0.0.1:{}", upstream.host, support::free_port());
    let run = check(&["--allow-plain-http", "--image-mirror", &down, "check", &v1]);
    run.assert_status(&v1, "available");
    assert_eq!(run.row(&v1)["host"], upstream.host);
}

/// Item 6: an upper-case first component is a registry host, not a bad
/// format: `LOCALHOST:PORT/...` resolves like `localhost` and is pulled.
#[test]
fn an_upper_case_host_is_a_host() {
    let reg = Registry::start(Auth::None);
    reg.push("team/app", "v1");
    let port = reg.host.rsplit_once(':').unwrap().1;
    let upper = format!("LOCALHOST:{port}/team/app:v1");
    let run = check(&["--allow-plain-http", "check", &upper, "dock_.er/app:1"]);
    run.assert_status(&upper, "available");
    run.assert_status("dock_.er/app:1", "bad_image_format");
}
