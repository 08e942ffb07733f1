//! Image platforms (`os/architecture/variant`) and which a node can run,
//! as containerd decides it (github.com/containerd/platforms: `Normalize`,
//! `Only`'s platform vector and the default matcher).

use std::fmt;

/// A platform, normalised as containerd normalises it: lower case,
/// `aarch64` is `arm64` (whose default variant `v8` is written as none),
/// `x86_64` is `amd64`, `armhf` is `arm/v7`, a bare `arm` is `arm/v7`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    /// `linux`, `windows`, ...
    pub os: String,
    /// `amd64`, `arm64`, `arm`, ...
    pub architecture: String,
    /// `v7`, `v8.2`, ...; empty when none.
    pub variant: String,
}

/// Longest platform field we keep; real ones are a few characters.
const MAX_FIELD: usize = 64;
/// Highest variant number whose older variants are also matched.
const MAX_VARIANT: i32 = 64;

impl Platform {
    /// A normalised platform. An empty os is Linux (the only os a registry
    /// answer leaves out in practice: schema1 manifests carry no os).
    pub fn new(os: &str, architecture: &str, variant: &str) -> Platform {
        let clip = |s: &str| -> String {
            let s = s.trim();
            let mut end = s.len().min(MAX_FIELD);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            // Trimmed again: the cut may leave spaces at the end.
            s[..end].trim_end().to_ascii_lowercase()
        };
        let mut os = clip(os);
        if os.is_empty() {
            os = "linux".into();
        } else if os == "macos" {
            os = "darwin".into();
        }
        let (architecture, variant) = normalize_arch(clip(architecture), clip(variant));
        Platform {
            os,
            architecture,
            variant,
        }
    }

    /// Parses `os/arch[/variant]` (the `check --platform` syntax).
    pub fn parse(spec: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = spec.trim().split('/').collect();
        let valid = |s: &str| {
            !s.is_empty()
                && s.len() <= MAX_FIELD
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        };
        match parts.as_slice() {
            [os, arch] if valid(os) && valid(arch) => Ok(Platform::new(os, arch, "")),
            [os, arch, variant] if valid(os) && valid(arch) && valid(variant) => {
                Ok(Platform::new(os, arch, variant))
            }
            _ => Err(format!(
                "invalid platform {spec:?}: expected os/architecture[/variant], e.g. linux/arm64"
            )),
        }
    }

    /// Whether a node of this platform runs an image built for `image`:
    /// containerd's `platforms.Only(node)`, which also accepts the older
    /// variants a CPU runs (arm64 runs arm/v8 down to arm/v5, arm/v7 runs
    /// v6 and v5, amd64 runs 386).
    pub fn runs(&self, image: &Platform) -> bool {
        self.preference(image).is_some()
    }

    /// How much a node of this platform prefers an image built for
    /// `image` (0 is best), or `None` when it cannot run it: the position
    /// in containerd's platform vector, by which its ordered matcher sorts
    /// an index's entries before pulling the first.
    pub fn preference(&self, image: &Platform) -> Option<usize> {
        if image.os != self.os {
            return None;
        }
        // The vector starts with the node's own platform and lists no
        // other architecture than `also_runs` names: most answers need no
        // list (this runs for every container at every scrape).
        if image.architecture == self.architecture && image.variant == self.variant {
            return Some(0);
        }
        if image.architecture != self.architecture
            && !also_runs(&self.architecture).contains(&image.architecture.as_str())
        {
            return None;
        }
        vector(&self.architecture, &self.variant)
            .iter()
            .position(|(arch, variant)| *arch == image.architecture && *variant == image.variant)
    }

    /// Which of `offered` (an index's platforms, in index order) a node of
    /// this platform pulls: the most preferred, the first of equals (a
    /// stable sort, as containerd's).
    pub fn pick<'a>(&self, offered: impl IntoIterator<Item = &'a Platform>) -> Option<usize> {
        offered
            .into_iter()
            .enumerate()
            .filter_map(|(i, p)| Some((self.preference(p)?, i)))
            .min()
            .map(|(_, i)| i)
    }

    /// Whether this is a real platform: buildx stores attestations in an
    /// index as `unknown/unknown`, which no node runs.
    pub fn is_known(&self) -> bool {
        self.os != "unknown" && self.architecture != "unknown" && !self.architecture.is_empty()
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.variant.is_empty() {
            write!(f, "{}/{}", self.os, self.architecture)
        } else {
            write!(f, "{}/{}/{}", self.os, self.architecture, self.variant)
        }
    }
}

/// containerd's `normalizeArch`.
fn normalize_arch(arch: String, variant: String) -> (String, String) {
    match arch.as_str() {
        "i386" => ("386".into(), String::new()),
        "x86_64" | "x86-64" | "amd64" => {
            let v = if variant == "v1" {
                String::new()
            } else {
                variant
            };
            ("amd64".into(), v)
        }
        "aarch64" | "arm64" => {
            let v = if variant == "8" || variant == "v8" {
                String::new()
            } else {
                variant
            };
            ("arm64".into(), v)
        }
        "armhf" => ("arm".into(), "v7".into()),
        "armel" => ("arm".into(), "v6".into()),
        "arm" => {
            let v = match variant.as_str() {
                "" | "7" => "v7".into(),
                "5" | "6" | "8" => format!("v{variant}"),
                _ => variant,
            };
            ("arm".into(), v)
        }
        _ => (arch, variant),
    }
}

/// The architectures a CPU of `arch` runs besides its own, in the order
/// its vector lists them.
fn also_runs(arch: &str) -> &'static [&'static str] {
    match arch {
        "amd64" => &["386"],
        "arm64" => &["arm"],
        _ => &[],
    }
}

/// The (architecture, variant) pairs a CPU of `arch/variant` runs, in
/// containerd's order (`platformVector`); the variants are normalised.
fn vector(arch: &str, variant: &str) -> Vec<(String, String)> {
    let mut v = vec![(arch.to_string(), variant.to_string())];
    // Variant numbers past any real CPU are matched exactly: containerd
    // would list every lower variant, which for `v999999999` (a user flag
    // or a registry answer) is no list at all.
    let number = |s: &str| {
        s.strip_prefix('v')
            .unwrap_or(s)
            .parse::<i32>()
            .ok()
            .filter(|n| *n <= MAX_VARIANT)
    };
    match arch {
        "amd64" => {
            if let Some(n) = number(variant).filter(|n| *n > 1) {
                for k in (1..n).rev() {
                    // amd64/v1 normalises to no variant.
                    let name = if k == 1 {
                        String::new()
                    } else {
                        format!("v{k}")
                    };
                    v.push(("amd64".into(), name));
                }
            }
            for other in also_runs("amd64") {
                v.push((other.to_string(), String::new()));
            }
        }
        "arm" => {
            if let Some(n) = number(variant).filter(|n| *n > 5) {
                for k in (5..n).rev() {
                    v.push(("arm".into(), format!("v{k}")));
                }
            }
        }
        "arm64" => {
            let variant = if variant.is_empty() { "v8" } else { variant };
            let (major, minor) = match variant.split_once('.') {
                // Go reads the minor only from a four-character `vN.M`.
                Some((ma, mi)) if variant.len() == 4 => {
                    (number(ma), mi.parse::<i32>().unwrap_or(0))
                }
                Some((ma, _)) => (number(ma), 0),
                None => (number(variant), 0),
            };
            if let Some(mut major) = major.filter(|m| *m >= 8) {
                let mut minor = minor;
                // arm64/v8 is written as no variant after normalising.
                let name = |ma: i32, mi: i32| match (ma, mi) {
                    (8, 0) => String::new(),
                    (_, 0) => format!("v{ma}"),
                    _ => format!("v{ma}.{mi}"),
                };
                if major == 9 {
                    for k in (0..minor).rev() {
                        v.push(("arm64".into(), name(9, k)));
                    }
                    // v9.x runs v8.(x+5), up to v8.9.
                    minor = (minor + 5).min(9);
                    major = 8;
                    v.push(("arm64".into(), name(8, minor)));
                }
                for k in (0..minor).rev() {
                    v.push(("arm64".into(), name(major, k)));
                }
            }
            // Every arm64 runs 32-bit arm: v8.x and v9.x as arm/v8.
            let arm = if variant.starts_with("v8.") || variant.starts_with("v9.") {
                "v8"
            } else {
                variant
            };
            for other in also_runs("arm64") {
                v.extend(vector(other, arm));
            }
        }
        _ => {}
    }
    v
}

/// Nodes pods may land on that pull alike: their platform, how many, and
/// their container runtime when it refuses schema 1 manifests.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeGroup {
    /// The nodes' platform.
    pub platform: Platform,
    /// How many nodes (0 for `check --platform`, which has none).
    pub nodes: u32,
    /// `status.nodeInfo.containerRuntimeVersion`, when that runtime cannot
    /// pull schema 1 manifests (see [`refuses_schema1`]).
    pub refuses_schema1: Option<std::sync::Arc<str>>,
}

impl NodeGroup {
    /// `nodes` nodes of `platform` whose runtime pulls schema 1.
    pub fn new(platform: Platform, nodes: u32) -> NodeGroup {
        NodeGroup {
            platform,
            nodes,
            refuses_schema1: None,
        }
    }
}

/// The nodes pods may land on, grouped.
pub type Required = [NodeGroup];

/// Whether a node's container runtime, as `containerRuntimeVersion` names
/// it (`containerd://2.0.4`, `containerd://v2.1.0-k3s1`), cannot pull
/// Docker schema 1 manifests: containerd 2.0 disables them and 2.1 removes
/// them (containerd#9765, #11681). containerd 1.x and CRI-O still pull
/// them; Docker's own removal went with a version whose number says
/// nothing through cri-dockerd, so `docker://` is left as pulling them.
pub fn refuses_schema1(runtime: &str) -> bool {
    let Some(version) = runtime.trim().strip_prefix("containerd://") else {
        return false;
    };
    let version = version.strip_prefix('v').unwrap_or(version);
    let major: String = version.chars().take_while(char::is_ascii_digit).collect();
    major.parse::<u32>().is_ok_and(|m| m >= 2)
}

/// The reason of a `platform_unavailable` verdict for a schema 1 image:
/// the runtimes among `required` that cannot pull it, with their nodes;
/// `None` when every runtime can.
pub fn schema1_refused(required: &Required) -> Option<String> {
    let named = with_nodes(
        required
            .iter()
            .filter_map(|g| Some((g.refuses_schema1.as_deref()?, g.nodes))),
    );
    if named.is_empty() {
        return None;
    }
    Some(format!(
        "the image is a Docker schema 1 manifest, which {} cannot pull (containerd 2.0 disables schema 1 pulls, 2.1 removes them); push it again with a current client",
        named.join(", ")
    ))
}

/// What the inventory tells the registry checker about the cluster's
/// nodes: whether the platform check is on (the nodes are known), and the
/// platforms they run, for which the pull path is verified.
#[derive(Debug, Default)]
pub struct NodePlatforms {
    on: std::sync::atomic::AtomicBool,
    platforms: std::sync::RwLock<Option<std::sync::Arc<[Platform]>>>,
}

impl NodePlatforms {
    /// Known (`on`) with these platforms, or not yet.
    pub fn new(on: bool, platforms: &[Platform]) -> NodePlatforms {
        let n = NodePlatforms::default();
        n.set(on, platforms);
        n
    }

    /// Whether the platforms of images are checked now.
    pub fn is_on(&self) -> bool {
        self.on.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Records what the nodes run; `on` when they are known.
    pub fn set(&self, on: bool, platforms: &[Platform]) {
        let mut list = platforms.to_vec();
        list.sort();
        list.dedup();
        *self.platforms.write().unwrap_or_else(|e| e.into_inner()) =
            (on && !list.is_empty()).then(|| list.into());
        self.on.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// The nodes' platforms, sorted and distinct; `None` while unknown.
    pub fn platforms(&self) -> Option<std::sync::Arc<[Platform]>> {
        self.platforms
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Whether pods may land on a platform that no platform of the image serves.
pub fn lacks(offered: &[Platform], required: &Required) -> bool {
    required.iter().any(|g| !serves(offered, &g.platform))
}

/// The reason of a `platform_unavailable` verdict, naming each platform
/// pods may land on that the image does not serve and how many nodes have
/// it (a count of 0 is not shown: `check --platform` has no nodes); `None`
/// when the image serves them all.
pub fn lacking(offered: &[Platform], required: &Required) -> Option<String> {
    // Groups of one platform differ by runtime: they are named once.
    let lacks = with_nodes(
        required
            .iter()
            .filter(|g| !serves(offered, &g.platform))
            .map(|g| (&g.platform, g.nodes)),
    );
    if lacks.is_empty() {
        return None;
    }
    let has: Vec<String> = offered.iter().map(Platform::to_string).collect();
    Some(format!(
        "the image has no build for {}, where its pods can run; it has {}",
        lacks.join(", "),
        if has.is_empty() {
            "none".to_string()
        } else {
            has.join(", ")
        }
    ))
}

/// `name (3 nodes)` for each distinct name, its node counts added (a count
/// of 0 is not shown: `check` has no nodes), in the order first seen.
fn with_nodes<T: PartialEq + fmt::Display>(items: impl Iterator<Item = (T, u32)>) -> Vec<String> {
    let mut counted: Vec<(T, u32)> = Vec::new();
    for (name, nodes) in items {
        match counted.iter_mut().find(|(n, _)| *n == name) {
            Some((_, total)) => *total += nodes,
            None => counted.push((name, nodes)),
        }
    }
    counted
        .into_iter()
        .map(|(name, n)| match n {
            0 => name.to_string(),
            1 => format!("{name} (1 node)"),
            n => format!("{name} ({n} nodes)"),
        })
        .collect()
}

fn serves(offered: &[Platform], node: &Platform) -> bool {
    offered.iter().any(|p| node.runs(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap()
    }

    #[test]
    fn normalised_as_containerd() {
        assert_eq!(Platform::new("Linux", "x86_64", ""), p("linux/amd64"));
        assert_eq!(Platform::new("linux", "aarch64", "v8"), p("linux/arm64"));
        assert_eq!(Platform::new("linux", "arm64", "8"), p("linux/arm64"));
        assert_eq!(Platform::new("linux", "arm", "").variant, "v7");
        assert_eq!(
            Platform::new("linux", "armhf", "").to_string(),
            "linux/arm/v7"
        );
        assert_eq!(
            Platform::new("linux", "armel", "").to_string(),
            "linux/arm/v6"
        );
        assert_eq!(
            Platform::new("linux", "arm", "6").to_string(),
            "linux/arm/v6"
        );
        assert_eq!(Platform::new("linux", "i386", "x").to_string(), "linux/386");
        assert_eq!(Platform::new("", "amd64", "v1").to_string(), "linux/amd64");
        assert_eq!(Platform::new("macos", "arm64", "").os, "darwin");
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux/arm64/v8/x").is_err());
        assert!(Platform::parse("linux//v8").is_err());
    }

    #[test]
    fn matched_as_containerd_only() {
        let arm64 = p("linux/arm64");
        assert!(arm64.runs(&p("linux/arm64/v8")));
        assert!(arm64.runs(&p("linux/arm/v7")));
        assert!(arm64.runs(&p("linux/arm/v5")));
        assert!(!arm64.runs(&p("linux/arm64/v8.2")));
        assert!(!arm64.runs(&p("linux/amd64")));
        assert!(!arm64.runs(&p("windows/arm64")));
        let v82 = p("linux/arm64/v8.2");
        assert!(v82.runs(&p("linux/arm64/v8.1")));
        assert!(v82.runs(&p("linux/arm64")));
        let v9 = p("linux/arm64/v9");
        assert!(v9.runs(&p("linux/arm64/v8.5")));
        assert!(!v9.runs(&p("linux/arm64/v8.6")));
        assert!(v9.runs(&p("linux/arm64")));
        let armv7 = p("linux/arm/v7");
        assert!(armv7.runs(&p("linux/arm/v6")));
        assert!(!armv7.runs(&p("linux/arm/v8")));
        assert!(!p("linux/arm/v6").runs(&p("linux/arm/v7")));
        let amd64 = p("linux/amd64");
        assert!(amd64.runs(&p("linux/386")));
        assert!(!amd64.runs(&p("linux/amd64/v2")));
        assert!(p("linux/amd64/v3").runs(&p("linux/amd64/v2")));
        assert!(p("linux/amd64/v3").runs(&p("linux/amd64")));
        assert!(!Platform::new("unknown", "unknown", "").is_known());
        // Found by fuzzing: normalising twice changes nothing.
        let long = format!("aa{}4     x", " ".repeat(56));
        let once = Platform::new("linux", &long, "");
        assert_eq!(
            Platform::new(&once.os, &once.architecture, &once.variant),
            once
        );
        // Found by fuzzing: no list of a billion older variants.
        let huge = p("linux/arm/v111111114");
        assert!(huge.runs(&huge));
        assert!(!huge.runs(&p("linux/arm/v7")));
    }

    #[test]
    fn a_node_picks_its_most_preferred_build() {
        let offered = [
            p("linux/arm/v6"),
            p("linux/arm64"),
            p("linux/arm/v7"),
            p("linux/amd64"),
        ];
        assert_eq!(p("linux/arm64").pick(&offered), Some(1));
        assert_eq!(p("linux/arm/v7").pick(&offered), Some(2));
        assert_eq!(p("linux/arm/v6").pick(&offered), Some(0));
        assert_eq!(p("linux/amd64").pick(&offered), Some(3));
        assert_eq!(p("windows/amd64").pick(&offered), None);
        // Without its own build, arm64 takes arm/v7 before arm/v6.
        assert_eq!(p("linux/arm64").pick(&offered[2..3]), Some(0));
        assert_eq!(
            p("linux/arm64").pick(&[p("linux/arm/v6"), p("linux/arm/v7")]),
            Some(1)
        );
        // Equal builds: the first in the index.
        assert_eq!(
            p("linux/amd64").pick(&[p("linux/386"), p("linux/amd64"), p("linux/amd64")]),
            Some(1)
        );
    }

    #[test]
    fn missing_platforms_are_named_with_their_nodes() {
        let offered = [p("linux/amd64")];
        let mut on_containerd2 = NodeGroup::new(p("linux/arm64"), 1);
        on_containerd2.refuses_schema1 = Some("containerd://2.0.4".into());
        let required = [
            NodeGroup::new(p("linux/amd64"), 3),
            NodeGroup::new(p("linux/arm64"), 1),
            on_containerd2,
        ];
        assert!(lacks(&offered, &required));
        assert_eq!(
            lacking(&offered, &required).as_deref(),
            Some("the image has no build for linux/arm64 (2 nodes), where its pods can run; it has linux/amd64")
        );
        let both = [p("linux/amd64"), p("linux/arm64")];
        assert!(!lacks(&both, &required));
        assert_eq!(lacking(&both, &required), None);
    }

    #[test]
    fn runtimes_that_refuse_schema1() {
        for r in [
            "containerd://2.0.4",
            "containerd://v2.1.0",
            "containerd://2.0.5-k3s1.32",
            "containerd://10.0.0",
        ] {
            assert!(refuses_schema1(r), "{r}");
        }
        for r in [
            "containerd://1.7.27",
            "containerd://1.6.0-k3s1",
            "cri-o://1.31.0",
            "docker://28.2.2",
            "containerd://",
            "containerd://x",
            "",
        ] {
            assert!(!refuses_schema1(r), "{r}");
        }
        let group = |runtime: Option<&str>, nodes| NodeGroup {
            platform: p("linux/amd64"),
            nodes,
            refuses_schema1: runtime.map(Into::into),
        };
        assert_eq!(schema1_refused(&[group(None, 4)]), None);
        let why = schema1_refused(&[
            group(None, 4),
            group(Some("containerd://2.0.4"), 2),
            group(Some("containerd://2.1.1"), 1),
        ])
        .unwrap();
        assert!(
            why.contains("containerd://2.0.4 (2 nodes), containerd://2.1.1 (1 node) cannot pull"),
            "{why}"
        );
    }
}
