//! The pull path past the tag. A node resolves the tag to a digest, GETs
//! that manifest, for an index GETs the manifest of its own platform (the
//! entry containerd's platform matcher prefers), then downloads the config
//! blob and every layer blob. Registries break between those steps: a blob
//! gone from storage while its manifest stays, an index entry deleted, a
//! download policy that refuses GETs while HEAD passes, a proxy cache whose
//! tag answers a digest it can no longer serve. Each is a failed pull for a
//! tag that answers HEAD.
//!
//! We walk the same path once per digest and verification interval: the
//! manifest GETs a node makes (counted pulls on Docker Hub, so the quota
//! rule of [`super::quota`] applies) and a HEAD for each blob (free, and
//! enough on Distribution, which answers it from the blob store), confirmed
//! by a one-byte GET wherever the HEAD is refused or says missing: a node
//! GETs blobs, and some registries answer HEAD differently (see
//! [`super::reader`]). What a walk found
//! is judged per container (see [`applying`]): a broken arm64 build does
//! not fail a workload that only lands on amd64 nodes.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::manifest::Manifest;
use super::status::Status;
#[cfg(test)]
use crate::image::platform::NodeGroup;
use crate::image::platform::{Platform, Required};

/// Why one request of the walk did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// 404 or a `*_UNKNOWN` error: the node's pull fails the same way.
    Missing(String),
    /// 401, 403, 412 or `DENIED` on a download: the node is refused too.
    Refused(String),
    /// Not known (5xx, timeouts, 429, an unreadable answer, or a counted
    /// request held back for the nodes' quota): no verdict from it.
    Unverified(String),
}

impl Failure {
    /// What the registry answered, or why there was no answer.
    pub fn text(&self) -> &str {
        match self {
            Failure::Missing(s) | Failure::Refused(s) | Failure::Unverified(s) => s,
        }
    }
}

/// The requests of a walk, made by the registry checker with the
/// credentials and scheme of the manifest answer.
pub trait Fetch {
    /// GET of a manifest by digest.
    fn manifest(&mut self, digest: &str) -> Result<Manifest, Failure>;
    /// Whether a node may download a blob (HEAD, confirmed by GET).
    fn blob(&mut self, digest: &str) -> Result<(), Failure>;
}

/// A piece of the pull path a node cannot get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// The build it breaks (an index entry's platform), or `None` when it
    /// breaks the whole image (the tag's own manifest, or a single-platform
    /// image's blobs).
    pub platform: Option<Platform>,
    /// `Absent` (a missing piece) or `AuthorizationFailure` (a refused download).
    pub status: Status,
    /// What is missing or refused, naming the piece.
    pub reason: String,
}

/// What one walk found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Walk {
    /// Pieces a node cannot get.
    pub broken: Vec<Broken>,
    /// Requests that gave no verdict, with why.
    pub unverified: Vec<String>,
    /// What is now known to be pullable, for the cache: `None` for the
    /// whole image, or a node platform whose build was verified.
    pub verified: Vec<Option<Platform>>,
}

/// Walks the pull path of manifest `digest` for nodes of the `wanted`
/// platforms. `done(None)` says the whole image was verified lately,
/// `done(Some(p))` that the build nodes of `p` pull was.
pub fn walk(
    f: &mut dyn Fetch,
    digest: &str,
    wanted: &[Platform],
    done: &dyn Fn(Option<&Platform>) -> bool,
) -> Walk {
    let mut w = Walk::default();
    let todo: Vec<&Platform> = wanted.iter().filter(|p| !done(Some(p))).collect();
    if done(None) || todo.is_empty() {
        return w;
    }
    let top = match f.manifest(digest) {
        Ok(m) => m,
        Err(e) => {
            w.fail(None, "manifest", digest, e);
            if let Some(b) = w.broken.first_mut().filter(|b| b.status == Status::Absent) {
                b.reason
                    .push_str(": the tag answers a digest the registry cannot serve");
            }
            return w;
        }
    };
    match top {
        Manifest::Index(entries) => {
            // Only entries that name their platform can be matched; an
            // index without them is left to the platform read.
            let labelled: Vec<(&Platform, &str)> = entries
                .iter()
                .filter_map(|e| Some((e.platform.as_ref()?, e.digest.as_str())))
                .filter(|(p, _)| p.is_known())
                .collect();
            let mut builds: Vec<(usize, Vec<&Platform>)> = Vec::new();
            for node in todo {
                match node.pick(labelled.iter().map(|(p, _)| *p)) {
                    Some(i) => match builds.iter_mut().find(|(j, _)| *j == i) {
                        Some((_, nodes)) => nodes.push(node),
                        None => builds.push((i, vec![node])),
                    },
                    // No build for it: the platform verdict says so.
                    None => w.verified.push(Some(node.clone())),
                }
            }
            for (i, nodes) in builds {
                let (platform, digest) = labelled[i];
                if w.build(f, digest, Some(platform)) {
                    w.verified
                        .extend(nodes.into_iter().map(|p| Some(p.clone())));
                }
            }
        }
        Manifest::Image { config, layers } => {
            if w.blobs(f, None, Some(&config), &layers) {
                w.verified.push(None);
            }
        }
        Manifest::Schema1 { layers, .. } => {
            if w.blobs(f, None, None, &layers) {
                w.verified.push(None);
            }
        }
        // Not a container image: a node cannot run it whatever its blobs.
        Manifest::NotImage(_) => w.verified.push(None),
    }
    w
}

impl Walk {
    /// What the check's reason says of the walk: `; pull path verified`
    /// (now or lately), what is broken, what could not be verified.
    pub fn note(&self) -> String {
        let mut note = String::new();
        if !self.broken.is_empty() {
            let pieces: Vec<&str> = self.broken.iter().map(|b| b.reason.as_str()).collect();
            note.push_str(&format!("; pull path broken: {}", pieces.join("; ")));
        }
        if !self.unverified.is_empty() {
            let shown = &self.unverified[..self.unverified.len().min(3)];
            note.push_str(&format!("; pull path not verified: {}", shown.join("; ")));
            let more = self.unverified.len() - shown.len();
            if more > 0 {
                note.push_str(&format!(" (and {more} more)"));
            }
        }
        if note.is_empty() {
            note.push_str("; pull path verified");
        }
        note
    }

    /// The manifest of one index entry and its blobs; whether all are there.
    fn build(&mut self, f: &mut dyn Fetch, digest: &str, platform: Option<&Platform>) -> bool {
        match f.manifest(digest) {
            Ok(Manifest::Image { config, layers }) => {
                self.blobs(f, platform, Some(&config), &layers)
            }
            Ok(Manifest::Schema1 { layers, .. }) => self.blobs(f, platform, None, &layers),
            // A nested index or an artifact: nothing a node downloads as
            // this platform's image layers.
            Ok(Manifest::Index(_)) | Ok(Manifest::NotImage(_)) => true,
            Err(e) => {
                self.fail(platform, "manifest", digest, e);
                false
            }
        }
    }

    /// The config and layer blobs; whether all are there. A missing or
    /// refused blob ends the walk of this build, as it ends the pull; a
    /// blob that gave no answer does not stop the others being asked.
    fn blobs(
        &mut self,
        f: &mut dyn Fetch,
        platform: Option<&Platform>,
        config: Option<&str>,
        layers: &[String],
    ) -> bool {
        let all = config
            .map(|c| ("config", c))
            .into_iter()
            .chain(layers.iter().map(|l| ("layer", l.as_str())));
        let mut ok = true;
        for (what, digest) in all {
            if let Err(e) = f.blob(digest) {
                ok = false;
                let definite = !matches!(e, Failure::Unverified(_));
                self.fail(platform, what, digest, e);
                if definite {
                    break;
                }
            }
        }
        ok
    }

    fn fail(&mut self, platform: Option<&Platform>, what: &str, digest: &str, e: Failure) {
        let of = platform.map(|p| format!(" of {p}")).unwrap_or_default();
        let (status, reason) = match e {
            Failure::Missing(why) => (
                Status::Absent,
                format!("{what} {digest}{of} missing ({why})"),
            ),
            Failure::Refused(why) => (
                Status::AuthorizationFailure,
                format!("download refused: GET {what} {digest}{of}: {why}"),
            ),
            Failure::Unverified(why) => {
                self.unverified.push(format!("{what} {digest}{of}: {why}"));
                return;
            }
        };
        self.broken.push(Broken {
            platform: platform.cloned(),
            status,
            reason,
        });
    }
}

/// Why an available image does not hold for a container.
#[derive(Debug)]
pub enum Judged<'a> {
    /// A piece of the pull path its nodes need is broken.
    Broken(&'a Broken),
    /// It is a schema 1 manifest and some of its nodes' runtimes cannot
    /// pull one.
    Schema1(&'a Required),
    /// It has no build for a platform its pods can land on.
    Lacking {
        /// The image's platforms.
        offered: &'a [Platform],
        /// The platforms its pods can land on.
        required: &'a Required,
    },
}

impl Judged<'_> {
    /// The container's class.
    pub fn status(&self) -> Status {
        match self {
            Judged::Broken(b) => b.status,
            Judged::Schema1(_) | Judged::Lacking { .. } => Status::PlatformUnavailable,
        }
    }

    /// Why, naming the broken piece or the missing platforms.
    pub fn reason(&self) -> String {
        match self {
            Judged::Broken(b) => b.reason.clone(),
            Judged::Schema1(required) => {
                crate::image::platform::schema1_refused(required).unwrap_or_default()
            }
            Judged::Lacking { offered, required } => {
                crate::image::platform::lacking(offered, required).unwrap_or_default()
            }
        }
    }
}

/// The verdict of a container whose image's check says `available`, when
/// it differs: a broken piece of the pull path its nodes need wins over a
/// schema 1 manifest some of its nodes' runtimes cannot pull, which wins
/// over a missing build (both `platform_unavailable`). `offered` are the
/// image's platforms and `placement` the nodes its pods can land on, when
/// known.
pub fn judge<'a>(
    offered: Option<&'a [Platform]>,
    broken: &'a [Broken],
    schema1: bool,
    placement: Option<&'a Required>,
) -> Option<Judged<'a>> {
    if let Some(b) = applying(broken, offered, placement) {
        return Some(Judged::Broken(b));
    }
    if let Some(required) =
        placement.filter(|r| schema1 && r.iter().any(|g| g.refuses_schema1.is_some()))
    {
        return Some(Judged::Schema1(required));
    }
    let (offered, required) = (offered?, placement?);
    crate::image::platform::lacks(offered, required)
        .then_some(Judged::Lacking { offered, required })
}

/// The broken piece that fails a container, if any: one that breaks the
/// whole image, or the build a node of a platform its pods can land on
/// (`required`) would pull among the image's `offered` platforms. While the
/// nodes are unknown, the default platforms were walked and every broken
/// piece counts.
fn applying<'a>(
    broken: &'a [Broken],
    offered: Option<&[Platform]>,
    required: Option<&Required>,
) -> Option<&'a Broken> {
    broken.iter().find(|b| match (&b.platform, required) {
        (None, _) | (_, None) => true,
        (Some(build), Some(required)) => required.iter().any(|g| match offered {
            Some(o) => g.platform.pick(o).map(|i| &o[i]) == Some(build),
            None => g.platform.runs(build),
        }),
    })
}

/// Digests whose pull path was verified lately, by registry host,
/// repository (blobs are linked per repository), digest and node platform
/// (64-bit hashes and a time: about 32 bytes each); and the broken pieces
/// of digests whose last walk found some.
pub struct PathCache {
    seen: Mutex<HashMap<u64, Instant>>,
    broken: Mutex<HashMap<u64, (Vec<Broken>, Instant)>>,
    capacity: usize,
}

impl PathCache {
    /// A cache of at most `capacity` verified pieces (and a sixteenth of
    /// that of broken digests before old ones are dropped).
    pub fn new(capacity: usize) -> PathCache {
        PathCache {
            seen: Mutex::new(HashMap::new()),
            broken: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// Records the walk of one digest (`key` gives its pieces' keys): its
    /// verified pieces, and its broken ones. A later walk that gives no
    /// verdict (a flaky blob, the quota reserve) takes the broken pieces
    /// found within `every`: a broken image does not turn `available`
    /// because the registry could not be asked again.
    pub fn record(
        &self,
        key: &dyn Fn(Option<&Platform>) -> u64,
        walk: &mut Walk,
        now: Instant,
        every: Duration,
    ) {
        for v in &walk.verified {
            self.mark(key(v.as_ref()), now, every);
        }
        let digest = key(None);
        let mut broken = self.broken.lock().unwrap_or_else(|e| e.into_inner());
        if !walk.broken.is_empty() {
            broken.insert(digest, (walk.broken.clone(), now));
        } else if walk.unverified.is_empty() {
            broken.remove(&digest);
        } else if let Some((b, at)) = broken.get(&digest) {
            if now.saturating_duration_since(*at) < every {
                walk.broken = b.clone();
            }
        }
        if broken.len() > (self.capacity / 16).max(1) {
            broken.retain(|_, (_, at)| now.saturating_duration_since(*at) < every);
        }
    }

    /// The key of one verified piece.
    pub fn key(host: &str, repository: &str, digest: &str, platform: Option<&Platform>) -> u64 {
        let mut h = DefaultHasher::new();
        (host, repository, digest, platform).hash(&mut h);
        h.finish()
    }

    /// Whether `key` was verified less than `every` ago.
    pub fn fresh(&self, key: u64, now: Instant, every: Duration) -> bool {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .is_some_and(|at| now.saturating_duration_since(*at) < every)
    }

    /// Records `key` as verified at `now`. When full, entries past `every`
    /// go first, then arbitrary ones down to three quarters: a forgotten
    /// entry costs one more walk, never a wrong verdict.
    fn mark(&self, key: u64, now: Instant, every: Duration) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.insert(key, now);
        if seen.len() > self.capacity {
            seen.retain(|_, at| now.saturating_duration_since(*at) < every);
            let keep = self.capacity * 3 / 4;
            if seen.len() > keep {
                let extra: Vec<u64> = seen.keys().take(seen.len() - keep).copied().collect();
                for k in extra {
                    seen.remove(&k);
                }
            }
            seen.shrink_to(self.capacity);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::manifest::Entry;

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap()
    }

    /// A registry in memory: manifests by digest, blobs by digest, and
    /// what each request got otherwise; records every request.
    #[derive(Default)]
    struct Fake {
        manifests: HashMap<String, Manifest>,
        blobs: Vec<String>,
        fail: HashMap<String, Failure>,
        asked: Vec<String>,
    }

    impl Fetch for Fake {
        fn manifest(&mut self, d: &str) -> Result<Manifest, Failure> {
            self.asked.push(format!("GET {d}"));
            if let Some(f) = self.fail.get(d) {
                return Err(f.clone());
            }
            self.manifests
                .get(d)
                .cloned()
                .ok_or(Failure::Missing("HTTP 404, MANIFEST_UNKNOWN".into()))
        }
        fn blob(&mut self, d: &str) -> Result<(), Failure> {
            self.asked.push(format!("HEAD {d}"));
            if let Some(f) = self.fail.get(d) {
                return Err(f.clone());
            }
            if self.blobs.iter().any(|b| b == d) {
                Ok(())
            } else {
                Err(Failure::Missing("HTTP 404, BLOB_UNKNOWN".into()))
            }
        }
    }

    fn image(f: &mut Fake, name: &str, layers: usize) -> String {
        let digest = format!("sha256:{name}");
        let layers: Vec<String> = (0..layers).map(|i| format!("sha256:{name}-l{i}")).collect();
        f.blobs.push(format!("sha256:{name}-cfg"));
        f.blobs.extend(layers.iter().cloned());
        f.manifests.insert(
            digest.clone(),
            Manifest::Image {
                config: format!("sha256:{name}-cfg"),
                layers,
            },
        );
        digest
    }

    /// An index of amd64, arm64 and arm/v7 builds, plus an attestation.
    fn index(f: &mut Fake) -> String {
        let mut entries = Vec::new();
        for (name, plat) in [
            ("amd", "linux/amd64"),
            ("arm64", "linux/arm64"),
            ("armv7", "linux/arm/v7"),
        ] {
            entries.push(Entry {
                digest: image(f, name, 2),
                platform: Some(p(plat)),
            });
        }
        entries.push(Entry {
            digest: "sha256:attestation".into(),
            platform: Some(Platform::new("unknown", "unknown", "")),
        });
        f.manifests
            .insert("sha256:idx".into(), Manifest::Index(entries));
        "sha256:idx".into()
    }

    const NONE: &dyn Fn(Option<&Platform>) -> bool = &|_| false;

    #[test]
    fn a_healthy_single_image_is_one_get_and_a_head_per_blob() {
        let mut f = Fake::default();
        let d = image(&mut f, "one", 3);
        let w = walk(&mut f, &d, &[p("linux/amd64")], NONE);
        assert_eq!(w.broken, []);
        assert!(w.unverified.is_empty());
        assert_eq!(w.verified, [None]);
        assert_eq!(
            f.asked,
            [
                "GET sha256:one",
                "HEAD sha256:one-cfg",
                "HEAD sha256:one-l0",
                "HEAD sha256:one-l1",
                "HEAD sha256:one-l2"
            ]
        );
    }

    #[test]
    fn a_missing_layer_is_named_and_ends_the_walk() {
        let mut f = Fake::default();
        let d = image(&mut f, "one", 3);
        f.blobs.retain(|b| b != "sha256:one-l1");
        let w = walk(&mut f, &d, &[p("linux/amd64")], NONE);
        assert_eq!(w.broken.len(), 1);
        assert_eq!(w.broken[0].status, Status::Absent);
        assert_eq!(w.broken[0].platform, None);
        assert_eq!(
            w.broken[0].reason,
            "layer sha256:one-l1 missing (HTTP 404, BLOB_UNKNOWN)"
        );
        assert!(w.verified.is_empty());
        assert!(!f.asked.contains(&"HEAD sha256:one-l2".to_string()));
    }

    #[test]
    fn an_index_is_walked_for_the_builds_the_nodes_pull() {
        let mut f = Fake::default();
        let d = index(&mut f);
        f.blobs.retain(|b| b != "sha256:arm64-l0");
        let w = walk(&mut f, &d, &[p("linux/amd64")], NONE);
        assert_eq!(w.broken, [], "the arm64 build is not what amd64 nodes pull");
        assert_eq!(w.verified, [Some(p("linux/amd64"))]);
        assert!(!f.asked.iter().any(|a| a.contains("arm")), "{:?}", f.asked);

        f.asked.clear();
        let w = walk(
            &mut f,
            &d,
            &[p("linux/amd64"), p("linux/arm64"), p("linux/arm/v7")],
            NONE,
        );
        assert_eq!(w.broken.len(), 1);
        assert_eq!(w.broken[0].platform, Some(p("linux/arm64")));
        assert_eq!(
            w.broken[0].reason,
            "layer sha256:arm64-l0 of linux/arm64 missing (HTTP 404, BLOB_UNKNOWN)"
        );
        assert_eq!(
            w.verified,
            [Some(p("linux/amd64")), Some(p("linux/arm/v7"))]
        );
        assert_eq!(f.asked.iter().filter(|a| a.starts_with("GET")).count(), 4);
    }

    #[test]
    fn nodes_pulling_the_same_build_walk_it_once() {
        let mut f = Fake::default();
        let d = index(&mut f);
        // arm/v6 nodes pull nothing here (no v6 or older build); arm/v8 is
        // what arm64 runs as 32-bit, yet arm64 nodes prefer their own.
        let w = walk(
            &mut f,
            &d,
            &[p("linux/arm64"), p("linux/arm64/v8.2"), p("linux/arm/v6")],
            NONE,
        );
        assert_eq!(w.broken, []);
        assert_eq!(
            f.asked.iter().filter(|a| *a == "GET sha256:arm64").count(),
            1
        );
        assert_eq!(w.verified.len(), 3);
    }

    #[test]
    fn a_deleted_platform_manifest_and_a_stale_tag() {
        let mut f = Fake::default();
        let d = index(&mut f);
        f.manifests.remove("sha256:amd");
        let w = walk(&mut f, &d, &[p("linux/amd64")], NONE);
        assert_eq!(
            w.broken[0].reason,
            "manifest sha256:amd of linux/amd64 missing (HTTP 404, MANIFEST_UNKNOWN)"
        );
        let w = walk(&mut f, "sha256:gone", &[p("linux/amd64")], NONE);
        assert_eq!(w.broken[0].platform, None);
        assert_eq!(
            w.broken[0].reason,
            "manifest sha256:gone missing (HTTP 404, MANIFEST_UNKNOWN): the tag answers a digest the registry cannot serve"
        );
    }

    #[test]
    fn refusals_and_unanswered_requests() {
        let mut f = Fake::default();
        let d = image(&mut f, "one", 2);
        f.fail.insert(
            d.clone(),
            Failure::Refused("HTTP 403 (DENIED: download blocked)".into()),
        );
        let w = walk(&mut f, &d, &[p("linux/amd64")], NONE);
        assert_eq!(w.broken[0].status, Status::AuthorizationFailure);
        assert_eq!(
            w.broken[0].reason,
            "download refused: GET manifest sha256:one: HTTP 403 (DENIED: download blocked)"
        );
        f.fail.clear();
        f.fail.insert(
            "sha256:one-l0".into(),
            Failure::Unverified("HTTP 503".into()),
        );
        let w = walk(&mut f, &d, &[p("linux/amd64")], NONE);
        assert_eq!(w.broken, []);
        assert_eq!(w.unverified, ["layer sha256:one-l0: HTTP 503"]);
        assert!(w.verified.is_empty(), "not cached: asked again next time");
        assert!(f.asked.contains(&"HEAD sha256:one-l1".to_string()));
    }

    #[test]
    fn cached_pieces_cost_nothing() {
        let mut f = Fake::default();
        let d = index(&mut f);
        let w = walk(&mut f, &d, &[p("linux/amd64")], &|p| p.is_some());
        assert_eq!(w, Walk::default());
        assert!(f.asked.is_empty());
        let w = walk(&mut f, &d, &[p("linux/amd64"), p("linux/arm64")], &|q| {
            q == Some(&p("linux/amd64"))
        });
        assert_eq!(w.verified, [Some(p("linux/arm64"))]);
        assert!(!f.asked.iter().any(|a| a.contains("amd")));
    }

    #[test]
    fn a_broken_build_fails_only_containers_whose_nodes_pull_it() {
        let offered = [p("linux/amd64"), p("linux/arm/v7"), p("linux/arm64")];
        let broken = [Broken {
            platform: Some(p("linux/arm/v7")),
            status: Status::Absent,
            reason: "x".into(),
        }];
        let on = |nodes: &[&str]| -> Vec<NodeGroup> {
            nodes.iter().map(|n| NodeGroup::new(p(n), 1)).collect()
        };
        assert!(applying(&broken, Some(&offered), Some(&on(&["linux/amd64"]))).is_none());
        assert!(applying(&broken, Some(&offered), Some(&on(&["linux/arm64"]))).is_none());
        assert!(applying(
            &broken,
            Some(&offered),
            Some(&on(&["linux/amd64", "linux/arm/v7"]))
        )
        .is_some());
        assert!(applying(&broken, None, Some(&on(&["linux/arm64"]))).is_some());
        assert!(applying(&broken, Some(&offered), None).is_some());
        let whole = [Broken {
            platform: None,
            ..broken[0].clone()
        }];
        assert!(applying(&whole, Some(&offered), Some(&on(&["linux/amd64"]))).is_some());
    }

    #[test]
    fn schema1_fails_only_containers_that_can_land_on_containerd_2() {
        let offered = [p("linux/amd64")];
        let old = vec![NodeGroup::new(p("linux/amd64"), 3)];
        let mut mixed = old.clone();
        mixed.push(NodeGroup {
            refuses_schema1: Some("containerd://2.0.4".into()),
            ..NodeGroup::new(p("linux/amd64"), 1)
        });
        assert!(judge(Some(&offered), &[], true, Some(&old)).is_none());
        assert!(judge(Some(&offered), &[], false, Some(&mixed)).is_none());
        let j = judge(Some(&offered), &[], true, Some(&mixed)).unwrap();
        assert_eq!(j.status(), Status::PlatformUnavailable);
        assert!(j.reason().contains("schema 1"), "{}", j.reason());
        assert!(
            j.reason().contains("containerd://2.0.4 (1 node)"),
            "{}",
            j.reason()
        );
        // Unknown nodes: nothing to judge by.
        assert!(judge(Some(&offered), &[], true, None).is_none());
    }

    #[test]
    fn a_broken_digest_stays_broken_until_a_walk_says_otherwise() {
        let c = PathCache::new(64);
        let t = Instant::now();
        let every = Duration::from_secs(60);
        let key = |q: Option<&Platform>| PathCache::key("r", "a", "sha256:x", q);
        let piece = Broken {
            platform: None,
            status: Status::Absent,
            reason: "layer missing".into(),
        };
        let mut found = Walk {
            broken: vec![piece.clone()],
            ..Walk::default()
        };
        c.record(&key, &mut found, t, every);
        assert!(
            !c.fresh(key(None), t, every),
            "a broken path is walked again"
        );
        let mut flaky = Walk {
            unverified: vec!["layer: HTTP 503".into()],
            ..Walk::default()
        };
        c.record(&key, &mut flaky, t + Duration::from_secs(10), every);
        assert_eq!(flaky.broken, std::slice::from_ref(&piece));
        assert!(flaky.note().contains("pull path broken: layer missing"));
        let mut repaired = Walk {
            verified: vec![None],
            ..Walk::default()
        };
        c.record(&key, &mut repaired, t + Duration::from_secs(20), every);
        assert_eq!(repaired.note(), "; pull path verified");
        let mut flaky = Walk {
            unverified: vec!["layer: HTTP 503".into()],
            ..Walk::default()
        };
        c.record(&key, &mut flaky, t + Duration::from_secs(30), every);
        assert_eq!(flaky.broken, []);
        assert!(c.fresh(key(None), t + Duration::from_secs(30), every));
    }

    #[test]
    fn the_cache_expires_and_stays_bounded() {
        let c = PathCache::new(8);
        let t = Instant::now();
        let every = Duration::from_secs(60);
        let k = PathCache::key("r", "a", "sha256:x", Some(&p("linux/amd64")));
        assert_ne!(
            k,
            PathCache::key("r", "b", "sha256:x", Some(&p("linux/amd64")))
        );
        assert_ne!(k, PathCache::key("r", "a", "sha256:x", None));
        c.mark(k, t, every);
        assert!(c.fresh(k, t + Duration::from_secs(59), every));
        assert!(!c.fresh(k, t + every, every));
        for i in 0..100u64 {
            c.mark(i, t, every);
        }
        assert!(c.len() <= 8);
    }
}
