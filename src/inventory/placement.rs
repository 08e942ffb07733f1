//! Which nodes a workload's pods can land on, and so which platforms its
//! image must serve: the kube-scheduler's NodeName, NodeUnschedulable,
//! NodeAffinity (nodeSelector and required node affinity) and
//! TaintToleration filters, evaluated against what we keep of each Node
//! (`kube::scheduling` says what that is).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::image::platform::{NodeGroup, Platform};
use crate::kube::scheduling::{Node, Requirement, Scheduling, Taint, Term};

impl Scheduling {
    /// Whether the scheduler's filters let a pod of this template onto `node`.
    pub fn admits(&self, node: &Node) -> bool {
        if !self.node_name.is_empty() && self.node_name != node.name {
            return false;
        }
        // NodeUnschedulable: a cordoned node takes only pods that tolerate
        // its unschedulable taint.
        if node.unschedulable && self.node_name.is_empty() {
            let cordon = Taint {
                key: "node.kubernetes.io/unschedulable".into(),
                value: String::new(),
                effect: "NoSchedule".into(),
            };
            if !self.tolerations.iter().any(|t| t.tolerates(&cordon)) {
                return false;
            }
        }
        if !self
            .node_selector
            .iter()
            .all(|(k, v)| node.label(k) == Some(v.as_str()))
        {
            return false;
        }
        if let Some(terms) = &self.required {
            if !terms.iter().any(|t| term_matches(t, node)) {
                return false;
            }
        }
        node.taints
            .iter()
            .all(|taint| self.tolerations.iter().any(|t| t.tolerates(taint)))
    }
}

/// A term matches when it has at least one requirement and all hold. A
/// malformed requirement makes its term match nothing, as the scheduler's
/// lazy-error node selector does.
fn term_matches(term: &Term, node: &Node) -> bool {
    if term.expressions.is_empty() && term.fields.is_empty() {
        return false;
    }
    term.expressions
        .iter()
        .all(|r| requirement_matches(r, node.label(&r.key)) == Some(true))
        && term.fields.iter().all(|r| {
            r.key == "metadata.name"
                && matches!(r.operator.as_str(), "In" | "NotIn")
                && r.values.len() == 1
                && requirement_matches(r, Some(&node.name)) == Some(true)
        })
}

/// `Some(matches)`, or `None` for a malformed requirement.
fn requirement_matches(r: &Requirement, value: Option<&str>) -> Option<bool> {
    let int = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" if !r.values.is_empty() => {
            Some(value.is_some_and(|v| r.values.iter().any(|x| x == v)))
        }
        "NotIn" if !r.values.is_empty() => {
            Some(!value.is_some_and(|v| r.values.iter().any(|x| x == v)))
        }
        "Exists" if r.values.is_empty() => Some(value.is_some()),
        "DoesNotExist" if r.values.is_empty() => Some(value.is_none()),
        "Gt" | "Lt" if r.values.len() == 1 => {
            let bound = int(&r.values[0])?;
            Some(value.and_then(int).is_some_and(|v| {
                if r.operator == "Gt" {
                    v > bound
                } else {
                    v < bound
                }
            }))
        }
        _ => None,
    }
}

/// The nodes `scheduling` admits, grouped by platform (and runtime, when
/// it refuses schema 1), with how many nodes are in each, sorted. Nodes of
/// unknown platform are left out.
pub fn platforms<'a>(
    scheduling: &Scheduling,
    nodes: impl Iterator<Item = &'a Node>,
) -> Vec<NodeGroup> {
    let mut counts: BTreeMap<(&Platform, Option<&Arc<str>>), u32> = BTreeMap::new();
    for n in nodes {
        if let Some(p) = &n.platform {
            if scheduling.admits(n) {
                *counts.entry((p, n.refuses_schema1.as_ref())).or_default() += 1;
            }
        }
    }
    counts
        .into_iter()
        .map(|((p, runtime), n)| NodeGroup {
            platform: p.clone(),
            nodes: n,
            refuses_schema1: runtime.cloned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::scheduling::Toleration;

    fn node(name: &str, arch: &str, labels: &[(&str, &str)], taints: &[(&str, &str)]) -> Node {
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain([("kubernetes.io/arch".to_string(), arch.to_string())])
            .collect();
        labels.sort();
        Node {
            name: name.into(),
            labels,
            taints: taints
                .iter()
                .map(|(k, e)| Taint {
                    key: k.to_string(),
                    value: "true".into(),
                    effect: e.to_string(),
                })
                .collect(),
            unschedulable: false,
            platform: Some(Platform::new("linux", arch, "")),
            refuses_schema1: None,
        }
    }

    fn req(key: &str, op: &str, values: &[&str]) -> Requirement {
        Requirement {
            key: key.into(),
            operator: op.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    fn tol(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
        Toleration {
            key: key.into(),
            operator: op.into(),
            value: value.into(),
            effect: effect.into(),
        }
    }

    #[test]
    fn scheduler_filters() {
        let a = node("a", "amd64", &[("pool", "x")], &[]);
        let b = node("b", "arm64", &[("pool", "y"), ("gen", "3")], &[]);
        let c = node("c", "arm64", &[], &[("dedicated", "NoSchedule")]);
        let nodes = [a.clone(), b.clone(), c.clone()];
        let everywhere = Scheduling::default();
        assert_eq!(
            platforms(&everywhere, nodes.iter()),
            vec![
                NodeGroup::new(Platform::new("linux", "amd64", ""), 1),
                NodeGroup::new(Platform::new("linux", "arm64", ""), 1)
            ]
        );
        let pinned = Scheduling {
            node_selector: vec![("kubernetes.io/arch".into(), "amd64".into())],
            ..Default::default()
        };
        assert_eq!(platforms(&pinned, nodes.iter()).len(), 1);
        // A toleration lets pods onto the tainted node: two arm64 nodes.
        let tolerant = Scheduling {
            tolerations: vec![tol("dedicated", "Equal", "true", "NoSchedule")],
            ..Default::default()
        };
        assert_eq!(
            platforms(&tolerant, nodes.iter())[1],
            NodeGroup::new(Platform::new("linux", "arm64", ""), 2)
        );
        // Nodes on containerd 2 are a group of their own.
        let mut d = node("d", "amd64", &[], &[]);
        d.refuses_schema1 = Some("containerd://2.0.4".into());
        let with_d = [a.clone(), d];
        let groups = platforms(&everywhere, with_d.iter());
        assert_eq!(groups.len(), 2);
        assert_eq!(
            groups[1].refuses_schema1.as_deref(),
            Some("containerd://2.0.4")
        );
        assert!(!tol("dedicated", "Equal", "false", "").tolerates(&c.taints[0]));
        assert!(tol("", "Exists", "", "").tolerates(&c.taints[0]));
        assert!(!tol("dedicated", "Exists", "", "NoExecute").tolerates(&c.taints[0]));
        // Required affinity: terms ORed, expressions ANDed.
        let affinity = |terms: Vec<Term>| Scheduling {
            required: Some(terms),
            ..Default::default()
        };
        let t = |e: Vec<Requirement>| Term {
            expressions: e,
            fields: vec![],
        };
        let s = affinity(vec![t(vec![req("pool", "In", &["x", "z"])])]);
        assert!(s.admits(&a) && !s.admits(&b));
        let s = affinity(vec![t(vec![req("pool", "NotIn", &["x"])])]);
        assert!(!s.admits(&a) && s.admits(&b));
        let s = affinity(vec![t(vec![req("gen", "Gt", &["2"])])]);
        assert!(!s.admits(&a) && s.admits(&b));
        let s = affinity(vec![t(vec![req("gen", "Lt", &["x"])])]);
        assert!(!s.admits(&b), "a malformed Lt matches nothing");
        let s = affinity(vec![t(vec![req("gen", "DoesNotExist", &[])])]);
        assert!(s.admits(&a) && !s.admits(&b));
        let s = affinity(vec![
            t(vec![req("pool", "In", &[])]),
            t(vec![req("pool", "Exists", &[])]),
        ]);
        assert!(
            s.admits(&a) && s.admits(&b),
            "a bad term is skipped, not fatal"
        );
        assert!(!affinity(vec![Term::default()]).admits(&a));
        let by_name = affinity(vec![Term {
            expressions: vec![],
            fields: vec![req("metadata.name", "In", &["b"])],
        }]);
        assert!(!by_name.admits(&a) && by_name.admits(&b));
        let s = Scheduling {
            node_name: "a".into(),
            ..Default::default()
        };
        assert!(s.admits(&a) && !s.admits(&b));
    }

    #[test]
    fn cordoned_nodes_take_daemon_pods_only() {
        let mut n = node("a", "arm64", &[], &[]);
        n.unschedulable = true;
        assert!(!Scheduling::default().admits(&n));
        let mut d = Scheduling::default();
        d.as_daemon_pod(false);
        assert!(d.admits(&n));
        n.taints.push(Taint {
            key: "node.kubernetes.io/not-ready".into(),
            value: String::new(),
            effect: "NoSchedule".into(),
        });
        assert!(
            !d.admits(&n),
            "daemon pods tolerate not-ready NoExecute only"
        );
    }
}
