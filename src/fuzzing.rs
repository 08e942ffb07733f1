//! Property checks on every parser that reads input from outside: image
//! references, WWW-Authenticate headers, docker configs and key matching,
//! kubeconfig files, watch streams, dates. The cargo-fuzz targets in fuzz/
//! call these, and a test replays the checked-in corpora through them on the
//! stable toolchain. Each panics when a property does not hold.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine;

use crate::credentials::{glob_match, parse_docker_config, ConfigFormat, Keyring};
use crate::image::reference::{Mirrors, Reference};
use crate::kube::resources::{meta, Kind, Resource};
use crate::kube::watch::{decode_event, WatchEvent};
use crate::registry::challenge;
use crate::registry::outcome::{parse_retry_after, MAX_RETRY_AFTER};
use crate::sys::timestamp::{format_rfc3339_millis, parse_http_date, parse_rfc3339};

/// Names of the targets, as in fuzz/fuzz_targets/.
pub const TARGETS: &[&str] = &[
    "reference",
    "www_authenticate",
    "docker_config",
    "kubeconfig",
    "watch_event",
    "dates",
    "no_proxy",
    "credential_provider",
    "query",
    "manifest",
    "rate_limit",
    "registry_answer",
    "web_config",
    "http_head",
];

/// Runs the target called `name` on `data`.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "reference" => reference(data),
        "www_authenticate" => www_authenticate(data),
        "docker_config" => docker_config(data),
        "kubeconfig" => kubeconfig(data),
        "watch_event" => watch_event(data),
        "dates" => dates(data),
        "no_proxy" => no_proxy(data),
        "credential_provider" => credential_provider(data),
        "query" => query(data),
        "manifest" => manifest(data),
        "rate_limit" => rate_limit(data),
        "registry_answer" => registry_answer(data),
        "web_config" => web_config(data),
        "http_head" => http_head(data),
        other => panic!("no fuzz target {other}"),
    }
}

/// A normalised reference parses again to itself; nothing panics.
pub fn reference(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = Reference::parse(s) {
        let text = r.to_string();
        let again = Reference::parse(&text)
            .unwrap_or_else(|e| panic!("{text:?} (from {s:?}) does not parse again: {e}"));
        assert_eq!(again, r, "{s:?}");
        assert!(!r.repository.is_empty() && !r.registry.is_empty());
        assert!(
            r.tag.is_some() || r.digest.is_some(),
            "every reference names a tag or a digest"
        );
        assert_eq!(
            r.manifest_ref(),
            r.digest.as_deref().or(r.tag.as_deref()).unwrap()
        );
        let mirrors =
            Mirrors::parse(&["docker.io=mirror.example.com/hub".to_string()]).expect("valid rule");
        let m = mirrors.apply(&r);
        assert_eq!(m.reference, r, "the image itself is always tried last");
        for (on_mirror, _) in m.candidates() {
            assert_eq!(
                on_mirror.manifest_ref(),
                r.manifest_ref(),
                "mirrors keep tag and digest"
            );
            Reference::parse(&on_mirror.to_string()).expect("a mirrored reference is valid");
        }
    }
    let _ = Reference::parse_with_default(s, "registry.example.com:5000");
}

/// Registry answers: challenges have lower-case schemes and parameter
/// names; Retry-After and token lifetimes stay bounded.
pub fn www_authenticate(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    for c in challenge::parse(&s) {
        assert!(!c.scheme.is_empty());
        assert_eq!(c.scheme, c.scheme.to_ascii_lowercase());
        for (k, _) in &c.params {
            assert_eq!(*k, k.to_ascii_lowercase());
        }
    }
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    if let Ok(t) = crate::registry::token::parse_token_response(data, now) {
        assert!(!t.token.is_empty());
        assert!(
            t.lifetime <= Duration::from_secs(86_400),
            "token lifetimes are bounded"
        );
    }
    let wait = parse_retry_after(Some(&s), now);
    assert!(
        wait >= Duration::from_secs(1) && wait <= MAX_RETRY_AFTER,
        "{s:?} -> {wait:?}"
    );
}

/// Parsing never reveals a password in Debug output; matching never panics;
/// a glob without special characters matches only itself.
pub fn docker_config(data: &[u8]) {
    let (pattern, subject) = data.split_at(data.len() / 2);
    let special = pattern
        .iter()
        .any(|b| matches!(b, b'*' | b'?' | b'[' | b'\\'));
    let matched = glob_match(pattern, subject);
    if !special {
        assert_eq!(matched, pattern == subject);
    }
    for format in [ConfigFormat::DockerConfigJson, ConfigFormat::DockerCfg] {
        let Ok(parsed) = parse_docker_config("fuzz", data, format) else {
            continue;
        };
        for c in &parsed.credentials {
            // What is shown of a credential does not depend on its password.
            let other = crate::credentials::Credential::new(
                c.source.clone(),
                c.key.clone(),
                c.username.clone(),
                "a different password",
            );
            assert_eq!(
                format!("{c:?}"),
                format!("{other:?}"),
                "Debug shows the password"
            );
            assert_eq!(
                c.describe(),
                other.describe(),
                "describe shows the password"
            );
            let header = c.basic_authorization();
            base64::engine::general_purpose::STANDARD
                .decode(header.trim_start_matches("Basic "))
                .expect("valid base64");
        }
        // What was decoded survives a round trip through the plain fields.
        let mut auths = serde_json::Map::new();
        for c in &parsed.credentials {
            auths.insert(
                c.key.clone(),
                serde_json::json!({"username": c.username, "password": c.password_for_tests()}),
            );
        }
        let again = serde_json::json!({ "auths": auths }).to_string();
        let reparsed =
            parse_docker_config("fuzz", again.as_bytes(), ConfigFormat::DockerConfigJson)
                .expect("plain username/password entries always parse");
        let last_per_key: std::collections::HashMap<&str, (&str, &str)> = parsed
            .credentials
            .iter()
            .map(|c| {
                (
                    c.key.as_str(),
                    (c.username.as_str(), c.password_for_tests()),
                )
            })
            .collect();
        for c in &reparsed.credentials {
            assert_eq!(
                last_per_key.get(c.key.as_str()),
                Some(&(c.username.as_str(), c.password_for_tests())),
                "round trip"
            );
        }
        let keyring = Keyring::new(parsed.credentials.into_iter().map(Arc::new));
        for image in [
            "nginx",
            "quay.io/a/b",
            "localhost:5000/x",
            "r.example.com/team/app:1",
        ] {
            let r = Reference::parse(image).expect("valid");
            let found = keyring.lookup(&r);
            for (i, a) in found.iter().enumerate() {
                assert!(
                    !found[i + 1..].iter().any(|b| b.same_secret(a)),
                    "an identity is tried once"
                );
            }
        }
    }
}

/// Kubeconfig text never panics the loader.
pub fn kubeconfig(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ =
        crate::kube::config::from_text(&text, Path::new("/nonexistent/kiae-fuzz/kubeconfig"), None);
    let _ = crate::sys::yaml::parse_yaml_documents(&text);
}

/// Watch lines decode or fail cleanly, and so do the objects in them.
pub fn watch_event(data: &[u8]) {
    for line in data.split(|b| *b == b'\n') {
        if let Ok(Some(WatchEvent::Upsert(raw) | WatchEvent::Deleted(raw))) = decode_event(line) {
            let _ = meta(raw);
            for r in [
                Resource::Workload(Kind::Deployment),
                Resource::Workload(Kind::CronJob),
                Resource::Workload(Kind::Rollout),
                Resource::Workload(Kind::Custom(custom_kind())),
                Resource::Workload(Kind::Job),
                Resource::Pods(crate::kube::resources::Covering::built_in()),
                Resource::DockerConfigJsonSecrets,
                Resource::ServiceAccounts,
                Resource::Namespaces,
                Resource::Nodes,
            ] {
                match r.decode(raw) {
                    // Only a Rollout refers to another workload's template.
                    Ok(crate::kube::resources::Object::Workload(w)) => {
                        assert!(w.template_ref.is_none() || w.kind == Kind::Rollout);
                        assert!(w.running.is_none() || w.kind == Kind::Pod);
                        if let Some(run) = &w.running {
                            running_holds(raw, run);
                        }
                        opt_out_holds(raw, &w);
                    }
                    // A covered running pod: only what it runs.
                    Ok(crate::kube::resources::Object::Running(_, run)) => running_holds(raw, &run),
                    // Labels are looked up by binary search; only taints
                    // that filter are kept.
                    Ok(crate::kube::resources::Object::Node(_, n)) => {
                        assert!(n.labels.windows(2).all(|w| w[0].0 < w[1].0));
                        assert!(n
                            .taints
                            .iter()
                            .all(|t| t.effect == "NoSchedule" || t.effect == "NoExecute"));
                        if let Some(p) = &n.platform {
                            assert!(p.runs(p));
                        }
                        // Only a runtime that refuses schema 1 is kept, as
                        // the object names it.
                        if let Some(r) = &n.refuses_schema1 {
                            assert!(crate::image::platform::refuses_schema1(r));
                            let v: serde_json::Value = serde_json::from_str(raw).unwrap();
                            let named = &v["status"]["nodeInfo"]["containerRuntimeVersion"];
                            assert_eq!(named.as_str(), Some(&**r));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// What a running pod is said to run: its phase is Running and it is not
/// being deleted; every digest is a digest some container status names
/// after an `@`; its owner has a name.
fn running_holds(raw: &str, run: &crate::kube::resources::Running) {
    let v: serde_json::Value = serde_json::from_str(raw).unwrap();
    assert_eq!(v["status"]["phase"], "Running");
    assert!(v["metadata"]["deletionTimestamp"].is_null());
    assert!(!run.owner.name.is_empty());
    assert!(!run.digests.is_empty());
    let ids: Vec<&str> = ["containerStatuses", "initContainerStatuses"]
        .iter()
        .filter_map(|k| v["status"][k].as_array())
        .flatten()
        .filter_map(|c| c["imageID"].as_str())
        .collect();
    for (_, d) in &run.digests {
        assert!(crate::registry::manifest::valid_digest(d));
        assert!(
            ids.iter().any(|id| id.trim().ends_with(&format!("@{d}"))),
            "{d}"
        );
    }
}

/// What the decoder kept of a workload, Pod or Job agrees with the object
/// read as plain JSON: nothing annotated `ignore` or named by
/// `ignore-containers`, nothing being deleted, no pod a built-in controller
/// covers or that finished, no Job of a CronJob or finished.
fn opt_out_holds(raw: &str, w: &crate::kube::resources::Workload) {
    use crate::kube::template::{IGNORE_ANNOTATION, IGNORE_CONTAINERS_ANNOTATION};
    let Ok(v) = serde_json::from_str::<serde_json::Value>(raw) else {
        return;
    };
    let meta = &v["metadata"];
    let annotation = |k: &str| meta["annotations"][k].as_str();
    assert!(
        annotation(IGNORE_ANNOTATION) != Some("true"),
        "an ignored object was kept"
    );
    if let Some(names) = annotation(IGNORE_CONTAINERS_ANNOTATION) {
        for n in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            assert!(
                w.containers.iter().all(|c| &*c.container != n),
                "ignored container {n:?} kept"
            );
        }
    }
    assert!(
        meta.get("deletionTimestamp").is_none_or(|d| d.is_null()),
        "an object being deleted was kept"
    );
    let controller = meta["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|o| o["controller"] == serde_json::Value::Bool(true));
    let owner = controller.map(|o| (o["apiVersion"].as_str(), o["kind"].as_str()));
    match w.kind {
        Kind::Pod => {
            assert!(!matches!(
                owner,
                Some((
                    Some("apps/v1"),
                    Some("ReplicaSet" | "StatefulSet" | "DaemonSet")
                )) | Some((Some("batch/v1"), Some("Job")))
            ));
            assert!(!matches!(
                v["status"]["phase"].as_str(),
                Some("Succeeded" | "Failed")
            ));
        }
        Kind::Job => {
            assert!(owner != Some((Some("batch/v1"), Some("CronJob"))));
            let done = v["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Complete" && c["status"] == "True");
            assert!(!done, "a complete Job was kept");
        }
        _ => {}
    }
}

/// RFC 3339 times survive formatting and parsing; HTTP dates never panic.
pub fn dates(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    let _ = parse_http_date(&s);
    if let Some(t) = parse_rfc3339(&s) {
        let max = UNIX_EPOCH + Duration::from_secs(253_402_300_799); // 9999-12-31T23:59:59Z
        if t >= UNIX_EPOCH && t <= max {
            let text = format_rfc3339_millis(t);
            let back = parse_rfc3339(&text).unwrap_or_else(|| panic!("{text:?} does not parse"));
            let diff = t.duration_since(back).unwrap_or_else(|e| e.duration());
            assert!(diff < Duration::from_millis(1), "{s:?} -> {text:?}");
        }
    }
}

/// NO_PROXY lists (first line) against a host (second line): nothing
/// panics, loopback is never proxied, `*` bypasses everything, and a plain
/// domain entry bypasses that domain.
pub fn no_proxy(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (list, host) = text.split_once('\n').unwrap_or((&text, "example.com"));
    let np = crate::registry::proxy::NoProxy::parse(list);
    for port in [80, 443, 5000] {
        let _ = np.use_proxy(host, port);
        assert!(!np.use_proxy("localhost", port));
        assert!(!np.use_proxy("127.0.0.1", port));
        assert!(!np.use_proxy("::1", port));
    }
    let mut with_all = list.to_string();
    with_all.push_str(",*");
    assert!(!crate::registry::proxy::NoProxy::parse(&with_all).use_proxy(host, 443));
    let h = host.trim().to_ascii_lowercase();
    let plain = !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !h.starts_with('.')
        && h.parse::<std::net::IpAddr>().is_err();
    if plain {
        let listed = crate::registry::proxy::NoProxy::parse(&format!("{list},{h}"));
        assert!(!listed.use_proxy(&h, 443), "a listed domain is not proxied");
    }
}

/// Plugin answers and CredentialProviderConfig files: nothing panics, a
/// refused answer never repeats a password from it, and accepted
/// credentials are named by the provider, not by their secret.
pub fn credential_provider(data: &[u8]) {
    use crate::credentials::provider::{decode_config_for_fuzzing, decode_response_for_fuzzing};
    let _ = decode_config_for_fuzzing(&String::from_utf8_lossy(data));
    let passwords: Vec<String> = serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .and_then(|v| v.get("auth").and_then(|a| a.as_object()).cloned())
        .map(|auth| {
            auth.values()
                .filter_map(|e| e.get("password")?.as_str().map(str::to_string))
                .filter(|p| p.len() >= 4)
                .collect()
        })
        .unwrap_or_default();
    match decode_response_for_fuzzing(data) {
        Ok(creds) => {
            for c in creds {
                assert_eq!(c.source, "credential provider fuzz");
                assert_eq!(c.describe(), format!("{} ({})", c.source, c.key));
            }
        }
        Err(why) => {
            for p in &passwords {
                assert!(!why.contains(p.as_str()), "the error repeats a password");
            }
        }
    }
}

/// Status page query strings: nothing panics, and pairs encoded the way a
/// browser's form does come back as they were.
pub fn query(data: &[u8]) {
    use crate::exporter::status_page::{parse_query, Filter};
    let text = String::from_utf8_lossy(data);
    let _ = Filter::from_query(&text);
    let pairs = parse_query(&text);
    let encode = crate::registry::transport::percent_encode;
    let again: String = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    assert_eq!(parse_query(&again), pairs, "round trip");
}

/// The `--pod-template-resource` kind the watch_event target decodes with.
fn custom_kind() -> &'static crate::kube::resources::CustomKind {
    static KIND: std::sync::OnceLock<&'static crate::kube::resources::CustomKind> =
        std::sync::OnceLock::new();
    KIND.get_or_init(|| {
        crate::kube::resources::CustomKind::parse(
            "apps.kruise.io/v1alpha1/clonesets=spec.template,replicas=spec.replicas",
        )
        .expect("valid")
        .leak()
    })
}

/// Layer lists name each blob once, none empty, within the bound.
fn distinct_blobs(layers: &[String]) {
    assert!(layers.len() <= crate::registry::manifest::MAX_LAYERS);
    for (i, l) in layers.iter().enumerate() {
        assert!(!l.is_empty());
        assert!(!layers[..i].contains(l));
    }
}

/// Manifests, indexes and image configs from registries: never a panic;
/// platforms are normalised once and for all, every platform runs itself,
/// the platforms of an image are distinct, sorted and known, and layer
/// lists name each blob once.
pub fn manifest(data: &[u8]) {
    use crate::image::platform::Platform;
    use crate::registry::manifest::{self, Manifest};
    let (content_type, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (
            Some(String::from_utf8_lossy(&data[..i]).into_owned()),
            &data[i + 1..],
        ),
        None => (None, data),
    };
    let check = |p: &Platform| {
        assert_eq!(&Platform::new(&p.os, &p.architecture, &p.variant), p);
        assert!(p.runs(p), "{p} runs itself");
        // A field with a `/` (registries send anything) prints ambiguously;
        // the others read back as themselves.
        let plain = ![&p.os, &p.architecture, &p.variant]
            .iter()
            .any(|f| f.contains('/'));
        if let (true, Ok(again)) = (plain, Platform::parse(&p.to_string())) {
            assert_eq!(&again, p);
        }
    };
    let mut found = Vec::new();
    match manifest::parse_manifest(content_type.as_deref(), body) {
        Ok(Manifest::Index(entries)) => {
            for e in entries {
                assert!(!e.digest.is_empty());
                found.extend(e.platform);
            }
        }
        Ok(Manifest::Schema1 { platform, layers }) => {
            found.push(platform);
            distinct_blobs(&layers);
        }
        Ok(Manifest::Image { config, layers }) => {
            assert!(!config.is_empty());
            distinct_blobs(&layers);
        }
        Ok(Manifest::NotImage(_)) | Err(_) => {}
    }
    if let Ok(p) = manifest::parse_config(body) {
        found.push(p);
    }
    // What we hash is a digest a node accepts; a schema 1 type is one
    // whatever its parameters.
    assert!(manifest::valid_digest(&manifest::digest_of(body)));
    if let Some(ct) = &content_type {
        if manifest::is_schema1_type(ct) {
            assert!(manifest::is_schema1_type(&format!("{ct}; x=y")));
        }
    }
    found.iter().for_each(check);
    let d = manifest::distinct(found);
    assert!(d.windows(2).all(|w| w[0] < w[1]));
    assert!(d.iter().all(Platform::is_known));
    // What `check --platform` accepts is what it prints.
    if let Ok(p) = Platform::parse(&String::from_utf8_lossy(body)) {
        check(&p);
        assert!(!crate::image::platform::lacks(
            std::slice::from_ref(&p),
            &[crate::image::platform::NodeGroup::new(p.clone(), 1)]
        ));
    }
}

/// Pull quota headers (`RateLimit-Limit`, `RateLimit-Remaining`: the first
/// two lines) and `--pull-quota-reserve` (the third): a count prints and
/// parses back to itself; the reserve rule holds back more as the reserve
/// grows, never when nothing is reserved, always when nothing may be
/// pulled; a parsed reserve is at most 100 and reads back with `%`.
pub fn rate_limit(data: &[u8]) {
    use crate::registry::quota::{parse_count, parse_reserve, Quota};
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let (a, b, c) = (
        lines.next().unwrap_or(""),
        lines.next().unwrap_or(""),
        lines.next().unwrap_or(""),
    );
    for v in [a, b] {
        if let Some(n) = parse_count(v) {
            assert_eq!(parse_count(&n.to_string()), Some(n), "{v:?}");
            assert_eq!(parse_count(&format!("{n};w=21600")), Some(n));
        }
    }
    if let (Some(limit), Some(remaining)) = (parse_count(a), parse_count(b)) {
        let q = Quota { limit, remaining };
        assert!(!q.reserved_for_nodes(0));
        if limit == 0 {
            assert!(q.reserved_for_nodes(1));
        }
        if remaining >= limit && limit > 0 {
            assert!(!q.reserved_for_nodes(100), "{q:?}");
        }
        for r in 0..100u8 {
            if q.reserved_for_nodes(r) {
                assert!(q.reserved_for_nodes(r + 1), "{q:?} at {r}%");
            }
        }
        let _ = q.describe_reserve("registry.example", 50);
    }
    if let Ok(r) = parse_reserve(c) {
        assert!(r <= 100);
        assert_eq!(parse_reserve(&format!("{r}%")), Ok(r));
    }
}

/// A registry's failed answer (its status on the first line, the
/// registry's host on the second, the body after), a digest header (the
/// first line again) and a node's runtime version (the second): the error
/// body's codes and messages are free of control characters and bounded,
/// the detail names every code it shows, only a 400 with INVALID_REQUEST
/// is upstream trouble, a valid digest is `algorithm:hex` of the right
/// length, and a runtime that refuses schema 1 is containerd 2 or later.
pub fn registry_answer(data: &[u8]) {
    use crate::registry::errors::{ambiguous_refusal, upstream_trouble, RegistryErrors};
    use crate::registry::manifest::valid_digest;
    let mut lines = data.splitn(3, |b| *b == b'\n');
    let first = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let second = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let body = lines.next().unwrap_or_default();
    let errors = RegistryErrors::parse(body);
    let detail = errors.detail();
    assert!(!detail.chars().any(char::is_control), "{detail:?}");
    assert!(detail.chars().count() <= 3 * (200 + 200 + 4));
    for (code, _) in errors.errors().iter().take(3) {
        assert!(detail.contains(code.as_str()));
    }
    let status: u16 = first.trim().parse().unwrap_or(0);
    if upstream_trouble(status, &errors) {
        assert_eq!(status, 400);
        assert!(errors.has("INVALID_REQUEST"));
    }
    let note = ambiguous_refusal(&second, &errors);
    assert!(!note.chars().any(char::is_control) || second.chars().any(char::is_control));
    if valid_digest(&first) {
        let (algorithm, hex) = first.split_once(':').unwrap();
        assert!(matches!(
            (algorithm, hex.len()),
            ("sha256", 64) | ("sha512", 128)
        ));
        assert!(hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }
    if crate::image::platform::refuses_schema1(&second) {
        let v = second.trim().strip_prefix("containerd://").unwrap();
        let v = v.strip_prefix('v').unwrap_or(v);
        let major: String = v.chars().take_while(char::is_ascii_digit).collect();
        assert!(major.parse::<u64>().unwrap() >= 2, "{second:?}");
    }
}

/// `--web.config.file` texts: what parses is consistent (users hold bcrypt
/// hashes, headers are the toolkit's, TLS has a certificate and a key and
/// a sane version range, a verifying client policy has a CA), and an error
/// never quotes a password it refused.
pub fn web_config(data: &[u8]) {
    use crate::exporter::web_config::{is_bcrypt, parse, ClientAuth};
    let text = String::from_utf8_lossy(data);
    match parse(&text) {
        Ok(c) => {
            assert!(c.users.iter().all(|(_, h)| is_bcrypt(h)));
            assert!(c
                .headers
                .iter()
                .all(|(k, v)| !k.is_empty() && !v.is_empty()));
            if let Some(t) = &c.tls {
                assert!(t.min_version <= t.max_version);
                let verifies = matches!(
                    t.client_auth,
                    ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
                );
                assert_eq!(verifies, t.client_ca.is_some());
            }
            if let Some((interval, burst)) = c.rate_limit {
                assert!(!interval.is_zero() && burst >= 1);
            }
        }
        Err(e) => {
            let Ok(docs) = crate::sys::yaml::parse_yaml_documents(&text) else {
                return;
            };
            let users = docs
                .first()
                .and_then(|d| d.get("basic_auth_users"))
                .and_then(|u| u.as_object());
            // A user name is printed; a password never is (unless the
            // password also appears in a user name).
            for (_, v) in users.into_iter().flatten() {
                if let Some(secret) = v.as_str().filter(|s| s.len() >= 12) {
                    let in_a_name = users.into_iter().flatten().any(|(k, _)| k.contains(secret));
                    assert!(in_a_name || !e.0.contains(secret), "{e}");
                }
            }
        }
    }
}

/// Request heads as the HTTP front reads them: a head it takes is within
/// the limits and whole, an incomplete one is under the head limit and has
/// no blank line yet, and basic credentials decode without panicking.
pub fn http_head(data: &[u8]) {
    use crate::exporter::request::{parse, Limits, Parsed};
    let limits = Limits {
        max_head: 1024,
        max_url: 256,
        max_body: 64,
        ..Limits::default()
    };
    match parse(data, &limits) {
        Parsed::Incomplete => {
            assert!(data.len() < limits.max_head);
            assert!(!data.windows(4).any(|w| w == b"\r\n\r\n"));
        }
        Parsed::Head {
            request,
            head,
            body,
        } => {
            assert!(head <= data.len() && head <= limits.max_head);
            assert!(data[..head].ends_with(b"\r\n\r\n"));
            assert!(body <= limits.max_body);
            assert!(request.url.len() <= limits.max_url);
            assert!(request.method.bytes().all(|b| b.is_ascii_uppercase()));
            assert!(request.path().len() <= request.url.len());
            assert_eq!(request.keep_alive(), request.clone().keep_alive());
            if let Some(a) = request.header("authorization") {
                let _ = crate::exporter::auth::basic_credentials(a);
            }
        }
        Parsed::Refused(status, why) => {
            assert!((400..600).contains(&status) && !why.is_empty());
        }
    }
}
