//! Reading registry manifests: the platforms an image offers (an index,
//! OCI image index or Docker manifest list, lists them per entry; a single
//! manifest names a config blob whose `os`, `architecture` and `variant`
//! say it; a schema1 manifest carries its architecture) and the blobs a
//! node downloads to pull it (config and layers). Answers are
//! content-addressed, so what was read is cached by digest.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::image::platform::Platform;

/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Most entries of an index we follow when they carry no platform.
pub const MAX_UNLABELLED_ENTRIES: usize = 8;

/// Most layers of one manifest we read; real images have a few dozen.
pub const MAX_LAYERS: usize = 1024;

/// A manifest, as far as platforms and the pull path are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    /// An index: its entries.
    Index(Vec<Entry>),
    /// A single image manifest: its config blob and layers.
    Image {
        /// The config blob's digest.
        config: String,
        /// The layer blobs' digests, in order, without repeats.
        layers: Vec<String>,
    },
    /// A schema1 manifest, which names its architecture itself.
    Schema1 {
        /// Its architecture.
        platform: Platform,
        /// Its `fsLayers` blob sums, without repeats.
        layers: Vec<String>,
    },
    /// Not a container image (an artifact's manifest, say).
    NotImage(String),
}

/// One entry of an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The manifest's digest.
    pub digest: String,
    /// Its platform, when the index says.
    pub platform: Option<Platform>,
}

#[derive(Deserialize)]
struct RawManifest {
    #[serde(rename = "schemaVersion", default)]
    schema_version: Option<serde_json::Value>,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<RawDescriptor>>,
    #[serde(default)]
    config: Option<RawDescriptor>,
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    layers: Option<Vec<RawDescriptor>>,
    #[serde(rename = "fsLayers", default)]
    fs_layers: Option<Vec<RawFsLayer>>,
}

#[derive(Deserialize)]
struct RawFsLayer {
    #[serde(rename = "blobSum", default)]
    blob_sum: String,
}

#[derive(Deserialize)]
struct RawDescriptor {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    digest: String,
    #[serde(default)]
    platform: Option<RawPlatform>,
}

#[derive(Deserialize, Default)]
struct RawPlatform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

impl RawPlatform {
    fn platform(&self) -> Platform {
        Platform::new(
            &self.os,
            &self.architecture,
            self.variant.as_deref().unwrap_or(""),
        )
    }
}

/// Image config media types; any other config means an artifact.
const IMAGE_CONFIGS: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// Whether `s` is a digest a node would accept (OCI image-spec
/// descriptor grammar: `algorithm:encoded`): `sha256:` with 64 and
/// `sha512:` with 128 lowercase hex digits, as containerd's `Validate`
/// requires. A header that fails this (a Harbor proxy cache's empty
/// `Docker-Content-Digest`) is as good as none.
pub fn valid_digest(s: &str) -> bool {
    let Some((algorithm, hex)) = s.split_once(':') else {
        return false;
    };
    let len = match algorithm {
        "sha256" => 64,
        "sha512" => 128,
        _ => return false,
    };
    hex.len() == len && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The sha256 digest of a manifest's bytes, as a node computes it when the
/// registry sends no digest (containerd's resolver GETs and hashes).
pub fn digest_of(body: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, body);
    let mut out = String::with_capacity(71);
    out.push_str("sha256:");
    for b in d.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Whether a manifest media type is an index (OCI index, Docker list).
pub fn is_index_type(media_type: &str) -> bool {
    let t = media_type.split(';').next().unwrap_or("").trim();
    t.eq_ignore_ascii_case(OCI_INDEX) || t.eq_ignore_ascii_case(DOCKER_LIST)
}

/// The digests each index lists, remembered by the index's digest (a
/// content address: they never change), bounded. Filled when a check
/// reads an index (for its platforms or its pull path).
#[derive(Debug, Default)]
pub struct Listed {
    map: Mutex<HashMap<Arc<str>, Entries>>,
}

/// The digests an index lists.
pub type Entries = Arc<[Box<str>]>;

/// Indexes whose entries are remembered (a few hundred bytes each).
const LISTED_SIZE: usize = 16_384;

impl Listed {
    /// What `digest` lists: `read` when this check read it, else what an
    /// earlier check read, else empty for an answer that was not an index
    /// (`single`), else unknown.
    pub fn of(&self, digest: &str, read: Option<Vec<String>>, single: bool) -> Option<Entries> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entries) = read {
            let entries: Entries = entries.into_iter().map(String::into_boxed_str).collect();
            if map.len() >= LISTED_SIZE {
                map.clear();
            }
            map.insert(digest.into(), entries.clone());
            return Some(entries);
        }
        if let Some(e) = map.get(digest) {
            return Some(e.clone());
        }
        single.then(|| Arc::from(Vec::<Box<str>>::new()))
    }
}

/// Whether a manifest media type is Docker's schema 1 (signed or not),
/// which containerd 2.0 no longer pulls by default and 2.1 not at all.
pub fn is_schema1_type(media_type: &str) -> bool {
    media_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
        .starts_with("application/vnd.docker.distribution.manifest.v1")
}

/// Reads a manifest; `content_type` is the answer's Content-Type header,
/// which wins over the body's `mediaType` (as containerd reads it).
pub fn parse_manifest(content_type: Option<&str>, body: &[u8]) -> Result<Manifest, String> {
    let raw: RawManifest =
        serde_json::from_slice(body).map_err(|e| format!("unreadable manifest: {e}"))?;
    let header = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty() && c != "application/json" && c != "text/plain");
    let kind = header.or(raw.media_type.clone()).unwrap_or_default();
    let is_index = kind == OCI_INDEX || kind == DOCKER_LIST;
    let is_schema1 = kind.starts_with("application/vnd.docker.distribution.manifest.v1")
        || raw.schema_version.as_ref().and_then(|v| v.as_i64()) == Some(1);
    if is_index || (kind.is_empty() && raw.manifests.is_some()) {
        let entries = raw
            .manifests
            .ok_or("index without manifests")?
            .into_iter()
            .filter(|d| !d.digest.is_empty())
            .map(|d| Entry {
                platform: d.platform.as_ref().map(RawPlatform::platform),
                digest: d.digest,
            })
            .collect();
        return Ok(Manifest::Index(entries));
    }
    if is_schema1 {
        let arch = raw.architecture.unwrap_or_default();
        if arch.is_empty() {
            return Err("schema1 manifest without architecture".into());
        }
        let sums = raw.fs_layers.unwrap_or_default().into_iter();
        return Ok(Manifest::Schema1 {
            platform: Platform::new("linux", &arch, ""),
            layers: blobs(sums.map(|l| l.blob_sum))?,
        });
    }
    let config = raw.config.ok_or("manifest without config")?;
    if config.digest.is_empty() {
        return Err("manifest config without digest".into());
    }
    match config.media_type.as_deref() {
        Some(t) if !IMAGE_CONFIGS.contains(&t) => Ok(Manifest::NotImage(format!(
            "not a container image (config type {})",
            t.chars().take(100).collect::<String>()
        ))),
        _ => Ok(Manifest::Image {
            config: config.digest,
            layers: blobs(raw.layers.unwrap_or_default().into_iter().map(|l| l.digest))?,
        }),
    }
}

/// Layer digests in order, each once (a node downloads a repeated layer
/// once); an empty digest is a manifest no node can pull.
fn blobs(digests: impl Iterator<Item = String>) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for d in digests {
        if d.is_empty() {
            return Err("manifest layer without digest".into());
        }
        if out.len() == MAX_LAYERS {
            return Err(format!("manifest with more than {MAX_LAYERS} layers"));
        }
        if !out.contains(&d) {
            out.push(d);
        }
    }
    Ok(out)
}

/// Reads the platform of an image config blob.
pub fn parse_config(body: &[u8]) -> Result<Platform, String> {
    let raw: RawPlatform =
        serde_json::from_slice(body).map_err(|e| format!("unreadable image config: {e}"))?;
    if raw.architecture.trim().is_empty() {
        return Err("image config without architecture".into());
    }
    Ok(raw.platform())
}

/// What is known of a digest's platforms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Platforms {
    /// The image's platforms, sorted and distinct.
    Known(Arc<[Platform]>),
    /// They cannot be known (an artifact, or an answer we could not read):
    /// no platform verdict.
    Unknown(String),
}

/// How long a failure to read a digest's platforms is remembered before
/// the next check asks again.
pub const RETRY_UNKNOWN: Duration = Duration::from_secs(10 * 60);

/// Platforms by digest, bounded; the oldest entry goes first.
pub struct DigestCache {
    inner: Mutex<CacheInner>,
    capacity: usize,
}

struct CacheInner {
    map: HashMap<Arc<str>, (Platforms, Option<Instant>)>,
    order: VecDeque<Arc<str>>,
    /// Distinct platform lists: thousands of digests share a handful
    /// (linux/amd64; linux/amd64 and linux/arm64; ...).
    sets: HashSet<Arc<[Platform]>>,
    /// Size of `sets` that triggers the next sweep.
    sweep_at: usize,
}

impl DigestCache {
    /// A cache of at most `capacity` digests.
    pub fn new(capacity: usize) -> DigestCache {
        DigestCache {
            inner: Mutex::new(CacheInner {
                map: HashMap::new(),
                order: VecDeque::new(),
                sets: HashSet::new(),
                sweep_at: 64,
            }),
            capacity: capacity.max(1),
        }
    }

    /// What is cached for `digest`; a failure past its retry time is gone.
    pub fn get(&self, digest: &str, now: Instant) -> Option<Platforms> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match inner.map.get(digest) {
            Some((_, Some(expiry))) if *expiry <= now => None,
            Some((p, _)) => Some(p.clone()),
            None => None,
        }
    }

    /// Remembers `platforms` for `digest`; a failure that may pass is
    /// remembered for [`RETRY_UNKNOWN`].
    /// Returns what is stored, with a known list shared with equal ones.
    pub fn put(
        &self,
        digest: &str,
        platforms: Platforms,
        lasting: bool,
        now: Instant,
    ) -> Platforms {
        let expiry = (!lasting).then(|| now + RETRY_UNKNOWN);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let platforms = match platforms {
            Platforms::Known(p) => match inner.sets.get(&p) {
                Some(shared) => Platforms::Known(shared.clone()),
                None => {
                    inner.sets.insert(p.clone());
                    Platforms::Known(p)
                }
            },
            unknown => unknown,
        };
        let key: Arc<str> = Arc::from(digest);
        if inner
            .map
            .insert(key.clone(), (platforms.clone(), expiry))
            .is_none()
        {
            inner.order.push_back(key);
        }
        while inner.map.len() > self.capacity {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            inner.map.remove(&old);
        }
        if inner.sets.len() > inner.sweep_at {
            // Lists no entry (and no verdict) holds any more; the next
            // sweep waits until the live ones have doubled.
            inner.sets.retain(|s| Arc::strong_count(s) > 1);
            inner.sweep_at = (2 * inner.sets.len()).max(64);
        }
        platforms
    }
}

/// Sorts and dedups platforms, dropping `unknown/unknown` (attestations).
pub fn distinct(mut v: Vec<Platform>) -> Arc<[Platform]> {
    v.retain(Platform::is_known);
    v.sort();
    v.dedup();
    v.into()
}

#[cfg(test)]
impl DigestCache {
    fn len(&self) -> usize {
        self.inner.lock().unwrap().map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests() {
        let d = digest_of(b"{}");
        assert_eq!(
            d,
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert!(valid_digest(&d));
        assert!(!valid_digest(""));
        assert!(!valid_digest("sha256:"));
        assert!(!valid_digest(&d.to_uppercase()));
        assert!(!valid_digest(&d[..70]));
        assert!(!valid_digest("md5:d41d8cd98f00b204e9800998ecf8427e"));
        assert!(valid_digest(&format!("sha512:{}", "a".repeat(128))));
        assert!(is_schema1_type(
            "application/vnd.docker.distribution.manifest.v1+prettyjws"
        ));
        assert!(is_schema1_type(
            "application/vnd.docker.distribution.manifest.v1+json; charset=utf-8"
        ));
        assert!(!is_schema1_type(DOCKER_MANIFEST));
    }

    #[test]
    fn manifests_of_every_kind() {
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
          {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:a","size":1,"platform":{"architecture":"arm","os":"linux","variant":"v6"}},
          {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:b","size":1,"platform":{"architecture":"unknown","os":"unknown"}},
          {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:c","size":1}]}"#;
        let Manifest::Index(e) = parse_manifest(None, index).unwrap() else {
            panic!()
        };
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].platform.as_ref().unwrap().to_string(), "linux/arm/v6");
        assert!(!e[1].platform.as_ref().unwrap().is_known());
        assert_eq!(e[2].platform, None);
        // The header wins; a list without mediaType in the body.
        let list = br#"{"schemaVersion":2,"manifests":[{"digest":"sha256:a","platform":{"architecture":"amd64","os":"linux"}}]}"#;
        assert!(matches!(
            parse_manifest(Some(&format!("{DOCKER_LIST}; charset=utf-8")), list),
            Ok(Manifest::Index(_))
        ));
        let image = br#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:cfg"},"layers":[{"digest":"sha256:l1"},{"digest":"sha256:l2"},{"digest":"sha256:l1"}]}"#;
        assert_eq!(
            parse_manifest(Some(DOCKER_MANIFEST), image).unwrap(),
            Manifest::Image {
                config: "sha256:cfg".into(),
                layers: vec!["sha256:l1".into(), "sha256:l2".into()],
            }
        );
        let no_layers = br#"{"schemaVersion":2,"config":{"digest":"sha256:cfg"}}"#;
        assert!(matches!(
            parse_manifest(Some(OCI_MANIFEST), no_layers),
            Ok(Manifest::Image { layers, .. }) if layers.is_empty()
        ));
        let blank_layer =
            br#"{"schemaVersion":2,"config":{"digest":"sha256:cfg"},"layers":[{"size":1}]}"#;
        assert!(parse_manifest(Some(OCI_MANIFEST), blank_layer).is_err());
        let helm = br#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.cncf.helm.config.v1+json","digest":"sha256:cfg"}}"#;
        assert!(matches!(
            parse_manifest(Some(OCI_MANIFEST), helm),
            Ok(Manifest::NotImage(_))
        ));
        let s1 = br#"{"schemaVersion":1,"name":"a","tag":"b","architecture":"amd64","fsLayers":[{"blobSum":"sha256:x"},{"blobSum":"sha256:x"}]}"#;
        assert_eq!(
            parse_manifest(None, s1).unwrap(),
            Manifest::Schema1 {
                platform: Platform::new("linux", "amd64", ""),
                layers: vec!["sha256:x".into()],
            }
        );
        assert!(parse_manifest(None, b"[]").is_err());
        assert!(parse_manifest(Some(OCI_MANIFEST), b"{}").is_err());
        assert!(parse_manifest(Some(OCI_INDEX), br#"{"manifests":7}"#).is_err());
    }

    #[test]
    fn configs() {
        let c = br#"{"architecture":"arm64","os":"linux","variant":"v8","rootfs":{}}"#;
        assert_eq!(parse_config(c).unwrap().to_string(), "linux/arm64");
        assert!(parse_config(br#"{"os":"linux"}"#).is_err());
        assert!(parse_config(b"\xff").is_err());
    }

    #[test]
    fn the_cache_is_bounded_and_forgets_failures() {
        let c = DigestCache::new(2);
        let t = Instant::now();
        let known = Platforms::Known(distinct(vec![Platform::new("linux", "amd64", "")]));
        c.put("a", known.clone(), true, t);
        c.put("b", Platforms::Unknown("x".into()), false, t);
        assert_eq!(c.get("a", t), Some(known.clone()));
        assert!(c.get("b", t).is_some());
        assert!(c.get("b", t + RETRY_UNKNOWN).is_none());
        let again = Platforms::Known(distinct(vec![Platform::new("linux", "amd64", "")]));
        let (Platforms::Known(a), Platforms::Known(b)) =
            (known.clone(), c.put("c", again, true, t))
        else {
            panic!()
        };
        assert!(Arc::ptr_eq(&a, &b), "equal lists are shared");
        assert_eq!(c.len(), 2);
        assert!(c.get("a", t).is_none(), "the oldest went first");
    }
}
