//! Kubelet image credential provider plugins (ECR, Artifact Registry, ACR
//! and any other), run as the kubelet runs them
//! (pkg/credentialprovider/plugin): the same `CredentialProviderConfig`
//! file and the same binaries, so an image the nodes pull with their cloud
//! identity gets the verdict the nodes would get.
//!
//! A provider runs only for images its `matchImages` match. It gets a
//! `CredentialProviderRequest` on stdin and answers a
//! `CredentialProviderResponse` on stdout, whose `auth` entries are keyed
//! like registry keys. Answers are cached per `cacheKeyType` (Image,
//! Registry, Global) for `cacheDuration` (the provider's
//! `defaultCacheDuration` when absent; zero means no caching). Concurrent
//! checks of one image run the plugin once, and only a few plugin processes
//! run at a time. stdout is never logged (it holds credentials); stderr is
//! logged, truncated.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use prometheus::{IntCounterVec, Opts};
use serde::Deserialize;

use crate::credentials::{valid_match_image, Credential, Keyring, MatchImage};
use crate::image::reference::Reference;
use crate::sys::process::Unfinished;

/// Request and response API versions the kubelet knows.
const PLUGIN_API_VERSIONS: [&str; 3] = [
    "credentialprovider.kubelet.k8s.io/v1",
    "credentialprovider.kubelet.k8s.io/v1beta1",
    "credentialprovider.kubelet.k8s.io/v1alpha1",
];
const CONFIG_API_VERSIONS: [&str; 3] = [
    "kubelet.config.k8s.io/v1",
    "kubelet.config.k8s.io/v1beta1",
    "kubelet.config.k8s.io/v1alpha1",
];
/// The kubelet drops expired entries on a lookup after this long.
const PURGE_INTERVAL: Duration = Duration::from_secs(15 * 60);
/// Plugin output we read at most; a response is a few KiB.
const OUTPUT_LIMIT: u64 = 1 << 20;
/// How much of a plugin's stderr goes into the log.
const STDERR_LOGGED: usize = 512;

/// `--image-credential-provider-*` settings.
#[derive(Debug, Clone)]
pub struct ProviderOptions {
    /// `--image-credential-provider-config`: a file, or a directory of
    /// `*.json`, `*.yaml`, `*.yml` files merged in name order.
    pub config: PathBuf,
    /// `--image-credential-provider-bin-dir`.
    pub bin_dir: PathBuf,
    /// Limit for one plugin run (the kubelet's is one minute).
    pub timeout: Duration,
    /// Plugin processes at a time.
    pub max_running: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ConfigFile {
    api_version: String,
    kind: String,
    #[serde(default)]
    providers: Vec<ProviderSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ProviderSpec {
    #[serde(default)]
    name: String,
    #[serde(default)]
    match_images: Vec<String>,
    default_cache_duration: Option<String>,
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<EnvVar>,
    token_attributes: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvVar {
    name: String,
    #[serde(default)]
    value: String,
}

/// One configured provider.
struct Provider {
    name: String,
    match_images: Vec<MatchImage>,
    default_cache: Duration,
    api_version: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    state: Mutex<ProviderState>,
}

/// What one plugin run gave, shared by the checks that waited for it.
type Creds = Arc<Vec<Arc<Credential>>>;

#[derive(Default)]
struct ProviderState {
    /// Cache key -> (credentials, expiry).
    cache: HashMap<String, (Creds, Instant)>,
    last_purge: Option<Instant>,
    /// Images whose plugin run is under way.
    running: HashMap<String, Arc<Flight>>,
}

/// One plugin run that other checks of the same image wait for.
#[derive(Default)]
struct Flight {
    result: Mutex<Option<Result<Creds, String>>>,
    done: Condvar,
}

impl Flight {
    fn wait(&self) -> Result<Creds, String> {
        let mut r = self.result.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(result) = r.as_ref() {
                return result.clone();
            }
            r = self.done.wait(r).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn finish(&self, result: Result<Creds, String>) {
        *self.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
        self.done.notify_all();
    }
}

/// Every configured provider, ready to run.
pub struct CredentialProviders {
    providers: Vec<Provider>,
    bin_dir: PathBuf,
    timeout: Duration,
    slots: Mutex<usize>,
    slot_freed: Condvar,
    runs: IntCounterVec,
    cache_hits: IntCounterVec,
}

impl std::fmt::Debug for CredentialProviders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.providers.iter().map(|p| p.name.as_str()).collect();
        f.debug_struct("CredentialProviders")
            .field("providers", &names)
            .field("bin_dir", &self.bin_dir)
            .finish()
    }
}

/// What the providers gave for one image.
#[derive(Debug, Default)]
pub struct Provided {
    /// Credentials matching the image, in provider order.
    pub credentials: Vec<Arc<Credential>>,
    /// One line per provider that failed (never a credential).
    pub failures: Vec<String>,
}

fn cache_key_for(kind: &str, image: &str) -> Option<String> {
    match kind {
        "Image" => Some(image.to_string()),
        // parseRegistry: everything before the first '/'.
        "Registry" => Some(image.split('/').next().unwrap_or(image).to_string()),
        "Global" => Some("global".to_string()),
        _ => None,
    }
}

impl CredentialProviders {
    /// Reads and validates the configuration as the kubelet does
    /// (`RegisterCredentialProviderPlugins`): the binary directory and every
    /// provider's binary must exist.
    pub fn load(options: &ProviderOptions) -> Result<CredentialProviders, String> {
        let bin_dir = &options.bin_dir;
        match std::fs::metadata(bin_dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(format!(
                    "--image-credential-provider-bin-dir {}: not a directory",
                    bin_dir.display()
                ))
            }
            Err(e) => {
                return Err(format!(
                    "--image-credential-provider-bin-dir {}: {e}",
                    bin_dir.display()
                ))
            }
        }
        let providers = read_config(&options.config)?;
        for p in &providers {
            let binary = bin_dir.join(&p.name);
            if !binary.is_file() {
                return Err(format!(
                    "credential provider {:?}: plugin binary {} does not exist",
                    p.name,
                    binary.display()
                ));
            }
        }
        let runs = IntCounterVec::new(
            Opts::new(
                "k8s_image_availability_exporter_credential_provider_runs_total",
                "Image credential provider plugin runs, by provider and result (success, error, timeout, invalid_response).",
            ),
            &["provider", "result"],
        )
        .map_err(|e| e.to_string())?;
        let cache_hits = IntCounterVec::new(
            Opts::new(
                "k8s_image_availability_exporter_credential_provider_cache_hits_total",
                "Image credential lookups answered from a provider's cache, by provider.",
            ),
            &["provider"],
        )
        .map_err(|e| e.to_string())?;
        Ok(CredentialProviders {
            providers,
            bin_dir: bin_dir.clone(),
            timeout: options.timeout,
            slots: Mutex::new(options.max_running.max(1)),
            slot_freed: Condvar::new(),
            runs,
            cache_hits,
        })
    }

    /// The metric families, for the /metrics registry.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.runs.clone()),
            Box::new(self.cache_hits.clone()),
        ]
    }

    /// Whether any provider would run for this image.
    pub fn matches(&self, reference: &Reference) -> bool {
        self.providers.iter().any(|p| p.matches(reference))
    }

    /// The credentials the node's providers give for `reference`, as the
    /// kubelet's external provider keyring does: every matching provider's
    /// `auth` entries in one keyring (an earlier provider's entry first for
    /// the same key), looked up for the image.
    pub fn credentials(&self, reference: &Reference) -> Provided {
        // The kubelet passes the repository to pull, without tag or digest.
        let image = reference.name();
        let mut out = Provided::default();
        let mut all: Vec<Arc<Credential>> = Vec::new();
        for p in self.providers.iter().filter(|p| p.matches(reference)) {
            match self.provide(p, &image) {
                Ok(creds) => all.extend(creds.iter().cloned()),
                Err(why) => out
                    .failures
                    .push(format!("credential provider {}: {why}", p.name)),
            }
        }
        if !all.is_empty() {
            out.credentials = Keyring::new(all).lookup(reference);
        }
        out
    }

    /// Cached credentials, or one plugin run shared by concurrent callers
    /// (the kubelet's singleflight, keyed by image).
    fn provide(&self, p: &Provider, image: &str) -> Result<Creds, String> {
        let flight = {
            let mut st = p.state.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            if st
                .last_purge
                .is_none_or(|t| now.duration_since(t) >= PURGE_INTERVAL)
            {
                st.cache.retain(|_, (_, expires)| *expires > now);
                st.last_purge = Some(now);
            }
            // As getCachedCredentials: the image, then its registry, then global.
            for kind in ["Image", "Registry", "Global"] {
                let Some(key) = cache_key_for(kind, image) else {
                    continue;
                };
                match st.cache.get(&key) {
                    Some((creds, expires)) if *expires > now => {
                        self.cache_hits.with_label_values(&[&p.name]).inc();
                        return Ok(creds.clone());
                    }
                    Some(_) => {
                        st.cache.remove(&key);
                    }
                    None => {}
                }
            }
            if let Some(f) = st.running.get(image) {
                // Another check runs the plugin for this image: wait for it.
                let f = f.clone();
                drop(st);
                return f.wait();
            }
            let f = Arc::new(Flight::default());
            st.running.insert(image.to_string(), f.clone());
            f
        };
        let result = self.run(p, image).map(|(creds, cache)| {
            let creds = Arc::new(creds);
            if let Some((key, ttl)) = cache {
                let mut st = p.state.lock().unwrap_or_else(|e| e.into_inner());
                st.cache.insert(key, (creds.clone(), Instant::now() + ttl));
            }
            creds
        });
        p.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .running
            .remove(image);
        flight.finish(result.clone());
        result
    }

    /// One plugin run, within the slot limit; returns the credentials and
    /// how to cache them.
    #[allow(clippy::type_complexity)]
    fn run(
        &self,
        p: &Provider,
        image: &str,
    ) -> Result<(Vec<Arc<Credential>>, Option<(String, Duration)>), String> {
        {
            let mut free = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            while *free == 0 {
                free = self
                    .slot_freed
                    .wait(free)
                    .unwrap_or_else(|e| e.into_inner());
            }
            *free -= 1;
        }
        let outcome = exec(&self.bin_dir.join(&p.name), p, image, self.timeout);
        *self.slots.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.slot_freed.notify_one();
        let result = outcome.and_then(|stdout| p.parse_response(&stdout, image));
        let label = match &result {
            Ok(_) => "success",
            Err(Failure::Timeout(_)) => "timeout",
            Err(Failure::Invalid(_)) => "invalid_response",
            Err(Failure::Exec(_)) => "error",
        };
        self.runs.with_label_values(&[&p.name, label]).inc();
        result.map_err(|f| {
            let why = f.to_string();
            log::warn!("credential provider {} for {image}: {why}", p.name);
            why
        })
    }
}

/// Why a plugin run gave nothing.
#[derive(Debug)]
enum Failure {
    Timeout(Duration),
    Exec(String),
    Invalid(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Timeout(d) => write!(f, "plugin did not answer within {d:?}"),
            Failure::Exec(why) => write!(f, "plugin failed: {why}"),
            Failure::Invalid(why) => write!(f, "invalid response: {why}"),
        }
    }
}

/// Runs the binary with the request on stdin; returns its stdout.
fn exec(binary: &Path, p: &Provider, image: &str, timeout: Duration) -> Result<Vec<u8>, Failure> {
    let request = serde_json::json!({
        "kind": "CredentialProviderRequest",
        "apiVersion": p.api_version,
        "image": image,
    })
    .to_string();
    // The provider's env is appended to ours, so it wins (mergeEnvVars).
    let mut cmd = Command::new(binary);
    cmd.args(&p.args)
        .envs(p.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stderr(Stdio::piped());
    let finished = crate::sys::process::run(cmd, Some(request.into_bytes()), OUTPUT_LIMIT, timeout)
        .map_err(|e| Failure::Exec(format!("cannot start {}: {e}", binary.display())))?;
    let err = &finished.stderr;
    if !err.is_empty() {
        let text = String::from_utf8_lossy(&err[..err.len().min(STDERR_LOGGED)]).into_owned();
        log::info!("credential provider {} stderr: {}", p.name, text.trim_end());
    }
    let status = match finished.status {
        Ok(s) => s,
        Err(Unfinished::Timeout) => return Err(Failure::Timeout(timeout)),
        Err(Unfinished::Wait(e)) => return Err(Failure::Exec(e.to_string())),
    };
    if !status.success() {
        let first = String::from_utf8_lossy(&err[..err.len().min(200)])
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        return Err(Failure::Exec(format!("{status}: {first}")));
    }
    Ok(finished.stdout)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Response {
    kind: Option<String>,
    api_version: Option<String>,
    cache_key_type: Option<String>,
    cache_duration: Option<String>,
    #[serde(default)]
    auth: HashMap<String, AuthEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthEntry {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

impl Provider {
    fn matches(&self, reference: &Reference) -> bool {
        self.match_images.iter().any(|m| m.matches(reference))
    }

    /// Decodes and checks a response as the kubelet does; the error never
    /// quotes the output (it may hold credentials).
    #[allow(clippy::type_complexity)]
    fn parse_response(
        &self,
        stdout: &[u8],
        image: &str,
    ) -> Result<(Vec<Arc<Credential>>, Option<(String, Duration)>), Failure> {
        let r: Response = serde_json::from_slice(stdout).map_err(|e| {
            Failure::Invalid(format!(
                "not a CredentialProviderResponse (JSON {} at line {} column {})",
                match e.classify() {
                    serde_json::error::Category::Data => "data error",
                    serde_json::error::Category::Eof => "ends early",
                    _ => "syntax error",
                },
                e.line(),
                e.column()
            ))
        })?;
        let api_version = r.api_version.unwrap_or_default();
        if api_version != self.api_version {
            return Err(Failure::Invalid(format!(
                "apiVersion {api_version:?} does not match the expected {:?}",
                self.api_version
            )));
        }
        if r.kind.as_deref() != Some("CredentialProviderResponse") {
            return Err(Failure::Invalid(format!(
                "kind {:?} is not CredentialProviderResponse",
                r.kind.unwrap_or_default()
            )));
        }
        let kind = r.cache_key_type.unwrap_or_default();
        let Some(key) = cache_key_for(&kind, image) else {
            return Err(Failure::Invalid(format!(
                "cacheKeyType {kind:?} is not Image, Registry or Global"
            )));
        };
        let ttl = match r.cache_duration.as_deref() {
            None => self.default_cache,
            Some(d) => crate::sys::duration::parse_duration(d).ok_or_else(|| {
                Failure::Invalid(format!("cacheDuration {d:?} is not a duration"))
            })?,
        };
        let source = format!("credential provider {}", self.name);
        let mut auth: Vec<(String, AuthEntry)> = r.auth.into_iter().collect();
        auth.sort_by(|a, b| a.0.cmp(&b.0));
        let creds = auth
            .into_iter()
            .map(|(k, a)| Arc::new(Credential::new(source.clone(), k, a.username, a.password)))
            .collect();
        Ok((creds, (!ttl.is_zero()).then_some((key, ttl))))
    }
}

/// Reads a config file, or every `*.json`, `*.yaml`, `*.yml` file of a
/// directory in name order, and validates the merged providers as
/// `validateCredentialProviderConfig` does.
fn read_config(path: &Path) -> Result<Vec<Provider>, String> {
    let flag = "--image-credential-provider-config";
    let meta = std::fs::metadata(path).map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    let files: Vec<PathBuf> = if meta.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| format!("{flag} {}: {e}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && matches!(
                        p.extension().and_then(|e| e.to_str()),
                        Some("json" | "yaml" | "yml")
                    )
            })
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(format!(
                "{flag} {}: no configuration files in the directory",
                path.display()
            ));
        }
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut specs = Vec::new();
    for file in &files {
        let text =
            std::fs::read_to_string(file).map_err(|e| format!("{flag} {}: {e}", file.display()))?;
        specs.extend(parse_config(&text).map_err(|e| format!("{flag} {}: {e}", file.display()))?);
    }
    validate(specs).map_err(|errors| format!("{flag} {}: {}", path.display(), errors.join("; ")))
}

/// Decodes one file (YAML or JSON, strictly: unknown fields are errors).
fn parse_config(text: &str) -> Result<Vec<ProviderSpec>, String> {
    let docs = crate::sys::yaml::parse_yaml_documents(text)?;
    let [doc] = docs.as_slice() else {
        return Err(format!("expected one document, found {}", docs.len()));
    };
    let file: ConfigFile = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
    if file.kind != "CredentialProviderConfig" {
        return Err(format!(
            "kind {:?} is not CredentialProviderConfig",
            file.kind
        ));
    }
    if !CONFIG_API_VERSIONS.contains(&file.api_version.as_str()) {
        return Err(format!(
            "apiVersion {:?} is not one of {}",
            file.api_version,
            CONFIG_API_VERSIONS.join(", ")
        ));
    }
    Ok(file.providers)
}

fn validate(specs: Vec<ProviderSpec>) -> Result<Vec<Provider>, Vec<String>> {
    let mut errors = Vec::new();
    if specs.is_empty() {
        errors.push("providers: at least 1 item in plugins is required".to_string());
    }
    let mut seen: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for s in specs {
        let at = format!("providers[{:?}]", s.name);
        let mut bad = |why: String| errors.push(format!("{at}: {why}"));
        if s.name.is_empty() {
            bad("name is required".into());
        }
        if s.name.contains('/') {
            bad("provider name cannot contain '/'".into());
        }
        if s.name.contains(' ') {
            bad("provider name cannot contain spaces".into());
        }
        if s.name == "." || s.name == ".." {
            bad(format!("provider name cannot be {:?}", s.name));
        }
        if seen.contains(&s.name) {
            bad("duplicate provider name".into());
        }
        seen.push(s.name.clone());
        if s.api_version.is_empty() {
            bad("apiVersion is required".into());
        } else if !PLUGIN_API_VERSIONS.contains(&s.api_version.as_str()) {
            bad(format!(
                "apiVersion {:?} is not supported (supported: {})",
                s.api_version,
                PLUGIN_API_VERSIONS.join(", ")
            ));
        }
        if s.match_images.is_empty() {
            bad("at least 1 item in matchImages is required".into());
        }
        for m in &s.match_images {
            if let Err(why) = valid_match_image(m) {
                bad(format!("match image {m:?} is invalid: {why}"));
            }
        }
        let default_cache = match s.default_cache_duration.as_deref() {
            None => {
                bad("defaultCacheDuration is required".into());
                Duration::ZERO
            }
            Some(d) => match crate::sys::duration::parse_duration(d) {
                Some(d) => d,
                None => {
                    bad(format!(
                        "defaultCacheDuration {d:?} must be a duration greater than or equal to 0"
                    ));
                    Duration::ZERO
                }
            },
        };
        if s.token_attributes.is_some() {
            bad("tokenAttributes (service account tokens for plugins) is not supported: the exporter pulls for no pod".into());
        }
        for e in &s.env {
            if e.name.is_empty() || e.name.contains('=') {
                bad(format!("env name {:?} is invalid", e.name));
            }
        }
        out.push(Provider {
            match_images: s.match_images.iter().map(|m| MatchImage::new(m)).collect(),
            name: s.name,
            default_cache,
            api_version: s.api_version,
            args: s.args,
            env: s.env.into_iter().map(|e| (e.name, e.value)).collect(),
            state: Mutex::default(),
        });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// For the fuzz properties: decodes a plugin answer as a v1 provider with a
/// 1h default would, returning the credentials or the error text.
#[doc(hidden)]
pub fn decode_response_for_fuzzing(stdout: &[u8]) -> Result<Vec<Arc<Credential>>, String> {
    let p = Provider {
        name: "fuzz".into(),
        match_images: vec![MatchImage::new("*")],
        default_cache: Duration::from_secs(3600),
        api_version: PLUGIN_API_VERSIONS[0].into(),
        args: vec![],
        env: vec![],
        state: Mutex::default(),
    };
    p.parse_response(stdout, "r.example.com/team/app")
        .map(|(creds, _)| creds)
        .map_err(|e| e.to_string())
}

/// For the fuzz properties: parses and validates a configuration file.
#[doc(hidden)]
pub fn decode_config_for_fuzzing(text: &str) -> Result<usize, String> {
    parse_config(text).and_then(|s| validate(s).map(|p| p.len()).map_err(|e| e.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Provider>, String> {
        parse_config(text).and_then(|s| validate(s).map_err(|e| e.join("; ")))
    }

    const GOOD: &str = "apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: ecr-credential-provider
    matchImages: ['*.dkr.ecr.*.amazonaws.com', '*.dkr.ecr.*.amazonaws.com.cn']
    defaultCacheDuration: 12h
    apiVersion: credentialprovider.kubelet.k8s.io/v1
    args: [get-credentials]
    env: [{name: AWS_PROFILE, value: nodes}]
";

    #[test]
    fn config_validation_table() {
        let p = parse(GOOD).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].default_cache, Duration::from_secs(12 * 3600));
        assert_eq!(p[0].env, [("AWS_PROFILE".to_string(), "nodes".to_string())]);
        // JSON works too, and the older API versions.
        let json = r#"{"apiVersion":"kubelet.config.k8s.io/v1beta1","kind":"CredentialProviderConfig","providers":[{"name":"p","matchImages":["*-docker.pkg.dev"],"defaultCacheDuration":"0s","apiVersion":"credentialprovider.kubelet.k8s.io/v1alpha1"}]}"#;
        assert_eq!(parse(json).unwrap()[0].default_cache, Duration::ZERO);
        let cases: &[(&str, &str)] = &[
            ("apiVersion: v1\nkind: CredentialProviderConfig\nproviders: []", "apiVersion \"v1\""),
            ("apiVersion: kubelet.config.k8s.io/v1\nkind: Pod\nproviders: []", "kind \"Pod\""),
            ("apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders: []", "at least 1 item"),
            (&GOOD.replace("ecr-credential-provider", "a/b"), "cannot contain '/'"),
            (&GOOD.replace("ecr-credential-provider", "a b"), "cannot contain spaces"),
            (&GOOD.replace("ecr-credential-provider", ".."), "cannot be \"..\""),
            (&GOOD.replace("    defaultCacheDuration: 12h\n", ""), "defaultCacheDuration is required"),
            (&GOOD.replace("12h", "-1h"), "greater than or equal to 0"),
            (&GOOD.replace("credentialprovider.kubelet.k8s.io/v1", "credentialprovider.kubelet.k8s.io/v2"), "not supported"),
            (&GOOD.replace("['*.dkr.ecr.*.amazonaws.com', '*.dkr.ecr.*.amazonaws.com.cn']", "[]"), "matchImages is required"),
            (&GOOD.replace("'*.dkr.ecr.*.amazonaws.com'", "'bad host'"), "match image \"bad host\" is invalid"),
            (&GOOD.replace("    args:", "    tokenAttributes: {serviceAccountTokenAudience: x}\n    args:"), "tokenAttributes"),
            (&GOOD.replace("    args:", "    unknownField: 1\n    args:"), "unknown field"),
            (&format!("{GOOD}{}", &GOOD[GOOD.find("  - name").unwrap()..]), "duplicate provider name"),
        ];
        for (text, want) in cases {
            let e = parse(text)
                .err()
                .unwrap_or_else(|| panic!("accepted:\n{text}"));
            assert!(e.contains(want), "{want:?} not in {e:?}");
        }
    }

    #[test]
    fn responses_are_checked_like_the_kubelet() {
        let p = &parse(GOOD).unwrap()[0];
        let image = "1.dkr.ecr.us-east-1.amazonaws.com/team/app";
        let ok = br#"{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"Registry","cacheDuration":"6h","auth":{"*.dkr.ecr.us-east-1.amazonaws.com":{"username":"AWS","password":"hunter2"}}}"#;
        let (creds, cache) = p.parse_response(ok, image).unwrap();
        assert_eq!(creds.len(), 1);
        assert_eq!(
            creds[0].describe(),
            "credential provider ecr-credential-provider (*.dkr.ecr.us-east-1.amazonaws.com)"
        );
        assert_eq!(
            cache,
            Some((
                "1.dkr.ecr.us-east-1.amazonaws.com".into(),
                Duration::from_secs(6 * 3600)
            ))
        );
        let no_duration = String::from_utf8_lossy(ok).replace(r#""cacheDuration":"6h","#, "");
        assert_eq!(
            p.parse_response(no_duration.as_bytes(), image)
                .unwrap()
                .1
                .unwrap()
                .1,
            Duration::from_secs(12 * 3600)
        );
        let zero = String::from_utf8_lossy(ok).replace("6h", "0s");
        assert_eq!(p.parse_response(zero.as_bytes(), image).unwrap().1, None);
        for (bad, want) in [
            (
                String::from_utf8_lossy(ok).replace("/v1\"", "/v1beta1\""),
                "apiVersion",
            ),
            (
                String::from_utf8_lossy(ok).replace("Registry", "Node"),
                "cacheKeyType",
            ),
            (
                String::from_utf8_lossy(ok).replace("CredentialProviderResponse", "Other"),
                "kind",
            ),
            (
                "hunter2 is not json".to_string(),
                "not a CredentialProviderResponse",
            ),
            (
                String::from_utf8_lossy(ok).replace("\"auth\"", "\"extra\":1,\"auth\""),
                "not a CredentialProviderResponse",
            ),
        ] {
            let e = p
                .parse_response(bad.as_bytes(), image)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want) && !e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn cache_keys() {
        let image = "r.example.com:5000/team/app";
        assert_eq!(cache_key_for("Image", image).unwrap(), image);
        assert_eq!(
            cache_key_for("Registry", image).unwrap(),
            "r.example.com:5000"
        );
        assert_eq!(cache_key_for("Global", image).unwrap(), "global");
        assert_eq!(cache_key_for("image", image), None);
    }
}
