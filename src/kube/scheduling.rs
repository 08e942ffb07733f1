//! What the kube-scheduler's filters read, as we keep it: of a pod spec its
//! node name, node selector, required node affinity and tolerations; of a
//! Node its labels, taints, cordon and platform. The filters themselves
//! are the inventory's (`inventory::placement`).

use crate::image::platform::Platform;

/// What we keep of a Node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// `metadata.name`.
    pub name: String,
    /// Its labels, sorted by key.
    pub labels: Vec<(String, String)>,
    /// Taints with effect NoSchedule or NoExecute (the others do not filter).
    pub taints: Vec<Taint>,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
    /// From the `kubernetes.io/os` and `kubernetes.io/arch` labels, else
    /// `status.nodeInfo`; `None` when neither says.
    pub platform: Option<Platform>,
    /// `status.nodeInfo.containerRuntimeVersion` when that runtime cannot
    /// pull schema 1 manifests (`crate::image::platform::refuses_schema1`).
    pub refuses_schema1: Option<std::sync::Arc<str>>,
}

impl Node {
    /// The value of a label.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| self.labels[i].1.as_str())
    }
}

/// A node taint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Taint {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
    /// `NoSchedule` or `NoExecute`.
    pub effect: String,
}

/// A pod toleration.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Toleration {
    /// Key; empty matches every key (with `Exists`).
    pub key: String,
    /// `Equal` (also when empty) or `Exists`.
    pub operator: String,
    /// Value for `Equal`.
    pub value: String,
    /// Effect; empty matches every effect.
    pub effect: String,
}

impl Toleration {
    /// A toleration the DaemonSet controller adds to every daemon pod.
    fn daemon(key: &str, effect: &str) -> Toleration {
        Toleration {
            key: key.into(),
            operator: "Exists".into(),
            value: String::new(),
            effect: effect.into(),
        }
    }

    /// `v1.Toleration.ToleratesTaint`.
    pub fn tolerates(&self, t: &Taint) -> bool {
        if !self.effect.is_empty() && self.effect != t.effect {
            return false;
        }
        if !self.key.is_empty() && self.key != t.key {
            return false;
        }
        match self.operator.as_str() {
            "" | "Equal" => self.value == t.value,
            "Exists" => true,
            _ => false,
        }
    }
}

/// One `matchExpressions` or `matchFields` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requirement {
    /// Label key, or `metadata.name` in `matchFields`.
    pub key: String,
    /// `In`, `NotIn`, `Exists`, `DoesNotExist`, `Gt`, `Lt`.
    pub operator: String,
    /// Values.
    pub values: Vec<String>,
}

/// One `nodeSelectorTerms` entry; the terms are ORed, its parts ANDed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Term {
    /// `matchExpressions` on labels.
    pub expressions: Vec<Requirement>,
    /// `matchFields` (only `metadata.name` exists).
    pub fields: Vec<Requirement>,
}

/// What of a pod template decides where its pods can run.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Scheduling {
    /// `spec.nodeName`: the pod bypasses the scheduler onto that node.
    pub node_name: String,
    /// `spec.nodeSelector`, sorted.
    pub node_selector: Vec<(String, String)>,
    /// `requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms`,
    /// `None` when absent.
    pub required: Option<Vec<Term>>,
    /// `spec.tolerations`, plus what the DaemonSet controller adds.
    pub tolerations: Vec<Toleration>,
}

impl Scheduling {
    /// Adds the tolerations the DaemonSet controller gives every daemon pod
    /// (pkg/controller/daemon/util `AddOrUpdateDaemonPodTolerations`).
    pub fn as_daemon_pod(&mut self, host_network: bool) {
        let mut add = vec![
            Toleration::daemon("node.kubernetes.io/not-ready", "NoExecute"),
            Toleration::daemon("node.kubernetes.io/unreachable", "NoExecute"),
            Toleration::daemon("node.kubernetes.io/disk-pressure", "NoSchedule"),
            Toleration::daemon("node.kubernetes.io/memory-pressure", "NoSchedule"),
            Toleration::daemon("node.kubernetes.io/pid-pressure", "NoSchedule"),
            Toleration::daemon("node.kubernetes.io/unschedulable", "NoSchedule"),
        ];
        if host_network {
            add.push(Toleration::daemon(
                "node.kubernetes.io/network-unavailable",
                "NoSchedule",
            ));
        }
        for t in add {
            if !self.tolerations.contains(&t) {
                self.tolerations.push(t);
            }
        }
    }
}
