//! Image references, parsed and normalised as `distribution/reference` does
//! (the code the kubelet and containerd use), so that we check exactly the
//! manifest a node would pull.

use std::fmt;

/// The registry short names resolve to, unless `--default-registry` says otherwise.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's registry API really lives.
const DOCKER_HUB_API: &str = "registry-1.docker.io";
const LEGACY_DOCKER_HUB: &str = "index.docker.io";
/// distribution's `NameTotalLengthMax`.
const NAME_MAX: usize = 255;
const TAG_MAX: usize = 128;

/// A normalised image reference: `registry/repository[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    /// Host and optional port, e.g. `docker.io`, `localhost:5000`, `[::1]:5000`.
    pub registry: String,
    /// Path inside the registry, e.g. `library/nginx`.
    pub repository: String,
    /// The tag; `latest` when the reference names neither tag nor digest.
    pub tag: Option<String>,
    /// `algorithm:hex`; when present it, not the tag, is what gets pulled.
    pub digest: Option<String>,
}

/// Why a string is not a valid image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceError {
    /// The reason, readable by an operator.
    pub reason: String,
}

impl fmt::Display for ReferenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid reference format: {}", self.reason)
    }
}

impl std::error::Error for ReferenceError {}

fn err<T>(reason: impl Into<String>) -> Result<T, ReferenceError> {
    Err(ReferenceError {
        reason: reason.into(),
    })
}

impl Reference {
    /// Parses `s` with `docker.io` as the registry of short names.
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        Reference::parse_with_default(s, DOCKER_HUB)
    }

    /// Parses `s`, sending names without a registry component to `default_registry`.
    ///
    /// As in go-containerregistry (which the Go exporter uses for its
    /// `--default-registry`), `library/` is added to one-component names only
    /// when that registry is Docker Hub.
    pub fn parse_with_default(
        s: &str,
        default_registry: &str,
    ) -> Result<Reference, ReferenceError> {
        if s.is_empty() {
            return err("empty image reference");
        }
        if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return err("a 64-character hexadecimal string is an image ID, not a reference");
        }
        if let Some(c) = s.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return err(format!("contains the character {c:?}"));
        }

        // Split off the registry the way splitDockerDomain does.
        let (mut registry, mut remainder) = match s.find('/') {
            Some(i) if is_registry_component(&s[..i]) => {
                (s[..i].to_string(), s[i + 1..].to_string())
            }
            _ => (default_registry.to_string(), s.to_string()),
        };
        if registry == LEGACY_DOCKER_HUB {
            registry = DOCKER_HUB.to_string();
        }
        if registry == DOCKER_HUB && !remainder.contains('/') {
            remainder = format!("library/{remainder}");
        }
        validate_registry(&registry)?;

        let (name_and_tag, digest) = match remainder.split_once('@') {
            Some((n, d)) => (n, Some(validate_digest(d)?)),
            None => (remainder.as_str(), None),
        };
        let (repository, tag) = match name_and_tag.rfind(':') {
            Some(i) => (
                &name_and_tag[..i],
                Some(validate_tag(&name_and_tag[i + 1..])?),
            ),
            None => (name_and_tag, None),
        };
        validate_repository(repository)?;
        if registry.len() + 1 + repository.len() > NAME_MAX {
            return err(format!(
                "repository name must not be more than {NAME_MAX} characters"
            ));
        }
        let tag = match (tag, &digest) {
            (None, None) => Some("latest".to_string()),
            (t, _) => t,
        };
        Ok(Reference {
            registry,
            repository: repository.to_string(),
            tag,
            digest,
        })
    }

    /// The tag or digest to ask the registry for; the digest wins.
    pub fn manifest_ref(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// The host (and port) serving the registry API for this reference.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// `registry/repository`, the name credentials and mirrors are matched against.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The key under which equal references share one check: a tag and a
    /// digest for the same manifest are the same pull, and so is an image
    /// written with and without its defaults.
    pub fn check_key(&self) -> String {
        format!(
            "{}/{}@{}",
            self.registry,
            self.repository,
            self.manifest_ref()
        )
    }

    /// Rewrites the registry and repository, keeping tag and digest.
    fn with_name(&self, registry: String, repository: String) -> Reference {
        Reference {
            registry,
            repository,
            tag: self.tag.clone(),
            digest: self.digest.clone(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Whether the first path component names a registry host, as
/// `splitDockerDomain` decides: a dot, a colon, `localhost`, or any upper
/// case letter (it cannot be a repository path, so it is a host: `Foo/bar`
/// is a valid name whose pull fails on the lookup of the host `Foo`).
fn is_registry_component(first: &str) -> bool {
    first.contains(['.', ':'])
        || first == "localhost"
        || first.chars().any(|c| c.is_ascii_uppercase())
}

/// distribution's `domainAndPort`: host name labels of letters (either case),
/// digits and inner hyphens, or a bracketed IPv6 address, then an optional port.
fn validate_registry(registry: &str) -> Result<(), ReferenceError> {
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        // IPv6 literal, as distribution/reference v0.6 accepts.
        let Some(end) = rest.find(']') else {
            return err(format!(
                "unterminated IPv6 address in registry {registry:?}"
            ));
        };
        let addr = &rest[..end];
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return err(format!("invalid IPv6 address in registry {registry:?}"));
        }
        let after = &rest[end + 1..];
        match after.strip_prefix(':') {
            Some(port) => (None, Some(port)),
            None if after.is_empty() => (None, None),
            None => return err(format!("invalid registry {registry:?}")),
        }
    } else {
        match registry.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(registry), None),
        }
    };
    if let Some(host) = host {
        let ok = !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if !ok {
            return err(format!("invalid registry host {registry:?}"));
        }
    }
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return err(format!("invalid port in registry {registry:?}"));
        }
    }
    Ok(())
}

fn validate_repository(repository: &str) -> Result<(), ReferenceError> {
    if repository.is_empty() {
        return err("repository name is empty");
    }
    if repository.chars().any(|c| c.is_ascii_uppercase()) {
        return err(format!(
            "repository name must be lowercase (found {repository:?})"
        ));
    }
    for component in repository.split('/') {
        if !is_path_component(component) {
            return err(format!(
                "invalid repository path component {component:?} (allowed: lowercase letters, digits, and '.', '_', '__' or '-' between them)"
            ));
        }
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn is_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // One separator (`[._]`, `__` or `-+`), and then a letter or digit:
        // `dock_.er` and `dock-.er` are two separators in a row, not one.
        let start = i;
        let sep = b[i];
        while i < b.len() && b[i] == sep {
            i += 1;
        }
        let run = i - start;
        let ok = match sep {
            b'.' => run == 1,
            b'_' => run <= 2,
            b'-' => true,
            _ => false,
        };
        if !ok || !b.get(i).is_some_and(|&x| alnum(x)) {
            return false;
        }
    }
    true
}

/// `[\w][\w.-]{0,127}`
fn validate_tag(tag: &str) -> Result<String, ReferenceError> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let ok = tag.len() <= TAG_MAX
        && tag.chars().next().is_some_and(word)
        && tag.chars().all(|c| word(c) || c == '.' || c == '-');
    if ok {
        Ok(tag.to_string())
    } else {
        err(format!(
            "invalid tag {tag:?} (up to {TAG_MAX} of letters, digits, '_', '.', '-', not starting with '.' or '-')"
        ))
    }
}

/// `algorithm:hex` with a registered algorithm and the matching hex length.
fn validate_digest(digest: &str) -> Result<String, ReferenceError> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return err(format!(
            "invalid digest {digest:?} (expected algorithm:hex)"
        ));
    };
    let len = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return err(format!("unsupported digest algorithm {algorithm:?}")),
    };
    if hex.len() != len || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return err(format!(
            "invalid {algorithm} digest: expected {len} lowercase hex characters"
        ));
    }
    Ok(digest.to_string())
}

/// `--image-mirror original=mirror` rules: a reference whose `registry/repository`
/// starts with `original` at a component boundary is pulled from `mirror`.
#[derive(Debug, Clone, Default)]
pub struct Mirrors {
    /// (original, mirror), longest original first.
    rules: Vec<(String, String)>,
}

/// An image and the mirrors to try before its own registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirrored {
    /// The image as named: credentials are looked up by this name, and its
    /// registry is tried last.
    pub reference: Reference,
    /// The image on each mirror to try first, in order, with the
    /// `original=mirror` rule that made it.
    pub mirrors: Vec<(Reference, String)>,
}

impl Mirrored {
    /// An image with no mirror.
    pub fn direct(reference: Reference) -> Mirrored {
        Mirrored {
            reference,
            mirrors: Vec::new(),
        }
    }

    /// Every place to try, in containerd's order (remotes/docker
    /// resolver.go: the mirrors, then the upstream), with the rule used.
    pub fn candidates(&self) -> impl Iterator<Item = (&Reference, Option<&str>)> {
        self.mirrors
            .iter()
            .map(|(r, rule)| (r, Some(rule.as_str())))
            .chain(std::iter::once((&self.reference, None)))
    }

    /// The candidate served by `api_host`, for reports.
    pub fn on_host(&self, api_host: &str) -> (&Reference, Option<&str>) {
        self.candidates()
            .find(|(r, _)| r.api_host() == api_host)
            .unwrap_or((&self.reference, None))
    }
}

impl Mirrors {
    /// Parses `original=mirror` specifications.
    pub fn parse(specs: &[String]) -> Result<Mirrors, String> {
        let mut rules = Vec::new();
        for spec in specs {
            let Some((original, mirror)) = spec.split_once('=') else {
                return Err(format!("--image-mirror {spec:?}: expected original=mirror"));
            };
            let original = normalize_prefix(original.trim())
                .map_err(|e| format!("--image-mirror {spec:?}: original: {e}"))?;
            let mirror = mirror.trim().trim_end_matches('/').to_string();
            if mirror.is_empty() {
                return Err(format!("--image-mirror {spec:?}: mirror is empty"));
            }
            let (registry, path) = mirror.split_once('/').unwrap_or((&mirror, ""));
            validate_registry(registry)
                .map_err(|e| format!("--image-mirror {spec:?}: mirror: {}", e.reason))?;
            if !path.is_empty() {
                validate_repository(path)
                    .map_err(|e| format!("--image-mirror {spec:?}: mirror: {}", e.reason))?;
            }
            rules.push((original, mirror));
        }
        // Longest prefix first; rules of equal length keep their flag order.
        rules.sort_by_key(|r| std::cmp::Reverse(r.0.len()));
        Ok(Mirrors { rules })
    }

    /// Every matching rule, longest prefix first, then the image itself.
    pub fn apply(&self, reference: &Reference) -> Mirrored {
        let name = reference.name();
        let mut mirrors = Vec::new();
        for (original, mirror) in &self.rules {
            let Some(rest) = name.strip_prefix(original.as_str()) else {
                continue;
            };
            if !(rest.is_empty() || rest.starts_with('/')) {
                continue;
            }
            let target = format!("{mirror}{rest}");
            let (registry, repository) = target.split_once('/').unwrap_or((&target, ""));
            // A rewrite that makes the name invalid (too long) cannot be
            // pulled from the mirror; containerd goes on to the next host.
            if repository.is_empty() || target.len() > NAME_MAX {
                continue;
            }
            let on_mirror = reference.with_name(registry.to_string(), repository.to_string());
            if on_mirror != *reference && !mirrors.iter().any(|(r, _)| *r == on_mirror) {
                mirrors.push((on_mirror, format!("{original}={mirror}")));
            }
        }
        Mirrored {
            reference: reference.clone(),
            mirrors,
        }
    }
}

/// Normalises the `original` side of a mirror rule: `index.docker.io` is
/// `docker.io`, and a bare host stays a bare host.
fn normalize_prefix(original: &str) -> Result<String, String> {
    let original = original.trim_end_matches('/');
    let (registry, path) = original.split_once('/').unwrap_or((original, ""));
    let registry = if registry == LEGACY_DOCKER_HUB {
        DOCKER_HUB
    } else {
        registry
    };
    if registry.is_empty() {
        return Err("empty".into());
    }
    validate_registry(registry).map_err(|e| e.reason)?;
    if path.is_empty() {
        Ok(registry.to_string())
    } else {
        validate_repository(path).map_err(|e| e.reason)?;
        Ok(format!("{registry}/{path}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalises_like_distribution() {
        let cases: &[(&str, &str)] = &[
            ("nginx", "docker.io/library/nginx:latest"),
            ("nginx:1.25", "docker.io/library/nginx:1.25"),
            ("docker.io/nginx", "docker.io/library/nginx:latest"),
            ("index.docker.io/nginx", "docker.io/library/nginx:latest"),
            (
                "index.docker.io/library/nginx:1",
                "docker.io/library/nginx:1",
            ),
            ("foo/bar", "docker.io/foo/bar:latest"),
            ("foo:5000", "docker.io/library/foo:5000"),
            ("localhost/foo", "localhost/foo:latest"),
            ("localhost:5000/foo/bar:v1", "localhost:5000/foo/bar:v1"),
            ("quay.io/coreos/etcd:v3.5.0", "quay.io/coreos/etcd:v3.5.0"),
            (
                "Registry.Example.com/a/b",
                "Registry.Example.com/a/b:latest",
            ),
            ("[::1]:5000/foo", "[::1]:5000/foo:latest"),
            (
                "127.0.0.1:5000/a__b/c-d/e--f.g:T_a.g-1",
                "127.0.0.1:5000/a__b/c-d/e--f.g:T_a.g-1",
            ),
        ];
        for (input, want) in cases {
            let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), *want, "{input}");
            // A normalised reference parses again to itself.
            assert_eq!(
                Reference::parse(&r.to_string()).unwrap(),
                r,
                "{input} round trip"
            );
        }
    }

    #[test]
    fn digest_wins_over_tag() {
        let r = Reference::parse(&format!("nginx:1.25@{D}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("1.25"));
        assert_eq!(r.manifest_ref(), D);
        let only = Reference::parse(&format!("nginx@{D}")).unwrap();
        assert_eq!(only.tag, None);
        assert_eq!(only.to_string(), format!("docker.io/library/nginx@{D}"));
        assert_eq!(r.check_key(), only.check_key());
        assert_eq!(
            Reference::parse("nginx").unwrap().check_key(),
            Reference::parse("docker.io/library/nginx:latest")
                .unwrap()
                .check_key()
        );
    }

    #[test]
    fn rejects_invalid_references() {
        let long = format!("a/{}", "b".repeat(260));
        let cases: &[&str] = &[
            "",
            "Nginx",
            "docker.io/Library/nginx",
            "nginx:",
            "nginx:.bad",
            "nginx:-bad",
            &format!("nginx:{}", "t".repeat(129)),
            "nginx@sha256:abc",
            "nginx@md5:0123456789abcdef0123456789abcdef",
            &format!("nginx@{}", D.to_uppercase().replace("SHA", "sha")),
            "nginx@",
            "a//b",
            "a/b/",
            "/a",
            "a..b",
            "a___b",
            "-a",
            "a-",
            "registry.io:port/a",
            "registry.io:/a",
            "-registry.io/a",
            "[::1/a",
            "nginx latest",
            "ng\u{0}inx",
            "ünïcode",
            &long,
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ];
        for input in cases {
            assert!(
                Reference::parse(input).is_err(),
                "{input:?} should be rejected"
            );
        }
    }

    /// Vectors from distribution/reference's normalize_test.go
    /// (TestValidateReferenceName, TestValidateRemoteName,
    /// TestParseRepositoryInfo, TestNormalizedSplitHostname) and
    /// reference_test.go (TestReferenceParse), read through ParseNormalizedNamed.
    #[test]
    fn distribution_test_vectors() {
        let hex = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a";
        let f64 = "f".repeat(64);
        let valid: &[(&str, &str)] = &[
            ("docker/docker", "docker.io/docker/docker:latest"),
            ("library/debian", "docker.io/library/debian:latest"),
            ("debian", "docker.io/library/debian:latest"),
            ("docker.io/debian", "docker.io/library/debian:latest"),
            (
                "index.docker.io/docker/docker",
                "docker.io/docker/docker:latest",
            ),
            (
                "127.0.0.1:5000/library/debian",
                "127.0.0.1:5000/library/debian:latest",
            ),
            ("192.168.0.1", "docker.io/library/192.168.0.1:latest"),
            ("192.168.0.1:80", "docker.io/library/192.168.0.1:80"),
            ("192.168.0.1:8/debian", "192.168.0.1:8/debian:latest"),
            ("[fc00::1]:5000/docker", "[fc00::1]:5000/docker:latest"),
            (
                "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
                "[fc00:1:2:3:4:5:6:7]:5000/library/debian:latest",
            ),
            ("[2001:db8::1]/repo", "[2001:db8::1]/repo:latest"),
            ("Docker/docker", "Docker/docker:latest"),
            ("DOCKER/docker", "DOCKER/docker:latest"),
            ("Foo/bar", "Foo/bar:latest"),
            (
                "docker-rules/docker",
                "docker.io/docker-rules/docker:latest",
            ),
            (
                "docker---rules/docker",
                "docker.io/docker---rules/docker:latest",
            ),
            ("d/docker", "docker.io/d/docker:latest"),
            ("jess/t", "docker.io/jess/t:latest"),
            ("dock__er/docker", "docker.io/dock__er/docker:latest"),
            ("test_com/foo", "docker.io/test_com/foo:latest"),
            ("test-com:8080/foo", "test-com:8080/foo:latest"),
            ("xn--n3h.com:18080/foo", "xn--n3h.com:18080/foo:latest"),
            ("test.com:5000", "docker.io/library/test.com:5000"),
            ("foo_bar.com:8080", "docker.io/library/foo_bar.com:8080"),
            ("foo/foo_bar.com:8080", "docker.io/foo/foo_bar.com:8080"),
            (
                "lowercase:Uppercase",
                "docker.io/library/lowercase:Uppercase",
            ),
            (
                "b.gcr.io/test.example.com/my-app:test.example.com",
                "b.gcr.io/test.example.com/my-app:test.example.com",
            ),
            (
                "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
                "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
            ),
            ("store/foo/bar", "docker.io/store/foo/bar:latest"),
            ("library/foo/bar", "docker.io/library/foo/bar:latest"),
        ];
        for (input, want) in valid {
            let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), *want, "{input}");
        }
        let with_hex = format!("docker.io/{hex}");
        assert!(Reference::parse(&with_hex).is_ok());
        let digest = format!("test:5000/repo:tag@sha256:{f64}");
        let r = Reference::parse(&digest).unwrap();
        assert_eq!(
            (r.registry.as_str(), r.tag.as_deref()),
            ("test:5000", Some("tag"))
        );
        let too_long = format!("{}a:tag", "a/".repeat(128));
        let namespace_too_long = format!("{}/docker", "this_is_not_a_valid_namespace".repeat(9));
        let short_digest = format!("repo@sha256:{}", "f".repeat(34));
        let bad_algorithm = format!("validname@invaliddigest:{f64}");
        let invalid: &[&str] = &[
            "https://github.com/docker/docker",
            "docker/Docker",
            "-docker",
            "-docker/docker",
            "-docker.io/docker/docker",
            "docker///docker",
            "docker.io/docker/Docker",
            "docker.io/docker///docker",
            "[fc00::1]",
            "[fc00::1]:5000",
            "fc00::1:5000/debian",
            "[fe80::1%eth0]:5000/debian",
            "[2001:db8:3:4::192.0.2.33]:5000/debian",
            hex,
            "docker-/docker",
            "-docker-/docker",
            "____/____",
            "_docker/_docker",
            "dock..er/docker",
            "dock_.er/docker",
            "dock-.er/docker",
            "docker/",
            ":justtag",
            "Uppercase:tag",
            "test:5000/Uppercase/lowercase:tag",
            "aa/asdf$$^/aa",
            "",
            &too_long,
            &namespace_too_long,
            &short_digest,
            &bad_algorithm,
        ];
        for input in invalid {
            assert!(
                Reference::parse(input).is_err(),
                "{input:?} should be rejected"
            );
        }
    }

    #[test]
    fn default_registry_applies_to_short_names_only() {
        let r = Reference::parse_with_default("nginx", "registry.local").unwrap();
        assert_eq!(r.to_string(), "registry.local/nginx:latest");
        let r = Reference::parse_with_default("quay.io/a/b", "registry.local").unwrap();
        assert_eq!(r.registry, "quay.io");
        let r = Reference::parse_with_default("docker.io/nginx", "registry.local").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/nginx:latest");
    }

    #[test]
    fn api_host_of_docker_hub() {
        assert_eq!(
            Reference::parse("nginx").unwrap().api_host(),
            "registry-1.docker.io"
        );
        assert_eq!(
            Reference::parse("quay.io/a/b").unwrap().api_host(),
            "quay.io"
        );
    }

    #[test]
    fn mirrors_longest_prefix_at_component_boundary() {
        let m = Mirrors::parse(&[
            "docker.io=mirror.local".into(),
            "index.docker.io/library=mirror.local/hub-official".into(),
            "quay.io/team=q.local/t".into(),
            "quay.io/team=q2.local/t".into(),
        ])
        .unwrap();
        let apply = |s: &str| m.apply(&Reference::parse(s).unwrap());
        let hosts =
            |m: &Mirrored| -> Vec<String> { m.candidates().map(|(r, _)| r.to_string()).collect() };
        let a = apply("nginx:1");
        // Every matching rule, longest first, then the image's own registry.
        assert_eq!(
            hosts(&a),
            [
                "mirror.local/hub-official/nginx:1",
                "mirror.local/library/nginx:1",
                "docker.io/library/nginx:1"
            ]
        );
        assert_eq!(
            a.candidates().next().unwrap().1,
            Some("docker.io/library=mirror.local/hub-official")
        );
        assert_eq!(a.reference.to_string(), "docker.io/library/nginx:1");
        assert_eq!(
            hosts(&apply("foo/bar")),
            ["mirror.local/foo/bar:latest", "docker.io/foo/bar:latest"]
        );
        // Rules of equal length keep their flag order.
        assert_eq!(
            hosts(&apply("quay.io/team/x")),
            [
                "q.local/t/x:latest",
                "q2.local/t/x:latest",
                "quay.io/team/x:latest"
            ]
        );
        // "quay.io/teammate" does not start with "quay.io/team" at a component boundary.
        let b = apply("quay.io/teammate/x");
        assert!(b.mirrors.is_empty());
        assert_eq!(
            b.on_host("quay.io").0.to_string(),
            "quay.io/teammate/x:latest"
        );
        // Found by fuzzing: a rewrite past the 255-character limit is not used.
        let long = format!("quay.io/team/{}", "a".repeat(230));
        let m2 = Mirrors::parse(&["quay.io=mirror.example.com/a/very/long/prefix".into()]).unwrap();
        let r = Reference::parse(&long).unwrap();
        assert!(m2.apply(&r).mirrors.is_empty());
        assert!(Mirrors::parse(&["nomirror".into()]).is_err());
        assert!(Mirrors::parse(&["docker.io=".into()]).is_err());
        assert!(Mirrors::parse(&["Bad Host=x.io".into()]).is_err());
    }
}
