//! Kubernetes objects for the fake apiserver, built with k8s-openapi types so
//! they have the API's real shape.

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, DaemonSetStatus, Deployment, DeploymentSpec, StatefulSet,
    StatefulSetSpec,
};
use k8s_openapi::api::batch::v1::{
    CronJob, CronJobSpec, Job, JobCondition, JobSpec, JobStatus, JobTemplateSpec,
};
use k8s_openapi::api::core::v1::{
    Container, LocalObjectReference, Namespace, Pod, PodSpec, PodStatus, PodTemplateSpec, Secret,
    ServiceAccount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::ByteString;

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(ns.to_string()),
        labels: Some(BTreeMap::from([("app".to_string(), name.to_string())])),
        ..Default::default()
    }
}

/// A pod template with these (container name, image) pairs.
pub struct Template {
    /// Containers.
    pub containers: Vec<(String, String)>,
    /// Init containers.
    pub init_containers: Vec<(String, String)>,
    /// imagePullSecrets.
    pub pull_secrets: Vec<String>,
    /// serviceAccountName.
    pub service_account: Option<String>,
}

impl Template {
    /// One container named `app` with `image`.
    pub fn image(image: &str) -> Template {
        Template {
            containers: vec![("app".into(), image.into())],
            init_containers: vec![],
            pull_secrets: vec![],
            service_account: None,
        }
    }

    /// Adds a pull secret reference.
    pub fn pull_secret(mut self, name: &str) -> Template {
        self.pull_secrets.push(name.into());
        self
    }

    /// Adds an init container.
    pub fn init(mut self, name: &str, image: &str) -> Template {
        self.init_containers.push((name.into(), image.into()));
        self
    }

    /// Adds a container.
    pub fn container(mut self, name: &str, image: &str) -> Template {
        self.containers.push((name.into(), image.into()));
        self
    }

    /// Sets serviceAccountName.
    pub fn service_account(mut self, name: &str) -> Template {
        self.service_account = Some(name.into());
        self
    }

    fn build(&self, name: &str) -> PodTemplateSpec {
        let c = |(n, i): &(String, String)| Container {
            name: n.clone(),
            image: Some(i.clone()),
            ..Default::default()
        };
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(BTreeMap::from([("app".to_string(), name.to_string())])),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: self.containers.iter().map(c).collect(),
                init_containers: (!self.init_containers.is_empty())
                    .then(|| self.init_containers.iter().map(c).collect()),
                image_pull_secrets: (!self.pull_secrets.is_empty()).then(|| {
                    self.pull_secrets
                        .iter()
                        .map(|s| LocalObjectReference { name: s.clone() })
                        .collect()
                }),
                service_account_name: self.service_account.clone(),
                ..Default::default()
            }),
        }
    }
}

fn selector(name: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([("app".to_string(), name.to_string())])),
        ..Default::default()
    }
}

/// A Deployment.
pub fn deployment(ns: &str, name: &str, replicas: i32, t: &Template) -> Deployment {
    Deployment {
        metadata: meta(ns, name),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: selector(name),
            template: t.build(name),
            ..Default::default()
        }),
        status: None,
    }
}

/// A StatefulSet.
pub fn statefulset(ns: &str, name: &str, replicas: i32, t: &Template) -> StatefulSet {
    StatefulSet {
        metadata: meta(ns, name),
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            selector: selector(name),
            template: t.build(name),
            service_name: Some(name.into()),
            ..Default::default()
        }),
        status: None,
    }
}

/// A DaemonSet whose controller scheduled it on `desired` nodes.
pub fn daemonset(ns: &str, name: &str, desired: i32, t: &Template) -> DaemonSet {
    DaemonSet {
        metadata: meta(ns, name),
        spec: Some(DaemonSetSpec {
            selector: selector(name),
            template: t.build(name),
            ..Default::default()
        }),
        status: Some(DaemonSetStatus {
            desired_number_scheduled: desired,
            current_number_scheduled: desired,
            ..Default::default()
        }),
    }
}

/// A CronJob.
pub fn cronjob(ns: &str, name: &str, suspend: bool, t: &Template) -> CronJob {
    CronJob {
        metadata: meta(ns, name),
        spec: Some(CronJobSpec {
            schedule: "*/5 * * * *".into(),
            suspend: Some(suspend),
            job_template: JobTemplateSpec {
                metadata: None,
                spec: Some(JobSpec {
                    template: t.build(name),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// A Secret of `type_` with one data key.
pub fn secret(ns: &str, name: &str, type_: &str, key: &str, data: Vec<u8>) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        type_: Some(type_.into()),
        data: Some(BTreeMap::from([(key.to_string(), ByteString(data))])),
        ..Default::default()
    }
}

/// A `kubernetes.io/dockerconfigjson` pull secret for one registry.
pub fn pull_secret(ns: &str, name: &str, registry: &str, user: &str, password: &str) -> Secret {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let cfg = serde_json::json!({"auths": {registry: {"username": user, "password": password, "auth": auth}}}).to_string();
    secret(
        ns,
        name,
        "kubernetes.io/dockerconfigjson",
        ".dockerconfigjson",
        cfg.into_bytes(),
    )
}

/// A legacy `kubernetes.io/dockercfg` pull secret for one registry.
pub fn dockercfg_secret(
    ns: &str,
    name: &str,
    registry: &str,
    user: &str,
    password: &str,
) -> Secret {
    let cfg = serde_json::json!({registry: {"username": user, "password": password}}).to_string();
    secret(
        ns,
        name,
        "kubernetes.io/dockercfg",
        ".dockercfg",
        cfg.into_bytes(),
    )
}

/// A pull secret whose payload is not a docker config.
pub fn garbage_pull_secret(ns: &str, name: &str) -> Secret {
    secret(
        ns,
        name,
        "kubernetes.io/dockerconfigjson",
        ".dockerconfigjson",
        b"{not json at all".to_vec(),
    )
}

/// A Helm-release-like secret of about `size` bytes (never needed by the exporter).
pub fn helm_secret(ns: &str, name: &str, size: usize) -> Secret {
    let payload: Vec<u8> = (0..size)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789"[i % 36])
        .collect();
    secret(ns, name, "helm.sh/release.v1", "release", payload)
}

/// A ServiceAccount with imagePullSecrets.
pub fn service_account(ns: &str, name: &str, pull_secrets: &[&str]) -> ServiceAccount {
    ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        image_pull_secrets: Some(
            pull_secrets
                .iter()
                .map(|s| LocalObjectReference {
                    name: s.to_string(),
                })
                .collect(),
        ),
        ..Default::default()
    }
}

/// A Namespace with labels.
pub fn namespace(name: &str, labels: &[(&str, &str)]) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A controller owner reference: (apiVersion, kind, name).
pub type Owner<'a> = (&'a str, &'a str, &'a str);

/// The `ownerReferences` of an object its controller `owner` manages.
fn owned_by(owner: Option<Owner>) -> Option<Vec<OwnerReference>> {
    owner.map(|(api_version, kind, name)| {
        vec![OwnerReference {
            api_version: api_version.into(),
            kind: kind.into(),
            name: name.into(),
            uid: format!("uid-{}-{name}", kind.to_lowercase()),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]
    })
}

/// A Pod running the template's containers in `phase`, managed by `owner`
/// (none for a bare pod), bound to `node-0`.
pub fn pod(ns: &str, name: &str, owner: Option<Owner>, phase: &str, t: &Template) -> Pod {
    let mut spec = t.build(name).spec.unwrap_or_default();
    spec.node_name = Some("node-0".into());
    let mut m = meta(ns, name);
    m.owner_references = owned_by(owner);
    Pod {
        metadata: m,
        spec: Some(spec),
        status: Some(PodStatus {
            phase: Some(phase.into()),
            ..Default::default()
        }),
    }
}

/// A Job of the template, managed by `owner` (none for a standalone Job);
/// `finished` is its final condition (`Complete` or `Failed`), if any.
pub fn job(
    ns: &str,
    name: &str,
    owner: Option<Owner>,
    finished: Option<&str>,
    t: &Template,
) -> Job {
    let mut m = meta(ns, name);
    m.owner_references = owned_by(owner);
    Job {
        metadata: m,
        spec: Some(JobSpec {
            template: t.build(name),
            ..Default::default()
        }),
        status: Some(JobStatus {
            active: Some(i32::from(finished.is_none())),
            conditions: finished.map(|c| {
                vec![JobCondition {
                    type_: c.into(),
                    status: "True".into(),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }),
    }
}

/// Sets an annotation on any object built here.
pub fn annotate<T: serde::Serialize>(obj: T, key: &str, value: &str) -> serde_json::Value {
    let mut v = serde_json::to_value(obj).expect("serialize");
    v["metadata"]["annotations"][key] = serde_json::json!(value);
    v
}

/// How a kubelet's runtime writes `imageID` for an image pulled by its
/// repository digest.
#[derive(Debug, Clone, Copy)]
pub enum Runtime {
    /// containerd and CRI-O: `registry/repo@sha256:…`.
    Containerd,
    /// cri-dockerd: `docker-pullable://repo@sha256:…`.
    CriDockerd,
    /// A local image with no repository digest: its ID, `sha256:…`.
    Local,
}

impl Runtime {
    /// The `imageID` this runtime writes for `image` pulled at `digest`.
    pub fn image_id(self, image: &str, digest: &str) -> String {
        let repo = image.split('@').next().unwrap();
        let repo = match repo.rsplit_once(':') {
            Some((r, tag)) if !tag.contains('/') => r,
            _ => repo,
        };
        match self {
            Runtime::Containerd => format!("{repo}@{digest}"),
            Runtime::CriDockerd => format!("docker-pullable://{repo}@{digest}"),
            Runtime::Local => digest.to_string(),
        }
    }
}

/// A pod in phase Running, as a kubelet reports it: managed by `owner`,
/// with `labels` (a ReplicaSet's `pod-template-hash`), and a container
/// status for each (container, image, imageID), with the fields a real
/// kubelet writes.
pub fn running_pod(
    ns: &str,
    name: &str,
    owner: Option<Owner>,
    labels: &[(&str, &str)],
    t: &Template,
    statuses: &[(&str, &str, String)],
) -> Pod {
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateRunning, ContainerStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    let mut p = pod(ns, name, owner, "Running", t);
    let l = p.metadata.labels.get_or_insert_with(Default::default);
    for (k, v) in labels {
        l.insert(k.to_string(), v.to_string());
    }
    let started = Time(k8s_openapi::jiff::Timestamp::from_second(1_765_000_000).unwrap());
    let status = |(c, image, id): &(&str, &str, String)| ContainerStatus {
        name: c.to_string(),
        image: image.to_string(),
        image_id: id.clone(),
        container_id: Some(format!("containerd://{:064x}", name.len() * 7919 + c.len())),
        ready: true,
        restart_count: 0,
        started: Some(true),
        state: Some(ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(started.clone()),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let st = p.status.get_or_insert_with(Default::default);
    st.container_statuses = Some(statuses.iter().map(status).collect());
    st.host_ip = Some("10.0.0.10".into());
    st.pod_ip = Some("10.244.0.17".into());
    st.start_time = Some(started);
    p
}
