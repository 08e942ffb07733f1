//! What the running pods run: for each workload and container, the digests
//! its running pods' runtimes report, with how many pods run each. A pod
//! leaves nothing else behind: its contribution is kept by a hash of its
//! key, and goes when it stops running or is deleted.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::Arc;

use crate::kube::resources::{Kind, ObjectKey, Running};

/// A workload, by kind, namespace and name.
type Owner = (Kind, ObjectKey);

/// Digests with their pod counts, per container name.
pub type Counts = Vec<(Arc<str>, Vec<(Arc<str>, u32)>)>;

/// One pod's contribution.
struct Contribution {
    /// Its workload, and for a Job named as a CronJob's the Job too (a pod
    /// names only its Job: whichever of the two is watched counts it).
    owners: Box<[Arc<Owner>]>,
    /// (container, digest).
    digests: Box<[(Arc<str>, Arc<str>)]>,
}

/// The running pods' digests, by workload.
#[derive(Default)]
pub struct RunningPods {
    hasher: RandomState,
    pods: HashMap<u64, Contribution>,
    counts: HashMap<Arc<Owner>, Counts>,
    strings: HashSet<Arc<str>>,
    owners: HashSet<Arc<Owner>>,
    churn: usize,
}

impl RunningPods {
    /// Records what pod `pod` runs now (`None`: nothing, or it is gone).
    pub fn set(&mut self, pod: &ObjectKey, running: Option<Box<Running>>) {
        let id = self.hasher.hash_one(pod);
        if let Some(old) = self.pods.remove(&id) {
            self.count(&old, false);
            self.churn += 1;
        }
        let Some(r) = running else {
            self.sweep();
            return;
        };
        let mut owners = vec![self.owner(r.owner.kind, &pod.namespace, &r.owner.name)];
        if let Some(job) = &r.owner.job {
            owners.push(self.owner(Kind::Job, &pod.namespace, job));
        }
        let digests = r
            .digests
            .iter()
            .map(|(c, d)| (self.intern(c), self.intern(d)))
            .collect();
        let c = Contribution {
            owners: owners.into(),
            digests,
        };
        self.count(&c, true);
        self.pods.insert(id, c);
    }

    /// The digests pods of `(kind, key)` run for `container`, with counts.
    pub fn of(&self, kind: Kind, key: &ObjectKey, container: &str) -> Option<&[(Arc<str>, u32)]> {
        let owner = (kind, key.clone());
        self.counts
            .get(&owner)?
            .iter()
            .find(|(c, _)| &**c == container)
            .map(|(_, d)| d.as_slice())
    }

    /// Pods recorded.
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    fn count(&mut self, c: &Contribution, add: bool) {
        for owner in c.owners.iter() {
            let counts = self.counts.entry(owner.clone()).or_default();
            for (container, digest) in c.digests.iter() {
                let i = match counts.iter().position(|(n, _)| n == container) {
                    Some(i) => i,
                    None => {
                        counts.push((container.clone(), Vec::new()));
                        counts.len() - 1
                    }
                };
                let list = &mut counts[i].1;
                match list.iter().position(|(d, _)| d == digest) {
                    Some(j) if add => list[j].1 += 1,
                    Some(j) => {
                        list[j].1 -= 1;
                        if list[j].1 == 0 {
                            list.swap_remove(j);
                        }
                    }
                    None if add => list.push((digest.clone(), 1)),
                    None => {}
                }
                if list.is_empty() {
                    counts.swap_remove(i);
                }
            }
            if counts.is_empty() {
                self.counts.remove(owner);
            }
        }
    }

    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(x) = self.strings.get(s) {
            return x.clone();
        }
        let x: Arc<str> = Arc::from(s);
        self.strings.insert(x.clone());
        x
    }

    fn owner(&mut self, kind: Kind, namespace: &Arc<str>, name: &str) -> Arc<Owner> {
        let name = self.intern(name);
        let owner = (
            kind,
            ObjectKey {
                namespace: namespace.clone(),
                name,
            },
        );
        if let Some(o) = self.owners.get(&owner) {
            return o.clone();
        }
        let o = Arc::new(owner);
        self.owners.insert(o.clone());
        o
    }

    /// Drops interned strings and owners no pod uses any more, once enough
    /// pods changed that some may be unused.
    fn sweep(&mut self) {
        if self.churn < 1024.max(self.pods.len() / 4) {
            return;
        }
        self.churn = 0;
        self.owners.retain(|o| Arc::strong_count(o) > 1);
        self.strings.retain(|s| Arc::strong_count(s) > 1);
        self.owners.shrink_to_fit();
        self.strings.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::resources::RunningOwner;

    fn key(ns: &str, name: &str) -> ObjectKey {
        ObjectKey {
            namespace: ns.into(),
            name: name.into(),
        }
    }

    fn run(
        kind: Kind,
        owner: &str,
        job: Option<&str>,
        digests: &[(&str, &str)],
    ) -> Option<Box<Running>> {
        Some(Box::new(Running {
            owner: RunningOwner {
                kind,
                name: owner.into(),
                job: job.map(Into::into),
            },
            digests: digests
                .iter()
                .map(|(c, d)| ((*c).into(), (*d).into()))
                .collect(),
        }))
    }

    #[test]
    fn counts_follow_the_pods() {
        let mut r = RunningPods::default();
        let web = key("ns", "web");
        r.set(
            &key("ns", "web-1"),
            run(Kind::Deployment, "web", None, &[("app", "sha256:a")]),
        );
        r.set(
            &key("ns", "web-2"),
            run(Kind::Deployment, "web", None, &[("app", "sha256:a")]),
        );
        r.set(
            &key("ns", "web-3"),
            run(Kind::Deployment, "web", None, &[("app", "sha256:b")]),
        );
        let mut got = r.of(Kind::Deployment, &web, "app").unwrap().to_vec();
        got.sort();
        assert_eq!(got, [("sha256:a".into(), 2), ("sha256:b".into(), 1)]);
        // A pod moves onto the new digest; another stops.
        r.set(
            &key("ns", "web-1"),
            run(Kind::Deployment, "web", None, &[("app", "sha256:b")]),
        );
        r.set(&key("ns", "web-2"), None);
        assert_eq!(
            r.of(Kind::Deployment, &web, "app").unwrap(),
            [("sha256:b".into(), 2)]
        );
        r.set(&key("ns", "web-1"), None);
        r.set(&key("ns", "web-3"), None);
        assert!(r.of(Kind::Deployment, &web, "app").is_none());
        assert!(r.is_empty() && r.counts.is_empty());
        // Another namespace's workload of the same name is another one.
        r.set(
            &key("other", "web-1"),
            run(Kind::Deployment, "web", None, &[("app", "sha256:c")]),
        );
        assert!(r.of(Kind::Deployment, &web, "app").is_none());
    }

    #[test]
    fn a_cronjobs_job_counts_for_whichever_is_watched() {
        let mut r = RunningPods::default();
        r.set(
            &key("ns", "backup-29012345-x"),
            run(
                Kind::CronJob,
                "backup",
                Some("backup-29012345"),
                &[("c", "sha256:a")],
            ),
        );
        assert!(r.of(Kind::CronJob, &key("ns", "backup"), "c").is_some());
        assert!(r
            .of(Kind::Job, &key("ns", "backup-29012345"), "c")
            .is_some());
        r.set(&key("ns", "backup-29012345-x"), None);
        assert!(r.counts.is_empty());
    }
}
