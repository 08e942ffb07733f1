//! Tag moved: a tag pushed again after the running pods pulled it. The
//! fake apiserver serves pods with container statuses as kubelets write
//! them (containerd, cri-dockerd, a local image); the real registry gets
//! the new build; the exporter's `tag_moved` says which workloads and
//! containers run the old digest, and stops when the pods roll onto the new.

mod support;

use serde_json::json;
use support::apiserver::{FakeApiServer, ServerAuth};
use support::exporter::{Exporter, FAST};
use support::objects::{deployment, running_pod, statefulset, Runtime, Template};
use support::registry::{Auth, Registry};
use support::wait_until;

/// The `tag_moved` rows of /status.json.
fn moved_rows(e: &Exporter) -> Vec<serde_json::Value> {
    let (_, page) = e.get("/status.json");
    let page: serde_json::Value = serde_json::from_str(&page).unwrap();
    page["tag_moved"].as_array().cloned().unwrap_or_default()
}

/// Pods the exporter knows (running pods included).
fn pods_known(e: &Exporter) -> f64 {
    e.metrics()
        .iter()
        .find(|s| {
            s.name == "k8s_image_availability_exporter_watched_objects"
                && s.labels.get("resource").map(String::as_str) == Some("pods")
        })
        .map_or(0.0, |s| s.value)
}

fn moved(e: &Exporter, name: &str, container: &str) -> Option<f64> {
    e.metrics()
        .iter()
        .find(|s| {
            s.name == "k8s_image_availability_exporter_tag_moved"
                && s.labels.get("name").map(String::as_str) == Some(name)
                && s.labels.get("container").map(String::as_str) == Some(container)
        })
        .map(|s| s.value)
}

#[test]
fn a_pushed_tag_is_seen_against_the_running_pods() {
    let reg = Registry::start(Auth::None);
    let v1 = reg.push("team/app", "v1");
    let side = reg.push("team/side", "v1");
    let pinned_digest = reg.push("team/pinned", "v1");
    let image = reg.image("team/app:v1");
    let side_image = reg.image("team/side:v1");
    let pinned = reg.image(&format!("team/pinned@{pinned_digest}"));
    let api = FakeApiServer::start(ServerAuth::Tokens(vec!["tm".into()]));
    let t = Template::image(&image).container("side", &side_image);
    api.apply("deployments", deployment("prod", "web", 3, &t));
    api.apply(
        "statefulsets",
        statefulset("prod", "db", 1, &Template::image(&pinned)),
    );
    // The Deployment's pods, through its ReplicaSet (name + template hash):
    // two on containerd, one on cri-dockerd.
    let rs = ("apps/v1", "ReplicaSet", "web-7d4b9c8f6");
    let hash = [("pod-template-hash", "7d4b9c8f6")];
    let web_pod = |name: &str, runtime: Runtime, app: &str| {
        running_pod(
            "prod",
            name,
            Some(rs),
            &hash,
            &t,
            &[
                ("app", image.as_str(), runtime.image_id(&image, app)),
                (
                    "side",
                    side_image.as_str(),
                    runtime.image_id(&side_image, &side),
                ),
            ],
        )
    };
    api.apply("pods", web_pod("web-7d4b9c8f6-a", Runtime::Containerd, &v1));
    api.apply("pods", web_pod("web-7d4b9c8f6-b", Runtime::Containerd, &v1));
    api.apply("pods", web_pod("web-7d4b9c8f6-c", Runtime::CriDockerd, &v1));
    // A pinned image and a local image ID never raise it.
    api.apply(
        "pods",
        running_pod(
            "prod",
            "db-0",
            Some(("apps/v1", "StatefulSet", "db")),
            &[],
            &Template::image(&pinned),
            &[(
                "app",
                pinned.as_str(),
                Runtime::Local.image_id(
                    &pinned,
                    "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                ),
            )],
        ),
    );
    let kc = api.kubeconfig(&FakeApiServer::token_user("tm"));
    let mut args: Vec<&str> = FAST.to_vec();
    args.extend(["--plain-http-registries", &reg.host]);
    let e = Exporter::start(&kc, &args);
    e.wait_status("prod", "web", "app", "available");
    wait_until(
        "tag_moved 0 for web",
        std::time::Duration::from_secs(20),
        || moved(&e, "web", "app") == Some(0.0),
    );
    assert_eq!(moved(&e, "web", "side"), Some(0.0));
    assert_eq!(moved(&e, "db", "app"), None, "pinned by digest: no series");

    // The tag is pushed again: the running pods run the old build.
    let v2 = reg.push_build("team/app", "v1", "2");
    assert_ne!(v1, v2);
    wait_until(
        "tag_moved 1 for web/app",
        std::time::Duration::from_secs(20),
        || moved(&e, "web", "app") == Some(1.0),
    );
    assert_eq!(
        moved(&e, "web", "side"),
        Some(0.0),
        "only the container whose tag moved"
    );
    let (_, page) = e.get("/status.json");
    let page: serde_json::Value = serde_json::from_str(&page).unwrap();
    let rows = page["tag_moved"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{page}");
    assert_eq!(rows[0]["name"], "web");
    assert_eq!(rows[0]["container"], "app");
    assert_eq!(rows[0]["tag_digest"], v2.as_str());
    assert_eq!(rows[0]["running"], json!([{"digest": v1, "pods": 3}]));
    assert!(rows[0]["since"].as_u64().unwrap() > 0);
    let (_, html) = e.get("/");
    assert!(html.contains("Tag moved") && html.contains(&v1), "{html}");
    // The verdict classes do not change.
    assert_eq!(
        e.status_of("prod", "web", "app").as_deref(),
        Some("available")
    );

    // The pods roll onto the new build: one at a time, then all.
    api.apply("pods", web_pod("web-7d4b9c8f6-a", Runtime::Containerd, &v2));
    wait_until(
        "one pod on the new build",
        std::time::Duration::from_secs(20),
        || {
            moved_rows(&e).first().map(|r| r["running"].clone())
                == Some(json!([{"digest": v1, "pods": 2}, {"digest": v2, "pods": 1}]))
        },
    );
    assert_eq!(moved(&e, "web", "app"), Some(1.0), "two still run the old");
    api.apply("pods", web_pod("web-7d4b9c8f6-b", Runtime::Containerd, &v2));
    api.delete("pods", "prod", "web-7d4b9c8f6-c");
    wait_until(
        "tag_moved 0 again",
        std::time::Duration::from_secs(20),
        || moved(&e, "web", "app") == Some(0.0),
    );
    // A terminating pod of the old build does not count: after it, a pod
    // on the new build arrives (the stream keeps their order).
    let known = pods_known(&e);
    let mut old =
        serde_json::to_value(web_pod("web-7d4b9c8f6-d", Runtime::Containerd, &v1)).unwrap();
    old["metadata"]["deletionTimestamp"] = json!("2026-12-07T10:00:00Z");
    api.apply("pods", old);
    api.apply("pods", web_pod("web-7d4b9c8f6-e", Runtime::Containerd, &v2));
    wait_until("the later pod", std::time::Duration::from_secs(20), || {
        pods_known(&e) == known + 1.0
    });
    assert_eq!(moved(&e, "web", "app"), Some(0.0));
    assert!(!e.log().contains("panicked"), "{}", e.log());
}

#[test]
fn lean_format_and_opt_out() {
    let reg = Registry::start(Auth::None);
    let v1 = reg.push("team/app", "latest");
    let image = reg.image("team/app:latest");
    let api = FakeApiServer::start(ServerAuth::Tokens(vec!["tm2".into()]));
    let t = Template::image(&image);
    api.apply("deployments", deployment("prod", "follows", 1, &t));
    let opted = support::objects::annotate(
        deployment("prod", "on-purpose", 1, &t),
        "k8s-image-availability-exporter/ignore-tag-moved",
        "true",
    );
    api.apply("deployments", opted);
    for (rs, pod) in [
        ("follows-5f6d", "follows-5f6d-a"),
        ("on-purpose-6c7e", "on-purpose-6c7e-a"),
    ] {
        let hash = rs.rsplit_once('-').unwrap().1;
        api.apply(
            "pods",
            running_pod(
                "prod",
                pod,
                Some(("apps/v1", "ReplicaSet", rs)),
                &[("pod-template-hash", hash)],
                &t,
                &[(
                    "app",
                    image.as_str(),
                    Runtime::Containerd.image_id(&image, &v1),
                )],
            ),
        );
    }
    let kc = api.kubeconfig(&FakeApiServer::token_user("tm2"));
    let mut args: Vec<&str> = FAST.to_vec();
    args.extend([
        "--plain-http-registries",
        &reg.host,
        "--one-series-per-container",
    ]);
    let e = Exporter::start(&kc, &args);
    e.wait_status("prod", "follows", "app", "available");
    wait_until(
        "every first list",
        std::time::Duration::from_secs(20),
        || e.get("/readyz").0 == 200 && pods_known(&e) == 2.0,
    );
    // Not moved: no series at all in the lean format.
    assert_eq!(moved(&e, "follows", "app"), None);
    reg.push_build("team/app", "latest", "2");
    wait_until("moved", std::time::Duration::from_secs(20), || {
        moved(&e, "follows", "app") == Some(1.0)
    });
    assert_eq!(moved(&e, "on-purpose", "app"), None, "opted out");
}

#[test]
fn a_pod_deleted_while_not_watched_is_forgotten_by_the_relist() {
    let reg = Registry::start(Auth::None);
    let v1 = reg.push("team/app", "v1");
    let image = reg.image("team/app:v1");
    let api = FakeApiServer::start(ServerAuth::Tokens(vec!["tm3".into()]));
    let t = Template::image(&image);
    api.apply("deployments", deployment("prod", "web", 2, &t));
    let pod = |name: &str| {
        running_pod(
            "prod",
            name,
            Some(("apps/v1", "ReplicaSet", "web-6b7c")),
            &[("pod-template-hash", "6b7c")],
            &t,
            &[(
                "app",
                image.as_str(),
                Runtime::Containerd.image_id(&image, &v1),
            )],
        )
    };
    api.apply("pods", pod("web-6b7c-a"));
    api.apply("pods", pod("web-6b7c-b"));
    let kc = api.kubeconfig(&FakeApiServer::token_user("tm3"));
    let mut args: Vec<&str> = FAST.to_vec();
    args.extend(["--plain-http-registries", &reg.host]);
    let e = Exporter::start(&kc, &args);
    reg.push_build("team/app", "v1", "2");
    wait_until("moved", std::time::Duration::from_secs(20), || {
        moved(&e, "web", "app") == Some(1.0)
    });
    assert_eq!(pods_known(&e), 2.0);
    // The stream is cut, both pods go, and the history is compacted: the
    // relist (410) finds them gone, known only by their keys' ids.
    api.drop_watches();
    api.delete("pods", "prod", "web-6b7c-a");
    api.delete("pods", "prod", "web-6b7c-b");
    api.compact();
    wait_until(
        "no running pod left",
        std::time::Duration::from_secs(30),
        || moved(&e, "web", "app").is_none() && pods_known(&e) == 0.0,
    );
}
