//! `available` means a node could pull the image now, past the tag: the
//! manifest by digest, the build of the node's platform, the config blob
//! and every layer blob. Real Docker Distribution with blobs removed from
//! its storage and manifests deleted; a policy proxy in front of it for
//! download policies, stale proxy caches, flaky blobs and pull quotas; the
//! fake apiserver for the exporter's view.

mod support;

use std::time::Duration;

use serde_json::json;
use support::apiserver::{FakeApiServer, ServerAuth};
use support::exporter::{Exporter, FAST};
use support::policy_proxy::PolicyProxy;
use support::registry::{Auth, Registry};
use support::{check, wait_until};

fn reason(run: &support::CheckRun, image: &str) -> String {
    run.row(image)["reason"].as_str().unwrap().to_string()
}

#[test]
fn check_walks_the_path_a_node_pulls() {
    let reg = Registry::start(Auth::None);
    let ok = reg.push("team/ok", "v1");
    let nolayer = reg.push("team/nolayer", "v1");
    let (_, layers) = reg.blobs_of("team/nolayer", &nolayer);
    reg.remove_blob_data(&layers[0]);
    let noconfig = reg.push("team/noconfig", "v1");
    let (config, _) = reg.blobs_of("team/noconfig", &noconfig);
    reg.remove_blob_data(&config);
    // An index whose arm64 manifest was deleted, and one whose arm64 layer
    // is gone from storage: amd64 nodes pull them, arm64 nodes cannot.
    let gone = reg.push_index("team/gone-arm", "v1");
    let arm = entry(&reg, "team/gone-arm", &gone, "linux/arm64");
    reg.delete("team/gone-arm", &arm);
    let broken = reg.push_index("team/broken-arm", "v1");
    let arm_layer = {
        let arm = entry(&reg, "team/broken-arm", &broken, "linux/arm64");
        reg.blobs_of("team/broken-arm", &arm).1.remove(0)
    };
    reg.remove_blob_data(&arm_layer);
    let img = |r: &str| reg.image(r);
    let images = [
        img("team/ok:v1"),
        img("team/nolayer:v1"),
        img("team/noconfig:v1"),
        img("team/gone-arm:v1"),
        img("team/broken-arm:v1"),
    ];
    let before = reg.requests().len();
    let mut args = vec!["--plain-http-registries", &reg.host, "check"];
    args.extend(images.iter().map(String::as_str));
    let run = check(&args);
    assert_eq!(run.code, 1, "{}", run.stderr);
    run.assert_status(&images[0], "available");
    assert!(reason(&run, &images[0]).ends_with("; pull path verified"));
    // One HEAD of the tag, one GET of the manifest by digest, a HEAD of
    // each blob: what a node downloads, without downloading it.
    assert_eq!(reg.count("HEAD", "/v2/team/ok/manifests/v1"), 1);
    assert_eq!(reg.count("GET", &format!("/v2/team/ok/manifests/{ok}")), 1);
    assert_eq!(reg.count("HEAD", "/v2/team/ok/blobs/sha256:"), 2);
    assert_eq!(reg.count("GET", "/v2/team/ok/blobs/"), 0);

    run.assert_status(&images[1], "absent");
    let why = reason(&run, &images[1]);
    assert!(
        why.contains(&format!("layer {} missing", layers[0])) && why.contains("blob unknown"),
        "{why}"
    );
    run.assert_status(&images[2], "absent");
    let why = reason(&run, &images[2]);
    assert!(why.contains(&format!("config {config} missing")), "{why}");
    // Without --platform, the default linux/amd64 build is walked.
    run.assert_status(&images[3], "available");
    run.assert_status(&images[4], "available");
    assert!(
        !reg.requests()[before..]
            .iter()
            .any(|(_, p)| p.contains(&arm_layer)),
        "the arm64 build is not what an amd64 node pulls"
    );

    // For arm64 nodes both indexes are broken, each naming the piece.
    let run = check(&[
        "--plain-http-registries",
        &reg.host,
        "--platform",
        "linux/arm64",
        "check",
        &images[3],
        &images[4],
    ]);
    run.assert_status(&images[3], "absent");
    let why = reason(&run, &images[3]);
    assert!(
        why.contains(&format!("manifest {arm} of linux/arm64 missing")),
        "{why}"
    );
    run.assert_status(&images[4], "absent");
    let why = reason(&run, &images[4]);
    assert!(
        why.contains(&format!("layer {arm_layer} of linux/arm64 missing")),
        "{why}"
    );

    // --verify-pull-path-every 0: the tag alone, as before.
    let run = check(&[
        "--verify-pull-path-every",
        "0",
        "--plain-http-registries",
        &reg.host,
        "check",
        &images[1],
    ]);
    run.assert_status(&images[1], "available");
    let run = check(&["--verify-pull-path-every", "soon", "check", &images[1]]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("--verify-pull-path-every"),
        "{}",
        run.stderr
    );
}

/// The digest of an index entry.
fn entry(reg: &Registry, repo: &str, index: &str, platform: &str) -> String {
    reg.entries_of(repo, index)
        .into_iter()
        .find(|(p, _)| p == platform)
        .unwrap_or_else(|| panic!("no {platform} entry"))
        .1
}

#[test]
fn policies_stale_caches_flaky_blobs_and_quotas() {
    let reg = Registry::start(Auth::None);
    reg.push("team/blocked", "v1");
    reg.push("team/flaky", "v1");
    let ok = reg.push("team/ok", "v1");
    // A digest the registry no longer has, which a stale cache still answers.
    let old = reg.push("team/stale", "old");
    reg.delete("team/stale", &old);
    let proxy = PolicyProxy::start(&reg.host);
    proxy.set(|r| {
        r.refuse_gets.push("/team/blocked/".into());
        r.stale_tags
            .push(("team/stale/manifests/v1".into(), old.clone()));
        r.failing_blobs.push("/team/flaky/".into());
    });
    let img = |r: &str| proxy.image(r);
    let (blocked, stale, flaky, okay) = (
        img("team/blocked:v1"),
        img("team/stale:v1"),
        img("team/flaky:v1"),
        img("team/ok:v1"),
    );
    let base = ["--plain-http-registries", &proxy.host, "check"];
    let run = check(&[&base[..], &[&blocked, &stale, &flaky, &okay]].concat());
    // HEAD passes, the download is refused: the node's pull fails.
    run.assert_status(&blocked, "authorization_failure");
    let why = reason(&run, &blocked);
    assert!(
        why.contains("download refused: GET manifest sha256:")
            && why.contains("HTTP 403")
            && why.contains("download blocked by policy"),
        "{why}"
    );
    run.assert_status(&stale, "absent");
    let why = reason(&run, &stale);
    assert!(
        why.contains(&format!("manifest {old} missing"))
            && why.contains("the tag answers a digest the registry cannot serve"),
        "{why}"
    );
    // A 503 on a blob says nothing about the image: the tag's verdict
    // stands, and the reason says the path was not verified.
    run.assert_status(&flaky, "available");
    let why = reason(&run, &flaky);
    assert!(
        why.contains("pull path not verified") && why.contains("HTTP 503"),
        "{why}"
    );
    run.assert_status(&okay, "available");

    // 2 of 100 pulls left: no manifest GET; the tag still gets its verdict.
    proxy.set(|r| r.quota = Some((100, 2)));
    let gets = proxy.count("GET", "/manifests/");
    let run = check(&[&base[..], &[&okay, &blocked]].concat());
    run.assert_status(&okay, "available");
    run.assert_status(&blocked, "available");
    let why = reason(&run, &okay);
    assert!(
        why.contains("pull path not verified")
            && why.contains("2 of 100 pulls left, below the 50% kept for the nodes"),
        "{why}"
    );
    assert_eq!(proxy.count("GET", "/manifests/"), gets, "no counted pull");
    // Platform reads are counted pulls too.
    let run = check(
        &[
            &base[..1],
            &[&proxy.host, "--platform", "linux/amd64", "check", &okay],
        ]
        .concat(),
    );
    run.assert_status(&okay, "available");
    assert_eq!(proxy.count("GET", "/manifests/"), gets);
    // A lower reserve lets it through, and 60 of 100 is above the default.
    let run = check(&[&["--pull-quota-reserve", "1%"], &base[..], &[&okay]].concat());
    assert!(
        reason(&run, &okay).ends_with("pull path verified"),
        "{:?}",
        run.rows
    );
    assert_eq!(
        proxy.count("GET", &format!("/manifests/{ok}")),
        2,
        "one GET in the first run, one now"
    );
    proxy.set(|r| r.quota = Some((100, 60)));
    let run = check(&[&base[..], &[&okay]].concat());
    assert!(reason(&run, &okay).ends_with("pull path verified"));
    let run = check(&["--pull-quota-reserve", "101", "check", &okay]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("--pull-quota-reserve"),
        "{}",
        run.stderr
    );
}

fn node(name: &str, arch: &str) -> serde_json::Value {
    json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/arch": arch, "kubernetes.io/os": "linux"}},
        "spec": {},
        "status": {"nodeInfo": {"architecture": arch, "operatingSystem": "linux"}},
    })
}

#[test]
fn the_exporter_walks_each_digest_once_and_judges_per_container() {
    let reg = Registry::start(Auth::None);
    reg.push("team/ok", "v1");
    let nolayer = reg.push("team/nolayer", "v1");
    let layer = reg.blobs_of("team/nolayer", &nolayer).1.remove(0);
    reg.remove_blob_data(&layer);
    let multi = reg.push_index("team/multi", "v1");
    let arm = entry(&reg, "team/multi", &multi, "linux/arm64");
    let arm_layer = reg.blobs_of("team/multi", &arm).1.remove(0);
    reg.remove_blob_data(&arm_layer);
    let proxy = PolicyProxy::start(&reg.host);
    let api = FakeApiServer::start(ServerAuth::Tokens(vec!["pp".into()]));
    api.apply("nodes", node("amd-1", "amd64"));
    for (name, image) in [
        ("ok", "team/ok:v1"),
        ("nolayer", "team/nolayer:v1"),
        ("multi", "team/multi:v1"),
    ] {
        api.deploy("p", name, &proxy.image(image));
    }
    let kc = api.kubeconfig(&FakeApiServer::token_user("pp"));
    let mut args: Vec<&str> = FAST.to_vec();
    args.extend(["--plain-http-registries", &proxy.host]);
    let e = Exporter::start(&kc, &args);
    e.wait_status("p", "ok", "app", "available");
    e.wait_status("p", "nolayer", "app", "absent");
    // Its arm64 build is broken, but no arm64 node exists.
    e.wait_status("p", "multi", "app", "available");
    let row = e.status_row("nolayer");
    assert!(
        row["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("layer {layer} missing")),
        "{row}"
    );

    // Healthy digests are walked once: later rounds are one HEAD each.
    // (manifest GETs, blob requests): the platform read GETs a single
    // image's config blob, which the walk then does not ask again.
    let walked = |repo: &str| {
        let blobs = format!("/v2/{repo}/blobs/");
        (
            proxy.count("GET", &format!("/v2/{repo}/manifests/sha256:")),
            proxy.count("HEAD", &blobs) + proxy.count("GET", &blobs),
        )
    };
    wait_until("the first walks", Duration::from_secs(20), || {
        walked("team/ok").1 >= 2 && walked("team/multi").1 >= 2
    });
    let first = (
        walked("team/ok"),
        walked("team/multi"),
        walked("team/nolayer"),
    );
    let heads = proxy.count("HEAD", "/manifests/v1");
    wait_until("three more rounds", Duration::from_secs(30), || {
        proxy.count("HEAD", "/manifests/v1") >= heads + 9
    });
    assert_eq!(walked("team/ok"), first.0, "ok walked again");
    assert_eq!(walked("team/multi"), first.1, "multi walked again");
    assert_eq!(
        first.0,
        (1, 2),
        "a GET of the manifest, config and layer blobs"
    );
    assert_eq!(
        first.1,
        (2, 2),
        "the index and the amd64 manifest; its config and layer"
    );
    // A broken path is walked again each round, so a repair shows at once.
    assert!(walked("team/nolayer").0 > first.2 .0);
    println!(
        "first round: ok {:?}, multi {:?} (GETs, blob HEADs); {} tag HEADs later: no more",
        first.0,
        first.1,
        proxy.count("HEAD", "/manifests/v1") - heads
    );

    // An arm64 node joins: arm64 builds are walked, and the index's broken
    // arm64 layer now fails the workload that can land there.
    api.apply("nodes", node("arm-1", "arm64"));
    e.wait_status("p", "multi", "app", "absent");
    e.wait_status("p", "ok", "app", "platform_unavailable");
    let samples = e.metrics();
    assert!(samples
        .iter()
        .all(|s| !s.name.contains("rate_limit_remaining")));
    api.delete("nodes", "", "arm-1");
    e.wait_status("p", "multi", "app", "available");

    // 2 of 100 pulls left: a new image gets its verdict with no manifest
    // GET, and the quota is exported.
    proxy.set(|r| r.quota = Some((100, 2)));
    reg.push("team/ok", "v2");
    let gets = proxy.count("GET", "/manifests/");
    api.deploy("p", "ok2", &proxy.image("team/ok:v2"));
    e.wait_status("p", "ok2", "app", "available");
    let heads = proxy.count("HEAD", "/manifests/");
    wait_until("two more rounds", Duration::from_secs(20), || {
        proxy.count("HEAD", "/manifests/") >= heads + 8
    });
    assert_eq!(proxy.count("GET", "/manifests/"), gets, "no counted pull");
    let samples = e.metrics();
    let gauge = |name: &str| {
        samples
            .iter()
            .find(|s| s.name == name && s.labels.get("registry") == Some(&proxy.host))
            .unwrap_or_else(|| panic!("no {name}"))
            .value
    };
    assert_eq!(
        gauge("k8s_image_availability_exporter_registry_rate_limit_remaining"),
        2.0
    );
    assert_eq!(
        gauge("k8s_image_availability_exporter_registry_rate_limit_limit"),
        100.0
    );
    assert!(!e.log().contains("panicked"), "{}", e.log());
}
