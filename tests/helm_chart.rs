//! The Helm chart, with Helm's own engine (PyPI's helm-python-sdk, Helm
//! v4's Go SDK, installed by tests/run): lint, the values schema, renders
//! with the Go chart's default values file and a realistic one, the same
//! objects deploy/ ships, RBAC from the code's own streams, and the
//! rendered args parsed by the binary's own flag parser.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use argh::FromArgs;
use k8s_image_availability_exporter::config::{normalize_args, Args, Config};
use k8s_image_availability_exporter::sys::yaml::parse_yaml_documents;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use serde_json::Value;
use support::rbac::{granted, watched};
use support::TempDir;

const RELEASE: &str = "k8s-image-availability-exporter";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chart() -> String {
    root()
        .join("deploy/helm/k8s-image-availability-exporter")
        .to_string_lossy()
        .into_owned()
}

/// Runs tests/helm/helm.py; its JSON answer and exit code.
fn helm(args: &[&str]) -> (Value, i32) {
    let out = Command::new("python3")
        .arg(root().join("tests/helm/helm.py"))
        .args(args)
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let value = serde_json::from_str(&stdout).unwrap_or_else(|_| {
        panic!(
            "helm.py {args:?}: {stdout}\n{}\n(helm-python-sdk from PyPI; tests/run installs it)",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (value, out.status.code().unwrap_or(-1))
}

/// Values as a file for helm.py (`-` for the chart's defaults).
fn values_file(dir: &TempDir, name: &str, yaml: &str) -> String {
    dir.write(name, yaml)
}

/// Every object a render gives, by (kind, namespace, name).
fn render(
    values: &str,
    release: &str,
    namespace: &str,
) -> BTreeMap<(String, String, String), Value> {
    render_from(&chart(), values, release, namespace)
}

/// As [`render`], of the chart at `chart` (a directory or a `.tgz`).
fn render_from(
    chart: &str,
    values: &str,
    release: &str,
    namespace: &str,
) -> BTreeMap<(String, String, String), Value> {
    let (v, code) = helm(&["render", chart, values, release, namespace]);
    assert_eq!(code, 0, "{v}");
    let mut out = BTreeMap::new();
    for (template, text) in v.as_object().unwrap() {
        for doc in parse_yaml_documents(text.as_str().unwrap())
            .unwrap_or_else(|e| panic!("{template}: {e}"))
        {
            if doc.is_null() {
                continue;
            }
            let key = (
                doc["kind"].as_str().unwrap().to_string(),
                doc["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                doc["metadata"]["name"].as_str().unwrap().to_string(),
            );
            assert!(out.insert(key.clone(), doc).is_none(), "{key:?} twice");
        }
    }
    out
}

fn one<'a>(objects: &'a BTreeMap<(String, String, String), Value>, kind: &str) -> &'a Value {
    let found: Vec<&Value> = objects
        .iter()
        .filter(|((k, _, _), _)| k == kind)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(found.len(), 1, "one {kind}: {:?}", objects.keys());
    found[0]
}

fn typed<T: serde::de::DeserializeOwned>(v: &Value) -> T {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{e}: {v}"))
}

/// The exporter's args in a rendered Deployment, parsed by the binary's
/// own parser (Go spellings normalised as the binary does).
fn flags(objects: &BTreeMap<(String, String, String), Value>) -> (Vec<String>, Args) {
    let d: Deployment = typed(one(objects, "Deployment"));
    let c = &d.spec.unwrap().template.spec.unwrap().containers[0];
    let raw = c.args.clone().unwrap_or_default();
    let args = normalize_args(&raw);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let parsed = Args::from_args(&["k8s-image-availability-exporter"], &args)
        .unwrap_or_else(|e| panic!("{raw:?}: {}", e.output));
    (raw, parsed)
}

/// As [`flags`], validated whole as the binary validates them before it starts.
fn parsed_args(objects: &BTreeMap<(String, String, String), Value>) -> (Vec<String>, Config) {
    let (raw, parsed) = flags(objects);
    let config = Config::from_args(parsed).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
    (raw, config)
}

fn standard_labels(objects: &BTreeMap<(String, String, String), Value>, release: &str) {
    for ((kind, _, name), o) in objects {
        let labels = &o["metadata"]["labels"];
        for key in [
            "app.kubernetes.io/name",
            "app.kubernetes.io/version",
            "app.kubernetes.io/managed-by",
            "helm.sh/chart",
        ] {
            assert!(labels[key].is_string(), "{kind} {name} lacks {key}");
        }
        assert_eq!(
            labels["app.kubernetes.io/instance"], release,
            "{kind} {name}"
        );
    }
}

#[test]
fn lint_and_schema() {
    let dir = TempDir::new("helm-lint");
    for values in [
        "-".to_string(),
        root()
            .join("tests/helm/go-chart-values.yaml")
            .to_string_lossy()
            .into_owned(),
        root()
            .join("tests/helm/realistic-values.yaml")
            .to_string_lossy()
            .into_owned(),
    ] {
        let (report, code) = helm(&["lint", &chart(), &values]);
        assert_eq!(code, 0);
        let errors: Vec<&Value> = report["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["severity"].as_u64() >= Some(2))
            .collect();
        assert!(errors.is_empty(), "{values}: {errors:?}");
        assert_eq!(helm(&["schema", &chart(), &values]).1, 0, "{values}");
    }
    for (name, bad) in [
        ("top", "replicaCount: 1\nreplicaCoutn: 2\n"),
        (
            "nested",
            "serviceMonitor:\n  enabled: true\n  intervall: 30s\n",
        ),
        (
            "deep",
            "k8sImageAvailabilityExporter:\n  image:\n    repo: x\n",
        ),
        ("type", "replicaCount: one\n"),
        ("cloud", "credentialProvider:\n  cloud: ibm\n"),
    ] {
        let f = values_file(&dir, name, bad);
        let (why, code) = helm(&["schema", &chart(), &f]);
        assert_eq!(code, 1, "{name}: {why}");
    }
}

#[test]
fn the_go_charts_values_install_unchanged() {
    let go = root().join("tests/helm/go-chart-values.yaml");
    let objects = render(go.to_str().unwrap(), "image-checks", "monitoring");
    standard_labels(&objects, "image-checks");
    for (kind, ns, name) in objects.keys() {
        if !kind.starts_with("Cluster") {
            assert_eq!(ns, "monitoring", "{kind} {name} in the release namespace");
        }
        assert!(kind != "Namespace", "the chart creates no Namespace");
    }
    let d: Deployment = typed(one(&objects, "Deployment"));
    let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let c = &pod.containers[0];
    // Their default repository holds no build of ours: ours is used.
    assert_eq!(
        c.image.as_deref(),
        Some("k8s-image-availability-exporter:0.1.0")
    );
    // Hardened even though their file gives empty security contexts.
    assert_eq!(
        pod.security_context.as_ref().unwrap().run_as_non_root,
        Some(true)
    );
    assert_eq!(
        c.security_context
            .as_ref()
            .unwrap()
            .read_only_root_filesystem,
        Some(true)
    );
    // Their `resources: {}` keeps the benchmark's.
    assert!(c.resources.as_ref().unwrap().limits.is_some());
    let (raw, config) = parsed_args(&objects);
    assert_eq!(raw, ["--bind-address=:8080", "--one-series-per-container"]);
    assert!(config.exporter.one_series_per_container);
    // The selector is the Go chart's, so `helm upgrade` of its release
    // keeps the Deployment's immutable selector.
    let selector = d
        .spec
        .as_ref()
        .unwrap()
        .selector
        .match_labels
        .clone()
        .unwrap();
    assert_eq!(
        selector.get("app").map(String::as_str),
        Some("image-checks-k8s-image-availability-exporter")
    );
    let s: Service = typed(one(&objects, "Service"));
    assert_eq!(s.spec.unwrap().selector.unwrap(), selector);
    let cr: ClusterRole = typed(one(&objects, "ClusterRole"));
    assert_eq!(granted(cr.rules.as_deref().unwrap()), watched());
    assert!(!objects
        .keys()
        .any(|(k, _, _)| k == "ServiceMonitor" || k == "PrometheusRule"));
}

#[test]
fn a_realistic_values_file() {
    let real = root().join("tests/helm/realistic-values.yaml");
    let objects = render(real.to_str().unwrap(), "kiae", "image-checks");
    standard_labels(&objects, "kiae");
    let (raw, config) = parsed_args(&objects);
    assert!(raw.contains(&"--check-interval=5m".to_string()), "{raw:?}");
    assert_eq!(
        config.exporter.queue.period,
        std::time::Duration::from_secs(300)
    );
    assert!(config.registry.checker.transport.skip_verify);
    let d: Deployment = typed(one(&objects, "Deployment"));
    let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.tolerations.as_ref().unwrap().len(), 1);
    assert_eq!(
        pod.priority_class_name.as_deref(),
        Some("system-cluster-critical")
    );
    assert_eq!(
        pod.image_pull_secrets.as_ref().unwrap()[0].name,
        "registry-example-com"
    );
    assert_eq!(pod.containers[0].env.as_ref().unwrap().len(), 2);
    let sm = one(&objects, "ServiceMonitor");
    assert_eq!(sm["metadata"]["namespace"], "monitoring");
    assert_eq!(sm["metadata"]["labels"]["release"], "kube-prometheus-stack");
    assert_eq!(
        sm["spec"]["namespaceSelector"]["matchNames"][0],
        "image-checks"
    );
    let ep = &sm["spec"]["endpoints"][0];
    assert_eq!(
        (ep["interval"].as_str(), ep["scrapeTimeout"].as_str()),
        (Some("1m"), Some("50s"))
    );
    assert_eq!(ep["honorLabels"], true);
    assert_eq!(ep["metricRelabelings"][0]["action"], "drop");
    let groups = one(&objects, "PrometheusRule")["spec"]["groups"]
        .as_array()
        .unwrap()
        .clone();
    assert!(groups.iter().any(|g| g["name"] == "team-images"));
    assert!(groups.len() > 1, "the default groups too");
    let pdb = one(&objects, "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], 0);
}

/// Reads deploy/'s objects by (kind, name).
fn deploy_objects() -> BTreeMap<(String, String), Value> {
    let mut out = BTreeMap::new();
    for f in [
        "deploy/10-rbac.yaml",
        "deploy/20-deployment.yaml",
        "deploy/30-service.yaml",
        "deploy/prometheus-operator/servicemonitor.yaml",
        "deploy/prometheus-operator/prometheusrule.yaml",
        "deploy/network-policy/networkpolicy.yaml",
    ] {
        let text = std::fs::read_to_string(root().join(f)).unwrap();
        for d in parse_yaml_documents(&text).unwrap() {
            let key = (
                d["kind"].as_str().unwrap().to_string(),
                d["metadata"]["name"].as_str().unwrap().to_string(),
            );
            out.insert(key, d);
        }
    }
    out
}

/// One truth: the chart with its defaults (and its optional objects on)
/// renders what deploy/ ships, object by object, Helm's labels and the
/// selector (the Go chart's `app`, for upgrades) aside.
#[test]
fn the_chart_renders_what_deploy_ships() {
    let dir = TempDir::new("helm-truth");
    let on = values_file(
        &dir,
        "on.yaml",
        "serviceMonitor:\n  enabled: true\n  interval: 30s\n  scrapeTimeout: 25s\nprometheusRule:\n  enabled: true\nnetworkPolicy:\n  enabled: true\ngrafanaDashboard:\n  enabled: true\n",
    );
    let chart_objects = render(&on, RELEASE, RELEASE);
    let deploy = deploy_objects();
    let get = |kind: &str| one(&chart_objects, kind);
    let theirs = |kind: &str| {
        deploy
            .iter()
            .find(|((k, _), _)| k == kind)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("deploy/ has no {kind}"))
    };
    for kind in [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
        "ServiceMonitor",
        "PrometheusRule",
        "NetworkPolicy",
    ] {
        assert_eq!(
            get(kind)["metadata"]["name"],
            theirs(kind)["metadata"]["name"],
            "{kind}"
        );
    }
    // The exporter's container and pod: equal.
    let pod = |d: &Value| d["spec"]["template"]["spec"].clone();
    let (ours, shipped) = (pod(get("Deployment")), pod(theirs("Deployment")));
    for key in [
        "serviceAccountName",
        "automountServiceAccountToken",
        "securityContext",
    ] {
        assert_eq!(ours[key], shipped[key], "pod {key}");
    }
    assert_eq!(
        ours["containers"], shipped["containers"],
        "the exporter's container"
    );
    assert_eq!(
        get("Deployment")["spec"]["replicas"],
        theirs("Deployment")["spec"]["replicas"]
    );
    // RBAC: the same rules, which are what the code watches.
    let rules = |v: &Value| granted(typed::<ClusterRole>(v).rules.as_deref().unwrap());
    assert_eq!(rules(get("ClusterRole")), rules(theirs("ClusterRole")));
    assert_eq!(rules(get("ClusterRole")), watched());
    assert_eq!(
        get("ClusterRoleBinding")["subjects"],
        theirs("ClusterRoleBinding")["subjects"]
    );
    assert_eq!(
        get("Service")["spec"]["ports"],
        theirs("Service")["spec"]["ports"]
    );
    let ep = |v: &Value| v["spec"]["endpoints"][0].clone();
    assert_eq!(ep(get("ServiceMonitor")), ep(theirs("ServiceMonitor")));
    assert_eq!(
        get("PrometheusRule")["spec"],
        theirs("PrometheusRule")["spec"]
    );
    let np = |v: &Value| {
        let mut s = v["spec"].clone();
        s["podSelector"] = Value::Null;
        s
    };
    assert_eq!(np(get("NetworkPolicy")), np(theirs("NetworkPolicy")));
    // The dashboard: deploy/grafana's file.
    let cm: ConfigMap = typed(get("ConfigMap"));
    let json =
        std::fs::read_to_string(root().join("deploy/grafana/k8s-image-availability-exporter.json"))
            .unwrap();
    assert_eq!(
        cm.data.unwrap()["k8s-image-availability-exporter.json"].trim_end(),
        json.trim_end()
    );
    assert_eq!(cm.metadata.labels.unwrap()["grafana_dashboard"], "1");
}

#[test]
fn options_of_this_chart() {
    let dir = TempDir::new("helm-options");
    // No Secrets: no rule for them, and the exporter is told.
    let f = values_file(&dir, "nosecrets.yaml", "k8sImageAvailabilityExporter:\n  useSecretsForPrivateRepositories: false\nseriesFormat: full\n");
    let objects = render(&f, "r", "ns");
    let cr: ClusterRole = typed(one(&objects, "ClusterRole"));
    let mut expected = watched();
    expected.remove(&(String::new(), "secrets".into()));
    assert_eq!(granted(cr.rules.as_deref().unwrap()), expected);
    let (raw, config) = parsed_args(&objects);
    assert!(
        config.kube.no_secrets && !config.exporter.one_series_per_container,
        "{raw:?}"
    );
    // A namespaced install: a Role in each namespace, nothing cluster-wide.
    let f = values_file(&dir, "ns.yaml", "watchNamespaces: [team-a, team-b]\n");
    let objects = render(&f, "r", "ns");
    assert!(!objects.keys().any(|(k, _, _)| k.starts_with("Cluster")));
    let roles: Vec<Role> = objects
        .iter()
        .filter(|((k, _, _), _)| k == "Role")
        .map(|(_, v)| typed(v))
        .collect();
    assert_eq!(roles.len(), 2);
    let mut namespaced = watched();
    namespaced.remove(&(String::new(), "namespaces".into()));
    namespaced.remove(&(String::new(), "nodes".into()));
    for r in &roles {
        assert_eq!(granted(r.rules.as_deref().unwrap()), namespaced);
    }
    assert_eq!(
        objects
            .keys()
            .filter(|(k, _, _)| k == "RoleBinding")
            .count(),
        2
    );
    let (_, config) = parsed_args(&objects);
    assert_eq!(config.kube.namespaces, ["team-a", "team-b"]);
    assert!(!config.kube.platform_check);
    // Each cloud's credential provider: the config deploy/ ships, the plugin
    // copied by an init container, the flags pointing at both.
    for cloud in ["eks", "gke", "aks"] {
        let f = values_file(
            &dir,
            &format!("{cloud}.yaml"),
            &format!("credentialProvider:\n  cloud: {cloud}\n  pluginImage: plugins:{cloud}\nserviceAccount:\n  annotations:\n    example.com/identity: x\n"),
        );
        let objects = render(&f, "r", "ns");
        let cm: ConfigMap = typed(one(&objects, "ConfigMap"));
        let shipped = std::fs::read_to_string(root().join(format!(
            "deploy/credential-providers/{cloud}/credential-provider-config.yaml"
        )))
        .unwrap();
        let shipped: ConfigMap = typed(&parse_yaml_documents(&shipped).unwrap()[0]);
        assert_eq!(cm.data, shipped.data, "{cloud}");
        // The config file is only in the pod: the flags parse, and name it.
        let (_, parsed) = flags(&objects);
        assert_eq!(
            parsed.image_credential_provider_config.as_deref(),
            Some("/etc/credential-provider/config.yaml")
        );
        let d: Deployment = typed(one(&objects, "Deployment"));
        let pod = d.spec.unwrap().template.spec.unwrap();
        let init = &pod.init_containers.unwrap()[0];
        assert_eq!(
            init.image.as_deref(),
            Some(format!("plugins:{cloud}").as_str())
        );
        assert!(init.command.as_ref().unwrap()[2].starts_with("/plugins/"));
        let args = pod.containers[0].args.clone().unwrap();
        assert!(args.contains(&"--image-credential-provider-bin-dir=/plugins".to_string()));
        assert_eq!(
            one(&objects, "ServiceAccount")["metadata"]["annotations"]["example.com/identity"],
            "x"
        );
    }
    // PDB without numbers: one pod may go.
    let f = values_file(&dir, "pdb.yaml", "podDisruptionBudget:\n  enabled: true\n");
    let objects = render(&f, "r", "ns");
    assert_eq!(
        one(&objects, "PodDisruptionBudget")["spec"]["maxUnavailable"],
        1
    );
}

#[test]
fn versions_follow_cargo_and_the_chart_packages() {
    let cargo = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let version = cargo
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .unwrap()
        .trim_end_matches('"')
        .to_string();
    let meta = std::fs::read_to_string(Path::new(&chart()).join("Chart.yaml")).unwrap();
    let meta = &parse_yaml_documents(&meta).unwrap()[0];
    assert_eq!(meta["apiVersion"], "v2");
    assert_eq!(meta["version"], version.as_str());
    assert_eq!(meta["appVersion"], version.as_str());
    let dir = TempDir::new("helm-package");
    let (out, code) = helm(&["package", &chart(), dir.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let archive = out["archive"].as_str().unwrap();
    assert!(
        archive.ends_with(&format!("k8s-image-availability-exporter-{version}.tgz")),
        "{archive}"
    );
    // The packaged chart renders as the directory does.
    let objects = render_from(archive, "-", "r", "ns");
    assert!(objects.keys().any(|(k, _, _)| k == "Deployment"));
}
