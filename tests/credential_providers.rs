//! Kubelet image credential provider plugins, run as the kubelet runs them,
//! against the real Docker Distribution registry (htpasswd and token modes).
//! The plugin is a small shell script: it records each run (arguments, one
//! environment variable, the request on stdin) and answers what the test
//! wrote for it.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use k8s_image_availability_exporter::credentials::provider::{
    CredentialProviders, ProviderOptions,
};
use k8s_image_availability_exporter::image::reference::{Mirrored, Reference};
use k8s_image_availability_exporter::registry::Checker;
use support::apiserver::{FakeApiServer, ServerAuth};
use support::cluster::registry_config;
use support::exporter::{Exporter, FAST};
use support::registry::{Auth, Registry};
use support::token_server::Policy;
use support::{check, TempDir};

const PLUGIN: &str = r#"#!/bin/sh
# A fake image credential provider: records the run, then answers.
dir=$(dirname "$0")
request=$(cat)
printf '%s|%s|%s\n' "$*" "$FAKE_ENV" "$request" >> "$dir/runs-$(basename "$0").log"
if [ -n "$PLUGIN_SLEEP" ]; then sleep "$PLUGIN_SLEEP"; fi
if [ -n "$PLUGIN_EXIT" ]; then echo "boom: no cloud identity" >&2; exit "$PLUGIN_EXIT"; fi
echo "plugin diagnostics on stderr" >&2
cat "$dir/response-$(basename "$0").json"
"#;

/// A bin dir with plugins named `names`, and a config file.
struct Plugins {
    dir: TempDir,
    config: String,
}

impl Plugins {
    /// `providers` is the YAML list of providers (each `- name: ...`).
    fn new(names: &[&str], providers: &str) -> Plugins {
        let dir = TempDir::new("plugins");
        for name in names {
            let path = dir.write(name, PLUGIN);
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let config = dir.write(
            "config.yaml",
            format!("apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n{providers}"),
        );
        Plugins { dir, config }
    }

    /// One plugin, `fake`, for `host`, answering `cloud`/`cloud-pw` for the
    /// registry with the default cache duration (1h).
    fn serving(host: &str) -> Plugins {
        let plugins = Plugins::new(&["fake"], &provider("fake", &format!("'{host}'"), "1h", ""));
        plugins.answer(
            "fake",
            &response("Registry", None, host, "cloud", "cloud-pw"),
        );
        plugins
    }

    fn answer(&self, name: &str, response: &str) {
        self.dir.write(&format!("response-{name}.json"), response);
    }

    /// One line per run: `args|FAKE_ENV|request`.
    fn runs(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.dir.join(&format!("runs-{name}.log")))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn flags(&self) -> Vec<String> {
        vec![
            "--image-credential-provider-config".into(),
            self.config.clone(),
            "--image-credential-provider-bin-dir".into(),
            self.dir.path().display().to_string(),
        ]
    }

    fn load(&self, timeout: Duration) -> CredentialProviders {
        CredentialProviders::load(&ProviderOptions {
            config: self.config.clone().into(),
            bin_dir: self.dir.path().to_path_buf(),
            timeout,
            max_running: 4,
        })
        .unwrap()
    }
}

fn provider(name: &str, matches: &str, default_cache: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    matchImages: [{matches}]\n    defaultCacheDuration: {default_cache}\n    apiVersion: credentialprovider.kubelet.k8s.io/v1\n{extra}"
    )
}

fn response(
    key_type: &str,
    duration: Option<&str>,
    registry: &str,
    user: &str,
    password: &str,
) -> String {
    let duration = duration
        .map(|d| format!(r#""cacheDuration":"{d}","#))
        .unwrap_or_default();
    format!(
        r#"{{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"{key_type}",{duration}"auth":{{"{registry}":{{"username":"{user}","password":"{password}"}}}}}}"#
    )
}

fn run_check(plugins: &Plugins, extra: &[&str], images: &[&str]) -> support::CheckRun {
    let flags = plugins.flags();
    let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
    args.push("--allow-plain-http");
    args.extend_from_slice(extra);
    args.push("check");
    args.extend_from_slice(images);
    check(&args)
}

fn htpasswd_registry() -> Registry {
    let reg = Registry::start(Auth::Basic(vec![("cloud".into(), "cloud-pw".into())]));
    reg.push("team/app", "v1");
    reg.push("team/other", "v1");
    reg
}

#[test]
fn a_matching_provider_supplies_credentials_and_others_do_not_run() {
    let reg = htpasswd_registry();
    let plugins = Plugins::new(
        &["fake"],
        &provider(
            "fake",
            &format!("'{}'", reg.host),
            "1h",
            "    args: [get-credentials, --verbose]\n    env: [{name: FAKE_ENV, value: from-config}]\n",
        ),
    );
    plugins.answer(
        "fake",
        &response("Registry", None, &reg.host, "cloud", "cloud-pw"),
    );
    let image = reg.image("team/app:v1");
    // The same registry under another name: the provider does not match it.
    let port = reg.host.rsplit_once(':').unwrap().1;
    let unmatched = format!("localhost:{port}/team/app:v1");
    let run = run_check(&plugins, &[], &[&image, &unmatched]);
    run.assert_status(&image, "available");
    assert_eq!(
        run.row(&image)["credential"],
        format!("credential provider fake ({})", reg.host)
    );
    run.assert_status(&unmatched, "authentication_failure");
    let runs = plugins.runs("fake");
    assert_eq!(runs.len(), 1, "{runs:?}");
    let [args, env, request] = runs[0].splitn(3, '|').collect::<Vec<_>>()[..] else {
        panic!("{runs:?}")
    };
    assert_eq!(args, "get-credentials --verbose");
    assert_eq!(env, "from-config");
    let request: serde_json::Value = serde_json::from_str(request).unwrap();
    assert_eq!(request["kind"], "CredentialProviderRequest");
    assert_eq!(
        request["apiVersion"],
        "credentialprovider.kubelet.k8s.io/v1"
    );
    // As the kubelet passes it: the repository to pull, without tag.
    assert_eq!(request["image"], format!("{}/team/app", reg.host));
    assert!(!run.stderr.contains("cloud-pw") && !run.stdout.contains("cloud-pw"));
    assert!(
        run.stderr.contains("plugin diagnostics on stderr"),
        "stderr is logged"
    );
}

/// Plugin runs for two images of one registry, per cacheKeyType and duration.
#[test]
fn cache_key_types_and_durations() {
    let reg = htpasswd_registry();
    let images = [reg.image("team/app:v1"), reg.image("team/other:v1")];
    let images: Vec<&str> = images.iter().map(String::as_str).collect();
    for (key_type, duration, default, want_runs) in [
        ("Registry", Some("1h"), "0s", 1),
        ("Image", Some("1h"), "0s", 2),
        ("Global", Some("1h"), "0s", 1),
        ("Registry", Some("0s"), "1h", 2),
        ("Registry", None, "1h", 1),
        ("Registry", None, "0s", 2),
    ] {
        let plugins = Plugins::new(
            &["fake"],
            &provider("fake", &format!("'{}'", reg.host), default, ""),
        );
        plugins.answer(
            "fake",
            &response(key_type, duration, &reg.host, "cloud", "cloud-pw"),
        );
        let run = run_check(&plugins, &[], &images);
        for image in &images {
            run.assert_status(image, "available");
        }
        assert_eq!(
            plugins.runs("fake").len(),
            want_runs,
            "{key_type} {duration:?} default {default}"
        );
    }
}

#[test]
fn an_expired_entry_runs_the_plugin_again() {
    let plugins = Plugins::new(&["fake"], &provider("fake", "'r.example.com'", "0s", ""));
    plugins.answer(
        "fake",
        &response("Registry", Some("1s"), "r.example.com", "u", "p"),
    );
    let providers = plugins.load(Duration::from_secs(10));
    let r = Reference::parse("r.example.com/team/app:1").unwrap();
    assert_eq!(providers.credentials(&r).credentials.len(), 1);
    assert_eq!(providers.credentials(&r).credentials.len(), 1);
    assert_eq!(plugins.runs("fake").len(), 1, "cached");
    // The condition is the passing of the cache duration itself.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(providers.credentials(&r).credentials.len(), 1);
    assert_eq!(plugins.runs("fake").len(), 2, "expired");
}

#[test]
fn concurrent_checks_of_one_image_run_the_plugin_once() {
    let plugins = Plugins::new(
        &["fake"],
        &provider(
            "fake",
            "'r.example.com'",
            "0s",
            "    env: [{name: PLUGIN_SLEEP, value: '1'}]\n",
        ),
    );
    plugins.answer(
        "fake",
        &response("Image", Some("0s"), "r.example.com", "u", "p"),
    );
    let providers = Arc::new(plugins.load(Duration::from_secs(10)));
    // All eight ask at once; the one run takes a second, far longer than
    // it takes the others to arrive.
    let start = Arc::new(std::sync::Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (p, start) = (providers.clone(), start.clone());
            std::thread::spawn(move || {
                let r = Reference::parse("r.example.com/team/app:1").unwrap();
                start.wait();
                p.credentials(&r).credentials.len()
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 1);
    }
    assert_eq!(plugins.runs("fake").len(), 1, "single flight");
}

#[test]
fn failing_hanging_and_garbled_plugins_give_no_credentials_and_say_why() {
    let reg = htpasswd_registry();
    let image = reg.image("team/app:v1");
    let cases: &[(&str, &str, &str)] = &[
        (
            "    env: [{name: PLUGIN_EXIT, value: '3'}]\n",
            "",
            "plugin failed: exit status: 3: boom: no cloud identity",
        ),
        (
            "    env: [{name: PLUGIN_SLEEP, value: '5'}]\n",
            "",
            "plugin did not answer within 1s",
        ),
        (
            "",
            "garbage secret-ish output",
            "invalid response: not a CredentialProviderResponse",
        ),
        (
            "",
            &response("Registry", None, &reg.host, "cloud", "cloud-pw")
                .replace("kubelet.k8s.io/v1\"", "kubelet.k8s.io/v1beta1\""),
            "apiVersion \"credentialprovider.kubelet.k8s.io/v1beta1\" does not match",
        ),
        (
            "",
            &response("Node", None, &reg.host, "cloud", "cloud-pw"),
            "cacheKeyType \"Node\"",
        ),
    ];
    for (extra, answer, want) in cases {
        let plugins = Plugins::new(
            &["fake"],
            &provider("fake", &format!("'{}'", reg.host), "1h", extra),
        );
        plugins.answer("fake", answer);
        let run = run_check(
            &plugins,
            &["--image-credential-provider-timeout", "1s"],
            &[&image],
        );
        run.assert_status(&image, "authentication_failure");
        let reason = run.row(&image)["reason"].as_str().unwrap().to_string();
        assert!(
            reason.contains("credential provider fake") && reason.contains(want),
            "{want}: {reason}"
        );
        assert!(!reason.contains("secret-ish") && !run.stderr.contains("secret-ish"));
    }
}

#[test]
fn node_credentials_come_after_the_docker_config_and_each_is_tried() {
    let reg = Registry::start(Auth::Token(
        Policy::default()
            .user("cloud", "cloud-pw", "team/", &["pull"])
            .user("stale", "stale-pw", "elsewhere/", &["pull"]),
    ));
    reg.push("team/app", "v1");
    let image = reg.image("team/app:v1");
    let plugins = Plugins::serving(&reg.host);
    let dir = TempDir::new("both");
    let config = dir.write(
        "config.json",
        format!(
            r#"{{"auths":{{"{}":{{"username":"stale","password":"stale-pw"}}}}}}"#,
            reg.host
        ),
    );
    let run = run_check(&plugins, &["--docker-config", &config], &[&image]);
    run.assert_status(&image, "available");
    assert_eq!(
        run.row(&image)["credential"],
        format!("credential provider fake ({})", reg.host)
    );
    let users: Vec<String> = reg.tokens.as_ref().unwrap().users();
    assert_eq!(
        users,
        ["stale", "cloud"],
        "the docker config first, then the provider"
    );
}

#[test]
fn an_invalid_configuration_is_an_error_at_start() {
    let plugins = Plugins::new(&["fake"], &provider("fake", "'bad host'", "1h", ""));
    let run = run_check(&plugins, &[], &["nginx"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("match image \"bad host\" is invalid"),
        "{}",
        run.stderr
    );
    // A provider whose binary is missing, and a missing bin dir.
    let plugins = Plugins::new(&[], &provider("absent", "'r.io'", "1h", ""));
    let run = run_check(&plugins, &[], &["nginx"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("plugin binary"), "{}", run.stderr);
    let run = check(&[
        "--image-credential-provider-config",
        &plugins.config,
        "--image-credential-provider-bin-dir",
        "/nonexistent/kiae-plugins",
        "check",
        "nginx",
    ]);
    assert_eq!(run.code, 2);
    let run = check(&[
        "--image-credential-provider-config",
        &plugins.config,
        "check",
        "nginx",
    ]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("go together"), "{}", run.stderr);
}

#[test]
fn cloud_registry_patterns() {
    let plugins = Plugins::new(
        &["ecr", "gcp", "acr"],
        &[
            provider(
                "ecr",
                "'*.dkr.ecr.*.amazonaws.com', '*.dkr.ecr.*.amazonaws.com.cn'",
                "0s",
                "",
            ),
            provider("gcp", "'*.gcr.io', '*-docker.pkg.dev'", "0s", ""),
            provider("acr", "'*.azurecr.io'", "0s", ""),
        ]
        .concat(),
    );
    let providers = plugins.load(Duration::from_secs(5));
    for (image, matched) in [
        (
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app:1",
            true,
        ),
        ("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/app", true),
        ("dkr.ecr.us-east-1.amazonaws.com/app", false),
        ("europe-west1-docker.pkg.dev/project/repo/app:1", true),
        ("eu.gcr.io/project/app", true),
        ("gcr.io/project/app", false),
        ("team.azurecr.io/app", true),
        ("docker.io/library/nginx", false),
    ] {
        assert_eq!(
            providers.matches(&Reference::parse(image).unwrap()),
            matched,
            "{image}"
        );
    }
}

/// The figure the issue asks for: plugin runs for 1,000 checks over 10
/// repositories of one registry with cacheKeyType Registry.
#[test]
fn a_thousand_checks_over_ten_repositories_run_the_plugin_once() {
    let reg = Registry::start(Auth::Basic(vec![("cloud".into(), "cloud-pw".into())]));
    for i in 0..10 {
        reg.push(&format!("team/app{i}"), "v1");
    }
    let plugins = Plugins::new(
        &["fake"],
        &provider("fake", &format!("'{}'", reg.host), "0s", ""),
    );
    plugins.answer(
        "fake",
        &response("Registry", Some("1h"), &reg.host, "cloud", "cloud-pw"),
    );
    let mut config = registry_config().checker;
    config.allow_plain_http = true;
    config.providers = Some(Arc::new(plugins.load(Duration::from_secs(10))));
    let checker = Checker::new(config).unwrap();
    let mut available = 0;
    for n in 0..1000 {
        let r = Reference::parse(&reg.image(&format!("team/app{}:v1", n % 10))).unwrap();
        let result = checker.check_mirrored(&Mirrored::direct(r), &[]);
        available += usize::from(result.status.as_str() == "available");
    }
    let runs = plugins.runs("fake").len();
    println!("1000 checks over 10 repositories, cacheKeyType Registry: {runs} plugin run(s), {available} available");
    assert_eq!(available, 1000);
    assert_eq!(runs, 1);
}

/// End to end: a workload with no pull secret whose image only the node's
/// plugin credentials can pull is `available`, and /metrics counts the runs.
#[test]
fn a_workload_without_pull_secrets_is_pulled_with_the_providers_credentials() {
    let reg = htpasswd_registry();
    let plugins = Plugins::serving(&reg.host);
    let api = FakeApiServer::start(ServerAuth::Tokens(vec!["cp".into()]));
    let kc = api.kubeconfig(&FakeApiServer::token_user("cp"));
    api.deploy("a", "web", &reg.image("team/app:v1"));
    // A pod secret that matches too, with a stale password: tried first
    // (the pod's secrets before the node's), then the provider's.
    api.apply(
        "secrets",
        support::objects::pull_secret("a", "stale", &reg.host, "cloud", "stale-pw"),
    );
    api.apply(
        "deployments",
        support::objects::deployment(
            "a",
            "with-secret",
            1,
            &support::objects::Template::image(&reg.image("team/other:v1")).pull_secret("stale"),
        ),
    );
    let flags = plugins.flags();
    let mut args: Vec<&str> = FAST.to_vec();
    args.extend(flags.iter().map(String::as_str));
    args.extend(["--plain-http-registries", &reg.host]);
    let e = Exporter::start(&kc, &args);
    e.wait_status("a", "web", "app", "available");
    e.wait_status("a", "with-secret", "app", "available");
    let m = e.metrics();
    let runs = m
        .iter()
        .find(|s| {
            s.name == "k8s_image_availability_exporter_credential_provider_runs_total"
                && s.labels["provider"] == "fake"
                && s.labels["result"] == "success"
        })
        .map(|s| s.value);
    // Two images checked at once may both miss the Registry cache: single
    // flight is per image, as in the kubelet (its comment names this case).
    assert!(
        matches!(runs, Some(n) if (1.0..=2.0).contains(&n)),
        "{runs:?}"
    );
    // The check of with-secret carries the pod secret; the provider's
    // credentials are added after it, when the check runs.
    assert!(
        m.iter().any(
            |s| s.name == "k8s_image_availability_exporter_last_check_timestamp_seconds"
                && s.labels["credentials"].starts_with("secret a/stale")
        ),
        "the pod secret is part of the check"
    );
    assert!(Path::new(&plugins.dir.join("runs-fake.log")).exists());
}
