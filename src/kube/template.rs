//! The parts of an object we read, as serde structs that name only those
//! fields: object metadata (name, namespace, controller, our opt-out
//! annotations), pod specs (containers, pull secrets, service account,
//! scheduling) and the few status fields that say whether a Pod or Job can
//! still start containers. Everything else in an object, which is most of
//! it on a real apiserver (`managedFields`, the last-applied annotation,
//! env, volumes, status), is skipped by the parser without being built:
//! a watch event is read straight into these few fields.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::scheduling::{Requirement, Scheduling, Term, Toleration};

/// `metadata.annotations` key that removes an object from checks and series.
pub const IGNORE_ANNOTATION: &str = "k8s-image-availability-exporter/ignore";
/// `metadata.annotations` key naming containers (comma-separated) not to check.
pub const IGNORE_CONTAINERS_ANNOTATION: &str = "k8s-image-availability-exporter/ignore-containers";
/// Annotation that keeps a workload out of `tag_moved` (it follows a
/// mutable tag on purpose).
pub const IGNORE_TAG_MOVED_ANNOTATION: &str = "k8s-image-availability-exporter/ignore-tag-moved";

/// A container of a pod template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerImage {
    /// The container's name (the `container` label).
    pub container: Arc<str>,
    /// The image as written (the `image` label). Shared by the containers
    /// that name it (the inventory interns both strings).
    pub image: Arc<str>,
}

/// What we read of `metadata`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Owner references (only their identity is read).
    #[serde(default)]
    pub owner_references: Option<Vec<OwnerReference>>,
    /// Our annotations; every other annotation is skipped unread.
    #[serde(default)]
    pub annotations: Option<OptOut>,
    /// The template-hash labels of a pod; every other label is skipped unread.
    #[serde(default)]
    pub labels: Option<HashLabels>,
    /// Set once deletion was asked for (its value is not needed).
    #[serde(default)]
    pub deletion_timestamp: Option<IgnoredAny>,
}

impl Metadata {
    /// The owner with `controller: true`, if any.
    pub fn controller(&self) -> Option<&OwnerReference> {
        self.owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
    }

    /// Whether the object is being deleted: a terminating pod starts no
    /// container again, and a controller being deleted starts no pod. (A
    /// pod on a node stays terminating until its kubelet confirms, up to
    /// its grace period, or for good when the node is gone.)
    pub fn deleting(&self) -> bool {
        self.deletion_timestamp.is_some()
    }

    /// Whether `k8s-image-availability-exporter/ignore` says so.
    pub fn ignored(&self) -> bool {
        self.annotations.as_ref().is_some_and(|a| a.ignore)
    }

    /// Removes the containers `ignore-containers` names.
    pub fn drop_ignored_containers(&self, containers: &mut Vec<ContainerImage>) {
        if let Some(names) = self
            .annotations
            .as_ref()
            .and_then(|a| a.ignore_containers.as_deref())
        {
            containers.retain(|c| !names.iter().any(|n| **n == *c.container));
        }
    }
}

/// One `metadata.ownerReferences` entry.
#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase")]
pub struct OwnerReference {
    /// `apps/v1`, `batch/v1`, `v1`, `apps.kruise.io/v1alpha1`, ...
    #[serde(default)]
    pub api_version: String,
    /// `ReplicaSet`, `Node`, ...
    #[serde(default)]
    pub kind: String,
    /// Whether this owner is the managing controller.
    #[serde(default)]
    pub controller: Option<bool>,
    /// The owner's name.
    #[serde(default)]
    pub name: String,
}

impl OwnerReference {
    /// The API group: `apps` for `apps/v1`, empty for the core `v1`.
    pub fn group(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map_or("", |(group, _)| group)
    }
}

/// The opt-out annotations of an object. Read from the annotations map
/// entry by entry: other annotations (a last-applied configuration is the
/// whole object again) are skipped, never stored.
#[derive(Default, Debug, PartialEq, Eq)]
pub struct OptOut {
    /// `ignore: "true"`.
    pub ignore: bool,
    /// `ignore-containers: "a,b"`.
    pub ignore_containers: Option<Vec<Box<str>>>,
    /// `ignore-tag-moved: "true"`.
    pub ignore_tag_moved: bool,
}

/// The labels a ReplicaSet's pods carry to name their template:
/// `pod-template-hash` (Deployments) and `rollouts-pod-template-hash`
/// (Argo Rollouts). Read entry by entry; other labels are skipped.
#[derive(Default, Debug, PartialEq, Eq)]
pub struct HashLabels {
    /// `pod-template-hash`.
    pub pod_template_hash: Option<Box<str>>,
    /// `rollouts-pod-template-hash`.
    pub rollouts_pod_template_hash: Option<Box<str>>,
}

impl<'de> Deserialize<'de> for HashLabels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<HashLabels, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = HashLabels;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of labels")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<HashLabels, A::Error> {
                let mut out = HashLabels::default();
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::PodTemplateHash => {
                            let v: Option<String> = map.next_value()?;
                            out.pod_template_hash = v.map(String::into_boxed_str);
                        }
                        Key::RolloutsPodTemplateHash => {
                            let v: Option<String> = map.next_value()?;
                            out.rollouts_pod_template_hash = v.map(String::into_boxed_str);
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(Entries)
    }
}

impl<'de> Deserialize<'de> for OptOut {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<OptOut, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = OptOut;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of annotations")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OptOut, A::Error> {
                let mut out = OptOut::default();
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::Ignore => {
                            let v: Option<String> = map.next_value()?;
                            out.ignore = v.as_deref().is_some_and(is_true);
                        }
                        Key::IgnoreContainers => {
                            let v: Option<String> = map.next_value()?;
                            let names: Vec<Box<str>> = v
                                .unwrap_or_default()
                                .split(',')
                                .map(str::trim)
                                .filter(|n| !n.is_empty())
                                .map(Box::from)
                                .collect();
                            out.ignore_containers = (!names.is_empty()).then_some(names);
                        }
                        Key::IgnoreTagMoved => {
                            let v: Option<String> = map.next_value()?;
                            out.ignore_tag_moved = v.as_deref().is_some_and(is_true);
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(Entries)
    }
}

/// An annotation or label key we read, compared without being copied.
enum Key {
    Ignore,
    IgnoreContainers,
    IgnoreTagMoved,
    PodTemplateHash,
    RolloutsPodTemplateHash,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an annotation key")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    IGNORE_ANNOTATION => Key::Ignore,
                    IGNORE_CONTAINERS_ANNOTATION => Key::IgnoreContainers,
                    IGNORE_TAG_MOVED_ANNOTATION => Key::IgnoreTagMoved,
                    "pod-template-hash" => Key::PodTemplateHash,
                    "rollouts-pod-template-hash" => Key::RolloutsPodTemplateHash,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// Go's `strconv.ParseBool` true values, as Kubernetes tools read a flag
/// annotation.
fn is_true(v: &str) -> bool {
    matches!(v.trim(), "1" | "t" | "T" | "true" | "TRUE" | "True")
}

/// `spec.template` (or any pod template): only its spec matters.
#[derive(Deserialize, Default, Debug)]
pub struct PodTemplate {
    /// The pod spec.
    #[serde(default)]
    pub spec: Option<PodSpec>,
}

/// What we read of a pod spec.
#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default)]
    init_containers: Option<Vec<Container>>,
    #[serde(default)]
    containers: Option<Vec<Container>>,
    #[serde(default)]
    image_pull_secrets: Option<Vec<NameRef>>,
    #[serde(default)]
    service_account_name: Option<String>,
    /// The deprecated alias of `serviceAccountName`.
    #[serde(default)]
    service_account: Option<String>,
    #[serde(default)]
    node_name: Option<String>,
    #[serde(default)]
    node_selector: Option<BTreeMap<String, String>>,
    #[serde(default)]
    affinity: Option<Affinity>,
    #[serde(default)]
    tolerations: Option<Vec<PodToleration>>,
    #[serde(default)]
    host_network: Option<bool>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase")]
struct Container {
    #[serde(default)]
    name: String,
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    image_pull_policy: Option<String>,
}

#[derive(Deserialize, Default, Debug)]
struct NameRef {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase")]
struct Affinity {
    #[serde(default)]
    node_affinity: Option<NodeAffinity>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase")]
struct NodeAffinity {
    #[serde(default)]
    required_during_scheduling_ignored_during_execution: Option<NodeSelector>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase")]
struct NodeSelector {
    #[serde(default)]
    node_selector_terms: Option<Vec<NodeSelectorTerm>>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase")]
struct NodeSelectorTerm {
    #[serde(default)]
    match_expressions: Option<Vec<NodeSelectorRequirement>>,
    #[serde(default)]
    match_fields: Option<Vec<NodeSelectorRequirement>>,
}

#[derive(Deserialize, Default, Debug)]
struct NodeSelectorRequirement {
    #[serde(default)]
    key: String,
    #[serde(default)]
    operator: String,
    #[serde(default)]
    values: Option<Vec<String>>,
}

#[derive(Deserialize, Default, Debug)]
struct PodToleration {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    operator: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    effect: Option<String>,
}

/// What we keep of a pod spec.
pub struct TemplateParts {
    /// Init containers first, then containers; `imagePullPolicy: Never` left out.
    pub containers: Vec<ContainerImage>,
    /// `imagePullSecrets` names.
    pub pull_secrets: Vec<Arc<str>>,
    /// `serviceAccountName` (or its alias), `default` when unset.
    pub service_account: Arc<str>,
    /// Where its pods may run.
    pub scheduling: Scheduling,
    /// `hostNetwork` (the DaemonSet controller's tolerations depend on it).
    pub host_network: bool,
}

impl PodSpec {
    /// Takes what we keep.
    pub fn parts(self) -> TemplateParts {
        let mut containers: Vec<ContainerImage> = self
            .init_containers
            .into_iter()
            .flatten()
            .chain(self.containers.into_iter().flatten())
            // The kubelet never pulls for `imagePullPolicy: Never`: the
            // image must already be on the node, so no registry verdict
            // applies.
            .filter(|c| c.image_pull_policy.as_deref() != Some("Never"))
            .filter_map(|c| {
                let image = c.image.filter(|i| !i.is_empty())?;
                Some(ContainerImage {
                    container: c.name.into(),
                    image: image.into(),
                })
            })
            .collect();
        let mut pull_secrets: Vec<Arc<str>> = self
            .image_pull_secrets
            .into_iter()
            .flatten()
            .filter_map(|r| r.name.filter(|n| !n.is_empty()))
            .map(Arc::from)
            .collect();
        let service_account = self
            .service_account_name
            .filter(|s| !s.is_empty())
            .or(self.service_account.filter(|s| !s.is_empty()))
            .unwrap_or_else(|| "default".into());
        // Kept for the workload's lifetime: no spare capacity.
        containers.shrink_to_fit();
        pull_secrets.shrink_to_fit();
        let requirement = |r: NodeSelectorRequirement| Requirement {
            key: r.key,
            operator: r.operator,
            values: r.values.unwrap_or_default(),
        };
        let required = self
            .affinity
            .and_then(|a| a.node_affinity)
            .and_then(|n| n.required_during_scheduling_ignored_during_execution)
            .map(|sel| {
                sel.node_selector_terms
                    .into_iter()
                    .flatten()
                    .map(|t| Term {
                        expressions: t
                            .match_expressions
                            .into_iter()
                            .flatten()
                            .map(requirement)
                            .collect(),
                        fields: t
                            .match_fields
                            .into_iter()
                            .flatten()
                            .map(requirement)
                            .collect(),
                    })
                    .collect()
            });
        // A BTreeMap iterates in key order: sorted, as Scheduling wants.
        let node_selector = self.node_selector.unwrap_or_default().into_iter().collect();
        let scheduling = Scheduling {
            node_name: self.node_name.unwrap_or_default(),
            node_selector,
            required,
            tolerations: self
                .tolerations
                .into_iter()
                .flatten()
                .map(|t| Toleration {
                    key: t.key.unwrap_or_default(),
                    operator: t.operator.unwrap_or_default(),
                    value: t.value.unwrap_or_default(),
                    effect: t.effect.unwrap_or_default(),
                })
                .collect(),
        };
        TemplateParts {
            containers,
            pull_secrets,
            service_account: service_account.into(),
            scheduling,
            host_network: self.host_network.unwrap_or(false),
        }
    }
}

/// One `status.conditions` entry (of a Job).
#[derive(Deserialize, Default, Debug)]
pub struct Condition {
    /// `Complete`, `Failed`, `Suspended`, ...
    #[serde(rename = "type", default)]
    pub type_: String,
    /// `True`, `False`, `Unknown`.
    #[serde(default)]
    pub status: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_our_annotations() {
        let m: Metadata = serde_json::from_str(
            r#"{"name":"a","annotations":{
                "kubectl.kubernetes.io/last-applied-configuration":"{\"big\":1}",
                "k8s-image-availability-exporter/ignore":"True",
                "k8s-image-availability-exporter/ignore-containers":" a, b ,,"}}"#,
        )
        .unwrap();
        assert!(m.ignored());
        let mut cs = ["a", "b", "c"]
            .map(|n| ContainerImage {
                container: n.into(),
                image: "x".into(),
            })
            .to_vec();
        m.drop_ignored_containers(&mut cs);
        assert_eq!(cs.len(), 1);
        assert_eq!(&*cs[0].container, "c");
        for (v, ignored) in [("false", false), ("yes", false), ("1", true), ("", false)] {
            let raw = format!(r#"{{"annotations":{{"{IGNORE_ANNOTATION}":"{v}"}}}}"#);
            let m: Metadata = serde_json::from_str(&raw).unwrap();
            assert_eq!(m.ignored(), ignored, "{v}");
        }
        let m: Metadata = serde_json::from_str(r#"{"annotations":null}"#).unwrap();
        assert!(!m.ignored());
        assert!(serde_json::from_str::<Metadata>(r#"{"annotations":{"a":5}}"#).is_ok());
        assert!(serde_json::from_str::<Metadata>(r#"{"annotations":[]}"#).is_err());
    }

    #[test]
    fn controller_and_group() {
        let m: Metadata = serde_json::from_str(
            r#"{"ownerReferences":[
                {"apiVersion":"v1","kind":"ConfigMap","name":"x","uid":"1"},
                {"apiVersion":"apps/v1","kind":"ReplicaSet","name":"r","uid":"2","controller":true}]}"#,
        )
        .unwrap();
        let c = m.controller().unwrap();
        assert_eq!((c.group(), c.kind.as_str()), ("apps", "ReplicaSet"));
        let core = OwnerReference {
            api_version: "v1".into(),
            ..Default::default()
        };
        assert_eq!(core.group(), "");
    }
}
