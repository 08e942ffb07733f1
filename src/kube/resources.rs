//! What we watch, and the little we keep of each object: workload kinds
//! (and the Pods and Jobs no watched controller covers) with the images
//! and pull-secret references of their pod template, pull
//! secrets as parsed credentials, service accounts' pull secrets,
//! namespace names, and of each Node what the scheduler filters on and its
//! platform. Whole objects never leave this module.

use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use serde::Deserialize;

use super::template::{Condition, ContainerImage, Metadata, OwnerReference, PodSpec, PodTemplate};

use super::running::ContainerStatus;
use super::scheduling::{self, Node, Scheduling};
use crate::credentials::{parse_docker_config, ConfigFormat, Credential};
use crate::image::platform::Platform;

/// A workload kind, as the `kind` label writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// apps/v1 DaemonSet.
    DaemonSet,
    /// batch/v1 CronJob.
    CronJob,
    /// argoproj.io/v1alpha1 Rollout (watched while its CRD is installed).
    Rollout,
    /// A resource named by `--pod-template-resource`.
    Custom(&'static CustomKind),
    /// batch/v1 Job that no CronJob owns.
    Job,
    /// v1 Pod that no watched controller covers.
    Pod,
}

/// A resource with a pod template, from `--pod-template-resource
/// GROUP/VERSION/RESOURCE=TEMPLATE_PATH[,replicas=PATH]`. Made once at
/// start and kept for the process's life.
#[derive(Debug)]
pub struct CustomKind {
    /// API group, e.g. `apps.kruise.io`.
    pub group: String,
    /// Version, e.g. `v1alpha1`.
    pub version: String,
    /// Plural resource name, e.g. `clonesets`.
    pub plural: String,
    /// `/apis/GROUP/VERSION`.
    prefix: String,
    /// Dot path to the pod template, e.g. `spec.template`.
    pub template_path: Vec<String>,
    /// Dot path to the replica count, if any (0 means disabled).
    pub replicas_path: Option<Vec<String>>,
    /// The kind in lower case, learnt from discovery (the plural until then).
    kind: std::sync::OnceLock<String>,
}

impl CustomKind {
    /// Parses a `--pod-template-resource` value.
    pub fn parse(spec: &str) -> Result<CustomKind, String> {
        let bad = |why: &str| format!("--pod-template-resource {spec:?}: {why}");
        let (resource, paths) = spec
            .split_once('=')
            .ok_or_else(|| bad("expected GROUP/VERSION/RESOURCE=TEMPLATE_PATH[,replicas=PATH]"))?;
        let parts: Vec<&str> = resource.trim().split('/').collect();
        let [group, version, plural] = parts[..] else {
            return Err(bad("the resource must be GROUP/VERSION/RESOURCE"));
        };
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        };
        if !name_ok(group) || !name_ok(version) || !name_ok(plural) {
            return Err(bad("group, version and resource are lower-case names"));
        }
        if group.is_empty() || !group.contains('.') {
            return Err(bad(
                "only resources of API groups (with a dot) can be named",
            ));
        }
        let path = |p: &str| -> Result<Vec<String>, String> {
            let p: Vec<String> = p.trim().split('.').map(str::to_string).collect();
            if p.iter().any(|c| c.is_empty()) {
                return Err(bad("a path is dot-separated field names"));
            }
            Ok(p)
        };
        let mut fields = paths.split(',');
        let template_path = path(fields.next().unwrap_or(""))?;
        let mut replicas_path = None;
        for f in fields {
            match f.trim().split_once('=') {
                Some(("replicas", p)) => replicas_path = Some(path(p)?),
                _ => {
                    return Err(bad(&format!(
                        "unknown option {f:?} (expected replicas=PATH)"
                    )))
                }
            }
        }
        Ok(CustomKind {
            group: group.to_string(),
            version: version.to_string(),
            plural: plural.to_string(),
            prefix: format!("/apis/{group}/{version}"),
            template_path,
            replicas_path,
            kind: std::sync::OnceLock::new(),
        })
    }

    /// Keeps it for the life of the process (a handful, from flags).
    pub fn leak(self) -> &'static CustomKind {
        Box::leak(Box::new(self))
    }

    /// Records the kind discovery reports, e.g. `CloneSet`.
    pub fn learn_kind(&self, kind: &str) {
        let _ = self.kind.set(kind.to_ascii_lowercase());
    }

    fn identity(&self) -> (&str, &str, &str) {
        (&self.group, &self.version, &self.plural)
    }

    /// Whether an owner reference's kind (`CloneSet`) is this resource's.
    /// Discovery says for sure; until it has, the plural is compared with
    /// the kind's regular English plural.
    fn is_kind(&self, kind: &str) -> bool {
        let lower = kind.to_ascii_lowercase();
        if let Some(k) = self.kind.get() {
            return *k == lower;
        }
        let p = self.plural.as_str();
        p.strip_suffix('s') == Some(&lower)
            || p.strip_suffix("es") == Some(&lower)
            || (p
                .strip_suffix("ies")
                .is_some_and(|stem| lower.strip_suffix('y') == Some(stem)))
    }
}

/// The controllers whose pods we check through their template, so their
/// pods are not checked one by one: ReplicaSets (of Deployments and
/// Rollouts), StatefulSets, DaemonSets, Jobs, and the
/// `--pod-template-resource` kinds. Made once at start.
#[derive(Debug, PartialEq, Eq, Hash, Default)]
pub struct Covering {
    /// The `--pod-template-resource` kinds.
    pub custom: Vec<&'static CustomKind>,
}

impl Covering {
    /// Only the built-in controllers.
    pub fn built_in() -> &'static Covering {
        static BUILT_IN: Covering = Covering { custom: Vec::new() };
        &BUILT_IN
    }

    /// Keeps it for the life of the process.
    pub fn leak(self) -> &'static Covering {
        Box::leak(Box::new(self))
    }

    /// Whether a pod whose controller is `owner` is covered.
    pub fn covers(&self, owner: &OwnerReference) -> bool {
        match (owner.group(), owner.kind.as_str()) {
            ("apps", "ReplicaSet" | "StatefulSet" | "DaemonSet") | ("batch", "Job") => true,
            (group, kind) => self
                .custom
                .iter()
                .any(|c| c.group == group && c.is_kind(kind)),
        }
    }
}

impl PartialEq for CustomKind {
    fn eq(&self, other: &Self) -> bool {
        self.identity() == other.identity()
    }
}
impl Eq for CustomKind {}
impl std::hash::Hash for CustomKind {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.identity().hash(h)
    }
}
impl PartialOrd for CustomKind {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for CustomKind {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.identity().cmp(&other.identity())
    }
}

impl Kind {
    /// The kinds every cluster serves (always watched).
    pub const ALL: [Kind; 4] = [
        Kind::Deployment,
        Kind::StatefulSet,
        Kind::DaemonSet,
        Kind::CronJob,
    ];

    /// The lowercase name used in the `kind` label and in flags.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Deployment => "deployment",
            Kind::StatefulSet => "statefulset",
            Kind::DaemonSet => "daemonset",
            Kind::CronJob => "cronjob",
            Kind::Rollout => "rollout",
            Kind::Job => "job",
            Kind::Pod => "pod",
            Kind::Custom(c) => c.kind.get().map_or(c.plural.as_str(), String::as_str),
        }
    }

    /// Parses a built-in kind name case-insensitively, singular or plural.
    pub fn parse(s: &str) -> Option<Kind> {
        let s = s.trim().to_ascii_lowercase();
        let s = s.strip_suffix('s').unwrap_or(&s);
        Kind::ALL
            .into_iter()
            .chain([Kind::Rollout])
            .find(|k| k.as_str() == s)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An API resource we list and watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    /// A workload kind.
    Workload(Kind),
    /// Secrets of type `kubernetes.io/dockerconfigjson`.
    DockerConfigJsonSecrets,
    /// Secrets of type `kubernetes.io/dockercfg`.
    DockerCfgSecrets,
    /// ServiceAccounts.
    ServiceAccounts,
    /// Namespaces (only with `--namespace-label`).
    Namespaces,
    /// Nodes, for the platform check.
    Nodes,
    /// Pods; those `Covering` names are skipped as they are read.
    Pods(&'static Covering),
}

impl Resource {
    /// `(path prefix, plural)`: `/apis/apps/v1` and `deployments`.
    pub fn api(self) -> (&'static str, &'static str) {
        match self {
            Resource::Workload(Kind::Deployment) => ("/apis/apps/v1", "deployments"),
            Resource::Workload(Kind::StatefulSet) => ("/apis/apps/v1", "statefulsets"),
            Resource::Workload(Kind::DaemonSet) => ("/apis/apps/v1", "daemonsets"),
            Resource::Workload(Kind::CronJob) => ("/apis/batch/v1", "cronjobs"),
            Resource::Workload(Kind::Rollout) => ("/apis/argoproj.io/v1alpha1", "rollouts"),
            Resource::Workload(Kind::Custom(c)) => (c.prefix.as_str(), c.plural.as_str()),
            Resource::Workload(Kind::Job) => ("/apis/batch/v1", "jobs"),
            Resource::Workload(Kind::Pod) | Resource::Pods(_) => ("/api/v1", "pods"),
            Resource::DockerConfigJsonSecrets | Resource::DockerCfgSecrets => {
                ("/api/v1", "secrets")
            }
            Resource::ServiceAccounts => ("/api/v1", "serviceaccounts"),
            Resource::Namespaces => ("/api/v1", "namespaces"),
            Resource::Nodes => ("/api/v1", "nodes"),
        }
    }

    /// Whether the resource is served only while its CRD is installed: it
    /// is watched once discovery lists it, and is no error while it does not.
    pub fn optional(self) -> bool {
        matches!(self, Resource::Workload(Kind::Rollout | Kind::Custom(_)))
    }

    /// Learns what discovery says of the resource (the kind of a custom one).
    pub fn discovered(self, kind: &str) {
        if let Resource::Workload(Kind::Custom(c)) = self {
            c.learn_kind(kind);
        }
    }

    /// Whether the exporter is useless without this resource: the
    /// controller kinds. Secrets, ServiceAccounts, Namespaces, Pods and
    /// Jobs refine or extend the checks; without them checks still run
    /// (with a warning).
    pub fn required(self) -> bool {
        matches!(self, Resource::Workload(k) if !matches!(k, Kind::Job | Kind::Pod))
            && !self.optional()
    }

    /// The kind of the workloads this resource's objects become.
    pub fn kind(self) -> Option<Kind> {
        match self {
            Resource::Workload(k) => Some(k),
            Resource::Pods(_) => Some(Kind::Pod),
            _ => None,
        }
    }

    /// The RBAC rule the exporter needs, e.g. `list and watch on deployments.apps`.
    pub fn permission(self) -> String {
        let (prefix, plural) = self.api();
        match prefix
            .strip_prefix("/apis/")
            .and_then(|g| g.split('/').next())
        {
            Some(group) => format!("list and watch on {plural}.{group}"),
            None => format!("list and watch on {plural}"),
        }
    }

    /// The field selector the server filters with.
    pub fn field_selector(self) -> Option<&'static str> {
        match self {
            Resource::DockerConfigJsonSecrets => Some("type=kubernetes.io/dockerconfigjson"),
            Resource::DockerCfgSecrets => Some("type=kubernetes.io/dockercfg"),
            // Finished pods start nothing: the server leaves them out, and
            // tells a watch DELETED when a pod finishes.
            Resource::Pods(_) => Some("status.phase!=Succeeded,status.phase!=Failed"),
            _ => None,
        }
    }

    /// Whether objects live in namespaces.
    pub fn namespaced(self) -> bool {
        !matches!(self, Resource::Namespaces | Resource::Nodes)
    }

    /// A name for log lines and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Resource::Workload(Kind::Deployment) => "deployments",
            Resource::Workload(Kind::StatefulSet) => "statefulsets",
            Resource::Workload(Kind::DaemonSet) => "daemonsets",
            Resource::Workload(Kind::CronJob) => "cronjobs",
            Resource::Workload(Kind::Rollout) => "rollouts",
            Resource::Workload(Kind::Custom(c)) => c.plural.as_str(),
            Resource::Workload(Kind::Job) => "jobs",
            Resource::Workload(Kind::Pod) | Resource::Pods(_) => "pods",
            Resource::DockerConfigJsonSecrets => "secrets(dockerconfigjson)",
            Resource::DockerCfgSecrets => "secrets(dockercfg)",
            Resource::ServiceAccounts => "serviceaccounts",
            Resource::Namespaces => "namespaces",
            Resource::Nodes => "nodes",
        }
    }

    /// Decodes one object of this resource.
    pub fn decode(self, raw: &str) -> Result<Object, String> {
        match self {
            Resource::Workload(kind) => decode_workload(kind, raw, Covering::built_in()),
            Resource::Pods(covering) => decode_workload(Kind::Pod, raw, covering),
            Resource::DockerConfigJsonSecrets | Resource::DockerCfgSecrets => {
                decode_secret(raw).map(Object::PullSecret)
            }
            Resource::ServiceAccounts => decode_service_account(raw).map(Object::ServiceAccount),
            Resource::Namespaces => decode_namespace(raw).map(Object::Namespace),
            Resource::Nodes => decode_node(raw).map(|(k, n)| Object::Node(k, Box::new(n))),
        }
    }
}

/// Identifies an object within a resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// Empty for cluster-scoped objects. Shared: the inventory keeps a
    /// workload's key in several tables.
    pub namespace: Arc<str>,
    /// Name.
    pub name: Arc<str>,
}

impl ObjectKey {
    /// A 64-bit identity of the key, the same in every part of the process
    /// (SipHash with fixed keys): what is kept of objects that are many and
    /// need no name (running pods), instead of their names.
    pub fn id(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.hash(&mut h);
        h.finish()
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// What we keep of a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// Kind.
    pub kind: Kind,
    /// Namespace and name.
    pub key: ObjectKey,
    /// Init containers first, then containers, as a pod starts them.
    pub containers: Vec<ContainerImage>,
    /// `imagePullSecrets` names of the pod template.
    pub pull_secrets: Vec<Arc<str>>,
    /// `serviceAccountName`, `default` when unset.
    pub service_account: Arc<str>,
    /// False for replicas 0, a DaemonSet scheduled nowhere, a suspended CronJob.
    pub enabled: bool,
    /// A Rollout's `workloadRef`: the Deployment (same namespace) whose pod
    /// template it runs; the inventory fills in its containers.
    pub template_ref: Option<String>,
    /// Where its pods may be scheduled (shared between equal templates by
    /// the inventory).
    pub scheduling: Arc<Scheduling>,
    /// `k8s-image-availability-exporter/ignore-tag-moved`: it follows a
    /// mutable tag on purpose.
    pub ignore_tag_moved: bool,
    /// For a pod checked on its own, running: the digests it runs (the
    /// inventory takes them out before keeping the workload).
    pub running: Option<Box<Running>>,
}

/// What a running pod runs, and for which workload: the digest its
/// runtime reports for each container, when it names one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    /// The workload whose template the pod runs, found through its
    /// controller chain.
    pub owner: RunningOwner,
    /// (container name, repository digest).
    pub digests: Vec<(Box<str>, Box<str>)>,
}

/// The workload a running pod belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningOwner {
    /// Its kind.
    pub kind: Kind,
    /// Its name (in the pod's namespace).
    pub name: Box<str>,
    /// For a Job named as a CronJob's: the Job itself, the owner when no
    /// CronJob of that name is watched.
    pub job: Option<Box<str>>,
}

/// What we keep of a pull secret: the parsed credentials only.
#[derive(Debug, Clone)]
pub struct PullSecret {
    /// Namespace and name.
    pub key: ObjectKey,
    /// Credentials in payload order, or why the kubelet cannot parse the
    /// secret (then every pull of a pod naming it fails).
    pub credentials: Result<Vec<Arc<Credential>>, Arc<str>>,
}

/// What we keep of a service account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountInfo {
    /// Namespace and name.
    pub key: ObjectKey,
    /// Its `imagePullSecrets` names.
    pub pull_secrets: Vec<Arc<str>>,
}

/// One decoded object.
#[derive(Debug, Clone)]
pub enum Object {
    /// A workload.
    Workload(Workload),
    /// A pull secret.
    PullSecret(PullSecret),
    /// A service account.
    ServiceAccount(ServiceAccountInfo),
    /// A namespace (by name).
    Namespace(ObjectKey),
    /// A node, keyed by name (boxed: nodes are few, and the rest of the
    /// enum's variants are smaller).
    Node(ObjectKey, Box<Node>),
    /// A running pod a watched controller covers: only what it runs, for
    /// its workload's `tag_moved`.
    Running(ObjectKey, Box<Running>),
    /// An object that exists but is not checked on its own: a pod a
    /// watched controller covers, a finished pod or Job, a CronJob's Job,
    /// an object annotated `k8s-image-availability-exporter/ignore`. If it
    /// was checked before, it is gone now.
    Skipped(ObjectKey),
}

impl Object {
    /// Namespace and name.
    pub fn key(&self) -> &ObjectKey {
        match self {
            Object::Workload(w) => &w.key,
            Object::PullSecret(s) => &s.key,
            Object::ServiceAccount(a) => &a.key,
            Object::Namespace(k)
            | Object::Node(k, _)
            | Object::Running(k, _)
            | Object::Skipped(k) => k,
        }
    }
}

/// The metadata fields every watch event and list item has.
#[derive(Deserialize, Default)]
pub struct Meta {
    /// Name (empty in bookmarks).
    #[serde(default)]
    pub name: String,
    /// Namespace.
    #[serde(default)]
    pub namespace: String,
    /// Resource version.
    #[serde(rename = "resourceVersion", default)]
    pub resource_version: String,
}

#[derive(Deserialize)]
struct WithMeta {
    #[serde(default)]
    metadata: Meta,
}

/// Reads only `metadata` of a raw object.
pub fn meta(raw: &str) -> Result<Meta, String> {
    serde_json::from_str::<WithMeta>(raw)
        .map(|w| w.metadata)
        .map_err(|e| format!("malformed object: {e}"))
}

fn key_of(m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> ObjectKey {
    ObjectKey {
        namespace: m.namespace.as_deref().unwrap_or_default().into(),
        name: m.name.as_deref().unwrap_or_default().into(),
    }
}

/// An object as we read it: metadata, and the spec and status of its kind.
#[derive(Deserialize)]
struct Lean<Spec, Status> {
    #[serde(default)]
    metadata: Metadata,
    spec: Option<Spec>,
    status: Option<Status>,
}

/// `spec` of Deployments, StatefulSets and Rollouts.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ReplicatedSpec {
    #[serde(default)]
    replicas: Option<i32>,
    #[serde(default)]
    template: Option<PodTemplate>,
    /// Rollouts only.
    #[serde(default)]
    workload_ref: Option<WorkloadRef>,
}

#[derive(Deserialize)]
struct WorkloadRef {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct DaemonSetStatus {
    #[serde(default)]
    desired_number_scheduled: Option<i32>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct CronJobSpec {
    #[serde(default)]
    suspend: Option<bool>,
    #[serde(default)]
    job_template: Option<JobTemplate>,
}

#[derive(Deserialize, Default)]
struct JobTemplate {
    #[serde(default)]
    spec: Option<WithTemplate>,
}

/// A spec whose pod template is at `template`: Jobs, DaemonSets, a
/// CronJob's `jobTemplate`.
#[derive(Deserialize, Default)]
struct WithTemplate {
    template: Option<PodTemplate>,
}

impl WithTemplate {
    fn pod_spec(spec: Option<WithTemplate>) -> Option<PodSpec> {
        spec.and_then(|s| s.template).and_then(|t| t.spec)
    }
}

#[derive(Deserialize, Default)]
struct JobStatus {
    #[serde(default)]
    conditions: Option<Vec<Condition>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PodStatus {
    #[serde(default)]
    phase: Option<String>,
    #[serde(default)]
    container_statuses: Option<Vec<ContainerStatus>>,
    #[serde(default)]
    init_container_statuses: Option<Vec<ContainerStatus>>,
}

/// What a pod in phase Running runs, and for which workload; `None` for a
/// pod not running, being deleted, opted out, of no known controller, or
/// whose runtime reports no repository digest.
fn running_of(
    pod: &str,
    metadata: &Metadata,
    status: Option<&PodStatus>,
    covering: &Covering,
) -> Option<Box<Running>> {
    let status = status?;
    if status.phase.as_deref() != Some("Running")
        || metadata.deleting()
        || metadata.ignored()
        || metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.ignore_tag_moved)
    {
        return None;
    }
    let owner = owner_of(pod, metadata, covering)?;
    let digests: Vec<(Box<str>, Box<str>)> = status
        .init_container_statuses
        .iter()
        .chain(status.container_statuses.iter())
        .flatten()
        .filter_map(|c| {
            let d = crate::kube::running::repository_digest(&c.image_id)?;
            Some((c.name.as_str().into(), d.into()))
        })
        .collect();
    (!digests.is_empty()).then(|| Box::new(Running { owner, digests }))
}

/// The workload whose template a pod runs, through its controller chain:
/// ReplicaSet to Deployment or Rollout (by the template hash label),
/// StatefulSet, DaemonSet, Job (or its CronJob), a `--pod-template-resource`
/// kind, or the pod itself when no watched controller covers it.
fn owner_of(pod: &str, metadata: &Metadata, covering: &Covering) -> Option<RunningOwner> {
    let own = |kind: Kind, name: &str| RunningOwner {
        kind,
        name: name.into(),
        job: None,
    };
    let Some(o) = metadata.controller().filter(|o| covering.covers(o)) else {
        return Some(own(Kind::Pod, pod));
    };
    let labels = metadata.labels.as_ref();
    match (o.group(), o.kind.as_str()) {
        ("apps", "ReplicaSet") => {
            if let Some(h) = labels.and_then(|l| l.rollouts_pod_template_hash.as_deref()) {
                return crate::kube::running::replicaset_owner(&o.name, h)
                    .map(|n| own(Kind::Rollout, n));
            }
            let h = labels.and_then(|l| l.pod_template_hash.as_deref())?;
            crate::kube::running::replicaset_owner(&o.name, h).map(|n| own(Kind::Deployment, n))
        }
        ("apps", "StatefulSet") => Some(own(Kind::StatefulSet, &o.name)),
        ("apps", "DaemonSet") => Some(own(Kind::DaemonSet, &o.name)),
        ("batch", "Job") => Some(match crate::kube::running::cronjob_of_job(&o.name) {
            Some(cronjob) => RunningOwner {
                kind: Kind::CronJob,
                name: cronjob.into(),
                job: Some(o.name.as_str().into()),
            },
            None => own(Kind::Job, &o.name),
        }),
        (group, kind) => covering
            .custom
            .iter()
            .find(|c| c.group == group && c.is_kind(kind))
            .map(|c| own(Kind::Custom(c), &o.name)),
    }
}

/// Nothing of this part is read.
#[derive(Deserialize, Default)]
struct Skip {}

/// Follows a dot path into an object.
fn at_path<'a>(v: &'a serde_json::Value, path: &[String]) -> Option<&'a serde_json::Value> {
    path.iter().try_fold(v, |v, field| v.get(field.as_str()))
}

/// A resource named by `--pod-template-resource`: the template and replica
/// count at their paths. A wrong path is an error that names the path, not
/// the object, so the watch loop reports it once per resource.
fn decode_custom(c: &CustomKind, raw: &str) -> Result<(Metadata, Option<PodSpec>, bool), String> {
    let v: serde_json::Value =
        serde_json::from_str(raw).map_err(|e| format!("malformed {}: {e}", c.plural))?;
    let metadata = match v.get("metadata") {
        Some(m) => Metadata::deserialize(m).map_err(|e| format!("malformed {}: {e}", c.plural))?,
        None => Metadata::default(),
    };
    let path = c.template_path.join(".");
    let template = at_path(&v, &c.template_path)
        .ok_or_else(|| format!("{}: no pod template at {path}", c.plural))?;
    let template = PodTemplate::deserialize(template)
        .map_err(|e| format!("{}: {path} is not a pod template ({e})", c.plural))?;
    let enabled = match &c.replicas_path {
        None => true,
        Some(p) => match at_path(&v, p) {
            None | Some(serde_json::Value::Null) => true,
            Some(n) => {
                n.as_i64()
                    .ok_or_else(|| format!("{}: {} is not a number", c.plural, p.join(".")))?
                    != 0
            }
        },
    };
    Ok((metadata, template.spec, enabled))
}

/// Whether any of a Job's conditions says it will start no more pods.
fn finished(conditions: &[Condition]) -> bool {
    // Complete and Failed are final; SuccessCriteriaMet and FailureTarget
    // (Kubernetes 1.31+) come first, once the controller has decided.
    conditions.iter().any(|c| {
        c.status == "True"
            && matches!(
                c.type_.as_str(),
                "Complete" | "Failed" | "SuccessCriteriaMet" | "FailureTarget"
            )
    })
}

/// Decodes a workload (or a pod or Job): `Skipped` when it is not ours to
/// check.
fn decode_workload(kind: Kind, raw: &str, covering: &Covering) -> Result<Object, String> {
    let bad = |e: serde_json::Error| format!("malformed {kind}: {e}");
    let mut template_ref = None;
    // Set when the object exists but is not checked on its own.
    let mut skip = false;
    // A pod checked on its own: what it runs.
    let mut running = None;
    let (metadata, spec, enabled) = match kind {
        Kind::Rollout => {
            let r: Lean<ReplicatedSpec, Skip> = serde_json::from_str(raw).map_err(bad)?;
            let spec = r.spec.unwrap_or_default();
            // workloadRef: the pod template is the referenced Deployment's,
            // in the same namespace (Argo Rollouts supports Deployments only).
            if let Some(w) = spec.workload_ref.filter(|w| !w.name.is_empty()) {
                if w.kind != "Deployment" {
                    return Err(format!(
                        "rollout workloadRef to a {:?} is not supported (only Deployment)",
                        w.kind
                    ));
                }
                template_ref = Some(w.name);
            }
            let enabled = spec.replicas.unwrap_or(1) != 0;
            (r.metadata, spec.template.and_then(|t| t.spec), enabled)
        }
        Kind::Custom(c) => decode_custom(c, raw)?,
        Kind::Deployment | Kind::StatefulSet => {
            let d: Lean<ReplicatedSpec, Skip> = serde_json::from_str(raw).map_err(bad)?;
            let spec = d.spec.unwrap_or_default();
            let enabled = spec.replicas.unwrap_or(1) != 0;
            (d.metadata, spec.template.and_then(|t| t.spec), enabled)
        }
        Kind::DaemonSet => {
            let d: Lean<WithTemplate, DaemonSetStatus> = serde_json::from_str(raw).map_err(bad)?;
            // The API always serialises desiredNumberScheduled; 0 means no
            // node should run the DaemonSet. The Go exporter tests
            // currentNumberScheduled > 0 instead; we deliberately read the
            // desired count: a DaemonSet that should run somewhere needs its
            // image even before (or because not) any pod was scheduled.
            let desired = d
                .status
                .and_then(|s| s.desired_number_scheduled)
                .unwrap_or(0);
            let spec = WithTemplate::pod_spec(d.spec);
            (d.metadata, spec, desired != 0)
        }
        Kind::CronJob => {
            let c: Lean<CronJobSpec, Skip> = serde_json::from_str(raw).map_err(bad)?;
            let spec = c.spec.unwrap_or_default();
            let suspended = spec.suspend.unwrap_or(false);
            let template = WithTemplate::pod_spec(spec.job_template.and_then(|j| j.spec));
            (c.metadata, template, !suspended)
        }
        Kind::Job => {
            let j: Lean<WithTemplate, JobStatus> = serde_json::from_str(raw).map_err(bad)?;
            // A CronJob's Jobs run its template, checked through it; a
            // finished Job starts no more pods. A suspended one may be
            // resumed, so it stays.
            skip = j
                .metadata
                .controller()
                .is_some_and(|o| o.group() == "batch" && o.kind == "CronJob")
                || j.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_deref())
                    .is_some_and(finished);
            let spec = WithTemplate::pod_spec(j.spec);
            (j.metadata, spec, true)
        }
        Kind::Pod => {
            let p: Lean<PodSpec, PodStatus> = serde_json::from_str(raw).map_err(bad)?;
            // Only pods that can still start containers (Pending, or
            // Running with restarts to come); the field selector keeps the
            // others away from a real apiserver, this is for the rest.
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            let live = matches!(phase, None | Some("" | "Pending" | "Running"));
            let covered = p.metadata.controller().is_some_and(|o| covering.covers(o));
            let name = p.metadata.name.as_deref().unwrap_or_default();
            running = running_of(name, &p.metadata, p.status.as_ref(), covering);
            if covered {
                // A covered pod adds only what it runs to its workload.
                if let (Some(r), false) = (running.take(), p.metadata.ignored()) {
                    let key = ObjectKey {
                        namespace: p.metadata.namespace.as_deref().unwrap_or_default().into(),
                        name: name.into(),
                    };
                    return Ok(Object::Running(key, r));
                }
            }
            skip = !live || covered;
            (p.metadata, p.spec, true)
        }
    };
    let key = ObjectKey {
        namespace: metadata.namespace.as_deref().unwrap_or_default().into(),
        name: metadata.name.as_deref().unwrap_or_default().into(),
    };
    if key.name.is_empty() {
        return Err(format!("malformed {kind}: no metadata.name"));
    }
    if skip || metadata.ignored() || metadata.deleting() {
        return Ok(Object::Skipped(key));
    }
    let ignore_tag_moved = metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.ignore_tag_moved);
    let mut parts = spec
        .map(PodSpec::parts)
        .unwrap_or_else(|| PodSpec::default().parts());
    metadata.drop_ignored_containers(&mut parts.containers);
    if kind == Kind::DaemonSet {
        parts.scheduling.as_daemon_pod(parts.host_network);
    }
    Ok(Object::Workload(Workload {
        kind,
        key,
        containers: parts.containers,
        pull_secrets: parts.pull_secrets,
        service_account: parts.service_account,
        enabled,
        template_ref,
        scheduling: Arc::new(parts.scheduling),
        ignore_tag_moved,
        running,
    }))
}

fn decode_secret(raw: &str) -> Result<PullSecret, String> {
    let s: Secret = serde_json::from_str(raw).map_err(|e| format!("malformed Secret: {e}"))?;
    let key = key_of(&s.metadata);
    let source = format!("secret {key}");
    let (field, format) = match s.type_.as_deref() {
        Some("kubernetes.io/dockerconfigjson") => {
            (".dockerconfigjson", ConfigFormat::DockerConfigJson)
        }
        Some("kubernetes.io/dockercfg") => (".dockercfg", ConfigFormat::DockerCfg),
        other => {
            return Err(format!(
                "{source}: type {other:?} is not a pull secret type"
            ))
        }
    };
    // secrets.MakeDockerKeyring skips a secret whose key is missing or empty.
    let data = s
        .data
        .as_ref()
        .and_then(|d| d.get(field))
        .map(|b| b.0.as_slice())
        .filter(|d| !d.is_empty());
    let Some(data) = data else {
        log::debug!("{source}: no {field} data; the kubelet ignores it");
        return Ok(PullSecret {
            key,
            credentials: Ok(Vec::new()),
        });
    };
    let credentials = match parse_docker_config(&source, data, format) {
        Ok(parsed) => {
            for w in parsed.warnings {
                log::warn!("{w}");
            }
            Ok(parsed.credentials.into_iter().map(Arc::new).collect())
        }
        Err(e) => {
            log::warn!("{e}; every pod that names this secret fails to pull");
            Err(Arc::from(e.0))
        }
    };
    Ok(PullSecret { key, credentials })
}

fn decode_service_account(raw: &str) -> Result<ServiceAccountInfo, String> {
    let sa: ServiceAccount =
        serde_json::from_str(raw).map_err(|e| format!("malformed ServiceAccount: {e}"))?;
    Ok(ServiceAccountInfo {
        key: key_of(&sa.metadata),
        pull_secrets: sa
            .image_pull_secrets
            .unwrap_or_default()
            .into_iter()
            .map(|r| r.name)
            .filter(|n| !n.is_empty())
            .map(Arc::from)
            .collect(),
    })
}

fn decode_namespace(raw: &str) -> Result<ObjectKey, String> {
    let m = meta(raw)?;
    if m.name.is_empty() {
        return Err("malformed Namespace: no metadata.name".into());
    }
    Ok(ObjectKey {
        namespace: "".into(),
        name: m.name.into(),
    })
}

/// What we read of a Node: serde skips everything else (a Node's status
/// lists every image on it, often hundreds), so nothing large is built.
#[derive(Deserialize)]
struct NodeObject {
    #[serde(default)]
    metadata: NodeMeta,
    #[serde(default)]
    spec: NodeSpec,
    #[serde(default)]
    status: NodeStatus,
}

#[derive(Deserialize, Default)]
struct NodeMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    labels: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
struct NodeSpec {
    #[serde(default)]
    taints: Option<Vec<NodeTaint>>,
    #[serde(default)]
    unschedulable: Option<bool>,
}

#[derive(Deserialize)]
struct NodeTaint {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    effect: String,
}

#[derive(Deserialize, Default)]
struct NodeStatus {
    #[serde(rename = "nodeInfo", default)]
    node_info: Option<NodeInfo>,
}

#[derive(Deserialize, Default)]
struct NodeInfo {
    #[serde(rename = "operatingSystem", default)]
    operating_system: String,
    #[serde(default)]
    architecture: String,
    #[serde(rename = "containerRuntimeVersion", default)]
    container_runtime_version: String,
}

fn decode_node(raw: &str) -> Result<(ObjectKey, Node), String> {
    let n: NodeObject = serde_json::from_str(raw).map_err(|e| format!("malformed Node: {e}"))?;
    if n.metadata.name.is_empty() {
        return Err("malformed Node: no metadata.name".into());
    }
    let key = ObjectKey {
        namespace: "".into(),
        name: n.metadata.name.as_str().into(),
    };
    let mut node = Node {
        name: n.metadata.name,
        // A BTreeMap iterates in key order: sorted, as Node::label needs.
        labels: n.metadata.labels.unwrap_or_default().into_iter().collect(),
        taints: n
            .spec
            .taints
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
            .map(|t| scheduling::Taint {
                key: t.key,
                value: t.value.unwrap_or_default(),
                effect: t.effect,
            })
            .collect(),
        unschedulable: n.spec.unschedulable.unwrap_or(false),
        platform: None,
        refuses_schema1: None,
    };
    let info = n.status.node_info.unwrap_or_default();
    node.refuses_schema1 = crate::image::platform::refuses_schema1(&info.container_runtime_version)
        .then(|| info.container_runtime_version.as_str().into());
    let label = |k: &str| node.label(k).filter(|v| !v.is_empty());
    let os = label("kubernetes.io/os").unwrap_or(&info.operating_system);
    let arch = label("kubernetes.io/arch").unwrap_or(&info.architecture);
    // No label says the arm variant: containerd on the node takes it from
    // /proc/cpuinfo, which is v7 on 32-bit arm nodes in practice and what
    // a bare `arm` normalises to; arm64 is v8 by default.
    let platform = (!arch.is_empty()).then(|| Platform::new(os, arch, ""));
    node.platform = platform;
    Ok((key, node))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_with_init_containers_and_secrets() {
        let raw = r#"{"metadata":{"name":"web","namespace":"t1","resourceVersion":"5"},
          "spec":{"replicas":2,"selector":{},"template":{"spec":{
            "initContainers":[{"name":"init","image":"busybox:1"}],
            "containers":[{"name":"app","image":"nginx:1"},{"name":"noimage"}],
            "imagePullSecrets":[{"name":"pull"}],"serviceAccountName":"sa"}}}}"#;
        let Object::Workload(w) = Resource::Workload(Kind::Deployment).decode(raw).unwrap() else {
            panic!()
        };
        assert_eq!(w.key.to_string(), "t1/web");
        assert_eq!(
            w.containers
                .iter()
                .map(|c| &*c.container)
                .collect::<Vec<_>>(),
            ["init", "app"]
        );
        assert_eq!(w.pull_secrets, [Arc::from("pull")]);
        assert_eq!(&*w.service_account, "sa");
        assert!(w.enabled);
    }

    #[test]
    fn never_pulled_containers_are_not_checked() {
        let raw = r#"{"metadata":{"name":"web","namespace":"t1"},
          "spec":{"selector":{},"template":{"spec":{
            "initContainers":[{"name":"local","image":"busybox:1","imagePullPolicy":"Never"}],
            "containers":[{"name":"app","image":"nginx:1","imagePullPolicy":"IfNotPresent"},
                          {"name":"sidecar","image":"local/agent:1","imagePullPolicy":"Never"},
                          {"name":"always","image":"nginx:2","imagePullPolicy":"Always"}]}}}}"#;
        let Object::Workload(w) = Resource::Workload(Kind::Deployment).decode(raw).unwrap() else {
            panic!()
        };
        let names: Vec<&str> = w.containers.iter().map(|c| &*c.container).collect();
        assert_eq!(names, ["app", "always"]);
    }

    #[test]
    fn disabled_workloads() {
        let dep = r#"{"metadata":{"name":"d","namespace":"n"},"spec":{"replicas":0,"selector":{},"template":{}}}"#;
        let ds0 = r#"{"metadata":{"name":"d","namespace":"n"},"spec":{"selector":{},"template":{}},"status":{"currentNumberScheduled":0,"numberMisscheduled":0,"desiredNumberScheduled":0,"numberReady":0}}"#;
        let ds1 = r#"{"metadata":{"name":"d","namespace":"n"},"spec":{"selector":{},"template":{}},"status":{"currentNumberScheduled":1,"numberMisscheduled":0,"desiredNumberScheduled":1,"numberReady":0}}"#;
        let cj = r#"{"metadata":{"name":"c","namespace":"n"},"spec":{"schedule":"* * * * *","suspend":true,"jobTemplate":{"spec":{"template":{"spec":{"containers":[{"name":"c","image":"x"}]}}}}}}"#;
        let enabled = |kind, raw| match Resource::Workload(kind).decode(raw).unwrap() {
            Object::Workload(w) => w.enabled,
            _ => panic!(),
        };
        assert!(!enabled(Kind::Deployment, dep));
        assert!(!enabled(Kind::StatefulSet, dep));
        assert!(!enabled(Kind::DaemonSet, ds0));
        assert!(enabled(Kind::DaemonSet, ds1));
        assert!(!enabled(Kind::CronJob, cj));
        let Object::Workload(w) = Resource::Workload(Kind::CronJob).decode(cj).unwrap() else {
            panic!()
        };
        assert_eq!(&*w.containers[0].image, "x");
    }

    #[test]
    fn malformed_objects_are_errors() {
        for raw in [
            "",
            "[]",
            r#"{"metadata":{"name":5}}"#,
            r#"{"metadata":{"namespace":"n"},"spec":{}}"#,
            r#"{"spec":{"replicas":"two"}}"#,
        ] {
            assert!(
                Resource::Workload(Kind::Deployment).decode(raw).is_err(),
                "{raw}"
            );
        }
        let garbage = r#"{"metadata":{"name":"s","namespace":"n"},"type":"kubernetes.io/dockerconfigjson","data":{".dockerconfigjson":"aHVudGVyMg=="}}"#;
        let Ok(Object::PullSecret(s)) = Resource::DockerConfigJsonSecrets.decode(garbage) else {
            panic!()
        };
        let e = s.credentials.unwrap_err();
        assert!(e.contains("secret n/s") && !e.contains("hunter2"), "{e}");
        // No data under the type's key: ignored, as by the kubelet.
        let missing = r#"{"metadata":{"name":"s","namespace":"n"},"type":"kubernetes.io/dockercfg","data":{}}"#;
        let Ok(Object::PullSecret(s)) = Resource::DockerCfgSecrets.decode(missing) else {
            panic!()
        };
        assert!(s.credentials.unwrap().is_empty());
    }

    #[test]
    fn pull_secret_and_service_account() {
        // {"auths":{"reg.example.com":{"username":"u","password":"p","auth":"dTpw"}}}
        let raw = r#"{"metadata":{"name":"pull","namespace":"t1"},"data":{".dockerconfigjson":"eyJhdXRocyI6eyJyZWcuZXhhbXBsZS5jb20iOnsidXNlcm5hbWUiOiJ1IiwicGFzc3dvcmQiOiJwIiwiYXV0aCI6ImRUcHcifX19"},"type":"kubernetes.io/dockerconfigjson"}"#;
        let Object::PullSecret(s) = Resource::DockerConfigJsonSecrets.decode(raw).unwrap() else {
            panic!()
        };
        let creds = s.credentials.unwrap();
        assert_eq!(creds.len(), 1);
        assert_eq!(creds[0].describe(), "secret t1/pull (reg.example.com)");
        let sa = r#"{"metadata":{"name":"default","namespace":"t1"},"imagePullSecrets":[{"name":"pull"}]}"#;
        let Object::ServiceAccount(a) = Resource::ServiceAccounts.decode(sa).unwrap() else {
            panic!()
        };
        assert_eq!(a.pull_secrets, [Arc::from("pull")]);
    }

    #[test]
    fn decodes_items_of_real_apiserver_lists() {
        // Items of a list carry no kind/apiVersion (transcript 01).
        let page: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/data/list-page1.json")).unwrap();
        for item in page["items"].as_array().unwrap() {
            assert!(item.get("kind").is_none());
            let Object::Workload(w) = Resource::Workload(Kind::Deployment)
                .decode(&item.to_string())
                .unwrap()
            else {
                panic!()
            };
            assert!(!w.containers.is_empty(), "{w:?}");
            assert_eq!(
                &*w.key.namespace,
                item["metadata"]["namespace"].as_str().unwrap()
            );
        }
        let secrets: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/data/secrets-by-type.json")).unwrap();
        let Object::PullSecret(s) = Resource::DockerConfigJsonSecrets
            .decode(&secrets["items"][0].to_string())
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(
            s.credentials.unwrap()[0].describe(),
            "secret t1/pull (reg.example.com)"
        );
    }

    #[test]
    fn pods_are_checked_unless_a_watched_controller_covers_them() {
        let pod = |owner: &str, phase: &str| {
            format!(
                r#"{{"metadata":{{"name":"p","namespace":"n","ownerReferences":[{owner}]}},
                  "spec":{{"nodeName":"node-1","containers":[{{"name":"app","image":"nginx:1","env":[{{"name":"A","value":"b"}}]}}]}},
                  "status":{{"phase":"{phase}"}}}}"#
            )
        };
        let controller = |api: &str, kind: &str| {
            format!(
                r#"{{"apiVersion":"{api}","kind":"{kind}","name":"x","uid":"u","controller":true}}"#
            )
        };
        let cloneset = CustomKind::parse("apps.kruise.io/v1alpha1/clonesets=spec.template")
            .unwrap()
            .leak();
        let covering = Covering {
            custom: vec![cloneset],
        }
        .leak();
        let decode = |raw: &str| Resource::Pods(covering).decode(raw).unwrap();
        for (owner, checked) in [
            (String::new(), true),
            (controller("v1", "Node"), true),
            (controller("postgresql.cnpg.io/v1", "Cluster"), true),
            (controller("example.com/v1", "CloneSet"), true),
            (controller("apps/v1", "ReplicaSet"), false),
            (controller("apps/v1", "StatefulSet"), false),
            (controller("apps/v1", "DaemonSet"), false),
            (controller("batch/v1", "Job"), false),
            (controller("apps.kruise.io/v1alpha1", "CloneSet"), false),
            // Not the controller: only a garbage-collection owner.
            (
                r#"{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"x","uid":"u"}"#.into(),
                true,
            ),
        ] {
            match decode(&pod(&owner, "Running")) {
                Object::Workload(w) => {
                    assert!(checked, "{owner}");
                    assert_eq!(w.kind, Kind::Pod);
                    assert_eq!(w.key.to_string(), "n/p");
                    assert_eq!(w.scheduling.node_name, "node-1");
                    assert!(w.enabled);
                }
                Object::Skipped(k) => {
                    assert!(!checked, "{owner}");
                    assert_eq!(k.to_string(), "n/p");
                }
                other => panic!("{other:?}"),
            }
        }
        // Deletion asked for: terminating, nothing starts again.
        let terminating = pod("", "Running").replacen(
            r#""metadata":{"#,
            r#""metadata":{"deletionTimestamp":"2026-12-06T10:00:00Z","#,
            1,
        );
        assert!(matches!(decode(&terminating), Object::Skipped(_)));
        for (phase, checked) in [
            ("Pending", true),
            ("Running", true),
            ("Succeeded", false),
            ("Failed", false),
            ("Unknown", false),
        ] {
            let is_checked = matches!(decode(&pod("", phase)), Object::Workload(_));
            assert_eq!(is_checked, checked, "{phase}");
        }
    }

    #[test]
    fn jobs_are_checked_until_they_finish_unless_a_cron_job_owns_them() {
        let job = |owner: &str, conditions: &str| {
            format!(
                r#"{{"metadata":{{"name":"j","namespace":"n","ownerReferences":[{owner}]}},
                  "spec":{{"suspend":true,"template":{{"spec":{{"containers":[{{"name":"m","image":"app:1"}}]}}}}}},
                  "status":{{"conditions":[{conditions}]}}}}"#
            )
        };
        let decode = |raw: &str| Resource::Workload(Kind::Job).decode(raw).unwrap();
        let cron =
            r#"{"apiVersion":"batch/v1","kind":"CronJob","name":"c","uid":"u","controller":true}"#;
        let cond = |t: &str, s: &str| format!(r#"{{"type":"{t}","status":"{s}"}}"#);
        assert!(
            matches!(decode(&job("", "")), Object::Workload(w) if w.kind == Kind::Job && w.enabled)
        );
        assert!(matches!(decode(&job(cron, "")), Object::Skipped(_)));
        for (c, checked) in [
            (cond("Suspended", "True"), true),
            (cond("Complete", "False"), true),
            (cond("Complete", "True"), false),
            (cond("Failed", "True"), false),
            (cond("SuccessCriteriaMet", "True"), false),
            (cond("FailureTarget", "True"), false),
        ] {
            let is_checked = matches!(decode(&job("", &c)), Object::Workload(_));
            assert_eq!(is_checked, checked, "{c}");
        }
    }

    #[test]
    fn opt_out_annotations_on_any_kind() {
        let dep = |annotations: &str| {
            format!(
                r#"{{"metadata":{{"name":"d","namespace":"n","annotations":{{{annotations}}}}},
                  "spec":{{"template":{{"spec":{{"containers":[{{"name":"app","image":"a:1"}},{{"name":"side","image":"b:1"}}]}}}}}}}}"#
            )
        };
        let decode = |raw: &str| Resource::Workload(Kind::Deployment).decode(raw).unwrap();
        assert!(matches!(
            decode(&dep(r#""k8s-image-availability-exporter/ignore":"true""#)),
            Object::Skipped(_)
        ));
        let Object::Workload(w) = decode(&dep(
            r#""k8s-image-availability-exporter/ignore":"false","k8s-image-availability-exporter/ignore-containers":"side""#,
        )) else {
            panic!()
        };
        let names: Vec<&str> = w.containers.iter().map(|c| &*c.container).collect();
        assert_eq!(names, ["app"]);
    }

    #[test]
    fn kinds_parse() {
        assert_eq!(Kind::parse("Deployment"), Some(Kind::Deployment));
        assert_eq!(Kind::parse("cronjobs"), Some(Kind::CronJob));
        assert_eq!(Kind::parse("pod"), None);
    }
}
