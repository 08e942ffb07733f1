//! What the running pods run: for each workload and container, the digests
//! its running pods' runtimes report, with how many pods run each. A pod
//! leaves nothing else behind: its contribution is kept under a hash of
//! its key, and goes when it stops running or is deleted. Workloads are
//! kept by a hash of their kind, namespace and name too, and (container,
//! digest) pairs once each: this table grows with the pods (ten thousand
//! of them in a large cluster), so a pod costs a table entry and no
//! allocation of its own.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::Arc;

use crate::kube::resources::{Kind, ObjectKey, Running};

/// A pod's (container, digest) pairs, by index in the pair table: one
/// inline (a pod of one container), more boxed.
enum Pairs {
    One(u32),
    Many(Box<[u32]>),
}

impl Pairs {
    fn as_slice(&self) -> &[u32] {
        match self {
            Pairs::One(p) => std::slice::from_ref(p),
            Pairs::Many(p) => p,
        }
    }
}

/// One pod's contribution.
struct Contribution {
    /// Its workload's hash, and for a Job named as a CronJob's the Job's
    /// too (0 when none): a pod names only its Job, and whichever of the
    /// two is watched counts it.
    owners: [u64; 2],
    pairs: Pairs,
}

/// The running pods' digests, by workload.
#[derive(Default)]
pub struct RunningPods {
    hasher: RandomState,
    pods: HashMap<u64, Contribution>,
    /// Pods per (workload hash, pair): ordered, so a workload's pairs are
    /// one range.
    counts: BTreeMap<(u64, u32), u32>,
    /// (container, digest) pairs, shared by the pods that run them, with
    /// how many pods name each (a pair no pod names is reused).
    pairs: Vec<(Arc<str>, Arc<str>, u32)>,
    by_pair: HashMap<(Arc<str>, Arc<str>), u32>,
    free: Vec<u32>,
}

impl RunningPods {
    /// Records what pod `pod` runs now (`None`: nothing, or it is gone).
    pub fn set(&mut self, pod: &ObjectKey, running: Option<Box<Running>>) {
        let id = pod.id();
        self.remove(id);
        let Some(r) = running else {
            return;
        };
        let owner = |kind: Kind, name: &str| self.owner(kind, &pod.namespace, name);
        let owners = [
            owner(r.owner.kind, &r.owner.name),
            r.owner
                .job
                .as_deref()
                .map_or(0, |job| owner(Kind::Job, job)),
        ];
        let mut ids: Vec<u32> = r.digests.iter().map(|(c, d)| self.pair(c, d)).collect();
        let pairs = if ids.len() == 1 {
            Pairs::One(ids[0])
        } else {
            ids.shrink_to_fit();
            Pairs::Many(ids.into_boxed_slice())
        };
        let c = Contribution { owners, pairs };
        self.count(&c, true);
        self.pods.insert(id, c);
    }

    /// The pod whose key's id is `id` runs nothing now, or is gone.
    pub fn remove(&mut self, id: u64) {
        if let Some(old) = self.pods.remove(&id) {
            self.count(&old, false);
            for &p in old.pairs.as_slice() {
                self.release(p);
            }
        }
    }

    /// The digests pods of `(kind, key)` run for `container`, with counts.
    pub fn of(&self, kind: Kind, key: &ObjectKey, container: &str) -> Vec<(Arc<str>, u32)> {
        let owner = self.owner(kind, &key.namespace, &key.name);
        self.counts
            .range((owner, 0)..=(owner, u32::MAX))
            .filter_map(|(&(_, p), &n)| {
                let (c, d, _) = &self.pairs[p as usize];
                (&**c == container).then(|| (d.clone(), n))
            })
            .collect()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    /// A workload's hash; never 0 (which means none).
    fn owner(&self, kind: Kind, namespace: &str, name: &str) -> u64 {
        self.hasher.hash_one((kind, namespace, name)).max(1)
    }

    fn count(&mut self, c: &Contribution, add: bool) {
        for owner in c.owners.into_iter().filter(|o| *o != 0) {
            for &p in c.pairs.as_slice() {
                if add {
                    *self.counts.entry((owner, p)).or_default() += 1;
                } else if let Some(n) = self.counts.get_mut(&(owner, p)) {
                    *n -= 1;
                    if *n == 0 {
                        self.counts.remove(&(owner, p));
                    }
                }
            }
        }
    }

    /// The index of a (container, digest) pair, one more pod naming it.
    fn pair(&mut self, container: &str, digest: &str) -> u32 {
        let key: (Arc<str>, Arc<str>) = (container.into(), digest.into());
        if let Some(&p) = self.by_pair.get(&key) {
            self.pairs[p as usize].2 += 1;
            return p;
        }
        let entry = (key.0.clone(), key.1.clone(), 1);
        let p = match self.free.pop() {
            Some(p) => {
                self.pairs[p as usize] = entry;
                p
            }
            None => {
                self.pairs.push(entry);
                u32::try_from(self.pairs.len() - 1).unwrap_or(u32::MAX)
            }
        };
        self.by_pair.insert(key, p);
        p
    }

    /// One pod less names pair `p`; a pair no pod names is reused.
    fn release(&mut self, p: u32) {
        let entry = &mut self.pairs[p as usize];
        entry.2 -= 1;
        if entry.2 == 0 {
            let key = (entry.0.clone(), entry.1.clone());
            self.by_pair.remove(&key);
            self.free.push(p);
        }
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
        let dep = |d: &str| run(Kind::Deployment, "web", None, &[("app", d)]);
        r.set(&key("ns", "web-1"), dep("sha256:a"));
        r.set(&key("ns", "web-2"), dep("sha256:a"));
        r.set(&key("ns", "web-3"), dep("sha256:b"));
        let mut got = r.of(Kind::Deployment, &web, "app");
        got.sort();
        assert_eq!(got, [("sha256:a".into(), 2), ("sha256:b".into(), 1)]);
        assert!(r.of(Kind::Deployment, &web, "side").is_empty());
        assert!(r.of(Kind::StatefulSet, &web, "app").is_empty());
        // A pod moves onto the new digest; another stops.
        r.set(&key("ns", "web-1"), dep("sha256:b"));
        r.set(&key("ns", "web-2"), None);
        assert_eq!(
            r.of(Kind::Deployment, &web, "app"),
            [("sha256:b".into(), 2)]
        );
        r.set(&key("ns", "web-1"), None);
        r.set(&key("ns", "web-3"), None);
        assert!(r.of(Kind::Deployment, &web, "app").is_empty());
        assert!(r.is_empty() && r.counts.is_empty());
        // Another namespace's workload of the same name is another one.
        r.set(&key("other", "web-1"), dep("sha256:c"));
        assert!(r.of(Kind::Deployment, &web, "app").is_empty());
    }

    #[test]
    fn a_cronjobs_job_counts_for_whichever_is_watched() {
        let mut r = RunningPods::default();
        let pod = key("ns", "backup-29012345-x");
        let job = Some("backup-29012345");
        r.set(
            &pod,
            run(Kind::CronJob, "backup", job, &[("c", "sha256:a")]),
        );
        assert_eq!(r.of(Kind::CronJob, &key("ns", "backup"), "c").len(), 1);
        assert_eq!(r.of(Kind::Job, &key("ns", "backup-29012345"), "c").len(), 1);
        r.set(&pod, None);
        assert!(r.counts.is_empty());
    }
}
