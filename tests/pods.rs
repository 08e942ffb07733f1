//! Pods and Jobs no watched controller covers: bare pods, custom
//! controllers' pods and mirror pods are checked as `kind="pod"`, Jobs no
//! CronJob owns as `kind="job"`; pods of ReplicaSets, StatefulSets,
//! DaemonSets and Jobs add nothing. The opt-out annotations work on any of
//! them, live. Fake apiserver, real registry with htpasswd auth.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::apiserver::{FakeApiServer, ServerAuth};
use support::exporter::{Exporter, Sample, FAST};
use support::objects::{self, annotate, job, pod, Template};
use support::registry::{Auth, Registry};
use support::wait_until;

const NS: &str = "prod";

fn start() -> (Registry, FakeApiServer, String) {
    let reg = Registry::start(Auth::Basic(vec![("puller".into(), "pull-pw".into())]));
    reg.push("team/app", "v1");
    let api = FakeApiServer::start(ServerAuth::Tokens(vec!["pods".into()]));
    let kc = api.kubeconfig(&FakeApiServer::token_user("pods"));
    // Every pod and Job below names this secret unless it says otherwise.
    api.apply(
        "secrets",
        objects::pull_secret(NS, "regcred", &reg.host, "puller", "pull-pw"),
    );
    (reg, api, kc)
}

fn exporter(kc: &str, reg: &Registry, extra: &[&str]) -> Exporter {
    let mut args: Vec<&str> = FAST.to_vec();
    args.extend(["--plain-http-registries", &reg.host, "--no-platform-check"]);
    args.extend_from_slice(extra);
    Exporter::start(kc, &args)
}

/// The `kind` labels of the class series of the object called `name`.
fn kinds(m: &[Sample], name: &str) -> Vec<String> {
    let mut k: Vec<String> = m
        .iter()
        .filter(|s| {
            s.name.starts_with("k8s_image_availability_exporter_")
                && s.labels.get("name").map(String::as_str) == Some(name)
                && s.labels.contains_key("container")
        })
        .map(|s| s.labels["kind"].clone())
        .collect();
    k.dedup();
    k
}

/// Waits until the object called `name` has no series; returns how long.
fn wait_gone(e: &Exporter, name: &str) -> Duration {
    let started = Instant::now();
    wait_until(
        &format!("the series of {name} to go"),
        Duration::from_secs(10),
        || kinds(&e.metrics(), name).is_empty(),
    );
    started.elapsed()
}

#[test]
fn pods_no_controller_covers_are_checked_and_covered_pods_add_nothing() {
    let (reg, api, kc) = start();
    let gone = reg.image("team/app:v9");
    let good = reg.image("team/app:v1");
    let t = |image: &str| Template::image(image).pull_secret("regcred");
    let owned = |name: &str, owner| pod(NS, name, owner, "Running", &t(&gone));
    // Checked: no controller, a custom resource's, a Node's (a mirror pod).
    api.apply("pods", owned("handmade", None));
    api.apply(
        "pods",
        owned("pg-1", Some(("postgresql.cnpg.io/v1", "Cluster", "pg"))),
    );
    api.apply("pods", owned("etcd-node-0", Some(("v1", "Node", "node-0"))));
    api.apply("pods", pod(NS, "starting", None, "Pending", &t(&gone)));
    // Covered by the template of a controller we watch: no series of their own.
    for (name, owner) in [
        (
            "web-5d4f8c7b9-x2x9k",
            ("apps/v1", "ReplicaSet", "web-5d4f8c7b9"),
        ),
        ("db-0", ("apps/v1", "StatefulSet", "db")),
        ("agent-7bq2n", ("apps/v1", "DaemonSet", "agent")),
        ("migrate-8xk2p", ("batch/v1", "Job", "migrate")),
    ] {
        api.apply("pods", owned(name, Some(owner)));
    }
    // Finished: starts nothing.
    api.apply("pods", pod(NS, "done", None, "Succeeded", &t(&gone)));
    api.apply("pods", pod(NS, "crashed", None, "Failed", &t(&gone)));
    // The pod's own pull secret decides: without it the registry refuses.
    api.apply("pods", pod(NS, "with-secret", None, "Running", &t(&good)));
    api.apply(
        "pods",
        pod(NS, "no-secret", None, "Running", &Template::image(&good)),
    );
    // Init containers too.
    api.apply(
        "pods",
        pod(
            NS,
            "with-init",
            None,
            "Running",
            &t(&good).init("setup", &gone),
        ),
    );

    let e = exporter(&kc, &reg, &[]);
    for name in ["handmade", "pg-1", "etcd-node-0", "starting"] {
        e.wait_status(NS, name, "app", "absent");
    }
    e.wait_status(NS, "with-secret", "app", "available");
    e.wait_status(NS, "no-secret", "app", "authentication_failure");
    e.wait_status(NS, "with-init", "setup", "absent");
    e.wait_status(NS, "with-init", "app", "available");
    let m = e.metrics();
    for name in ["handmade", "pg-1", "etcd-node-0", "with-secret"] {
        assert_eq!(kinds(&m, name), ["pod"], "{name}");
    }
    // The covered pods name the same image, whose verdict is in: had they
    // been taken in, they would have series now.
    for name in [
        "web-5d4f8c7b9-x2x9k",
        "db-0",
        "agent-7bq2n",
        "migrate-8xk2p",
        "done",
        "crashed",
    ] {
        assert!(kinds(&m, name).is_empty(), "{name} has series");
    }
    // Finished pods are left on the server by a field selector.
    let pod_lists: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/v1/pods")
        .collect();
    assert!(!pod_lists.is_empty());
    for r in &pod_lists {
        assert_eq!(
            r.query.get("fieldSelector").map(String::as_str),
            Some("status.phase!=Succeeded,status.phase!=Failed"),
            "{:?}",
            r.query
        );
    }
    let row = e.status_row("handmade");
    assert_eq!(row["kind"], "pod");
    assert_eq!(row["status"], "absent");

    // A pod that finishes, and one deleted: their series go at once.
    api.apply("pods", pod(NS, "handmade", None, "Succeeded", &t(&gone)));
    let finished = wait_gone(&e, "handmade");
    api.delete("pods", NS, "pg-1");
    let deleted = wait_gone(&e, "pg-1");
    println!("series gone after: finished pod {finished:?}, deleted pod {deleted:?}");
    assert!(
        finished < Duration::from_secs(1) && deleted < Duration::from_secs(1),
        "finished {finished:?}, deleted {deleted:?}"
    );
    // A graceful delete: the apiserver sets deletionTimestamp and keeps the
    // pod until its kubelet confirms (for good, if the node is gone). It
    // starts nothing again: its series go now.
    let mut terminating =
        serde_json::to_value(pod(NS, "starting", None, "Pending", &t(&gone))).unwrap();
    terminating["metadata"]["deletionTimestamp"] = json!("2026-12-06T10:00:00Z");
    terminating["metadata"]["deletionGracePeriodSeconds"] = json!(30);
    api.apply("pods", terminating);
    wait_gone(&e, "starting");
    // A bare pod that a ReplicaSet adopts is covered from then on.
    api.apply(
        "pods",
        owned(
            "etcd-node-0",
            Some(("apps/v1", "ReplicaSet", "adopter-5d4f8c7b9")),
        ),
    );
    wait_gone(&e, "etcd-node-0");
    // And a covered pod that is orphaned is checked from then on.
    api.apply("pods", owned("db-0", None));
    e.wait_status(NS, "db-0", "app", "absent");
    assert!(
        e.get("/readyz").1.starts_with("ok\n"),
        "{}",
        e.get("/readyz").1
    );
}

#[test]
fn standalone_jobs_are_checked_until_they_finish() {
    let (reg, api, kc) = start();
    let gone = reg.image("team/app:v9");
    let t = Template::image(&gone).pull_secret("regcred");
    api.apply("jobs", job(NS, "migrate", None, None, &t));
    // A Job another controller (Argo Workflows here) runs is checked too.
    api.apply(
        "jobs",
        job(
            NS,
            "step-1",
            Some(("argoproj.io/v1alpha1", "Workflow", "wf")),
            None,
            &t,
        ),
    );
    // Suspended: it may be resumed, so it counts.
    let mut suspended = serde_json::to_value(job(NS, "paused", None, None, &t)).unwrap();
    suspended["spec"]["suspend"] = json!(true);
    api.apply("jobs", suspended);
    // A CronJob's Job is covered by the CronJob; finished Jobs start nothing.
    api.apply(
        "jobs",
        job(
            NS,
            "nightly-29012345",
            Some(("batch/v1", "CronJob", "nightly")),
            None,
            &t,
        ),
    );
    api.apply("jobs", job(NS, "old", None, Some("Complete"), &t));
    api.apply("jobs", job(NS, "broken", None, Some("Failed"), &t));

    let e = exporter(&kc, &reg, &[]);
    for name in ["migrate", "step-1", "paused"] {
        e.wait_status(NS, name, "app", "absent");
    }
    let m = e.metrics();
    assert_eq!(kinds(&m, "migrate"), ["job"]);
    for name in ["nightly-29012345", "old", "broken"] {
        assert!(kinds(&m, name).is_empty(), "{name} has series");
    }
    // Completion removes it.
    api.apply("jobs", job(NS, "migrate", None, Some("Complete"), &t));
    let took = wait_gone(&e, "migrate");
    println!("a completed Job's series went after {took:?}");
    api.delete("jobs", NS, "step-1");
    wait_gone(&e, "step-1");
    assert_eq!(kinds(&e.metrics(), "paused"), ["job"]);
}

#[test]
fn opt_out_annotations_take_effect_live() {
    let (reg, api, kc) = start();
    let gone = reg.image("team/app:v9");
    let good = reg.image("team/app:v1");
    let t = Template::image(&gone)
        .container("sidecar", &good)
        .pull_secret("regcred");
    api.apply(
        "deployments",
        annotate(
            objects::deployment(NS, "quiet", 1, &t),
            "k8s-image-availability-exporter/ignore",
            "true",
        ),
    );
    api.apply(
        "pods",
        annotate(
            pod(NS, "scratch", None, "Running", &t),
            "k8s-image-availability-exporter/ignore",
            "true",
        ),
    );
    api.apply(
        "statefulsets",
        annotate(
            objects::statefulset(NS, "partial", 1, &t),
            "k8s-image-availability-exporter/ignore-containers",
            "app, other",
        ),
    );
    // A canary so we know the first round is done.
    api.apply("deployments", objects::deployment(NS, "loud", 1, &t));
    let e = exporter(&kc, &reg, &[]);
    e.wait_status(NS, "loud", "app", "absent");
    e.wait_status(NS, "partial", "sidecar", "available");
    let m = e.metrics();
    assert!(kinds(&m, "quiet").is_empty());
    assert!(kinds(&m, "scratch").is_empty());
    assert_eq!(
        support::exporter::status_in(&m, NS, "partial", "app"),
        None,
        "an ignored container has no series"
    );

    // Removed: checked again. Added: gone.
    api.apply("deployments", objects::deployment(NS, "quiet", 1, &t));
    api.apply("pods", pod(NS, "scratch", None, "Running", &t));
    api.apply(
        "statefulsets",
        annotate(
            objects::statefulset(NS, "partial", 1, &t),
            "k8s-image-availability-exporter/ignore-containers",
            "sidecar",
        ),
    );
    e.wait_status(NS, "quiet", "app", "absent");
    e.wait_status(NS, "scratch", "app", "absent");
    e.wait_status(NS, "partial", "app", "absent");
    wait_until(
        "the sidecar's series to go",
        Duration::from_secs(10),
        || support::exporter::status_in(&e.metrics(), NS, "partial", "sidecar").is_none(),
    );
    api.apply(
        "deployments",
        annotate(
            objects::deployment(NS, "loud", 1, &t),
            "k8s-image-availability-exporter/ignore",
            "true",
        ),
    );
    wait_gone(&e, "loud");
}

#[test]
fn refused_or_turned_off_pod_checks_leave_the_rest_working() {
    let (reg, api, kc) = start();
    let gone = reg.image("team/app:v9");
    let t = Template::image(&gone).pull_secret("regcred");
    api.apply("deployments", objects::deployment(NS, "web", 1, &t));
    api.apply("pods", pod(NS, "bare", None, "Running", &t));
    api.apply("jobs", job(NS, "once", None, None, &t));
    api.forbid("pods");
    let e = exporter(&kc, &reg, &[]);
    e.wait_status(NS, "web", "app", "absent");
    e.wait_status(NS, "once", "app", "absent");
    let (code, ready) = e.get("/readyz");
    assert_eq!(code, 200, "{ready}");
    assert!(
        ready.contains("warning: pods cannot be listed") && ready.contains("--no-pod-checks"),
        "{ready}"
    );
    assert!(kinds(&e.metrics(), "bare").is_empty());
    drop(e);

    // On purpose: neither is requested.
    let before = api.requests().len();
    let e = exporter(&kc, &reg, &["--no-pod-checks"]);
    e.wait_status(NS, "web", "app", "absent");
    let asked: Vec<String> = api.requests()[before..]
        .iter()
        .map(|r| r.path.clone())
        .filter(|p| p.ends_with("/pods") || p.ends_with("/jobs"))
        .collect();
    assert!(asked.is_empty(), "{asked:?}");
    assert!(kinds(&e.metrics(), "once").is_empty());
    let (_, ready) = e.get("/readyz");
    assert_eq!(ready, "ok\n");
}

#[test]
fn pods_of_a_pod_template_resource_are_covered_by_it() {
    let (reg, api, kc) = start();
    let gone = reg.image("team/app:v9");
    api.install_crd("clonesets");
    api.apply(
        "clonesets",
        json!({"metadata": {"name": "cs", "namespace": NS},
               "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "app", "image": gone}],
                        "imagePullSecrets": [{"name": "regcred"}]}}}}),
    );
    let t = Template::image(&gone).pull_secret("regcred");
    api.apply(
        "pods",
        pod(
            NS,
            "cs-x7k2p",
            Some(("apps.kruise.io/v1alpha1", "CloneSet", "cs")),
            "Running",
            &t,
        ),
    );
    // Same owner kind in another group: not ours, so checked.
    api.apply(
        "pods",
        pod(
            NS,
            "other-x7k2p",
            Some(("example.com/v1", "CloneSet", "cs")),
            "Running",
            &t,
        ),
    );
    let e = exporter(
        &kc,
        &reg,
        &[
            "--pod-template-resource",
            "apps.kruise.io/v1alpha1/clonesets=spec.template,replicas=spec.replicas",
            "--discovery-interval",
            "1s",
        ],
    );
    e.wait_status(NS, "cs", "app", "absent");
    e.wait_status(NS, "other-x7k2p", "app", "absent");
    assert_eq!(kinds(&e.metrics(), "cs"), ["cloneset"]);
    assert!(kinds(&e.metrics(), "cs-x7k2p").is_empty());
}
