//! What the exporter's RBAC must grant: the (API group, resource) pairs
//! its own configuration lists and watches, and what a set of rules grants
//! (list and watch only). Shared by the deploy/ and Helm chart tests.

use std::collections::BTreeSet;

use argh::FromArgs;
use k8s_image_availability_exporter::config::{Args, Config};
use k8s_image_availability_exporter::kube::resources::{Kind, Resource};
use k8s_openapi::api::rbac::v1::PolicyRule;

/// (API group, resource) pairs the code lists and watches.
/// What the exporter watches with every optional source turned on, as
/// its own configuration lists the streams.
pub fn watched() -> BTreeSet<(String, String)> {
    let args = Args::from_args(
        &["k8s-image-availability-exporter"],
        &["--namespace-label", "team"],
    )
    .unwrap();
    let config = Config::from_args(args).unwrap();
    let mut r: Vec<Resource> = config
        .kube
        .streams()
        .into_iter()
        .map(|s| s.resource)
        .collect();
    // Argo Rollouts are among the streams; custom kinds come from flags.
    assert!(r.contains(&Resource::Workload(Kind::Rollout)));
    assert!(r.contains(&Resource::Workload(Kind::Job)));
    r.sort_by_key(|r| r.api());
    r.into_iter()
        .map(|res| {
            let (prefix, plural) = res.api();
            let group = prefix
                .strip_prefix("/apis/")
                .and_then(|g| g.split('/').next())
                .unwrap_or("")
                .to_string();
            (group, plural.to_string())
        })
        .collect()
}

pub fn granted(rules: &[PolicyRule]) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for r in rules {
        let mut verbs = r.verbs.clone();
        verbs.sort();
        assert_eq!(
            verbs,
            ["list", "watch"],
            "least privilege: list and watch only ({r:?})"
        );
        for g in r.api_groups.clone().unwrap_or_default() {
            for res in r.resources.clone().unwrap_or_default() {
                out.insert((g.clone(), res));
            }
        }
    }
    out
}
