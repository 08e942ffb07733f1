//! The platform check: an image that is in the registry but has no build
//! for the nodes its pods can be scheduled on is `platform_unavailable`.
//! Real Docker Distribution with manifest lists, OCI indexes and
//! single-platform images; the fake apiserver with Nodes of mixed
//! platforms, labels and taints.

mod support;

use std::time::Duration;

use serde_json::json;
use support::apiserver::{FakeApiServer, ServerAuth};
use support::exporter::{Exporter, FAST};
use support::registry::{Auth, Registry};
use support::{check, wait_until};

#[test]
fn check_platform_reads_indexes_lists_and_single_images() {
    let reg = Registry::start(Auth::None);
    reg.push_platform("team/amd", "v1", "linux/amd64");
    reg.push_platform("team/arm", "v1", "linux/arm64/v8");
    reg.push_index_of("team/multi", "v1", &["linux/amd64", "linux/arm64"], false);
    reg.push_index_of("team/list", "v1", &["linux/amd64", "linux/arm/v7"], true);
    // The harness's own pushes read manifests too: count from here.
    let harness_gets = reg.count("GET", "/v2/team/multi/");
    let img = |r: &str| reg.image(r);
    let images = [
        img("team/amd:v1"),
        img("team/arm:v1"),
        img("team/multi:v1"),
        img("team/list:v1"),
        img("team/amd:gone"),
    ];
    // The platform read's own cost; the pull path walk is counted in
    // tests/pull_path.rs.
    let mut args = vec![
        "--verify-pull-path-every",
        "0",
        "--plain-http-registries",
        &reg.host,
        "--platform",
        "linux/arm64",
        "check",
    ];
    args.extend(images.iter().map(String::as_str));
    let run = check(&args);
    assert_eq!(run.code, 1, "{}", run.stderr);
    // A single amd64 image pulls on an arm64 node and then dies with
    // "exec format error": platform_unavailable, with its platforms.
    run.assert_status(&images[0], "platform_unavailable");
    let amd = run.row(&images[0]);
    assert!(
        amd["reason"].as_str().unwrap().contains("linux/arm64")
            && amd["reason"]
                .as_str()
                .unwrap()
                .contains("it has linux/amd64"),
        "{amd}"
    );
    assert_eq!(amd["platforms"], json!(["linux/amd64"]));
    // HEAD, then GET of the manifest and of its config blob.
    assert_eq!(reg.count("HEAD", "/v2/team/amd/"), 2, "v1 and gone");
    assert_eq!(reg.count("GET", "/v2/team/amd/manifests/sha256:"), 1);
    assert_eq!(reg.count("GET", "/v2/team/amd/blobs/sha256:"), 1);
    run.assert_status(&images[1], "available");
    run.assert_status(&images[2], "available");
    let multi = run.row(&images[2]);
    // The attestation entry (unknown/unknown) is not a platform.
    assert_eq!(multi["platforms"], json!(["linux/amd64", "linux/arm64"]));
    // HEAD and one GET of the index: entries carry their platforms.
    assert_eq!(
        reg.count("GET", "/v2/team/multi/") - harness_gets,
        1,
        "{multi}"
    );
    // arm64 runs 32-bit arm/v7, as containerd's matcher says.
    run.assert_status(&images[3], "available");
    // Every other class wins: a missing tag is absent.
    run.assert_status(&images[4], "absent");

    // arm/v6 does not run arm/v7; windows does not run linux.
    let run = check(&[
        "--plain-http-registries",
        &reg.host,
        "--platform",
        "linux/arm/v6,windows/amd64",
        "check",
        &images[3],
    ]);
    run.assert_status(&images[3], "platform_unavailable");
    let reason = run.row(&images[3])["reason"].as_str().unwrap().to_string();
    assert!(
        reason.contains("linux/arm/v6") && reason.contains("windows/amd64"),
        "{reason}"
    );
    // Without --platform: no GET, no platforms.
    let gets = reg.count("GET", "/v2/team/");
    let run = check(&[
        "--verify-pull-path-every=0",
        "--plain-http-registries",
        &reg.host,
        "check",
        &images[0],
    ]);
    run.assert_status(&images[0], "available");
    assert_eq!(reg.count("GET", "/v2/team/"), gets);
    assert!(run.row(&images[0]).get("platforms").is_none());
    // A bad --platform is a usage error.
    let run = check(&["--platform", "arm64", "check", &images[0]]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("--platform"), "{}", run.stderr);
}

fn node(
    name: &str,
    arch: &str,
    labels: &[(&str, &str)],
    taint: Option<(&str, &str)>,
) -> serde_json::Value {
    let mut l = serde_json::Map::new();
    l.insert("kubernetes.io/arch".into(), json!(arch));
    l.insert("kubernetes.io/os".into(), json!("linux"));
    l.insert("kubernetes.io/hostname".into(), json!(name));
    for (k, v) in labels {
        l.insert(k.to_string(), json!(v));
    }
    let taints: Vec<serde_json::Value> = taint
        .into_iter()
        .map(|(k, v)| json!({"key": k, "value": v, "effect": "NoSchedule"}))
        .collect();
    // A real Node's status is large (every image on it): the exporter must
    // skip it without building it.
    let images: Vec<serde_json::Value> = (0..200)
        .map(|i| json!({"names": [format!("registry.example/img{i}@sha256:{i:064}")], "sizeBytes": 1000 + i}))
        .collect();
    json!({
        "metadata": {"name": name, "labels": l},
        "spec": {"taints": taints},
        "status": {"nodeInfo": {"architecture": arch, "operatingSystem": "linux"}, "images": images},
    })
}

fn deployment(ns: &str, name: &str, image: &str, pod: serde_json::Value) -> serde_json::Value {
    let mut spec = json!({"containers": [{"name": "app", "image": image}]});
    for (k, v) in pod.as_object().unwrap() {
        spec[k] = v.clone();
    }
    json!({
        "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": spec}},
    })
}

fn daemonset(ns: &str, name: &str, image: &str, pod: serde_json::Value) -> serde_json::Value {
    let mut d = deployment(ns, name, image, pod);
    d["spec"].as_object_mut().unwrap().remove("replicas");
    d["status"] = json!({"desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberMisscheduled": 0, "numberReady": 2});
    d
}

#[test]
fn workloads_read_platform_unavailable_for_the_nodes_they_can_land_on() {
    let reg = Registry::start(Auth::None);
    reg.push_platform("team/amd", "v1", "linux/amd64");
    reg.push_index_of("team/multi", "v1", &["linux/amd64", "linux/arm64"], false);
    let amd = reg.image("team/amd:v1");
    let multi = reg.image("team/multi:v1");
    let api = FakeApiServer::start(ServerAuth::Tokens(vec!["pt".into()]));
    // Two amd64 nodes, and one arm64 node reserved by a taint.
    api.apply("nodes", node("amd-1", "amd64", &[], None));
    api.apply("nodes", node("amd-2", "amd64", &[], None));
    api.apply(
        "nodes",
        node(
            "arm-1",
            "arm64",
            &[("pool", "arm")],
            Some(("dedicated", "arm")),
        ),
    );
    let tolerate = json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "arm", "effect": "NoSchedule"}]});
    // Lands on amd64 only: available.
    api.apply("deployments", deployment("p", "unpinned", &amd, json!({})));
    // Tolerates the arm64 node: it needs arm64 too.
    api.apply(
        "deployments",
        deployment("p", "tolerant", &amd, tolerate.clone()),
    );
    // Tolerates it, but pinned to amd64 by nodeSelector.
    let mut pinned = tolerate.clone();
    pinned["nodeSelector"] = json!({"kubernetes.io/arch": "amd64"});
    api.apply("deployments", deployment("p", "pinned", &amd, pinned));
    // Pinned to the arm pool by required node affinity.
    let mut affine = tolerate.clone();
    affine["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["arm"]}]}]}}});
    api.apply(
        "deployments",
        deployment("p", "affine", &amd, affine.clone()),
    );
    api.apply(
        "deployments",
        deployment("p", "affine-multi", &multi, affine),
    );
    // A DaemonSet tolerating everything runs on every node.
    api.apply(
        "daemonsets",
        daemonset(
            "p",
            "agent",
            &amd,
            json!({"tolerations": [{"operator": "Exists"}]}),
        ),
    );
    let kc = api.kubeconfig(&FakeApiServer::token_user("pt"));
    let mut args: Vec<&str> = FAST.to_vec();
    // The platform read's own cost; the pull path walk is counted in
    // tests/pull_path.rs.
    args.extend([
        "--plain-http-registries",
        &reg.host,
        "--verify-pull-path-every",
        "0",
    ]);
    let before_gets = reg.count("GET", "/v2/team/");
    let e = Exporter::start(&kc, &args);
    e.wait_status("p", "tolerant", "app", "platform_unavailable");
    e.wait_status("p", "affine", "app", "platform_unavailable");
    e.wait_status("p", "agent", "app", "platform_unavailable");
    for name in ["unpinned", "pinned", "affine-multi"] {
        e.wait_status("p", name, "app", "available");
    }
    // The reason names the missing platform and its nodes.
    let row = e.status_row("tolerant");
    assert_eq!(row["status"], "platform_unavailable");
    let reason = row["reason"].as_str().unwrap();
    assert!(
        reason.contains("linux/arm64 (1 node)") && reason.contains("it has linux/amd64"),
        "{reason}"
    );

    // One GET per digest: the amd64 manifest and its config, the index.
    let first = reg.count("GET", "/v2/team/") - before_gets;
    assert_eq!(first, 3, "{:#?}", reg.requests());
    // Steady state: several more rounds of HEADs and not one more GET.
    let heads = reg.count("HEAD", "/v2/team/");
    wait_until(
        "three more rounds of checks",
        Duration::from_secs(20),
        || reg.count("HEAD", "/v2/team/") >= heads + 6,
    );
    assert_eq!(reg.count("GET", "/v2/team/") - before_gets, first);
    println!(
        "GETs: {first} in the first round, 0 in the next {} HEADs",
        reg.count("HEAD", "/v2/team/") - heads
    );

    // An arm64 node anyone may use: now the unpinned workload needs arm64,
    // with no new request (the platforms of its image are known).
    api.apply("nodes", node("arm-2", "arm64", &[], None));
    e.wait_status("p", "unpinned", "app", "platform_unavailable");
    e.wait_status("p", "pinned", "app", "available");
    // It goes: back to available.
    api.delete("nodes", "", "arm-2");
    e.wait_status("p", "unpinned", "app", "available");

    // The multi-platform tag is pushed again as amd64 only: a new digest,
    // read once, and the workload on the arm pool loses its platform.
    let list = reg.push_index_of("team/multi", "v1", &["linux/amd64"], true);
    e.wait_status("p", "affine-multi", "app", "platform_unavailable");
    // The harness reads only the entries it pushes; the index is ours.
    assert_eq!(
        reg.count("GET", &format!("/v2/team/multi/manifests/{list}")),
        1,
        "one GET for the new index digest"
    );
    let later = reg.count("GET", "/v2/team/");
    let heads = reg.count("HEAD", "/v2/team/");
    wait_until("two more rounds", Duration::from_secs(20), || {
        reg.count("HEAD", "/v2/team/") >= heads + 4
    });
    assert_eq!(reg.count("GET", "/v2/team/"), later);
    assert!(!e.log().contains("panicked"), "{}", e.log());
    // Every platform read went the way its manifest answer came (plain
    // http here), whatever another check was trying at the time.
    assert!(
        !e.log().contains("cannot read its platforms"),
        "{}",
        e.log()
    );
}

#[test]
fn without_nodes_platform_checks_are_off() {
    let reg = Registry::start(Auth::None);
    reg.push_platform("team/amd", "v1", "linux/amd64");
    let amd = reg.image("team/amd:v1");
    let api = FakeApiServer::start(ServerAuth::Tokens(vec!["pt".into()]));
    api.apply("nodes", node("arm-1", "arm64", &[], None));
    api.apply("deployments", deployment("p", "app", &amd, json!({})));
    let kc = api.kubeconfig(&FakeApiServer::token_user("pt"));
    let mut args: Vec<&str> = FAST.to_vec();
    // The platform read's own cost; the pull path walk is counted in
    // tests/pull_path.rs.
    args.extend([
        "--plain-http-registries",
        &reg.host,
        "--verify-pull-path-every",
        "0",
    ]);

    // Nodes cannot be listed: available (platforms unknown), one warning,
    // no GET, and /readyz says so while ready.
    api.forbid("nodes");
    let e = Exporter::start(&kc, &args);
    e.wait_status("p", "app", "app", "available");
    wait_until("a few rounds", Duration::from_secs(10), || {
        reg.count("HEAD", "/v2/team/amd") >= 3
    });
    assert_eq!(reg.count("GET", "/v2/team/"), 0);
    let (code, body) = e.get("/readyz");
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("nodes") && body.contains("platform checks are off"),
        "{body}"
    );
    let warnings = e
        .log()
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("nodes"))
        .count();
    assert!(warnings >= 1, "{}", e.log());
    drop(e);

    // --no-platform-check: Nodes are not even asked for.
    let served = api.served("nodes");
    args.push("--no-platform-check");
    let e = Exporter::start(&kc, &args);
    e.wait_status("p", "app", "app", "available");
    wait_until("a few rounds", Duration::from_secs(10), || {
        reg.count("HEAD", "/v2/team/amd") >= 6
    });
    assert_eq!(api.served("nodes"), served);
    assert_eq!(reg.count("GET", "/v2/team/"), 0);
}
