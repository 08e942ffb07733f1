//! Argo Rollouts and any other resource with a pod template
//! (`--pod-template-resource`), watched while their CRDs are installed:
//! the fake apiserver serves discovery for their groups only then.

mod support;

use std::time::Duration;

use serde_json::json;
use support::apiserver::{FakeApiServer, ServerAuth};
use support::exporter::{Exporter, Sample, FAST};
use support::registry::{Auth, Registry};
use support::wait_until;

fn template(image: &str) -> serde_json::Value {
    json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "app", "image": image}]}})
}

fn rollout(ns: &str, name: &str, replicas: i32, spec: serde_json::Value) -> serde_json::Value {
    let mut spec = spec;
    spec["replicas"] = json!(replicas);
    spec["selector"] = json!({"matchLabels": {"app": "x"}});
    json!({"metadata": {"name": name, "namespace": ns}, "spec": spec})
}

fn start() -> (Registry, FakeApiServer, String) {
    let reg = Registry::start(Auth::None);
    reg.push("team/app", "v1");
    let api = FakeApiServer::start(ServerAuth::Tokens(vec!["wk".into()]));
    let kc = api.kubeconfig(&FakeApiServer::token_user("wk"));
    (reg, api, kc)
}

fn exporter(kc: &str, reg: &Registry, extra: &[&str]) -> Exporter {
    let mut args: Vec<&str> = FAST.to_vec();
    args.extend([
        "--plain-http-registries",
        &reg.host,
        "--discovery-interval",
        "1s",
    ]);
    args.extend_from_slice(extra);
    Exporter::start(kc, &args)
}

/// The `kind` label of a container's series, if it has one.
fn kind_of(m: &[Sample], ns: &str, name: &str) -> Option<String> {
    m.iter()
        .find(|s| {
            s.name == "k8s_image_availability_exporter_available"
                && s.labels.get("namespace").map(String::as_str) == Some(ns)
                && s.labels.get("name").map(String::as_str) == Some(name)
        })
        .map(|s| s.labels["kind"].clone())
}

#[test]
fn rollouts_with_a_template_and_through_workload_ref() {
    let (reg, api, kc) = start();
    api.install_crd("rollouts");
    // A Rollout with its own template, whose image is gone.
    api.apply(
        "rollouts",
        rollout(
            "prod",
            "canary",
            3,
            json!({"template": template(&reg.image("team/app:v9"))}),
        ),
    );
    // A Rollout running a Deployment's template (workloadRef): the
    // Deployment, scaled to 0 as Argo does, is reported only through it.
    api.apply(
        "deployments",
        support::objects::deployment(
            "prod",
            "ref-deploy",
            0,
            &support::objects::Template::image(&reg.image("team/app:v1")),
        ),
    );
    api.apply(
        "rollouts",
        rollout(
            "prod",
            "ref",
            2,
            json!({"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ref-deploy"}}),
        ),
    );
    // Scaled to zero: disabled.
    api.apply(
        "rollouts",
        rollout(
            "prod",
            "idle",
            0,
            json!({"template": template(&reg.image("team/app:v9"))}),
        ),
    );
    let e = exporter(
        &kc,
        &reg,
        &["--force-check-disabled-controllers", "deployment"],
    );
    e.wait_status("prod", "canary", "app", "absent");
    e.wait_status("prod", "ref", "app", "available");
    let m = e.metrics();
    assert_eq!(kind_of(&m, "prod", "canary").as_deref(), Some("rollout"));
    assert_eq!(kind_of(&m, "prod", "ref").as_deref(), Some("rollout"));
    assert_eq!(
        kind_of(&m, "prod", "ref-deploy"),
        None,
        "even forced, the referenced Deployment is reported through the Rollout only"
    );
    assert_eq!(kind_of(&m, "prod", "idle"), None, "replicas 0 is disabled");

    // The referenced Deployment's image changes: the Rollout follows.
    api.apply(
        "deployments",
        support::objects::deployment(
            "prod",
            "ref-deploy",
            0,
            &support::objects::Template::image(&reg.image("team/app:v7")),
        ),
    );
    e.wait_status("prod", "ref", "app", "absent");

    // Forced, a disabled Rollout is reported.
    let forced = exporter(
        &kc,
        &reg,
        &["--force-check-disabled-controllers", "rollout"],
    );
    forced.wait_status("prod", "idle", "app", "absent");
}

#[test]
fn a_crd_installed_later_is_watched_and_its_series_go_when_it_is_deleted() {
    let (reg, api, kc) = start();
    api.deploy("prod", "web", &reg.image("team/app:v1"));
    let e = exporter(&kc, &reg, &[]);
    // Not installed: no error, and readiness does not wait for it.
    wait_until("ready", Duration::from_secs(20), || {
        e.get("/readyz").0 == 200
    });
    e.wait_status("prod", "web", "app", "available");
    assert!(e.log().contains("rollouts is not served"), "{}", e.log());
    api.install_crd("rollouts");
    api.apply(
        "rollouts",
        rollout(
            "prod",
            "late",
            1,
            json!({"template": template(&reg.image("team/app:v9"))}),
        ),
    );
    let took = e.wait_status("prod", "late", "app", "absent");
    println!(
        "a Rollout of a CRD installed after start reported after {took:?} (discovery every 1s)"
    );
    api.uninstall_crd("rollouts");
    wait_until(
        "the Rollout's series to go",
        Duration::from_secs(20),
        || kind_of(&e.metrics(), "prod", "late").is_none(),
    );
    e.wait_status("prod", "web", "app", "available");
    assert_eq!(e.get("/readyz").0, 200);
}

#[test]
fn any_resource_with_a_pod_template_by_flag() {
    let (reg, api, kc) = start();
    api.install_crd("clonesets");
    for (name, replicas, image) in [("set", 2, "team/app:v1"), ("zero", 0, "team/app:v9")] {
        api.apply(
            "clonesets",
            json!({"metadata": {"name": name, "namespace": "prod"},
                   "spec": {"replicas": replicas, "template": template(&reg.image(image))}}),
        );
    }
    api.deploy("prod", "web", &reg.image("team/app:v1"));
    let e = exporter(
        &kc,
        &reg,
        &[
            "--pod-template-resource",
            "apps.kruise.io/v1alpha1/clonesets=spec.template,replicas=spec.replicas",
        ],
    );
    e.wait_status("prod", "set", "app", "available");
    let m = e.metrics();
    // The kind label is the resource's kind, from discovery, in lower case.
    assert_eq!(kind_of(&m, "prod", "set").as_deref(), Some("cloneset"));
    assert_eq!(kind_of(&m, "prod", "zero"), None, "replicas 0 is disabled");
    drop(e);

    // A wrong template path: reported once for the resource, nothing else breaks.
    let e = exporter(
        &kc,
        &reg,
        &[
            "--pod-template-resource",
            "apps.kruise.io/v1alpha1/clonesets=spec.tmpl",
        ],
    );
    e.wait_status("prod", "web", "app", "available");
    wait_until(
        "the path problem to be logged",
        Duration::from_secs(10),
        || e.log().contains("no pod template at spec.tmpl"),
    );
    let log = e.log();
    let warned = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("no pod template at spec.tmpl"))
        .count();
    assert_eq!(warned, 1, "{log}");
    assert_eq!(kind_of(&e.metrics(), "prod", "set"), None);
}

#[test]
fn bad_pod_template_resource_flags_exit_2() {
    for spec in [
        "clonesets=spec.template",
        "apps.kruise.io/v1alpha1/clonesets",
        "apps.kruise.io/v1alpha1/clonesets=spec..template",
        "apps.kruise.io/v1alpha1/clonesets=spec.template,copies=spec.replicas",
        "Apps.Kruise.io/v1alpha1/clonesets=spec.template",
    ] {
        let out = std::process::Command::new(support::exporter_bin())
            .args(["--pod-template-resource", spec, "check", "nginx"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{spec}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--pod-template-resource"),
            "{spec}"
        );
    }
}
