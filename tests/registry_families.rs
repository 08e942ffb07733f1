//! Registries as users meet them: a reverse proxy in front of the real
//! Docker Distribution answers as ECR Public, storage presigned for GET, a
//! Harbor proxy cache, schema 1 images, Docker Hub at its pull limit,
//! registries without a usable digest, multi-upstream mirrors, Harbor's
//! challenges and Quay's proxy cache answer (shared/REGISTRIES.md has the
//! sources). No false alarm, no false `available`, every reason with the
//! registry's words, and plain Distribution asked what it was asked before.

mod support;

use serde_json::json;
use support::apiserver::{FakeApiServer, ServerAuth};
use support::exporter::{Exporter, FAST};
use support::policy_proxy::{Blobs, DigestHeader, PolicyProxy};
use support::registry::{Auth, Registry};
use support::token_server::Policy;
use support::{check, TempDir};

fn reason(run: &support::CheckRun, image: &str) -> String {
    run.row(image)["reason"].as_str().unwrap().to_string()
}

fn plain(host: &str) -> [&str; 2] {
    ["--plain-http-registries", host]
}

#[test]
fn blob_heads_that_lie_are_confirmed_with_get() {
    let reg = Registry::start(Auth::None);
    reg.push("team/app", "v1");
    let broken = reg.push("team/broken", "v1");
    let (_, layers) = reg.blobs_of("team/broken", &broken);
    reg.remove_blob_data(&layers[0]);
    for profile in [
        Blobs::EcrPublic,
        Blobs::PresignedStorage,
        Blobs::HarborProxyCache,
    ] {
        let proxy = PolicyProxy::start(&reg.host);
        proxy.set(|r| r.blobs = profile.clone());
        let (app, gone) = (proxy.image("team/app:v1"), proxy.image("team/broken:v1"));
        let run = check(&[&plain(&proxy.host)[..], &["check", &app, &gone]].concat());
        run.assert_status(&app, "available");
        assert!(
            reason(&run, &app).ends_with("; pull path verified"),
            "{profile:?}: {}",
            reason(&run, &app)
        );
        // Config and layer: each HEAD refused or missing, each confirmed
        // by one GET of a single byte.
        let registry = |method: &str| {
            proxy
                .heads()
                .iter()
                .filter(|(m, u, _)| m == method && u.starts_with("/v2/team/app/blobs/"))
                .count()
        };
        assert_eq!(registry("GET"), 2, "{profile:?}");
        assert_eq!(registry("HEAD"), 2, "{profile:?}");
        // A blob really gone is still missing: the GET says so.
        run.assert_status(&gone, "absent");
        let why = reason(&run, &gone);
        assert!(
            why.contains(&format!("layer {} missing", layers[0]))
                && why.contains("on GET (HEAD: HTTP")
                && why.contains("BLOB_UNKNOWN"),
            "{profile:?}: {why}"
        );
        if profile == Blobs::PresignedStorage {
            // The storage saw the HEADs it refuses and the GETs it serves.
            assert_eq!(proxy.count("HEAD", "/s3/v2/team/app/blobs/"), 2);
            assert_eq!(proxy.count("GET", "/s3/v2/team/app/blobs/"), 2);
        }
        if profile == Blobs::HarborProxyCache {
            // Now pulled through the cache: its HEADs answer, no GET.
            let run = check(&[&plain(&proxy.host)[..], &["check", &app]].concat());
            run.assert_status(&app, "available");
            assert_eq!((registry("HEAD"), registry("GET")), (4, 2));
        }
    }
    // Distribution itself: HEADs only, as before.
    let app = reg.image("team/app:v1");
    let run = check(&[&plain(&reg.host)[..], &["check", &app]].concat());
    run.assert_status(&app, "available");
    assert_eq!(reg.count("GET", "/v2/team/app/blobs/"), 6);
}

/// A schema 1 manifest (unsigned payload; nothing here checks signatures)
/// whose layers are blobs of the repository.
fn schema1(repo: &str, layers: &[String]) -> String {
    json!({
        "schemaVersion": 1,
        "name": repo,
        "tag": "v1",
        "architecture": "amd64",
        "fsLayers": layers.iter().map(|l| json!({"blobSum": l})).collect::<Vec<_>>(),
        "history": layers.iter().map(|_| json!({"v1Compatibility": "{\"os\":\"linux\"}"})).collect::<Vec<_>>(),
        "signatures": [],
    })
    .to_string()
}

fn schema1_proxy(reg: &Registry) -> (PolicyProxy, String) {
    let base = reg.push("team/old", "base");
    let (_, layers) = reg.blobs_of("team/old", &base);
    let proxy = PolicyProxy::start(&reg.host);
    let body = schema1("team/old", &layers);
    proxy.set(|r| r.schema1.push(("team/old/manifests/v1".into(), body)));
    let image = proxy.image("team/old:v1");
    (proxy, image)
}

#[test]
fn schema1_is_unavailable_on_containerd_2() {
    let reg = Registry::start(Auth::None);
    let (proxy, old) = schema1_proxy(&reg);
    let base = plain(&proxy.host);
    let run = check(&[&base[..], &["check", &old]].concat());
    run.assert_status(&old, "available");
    for runtime in ["containerd://1.7.27", "cri-o://1.31.0"] {
        let run = check(&[&base[..], &["--container-runtime", runtime, "check", &old]].concat());
        run.assert_status(&old, "available");
    }
    let run = check(
        &[
            &base[..],
            &["--container-runtime", "containerd://2.0.4", "check", &old],
        ]
        .concat(),
    );
    run.assert_status(&old, "platform_unavailable");
    let why = reason(&run, &old);
    assert!(
        why.contains("schema 1") && why.contains("containerd://2.0.4"),
        "{why}"
    );
    // A schema 2 image is fine there.
    reg.push("team/new", "v1");
    let new = proxy.image("team/new:v1");
    let run = check(
        &[
            &base[..],
            &["--container-runtime", "containerd://2.0.4", "check", &new],
        ]
        .concat(),
    );
    run.assert_status(&new, "available");
    let run = check(&["--container-runtime", "containerd://2.0.4"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
}

#[test]
fn a_missing_or_empty_digest_is_learnt_by_hashing() {
    let reg = Registry::start(Auth::None);
    let digest = reg.push("team/app", "v1");
    for header in [DigestHeader::Strip, DigestHeader::Empty] {
        let proxy = PolicyProxy::start(&reg.host);
        proxy.set(|r| r.digest_header = header.clone());
        let app = proxy.image("team/app:v1");
        let run = check(&[&plain(&proxy.host)[..], &["check", &app]].concat());
        run.assert_status(&app, "available");
        assert_eq!(run.row(&app)["digest"], digest.as_str(), "{header:?}");
        assert!(
            reason(&run, &app).ends_with("; pull path verified"),
            "{header:?}: {}",
            reason(&run, &app)
        );
        // The tag's manifest once, by tag; then the walk reuses it.
        assert_eq!(proxy.count("GET", "/v2/team/app/manifests/v1"), 1);
        assert_eq!(
            proxy.count("GET", &format!("/v2/team/app/manifests/{digest}")),
            0
        );
        // Within the nodes' reserve, no GET: the tag alone decides.
        proxy.set(|r| r.quota = Some((100, 2)));
        let run = check(&[&plain(&proxy.host)[..], &["check", &app]].concat());
        run.assert_status(&app, "available");
        let why = reason(&run, &app);
        assert!(
            why.contains("no usable Docker-Content-Digest") && why.contains("2 of 100 pulls left"),
            "{why}"
        );
        assert_eq!(proxy.count("GET", "/v2/team/app/manifests/"), 1);
    }
}

#[test]
fn mirrors_are_told_the_upstream() {
    let upstream = Registry::start(Auth::None);
    upstream.push("team/app", "v1");
    let other = Registry::start(Auth::None);
    // The mirror's default upstream is another registry: without `ns` it
    // would answer for that one.
    let mirror = PolicyProxy::start(&other.host);
    mirror.set(|r| {
        r.ns_upstreams
            .push(("registry.example.com".into(), upstream.host.clone()))
    });
    let image = "registry.example.com/team/app:v1";
    let rule = format!("registry.example.com={}", mirror.host);
    let run = check(
        &[
            &plain(&mirror.host)[..],
            &["--image-mirror", &rule, "check", image],
        ]
        .concat(),
    );
    run.assert_status(image, "available");
    assert!(reason(&run, image).ends_with("; pull path verified"));
    let heads = mirror.heads();
    assert!(heads.len() >= 4, "{heads:?}");
    assert!(
        heads
            .iter()
            .all(|(_, u, _)| u.ends_with("?ns=registry.example.com")),
        "{heads:?}"
    );
    assert_eq!(other.count("HEAD", "/manifests/"), 0);
}

#[test]
fn harbor_challenges_and_missing_projects() {
    let policy = Policy::default().user("dev", "pw", "team/", &["pull"]);
    let reg = Registry::start(Auth::Token(policy));
    reg.push("team/app", "v1");
    reg.push("other/app", "v1");
    reg.push("other/tool", "v1");
    let proxy = PolicyProxy::start(&reg.host);
    proxy.set(|r| r.harbor = Some(vec!["ghost".into()]));
    let dir = TempDir::new("harbor");
    let auth = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode("dev:pw")
    };
    let config = dir.write(
        "config.json",
        json!({"auths": {proxy.host.clone(): {"auth": auth}}}).to_string(),
    );
    let (ok, refused, refused2, ghost) = (
        proxy.image("team/app:v1"),
        proxy.image("other/app:v1"),
        proxy.image("other/tool:v1"),
        proxy.image("ghost/app:v1"),
    );
    let run = check(
        &[
            &plain(&proxy.host)[..],
            &["--docker-config", &config, "check"],
            &[ok.as_str(), &refused, &refused2, &ghost][..],
        ]
        .concat(),
    );
    run.assert_status(&ok, "available");
    run.assert_status(&refused, "authentication_failure");
    run.assert_status(&refused2, "authentication_failure");
    // A Basic challenge to a refused token says "refused": the password is
    // never sent to the registry itself.
    let basic: Vec<_> = proxy
        .heads()
        .into_iter()
        .filter(|(_, _, a)| a.as_deref() == Some("basic"))
        .collect();
    assert!(basic.is_empty(), "{basic:?}");
    // A project that does not exist: 401 with an empty challenge.
    run.assert_status(&ghost, "authentication_failure");
    let why = reason(&run, &ghost);
    assert!(
        why.contains("gives no way in") && why.contains("UNAUTHORIZED"),
        "{why}"
    );
}

#[test]
fn refused_heads_say_what_the_registry_said() {
    let reg = Registry::start(Auth::None);
    reg.push("team/app", "v1");
    let proxy = PolicyProxy::start(&reg.host);
    proxy.set(|r| r.upstream_down.push("/team/cached/".into()));
    let base = plain(&proxy.host);
    let (tag, repo, quay) = (
        proxy.image("team/app:v9"),
        proxy.image("team/none:v1"),
        proxy.image("team/cached:v1"),
    );
    let run = check(&[&base[..], &["check", &tag, &repo, &quay]].concat());
    run.assert_status(&tag, "absent");
    assert!(
        reason(&run, &tag).contains("MANIFEST_UNKNOWN: manifest unknown"),
        "{}",
        reason(&run, &tag)
    );
    // Distribution 2.8 says MANIFEST_UNKNOWN for a repository it never had.
    run.assert_status(&repo, "absent");
    assert!(
        reason(&run, &repo).contains("_UNKNOWN: "),
        "{}",
        reason(&run, &repo)
    );
    // One HEAD, one GET for the body.
    assert_eq!(proxy.count("HEAD", "/v2/team/app/manifests/v9"), 1);
    assert_eq!(proxy.count("GET", "/v2/team/app/manifests/v9"), 1);
    // Quay's proxy cache: its upstream is down.
    run.assert_status(&quay, "registry_unavailable");
    let why = reason(&run, &quay);
    assert!(
        why.contains("could not get it from the registry it mirrors")
            && why.contains("INVALID_REQUEST: upstream registry unavailable"),
        "{why}"
    );
}

#[test]
fn docker_hub_at_its_pull_limit() {
    let reg = Registry::start(Auth::None);
    reg.push("team/app", "v1");
    let proxy = PolicyProxy::start(&reg.host);
    proxy.set(|r| {
        r.quota = Some((100, 0));
        r.pull_limit_reached = true;
    });
    let app = proxy.image("team/app:v1");
    let run = check(&[&plain(&proxy.host)[..], &["check", &app]].concat());
    // The tag is there; our walk holds back, and says why.
    run.assert_status(&app, "available");
    let why = reason(&run, &app);
    assert!(why.contains("0 of 100 pulls left"), "{why}");
    assert_eq!(proxy.count("GET", "/manifests/"), 0);
}

fn node(name: &str, runtime: &str) -> serde_json::Value {
    json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux"}},
        "spec": {},
        "status": {"nodeInfo": {"architecture": "amd64", "operatingSystem": "linux", "containerRuntimeVersion": runtime}},
    })
}

#[test]
fn the_exporter_on_registries_that_differ() {
    let reg = Registry::start(Auth::None);
    reg.push("team/app", "v1");
    let ecr = PolicyProxy::start(&reg.host);
    ecr.set(|r| r.blobs = Blobs::EcrPublic);
    let harbor = PolicyProxy::start(&reg.host);
    harbor.set(|r| {
        r.blobs = Blobs::HarborProxyCache;
        r.digest_header = DigestHeader::Empty;
    });
    let (old, old_image) = schema1_proxy(&reg);
    let hub = PolicyProxy::start(&reg.host);
    hub.set(|r| {
        r.quota = Some((100, 0));
        r.pull_limit_reached = true;
    });
    let api = FakeApiServer::start(ServerAuth::Tokens(vec!["rf".into()]));
    api.apply("nodes", node("old-1", "containerd://1.7.27"));
    for (name, image) in [
        ("ecr", ecr.image("team/app:v1")),
        ("harbor", harbor.image("team/app:v1")),
        ("old", old_image.clone()),
        ("hub", hub.image("team/app:v1")),
    ] {
        api.deploy("r", name, &image);
    }
    let kc = api.kubeconfig(&FakeApiServer::token_user("rf"));
    let mut args: Vec<&str> = FAST.to_vec();
    for p in [&ecr, &harbor, &old, &hub] {
        args.extend(["--plain-http-registries", p.host.as_str()]);
    }
    let e = Exporter::start(&kc, &args);
    for name in ["ecr", "harbor", "old", "hub"] {
        e.wait_status("r", name, "app", "available");
    }
    // Available, not a false alarm: the walk ran, its refused or missing
    // blob HEADs each confirmed by a GET.
    // (The platform read GETs a single image's config blob; the walk
    // then asks only the layer.)
    for p in [&ecr, &harbor] {
        let heads = p.heads();
        let blobs = |method: &str| -> Vec<&str> {
            heads
                .iter()
                .filter(|(m, u, _)| m == method && u.starts_with("/v2/team/app/blobs/"))
                .map(|(_, u, _)| u.as_str())
                .collect()
        };
        let (head, get) = (blobs("HEAD"), blobs("GET"));
        assert!(!head.is_empty(), "{heads:?}");
        assert!(head.iter().all(|h| get.contains(h)), "{heads:?}");
    }
    // The empty digest was learnt by hashing the tag's manifest.
    assert!(harbor.count("GET", "/v2/team/app/manifests/v1") >= 1);
    // A node on containerd 2 joins: the schema 1 image cannot start there.
    api.apply("nodes", node("new-1", "containerd://2.0.4"));
    e.wait_status("r", "old", "app", "platform_unavailable");
    let row = e.status_row("old");
    let why = row["reason"].as_str().unwrap();
    assert!(
        why.contains("schema 1") && why.contains("containerd://2.0.4 (1 node)"),
        "{row}"
    );
    e.wait_status("r", "ecr", "app", "available");
    api.delete("nodes", "", "new-1");
    e.wait_status("r", "old", "app", "available");

    // Docker Hub's quota used up: the verdicts stand, and the status page
    // says at the top that the nodes cannot pull from it.
    let (_, page) = e.get("/");
    let quota_note = format!("{} announces 0 of 100 pulls left", hub.host);
    assert!(page.contains(&quota_note), "{page}");
    assert!(
        page.find(&quota_note).unwrap() < page.find("<table").unwrap_or(page.len()),
        "the note comes first"
    );
    assert!(!e.log().contains("panicked"), "{}", e.log());
}

#[test]
fn a_refused_credential_costs_nothing_while_its_refusal_is_remembered() {
    let policy = Policy::default().forbid("intruder", "pw");
    let reg = Registry::start(Auth::Token(policy));
    reg.push("team/app", "v1");
    let dir = TempDir::new("refused");
    let auth = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode("intruder:pw")
    };
    let config = dir.write(
        "config.json",
        json!({"auths": {reg.host.clone(): {"auth": auth}}}).to_string(),
    );
    let api = FakeApiServer::start(ServerAuth::Tokens(vec!["rc".into()]));
    api.deploy("r", "app", &reg.image("team/app:v1"));
    let kc = api.kubeconfig(&FakeApiServer::token_user("rc"));
    let mut args: Vec<&str> = FAST.to_vec();
    args.extend([
        "--plain-http-registries",
        &reg.host,
        "--docker-config",
        &config,
    ]);
    let e = Exporter::start(&kc, &args);
    e.wait_status("r", "app", "app", "authorization_failure");
    let rechecks = || {
        e.metrics()
            .iter()
            .find(|s| s.name == "k8s_image_availability_exporter_completed_rechecks_total")
            .map_or(0.0, |s| s.value)
    };
    let tokens = reg.tokens.as_ref().unwrap();
    let (first, asked) = (rechecks(), tokens.count());
    let heads = reg.count("HEAD", "/v2/team/app/manifests/v1");
    support::wait_until("three rechecks", std::time::Duration::from_secs(30), || {
        rechecks() >= first + 3.0
    });
    assert_eq!(tokens.count(), asked, "no token request while refused");
    assert_eq!(reg.count("HEAD", "/v2/team/app/manifests/v1"), heads);
    assert_eq!(
        e.status_of("r", "app", "app").as_deref(),
        Some("authorization_failure")
    );
}
