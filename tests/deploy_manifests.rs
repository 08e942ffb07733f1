//! Every manifest in deploy/ parses into its Kubernetes type with no unknown
//! field (a typo fails here, not in a cluster), and the RBAC rules grant
//! exactly what the code lists and watches.

mod support;

use std::path::{Path, PathBuf};

use argh::FromArgs;
use k8s_image_availability_exporter::config::{Args, Config};
use k8s_image_availability_exporter::sys::yaml::parse_yaml_documents;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde_json::Value;
use support::rbac::{granted, watched};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// The manifests under `dir`; the Helm chart's templates are not
/// manifests (tests/helm_chart.rs renders them).
fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() && p.file_name().is_some_and(|n| n == "helm") {
            continue;
        }
        if p.is_dir() {
            yaml_files(&p, out);
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            out.push(p);
        }
    }
}

/// Every field of `original` is in `typed` with the same value: a field the
/// type does not know is dropped by serde, and shows up here.
fn assert_known_fields(original: &Value, typed: &Value, path: &str) {
    match (original, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                if v.is_null() {
                    continue;
                }
                let Some(t) = b.get(k) else {
                    panic!("{path}.{k}: unknown field (typo?)")
                };
                assert_known_fields(v, t, &format!("{path}.{k}"));
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{path}");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert_known_fields(x, y, &format!("{path}[{i}]"));
            }
        }
        (a, b) => assert_eq!(a, b, "{path}"),
    }
}

fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(doc: &Value, what: &str) -> T {
    let t: T = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_known_fields(doc, &serde_json::to_value(&t).unwrap(), what);
    t
}

struct Manifests {
    cluster_roles: Vec<ClusterRole>,
    roles: Vec<Role>,
    deployments: Vec<Deployment>,
    /// Strategic-merge patches of the kustomize components (credential-providers/).
    patches: Vec<(PathBuf, Deployment)>,
    /// Credential provider configurations carried in ConfigMaps.
    provider_configs: Vec<(PathBuf, String)>,
    /// The web-config component's Deployment patch.
    web_patches: Vec<Deployment>,
    secrets: Vec<Secret>,
    network_policies: Vec<NetworkPolicy>,
    kinds: Vec<String>,
}

fn load() -> Manifests {
    let mut files = Vec::new();
    yaml_files(&deploy_dir(), &mut files);
    assert!(files.len() >= 6, "{files:?}");
    let mut m = Manifests {
        cluster_roles: vec![],
        roles: vec![],
        deployments: vec![],
        patches: vec![],
        provider_configs: vec![],
        web_patches: vec![],
        secrets: vec![],
        network_policies: vec![],
        kinds: vec![],
    };
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, doc) in parse_yaml_documents(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
            .into_iter()
            .enumerate()
        {
            if doc.is_null() {
                continue;
            }
            let what = format!("{} document {i}", f.display());
            let kind = doc["kind"]
                .as_str()
                .unwrap_or_else(|| panic!("{what}: no kind"))
                .to_string();
            let api = doc["apiVersion"].as_str().unwrap_or("").to_string();
            match (api.as_str(), kind.as_str()) {
                ("v1", "Namespace") => drop(typed::<Namespace>(&doc, &what)),
                ("v1", "ServiceAccount") => drop(typed::<ServiceAccount>(&doc, &what)),
                ("v1", "Service") => drop(typed::<Service>(&doc, &what)),
                ("apps/v1", "Deployment")
                    if f.to_string_lossy().contains("credential-providers") =>
                {
                    m.patches.push((f.clone(), typed(&doc, &what)))
                }
                ("apps/v1", "Deployment") if f.to_string_lossy().contains("web-config") => {
                    m.web_patches.push(typed(&doc, &what))
                }
                ("apps/v1", "Deployment") => m.deployments.push(typed(&doc, &what)),
                ("v1", "Secret") => m.secrets.push(typed(&doc, &what)),
                ("networking.k8s.io/v1", "NetworkPolicy") => {
                    m.network_policies.push(typed(&doc, &what))
                }
                ("v1", "ConfigMap") => {
                    let cm: ConfigMap = typed(&doc, &what);
                    if let Some(c) = cm.data.unwrap_or_default().get("config.yaml") {
                        m.provider_configs.push((f.clone(), c.clone()));
                    }
                }
                ("rbac.authorization.k8s.io/v1", "ClusterRole") => {
                    m.cluster_roles.push(typed(&doc, &what))
                }
                ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
                    drop(typed::<ClusterRoleBinding>(&doc, &what))
                }
                ("rbac.authorization.k8s.io/v1", "Role") => m.roles.push(typed(&doc, &what)),
                ("rbac.authorization.k8s.io/v1", "RoleBinding") => {
                    drop(typed::<RoleBinding>(&doc, &what))
                }
                ("monitoring.coreos.com/v1", "ServiceMonitor") => {
                    check_service_monitor(&doc, &what)
                }
                ("monitoring.coreos.com/v1", "PrometheusRule") => {
                    check_prometheus_rule(&doc, &what)
                }
                other => panic!("{what}: unexpected {other:?}"),
            }
            m.kinds.push(kind);
        }
    }
    m
}

fn check_service_monitor(doc: &Value, what: &str) {
    let ep = &doc["spec"]["endpoints"][0];
    assert_eq!(ep["port"], "http-metrics", "{what}");
    assert_eq!(ep["path"], "/metrics", "{what}");
    if what.contains("web-config") {
        // The web-config component's patch: HTTPS and basic auth.
        assert_eq!(ep["scheme"], "https", "{what}");
        assert!(ep["basicAuth"]["password"]["name"].is_string(), "{what}");
        assert!(
            ep["tlsConfig"]["ca"]["secret"]["name"].is_string(),
            "{what}"
        );
    } else {
        assert!(doc["spec"]["selector"]["matchLabels"].is_object(), "{what}");
    }
}

fn check_prometheus_rule(doc: &Value, what: &str) {
    let rules: Vec<&Value> = doc["spec"]["groups"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no groups"))
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().iter())
        .collect();
    // One alert per failure class, carrying it in `status`.
    for status in k8s_image_availability_exporter::registry::Status::GAUGES {
        let class = status.as_str();
        if class == "available" {
            continue;
        }
        let r = rules
            .iter()
            .find(|r| r["labels"]["status"] == class)
            .unwrap_or_else(|| panic!("{what}: no alert with status={class}"));
        assert!(
            r["expr"]
                .as_str()
                .unwrap()
                .contains(&format!("k8s_image_availability_exporter_{class} == 1")),
            "{what}: {class}"
        );
        assert!(r["for"].as_str().is_some(), "{what}: {class} has no `for:`");
        let summary = r["annotations"]["summary"].as_str().unwrap();
        let description = r["annotations"]["description"].as_str().unwrap();
        assert!(summary.contains(class), "{what}: the summary names {class}");
        assert!(description.contains("Next step"), "{what}: {class}");
    }
    for status in [
        "exporter_down",
        "exporter_absent",
        "exporter_stuck",
        "checks_stale",
        "exporter_blind",
    ] {
        assert!(
            rules.iter().any(|r| r["labels"]["status"] == status),
            "{what}: no {status} alert"
        );
    }
}

#[test]
fn manifests_parse_into_their_types() {
    let m = load();
    for k in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
        "ServiceMonitor",
        "PrometheusRule",
    ] {
        assert!(m.kinds.iter().any(|x| x == k), "deploy/ lacks a {k}");
    }
}

#[test]
fn rbac_grants_exactly_what_the_code_watches() {
    let m = load();
    assert_eq!(m.cluster_roles.len(), 1);
    assert_eq!(
        granted(m.cluster_roles[0].rules.as_deref().unwrap()),
        watched()
    );
    // The namespaced variant: everything but namespaces and nodes
    // (cluster-scoped; without nodes, platform checks are off).
    let mut namespaced = watched();
    namespaced.remove(&(String::new(), "namespaces".into()));
    namespaced.remove(&(String::new(), "nodes".into()));
    assert_eq!(granted(m.roles[0].rules.as_deref().unwrap()), namespaced);
}

#[test]
fn deployment_is_locked_down_and_its_args_are_valid_flags() {
    let m = load();
    let d = &m.deployments[0];
    let spec = d.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(1));
    let pod = spec.template.spec.as_ref().unwrap();
    let psc = pod.security_context.as_ref().unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    // The image's own user (deploy/Dockerfile: USER 65534:65534).
    assert_eq!(psc.run_as_user, Some(65534));
    assert_eq!(psc.run_as_group, Some(65534));
    let dockerfile = std::fs::read_to_string(deploy_dir().join("Dockerfile")).unwrap();
    assert!(dockerfile.contains("\nUSER 65534:65534\n"));
    assert!(dockerfile.contains(&format!("ARG VERSION={}\n", env!("CARGO_PKG_VERSION"))));
    assert_eq!(
        psc.seccomp_profile.as_ref().unwrap().type_,
        "RuntimeDefault"
    );
    let c = &pod.containers[0];
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_string()][..])
    );
    assert_eq!(
        c.liveness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .as_deref(),
        Some("/healthz")
    );
    assert_eq!(
        c.readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .as_deref(),
        Some("/readyz")
    );
    let res = c.resources.as_ref().unwrap();
    assert!(
        res.requests.as_ref().unwrap().contains_key("memory")
            && res.limits.as_ref().unwrap().contains_key("memory")
    );
    // The args are flags this binary accepts.
    let args: Vec<String> =
        k8s_image_availability_exporter::config::normalize_args(c.args.as_deref().unwrap_or(&[]));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let parsed = Args::from_args(&["k8s-image-availability-exporter"], &args)
        .unwrap_or_else(|e| panic!("{}", e.output));
    Config::from_args(parsed).unwrap();
}

/// Each cloud's component: its CredentialProviderConfig validates as the
/// kubelet validates it, its patch's args are flags this binary accepts and
/// point at the mounted config, and its plugin lands where the flag says.
#[test]
fn credential_provider_components_are_consistent() {
    let m = load();
    assert_eq!(m.provider_configs.len(), 3, "eks, gke, aks");
    for (file, text) in &m.provider_configs {
        let n =
            k8s_image_availability_exporter::credentials::provider::decode_config_for_fuzzing(text)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(n, 1, "{}", file.display());
    }
    assert_eq!(m.patches.len(), 3);
    for (file, d) in &m.patches {
        let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let c = &pod.containers[0];
        let args: Vec<String> = k8s_image_availability_exporter::config::normalize_args(
            c.args.as_deref().unwrap_or(&[]),
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let parsed = Args::from_args(&["k8s-image-availability-exporter"], &args)
            .unwrap_or_else(|e| panic!("{}: {}", file.display(), e.output));
        assert_eq!(
            parsed.image_credential_provider_config.as_deref(),
            Some("/etc/credential-provider/config.yaml"),
            "{}",
            file.display()
        );
        let bin_dir = parsed.image_credential_provider_bin_dir.unwrap();
        let mounts = c.volume_mounts.as_deref().unwrap_or(&[]);
        assert!(
            mounts.iter().any(|v| v.mount_path == bin_dir),
            "{}",
            file.display()
        );
        assert!(
            mounts
                .iter()
                .any(|v| v.mount_path == "/etc/credential-provider"),
            "{}",
            file.display()
        );
        let init = &pod.init_containers.as_ref().unwrap()[0];
        let copied = init.command.as_ref().unwrap().last().unwrap();
        assert!(
            copied.starts_with(&format!("{bin_dir}/")),
            "{}",
            file.display()
        );
    }
    for cloud in ["eks", "gke", "aks"] {
        let dir = deploy_dir().join("credential-providers").join(cloud);
        let text = std::fs::read_to_string(dir.join("Kustomization")).unwrap();
        let doc = &parse_yaml_documents(&text).unwrap()[0];
        assert_eq!(doc["kind"], "Component");
        let listed = doc["resources"].as_array().unwrap().iter().chain(
            doc["patches"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| &p["path"]),
        );
        for r in listed {
            assert!(dir.join(r.as_str().unwrap()).exists(), "{cloud}: {r}");
        }
    }
}

/// `kubectl apply -f deploy/` reads the directory's `*.json`, `*.yaml` and
/// `*.yml` files (not its subdirectories, without `-R`) in name order, and
/// applies their documents in turn: the Namespace must come before
/// everything in it, in one run on an empty cluster.
#[test]
fn kubectl_apply_f_creates_the_namespace_first() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("json" | "yaml" | "yml")
                )
        })
        .collect();
    files.sort();
    let mut order: Vec<(String, String, String)> = Vec::new();
    for f in &files {
        for doc in parse_yaml_documents(&std::fs::read_to_string(f).unwrap()).unwrap() {
            if doc.is_null() {
                continue;
            }
            order.push((
                doc["kind"].as_str().unwrap().to_string(),
                doc["metadata"]["name"].as_str().unwrap_or("").to_string(),
                doc["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            ));
        }
    }
    let first_ns = order
        .iter()
        .position(|(k, _, _)| k == "Namespace")
        .expect("a Namespace");
    let ns = &order[first_ns].1;
    for (i, (kind, name, namespace)) in order.iter().enumerate() {
        if namespace == ns {
            assert!(
                i > first_ns,
                "{kind} {name} comes before its Namespace: {order:?}"
            );
        }
    }
    let sa = order
        .iter()
        .position(|(k, _, _)| k == "ServiceAccount")
        .unwrap();
    let dep = order
        .iter()
        .position(|(k, _, _)| k == "Deployment")
        .unwrap();
    assert!(
        sa < dep,
        "the ServiceAccount exists before the Deployment that uses it"
    );
}

/// The Grafana dashboard: a Grafana 10 JSON model with the datasource,
/// namespace, kind and class variables, and every panel on that datasource; its
/// kustomization generates the sidecar ConfigMap from it.
#[test]
fn grafana_dashboard_and_its_configmap() {
    let dir = deploy_dir().join("grafana");
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("k8s-image-availability-exporter.json")).unwrap(),
    )
    .unwrap();
    assert!(dash["schemaVersion"].as_u64().unwrap() >= 36, "Grafana 10");
    let vars: Vec<&str> = dash["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(vars, ["datasource", "namespace", "kind", "status"]);
    for p in dash["panels"].as_array().unwrap() {
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        assert!(!p["targets"].as_array().unwrap().is_empty());
    }
    let text = std::fs::read_to_string(dir.join("Kustomization")).unwrap();
    let k = &parse_yaml_documents(&text).unwrap()[0];
    let gen = &k["configMapGenerator"][0];
    assert_eq!(gen["options"]["labels"]["grafana_dashboard"], "1");
    for f in gen["files"].as_array().unwrap() {
        assert!(dir.join(f.as_str().unwrap()).exists(), "{f}");
    }
}

#[test]
fn kustomizations_list_existing_files() {
    for dir in [deploy_dir(), deploy_dir().join("prometheus-operator")] {
        let text = std::fs::read_to_string(dir.join("Kustomization")).unwrap();
        let doc = &parse_yaml_documents(&text).unwrap()[0];
        assert_eq!(doc["kind"], "Kustomization");
        for r in doc["resources"].as_array().unwrap() {
            let p = dir.join(r.as_str().unwrap());
            assert!(
                p.exists(),
                "{} lists a missing {}",
                dir.display(),
                p.display()
            );
        }
    }
}

/// The first container of a Deployment (or a patch of one).
fn first_container(d: &Deployment) -> &k8s_openapi::api::core::v1::Container {
    &d.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
}

/// The NetworkPolicy component admits the metrics port only from the
/// monitoring namespaces, and limits no egress.
#[test]
fn network_policy_admits_only_the_monitoring_namespaces() {
    let m = load();
    let [np] = m.network_policies.as_slice() else {
        panic!("one NetworkPolicy");
    };
    let spec = np.spec.as_ref().unwrap();
    assert_eq!(
        spec.pod_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap()["app.kubernetes.io/name"],
        "k8s-image-availability-exporter"
    );
    assert_eq!(
        spec.policy_types.as_deref(),
        Some(&["Ingress".to_string()][..])
    );
    assert!(spec.egress.is_none());
    let rule = &spec.ingress.as_ref().unwrap()[0];
    let from = &rule.from.as_ref().unwrap()[0];
    assert!(from.pod_selector.is_none() && from.ip_block.is_none());
    let expr = &from
        .namespace_selector
        .as_ref()
        .unwrap()
        .match_expressions
        .as_ref()
        .unwrap()[0];
    assert_eq!(expr.key, "kubernetes.io/metadata.name");
    assert_eq!(
        expr.values.as_deref(),
        Some(&["monitoring".to_string()][..])
    );
    let port = &rule.ports.as_ref().unwrap()[0];
    assert_eq!(
        port.port,
        Some(
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(
                "http-metrics".into()
            )
        )
    );
    let text = std::fs::read_to_string(deploy_dir().join("network-policy/Kustomization")).unwrap();
    let doc = &parse_yaml_documents(&text).unwrap()[0];
    assert_eq!(doc["kind"], "Component");
    // Off by default: the base does not list it.
    let base = std::fs::read_to_string(deploy_dir().join("Kustomization")).unwrap();
    assert!(!base.contains("network-policy"));
}

/// The web-config component: its Secret's web.yml is a valid web config
/// whose files are where the patch mounts them, the patch's args are
/// flags this binary accepts, the probes speak HTTPS, and the
/// ServiceMonitor example's password matches the shipped hash.
#[test]
fn web_config_component_is_consistent() {
    use k8s_image_availability_exporter::exporter::web_config::{parse, Pem};
    let m = load();
    let web = m
        .secrets
        .iter()
        .find(|s| s.metadata.name.as_deref() == Some("k8s-image-availability-exporter-web"))
        .expect("the web config Secret");
    let text = &web.string_data.as_ref().unwrap()["web.yml"];
    let config = parse(text).unwrap_or_else(|e| panic!("{e}"));
    let tls = config.tls.as_ref().unwrap();
    let [patch] = m.web_patches.as_slice() else {
        panic!("one web-config Deployment patch");
    };
    let c = first_container(patch);
    let args = k8s_image_availability_exporter::config::normalize_args(c.args.as_deref().unwrap());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let parsed = Args::from_args(&["k8s-image-availability-exporter"], &args).unwrap();
    let file = parsed.web_config_file.unwrap();
    let mounts = c.volume_mounts.as_deref().unwrap();
    let mounted = |path: &str| {
        mounts
            .iter()
            .any(|v| path.starts_with(&format!("{}/", v.mount_path)) && v.read_only == Some(true))
    };
    assert!(mounted(&file), "{file}");
    for pem in [&tls.cert, &tls.key] {
        let Pem::File(f) = pem else { panic!() };
        assert!(mounted(f), "{f}");
    }
    for probe in [&c.liveness_probe, &c.readiness_probe] {
        let get = probe.as_ref().unwrap().http_get.as_ref().unwrap();
        assert_eq!(get.scheme.as_deref(), Some("HTTPS"));
        assert!(["/healthz", "/readyz"].contains(&get.path.as_deref().unwrap()));
    }
    let scrape = m
        .secrets
        .iter()
        .find(|s| s.metadata.name.as_deref() == Some("k8s-image-availability-exporter-scrape"))
        .expect("the scrape Secret");
    let creds = scrape.string_data.as_ref().unwrap();
    let hash = config
        .users
        .iter()
        .find(|(u, _)| *u == creds["username"])
        .map(|(_, h)| h.clone())
        .unwrap();
    assert!(bcrypt::verify(&creds["password"], &hash).unwrap());
    // The patch keeps the base's own args.
    let base = first_container(&m.deployments[0]);
    for a in base.args.as_deref().unwrap() {
        assert!(c.args.as_ref().unwrap().contains(a), "{a}");
    }
}
