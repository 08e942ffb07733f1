//! Tag moved: whether a workload's running pods run the build its tag
//! names now. A mutable tag (`latest`, `v2`, `main`) pushed again after the
//! pods pulled it starts nothing failing, but the next pod on a node
//! without the old image runs other code than its siblings. The tag's
//! digest comes from its last check that reached the registry; the pods'
//! from their runtimes (`imageID`), which report either the tag's own
//! digest (containerd) or the digest of the platform manifest the index
//! lists (CRI-O): both are the tag's.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::scheduler::Outcome;
use crate::registry::Status;

/// What a container's running pods run against what its tag names.
#[derive(Debug, PartialEq, Eq)]
pub struct Verdict<'a> {
    /// The digest the tag names now.
    pub tag: &'a str,
    /// The digests the running pods run, with pod counts.
    pub running: &'a [(Arc<str>, u32)],
    /// Some running pod runs another build.
    pub moved: bool,
}

/// The verdict for a container whose image is `image`, whose check's last
/// verdict is `outcome`, and whose running pods run `running`. `None` (no
/// series) when the image is pinned by digest, the tag has no digest now
/// (not available), no running pod reports one, or a pod's digest could be
/// the tag's through an index whose entries are not known.
pub fn judge<'a>(
    outcome: &'a Outcome,
    image: &str,
    running: Option<&'a [(Arc<str>, u32)]>,
) -> Option<Verdict<'a>> {
    let running = running.filter(|r| !r.is_empty())?;
    if image.contains('@') || outcome.status != Status::Available {
        return None;
    }
    let tag = outcome.digest.as_deref()?;
    let mut unknown = false;
    for (d, _) in running {
        if **d == *tag {
            continue;
        }
        match &outcome.children {
            Some(listed) if listed.iter().any(|c| **c == **d) => {}
            Some(_) => {
                return Some(Verdict {
                    tag,
                    running,
                    moved: true,
                })
            }
            None => unknown = true,
        }
    }
    (!unknown).then_some(Verdict {
        tag,
        running,
        moved: false,
    })
}

/// Since when each moved container has been seen moved (by workload,
/// container and the tag's digest: a new push starts again), as scrapes
/// and the status page see it.
#[derive(Default)]
pub struct Since {
    map: Mutex<HashMap<u64, (SystemTime, SystemTime)>>,
    hasher: RandomState,
}

/// Entries kept at most; the longest unseen go first.
const SINCE_SIZE: usize = 65_536;

impl Since {
    /// Records a verdict for `(what, tag)`; since when it has been moved.
    pub fn observe(
        &self,
        what: (&str, &str, &str, &str),
        tag: &str,
        moved: bool,
    ) -> Option<SystemTime> {
        let id = self.hasher.hash_one((what, tag));
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if !moved {
            map.remove(&id);
            return None;
        }
        let now = SystemTime::now();
        if map.len() >= SINCE_SIZE && !map.contains_key(&id) {
            // Forget what was not seen for the longest time.
            let mut seen: Vec<SystemTime> = map.values().map(|(_, s)| *s).collect();
            seen.sort_unstable();
            let cut = seen[seen.len() / 4];
            map.retain(|_, (_, s)| *s > cut);
        }
        let e = map.entry(id).or_insert((now, now));
        e.1 = now;
        Some(e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn outcome(digest: &str, children: Option<&[&str]>) -> Outcome {
        Outcome {
            status: Status::Available,
            reason: String::new(),
            checked_at: SystemTime::now(),
            since: SystemTime::now(),
            credential: None,
            platforms: None,
            broken: None,
            schema1: false,
            digest: Some(digest.into()),
            children: children.map(|c| c.iter().map(|d| Box::from(*d)).collect()),
        }
    }

    fn pods(d: &[(&str, u32)]) -> Vec<(Arc<str>, u32)> {
        d.iter().map(|(d, n)| (Arc::from(*d), *n)).collect()
    }

    #[test]
    fn since_stays_while_moved() {
        let s = Since::default();
        let w = ("deployment", "ns", "web", "app");
        let first = s.observe(w, "sha256:new", true).unwrap();
        assert_eq!(s.observe(w, "sha256:new", true), Some(first));
        assert_eq!(s.observe(w, "sha256:new", false), None);
        assert!(s.observe(w, "sha256:new", true).unwrap() >= first);
    }

    #[test]
    fn verdicts() {
        let single = outcome("sha256:new", Some(&[]));
        let same = pods(&[("sha256:new", 3)]);
        let old = pods(&[("sha256:new", 2), ("sha256:old", 1)]);
        assert!(!judge(&single, "app:v1", Some(&same)).unwrap().moved);
        assert!(judge(&single, "app:v1", Some(&old)).unwrap().moved);
        // Pinned by digest, or no running pod: no verdict.
        assert_eq!(judge(&single, "app@sha256:new", Some(&old)), None);
        assert_eq!(judge(&single, "app:v1", None), None);
        assert_eq!(judge(&single, "app:v1", Some(&[])), None);
        // CRI-O reports the platform manifest's digest: the tag's all the same.
        let index = outcome("sha256:index", Some(&["sha256:amd", "sha256:arm"]));
        let crio = pods(&[("sha256:amd", 2), ("sha256:index", 1)]);
        assert!(!judge(&index, "app:v1", Some(&crio)).unwrap().moved);
        assert!(
            judge(&index, "app:v1", Some(&pods(&[("sha256:old-amd", 1)])))
                .unwrap()
                .moved
        );
        // An index whose entries are unknown cannot say.
        let unread = outcome("sha256:index", None);
        assert_eq!(judge(&unread, "app:v1", Some(&crio)), None);
        assert!(
            !judge(&unread, "app:v1", Some(&pods(&[("sha256:index", 1)])))
                .unwrap()
                .moved
        );
        // Not available: no digest to compare with.
        let mut gone = outcome("sha256:new", Some(&[]));
        gone.status = Status::Absent;
        assert_eq!(judge(&gone, "app:v1", Some(&old)), None);
    }
}
