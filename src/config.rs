//! Command-line flags, parsed in two steps as ripgrep does: raw arguments
//! (argh) first, then a validated configuration that the rest of the program
//! uses. Every flag error is reported here, before any thread starts.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use argh::FromArgs;
use log::LevelFilter;

use crate::check_command::Output;
use crate::credentials::{parse_docker_config, ConfigFormat, Credential, Keyring};
use crate::image::reference::{Mirrors, Reference, DOCKER_HUB};
use crate::registry::transport::TransportConfig;
use crate::registry::{CheckerConfig, RegistryConfig};
use crate::sys::duration::parse_duration;

/// Prometheus exporter that reports whether the container images used by Kubernetes workloads can still be pulled from their registries. Run `check IMAGE...` to check images now and exit.
#[derive(FromArgs, Debug, Default)]
pub struct Args {
    /// address:port for /metrics, /healthz and /readyz. Defaults to :8080 (every interface).
    #[argh(option, default = "String::from(\":8080\")")]
    pub bind_address: String,

    /// the exporter-toolkit web configuration (also spelled --web.config.file): HTTPS, client certificates, basic auth, headers, rate limit. Defaults to none (plain HTTP, open).
    #[argh(option)]
    pub web_config_file: Option<String>,

    /// how often a batch of rechecks is released. Defaults to 15s.
    #[argh(option)]
    pub check_period: Option<String>,

    /// the Go exporter's name for --check-period. Defaults to 15s.
    #[argh(option)]
    pub check_interval: Option<String>,

    /// every image is rechecked within this time. Defaults to 10m.
    #[argh(option, default = "String::from(\"10m\")")]
    pub recheck_within: String,

    /// check worker threads. Defaults to 16.
    #[argh(option, default = "16")]
    pub workers: usize,

    /// concurrent checks against one registry host. Defaults to 8.
    #[argh(option, default = "8")]
    pub max_per_registry: usize,

    /// sync once, check every image once, print the images that are not available and exit (0 when all are). Defaults to false.
    #[argh(switch)]
    pub once: bool,

    /// kubeconfig file. Defaults to $KUBECONFIG, then ~/.kube/config, then the in-cluster service account.
    #[argh(option)]
    pub kubeconfig: Option<String>,

    /// kubeconfig context. Defaults to the current-context.
    #[argh(option)]
    pub context: Option<String>,

    /// watch only this namespace (needs only namespaced Roles); repeatable. Defaults to all namespaces.
    #[argh(option)]
    pub namespace: Vec<String>,

    /// do not read Secrets: images are checked anonymously or with --docker-config. Defaults to false.
    #[argh(switch)]
    pub no_secrets: bool,

    /// for each container, export only the class gauge that is 1 (same names and labels): one series per container instead of eight; off, every class gauge is written, 0 or 1, as the Go exporter does. Defaults to false.
    #[argh(switch)]
    pub one_series_per_container: bool,

    /// do not watch Pods and Jobs: pods no watched controller covers (bare pods, custom controllers' pods, mirror pods) and Jobs no CronJob owns are then not checked. Defaults to false.
    #[argh(switch)]
    pub no_pod_checks: bool,

    /// check only namespaces that have this label (a label selector such as `key` or `key=value`). Defaults to all namespaces.
    #[argh(option)]
    pub namespace_label: Option<String>,

    /// regular expressions of images not to check, separated by `~`. Defaults to none.
    #[argh(option)]
    pub ignored_images: Option<String>,

    /// regular expressions separated by `~`: when set, only matching images are checked. Defaults to all images.
    #[argh(option)]
    pub allowed_images: Option<String>,

    /// another resource with a pod template to check: GROUP/VERSION/RESOURCE=TEMPLATE_PATH[,replicas=PATH], e.g. apps.kruise.io/v1alpha1/clonesets=spec.template,replicas=spec.replicas; watched while its CRD is installed; repeatable. Defaults to none.
    #[argh(option)]
    pub pod_template_resource: Vec<String>,

    /// how often to ask discovery whether a custom resource (Argo Rollouts, --pod-template-resource) is served while it is not. Defaults to 2m.
    #[argh(option, default = "String::from(\"2m\")")]
    pub discovery_interval: String,

    /// comma-separated kinds (deployment, statefulset, daemonset, cronjob, rollout, or a --pod-template-resource's resource) or `*` reported even when disabled (no replicas, suspended); repeatable. Defaults to none.
    #[argh(option)]
    pub force_check_disabled_controllers: Vec<String>,

    /// minimum server-side timeout of a watch request; each watch asks for 1-2x this. Defaults to 5m.
    #[argh(option, default = "String::from(\"5m\")")]
    pub watch_timeout: String,

    /// objects per list page. Defaults to 500.
    #[argh(option, default = "500")]
    pub page_size: u32,

    /// registry for image names without one. Defaults to docker.io.
    #[argh(option)]
    pub default_registry: Option<String>,

    /// pull images from a mirror: original=mirror, matched by registry/repository prefix; repeatable. Defaults to none.
    #[argh(option)]
    pub image_mirror: Vec<String>,

    /// docker config.json whose "auths" apply to every workload, like a node's own credentials; repeatable. Defaults to none.
    #[argh(option)]
    pub docker_config: Vec<String>,

    /// kubelet CredentialProviderConfig file (or directory of them): run the nodes' image credential provider plugins (ECR, Artifact Registry, ACR, ...) as the kubelet does. Defaults to none.
    #[argh(option)]
    pub image_credential_provider_config: Option<String>,

    /// directory holding the credential provider plugin binaries named in --image-credential-provider-config. Defaults to none.
    #[argh(option)]
    pub image_credential_provider_bin_dir: Option<String>,

    /// time limit for one credential provider plugin run (the kubelet's is 1m). Defaults to 1m.
    #[argh(option, default = "String::from(\"1m\")")]
    pub image_credential_provider_timeout: String,

    /// PEM file of CA certificates added to the built-in Mozilla roots for registries; repeatable. Defaults to none.
    #[argh(option)]
    pub capath: Vec<String>,

    /// skip TLS certificate verification of registries. Defaults to false.
    #[argh(switch)]
    pub skip_registry_cert_verification: bool,

    /// fall back to plain http for every registry whose https does not work, as the Go exporter does. Defaults to false.
    #[argh(switch)]
    pub allow_plain_http: bool,

    /// comma-separated registries (host[:port]) that may fall back to plain http; repeatable. Defaults to none.
    #[argh(option)]
    pub plain_http_registries: Vec<String>,

    /// comma-separated registries whose HEAD requests are broken: retry a failed HEAD with GET (GET counts as a pull on Docker Hub). Defaults to none.
    #[argh(option)]
    pub get_fallback_registries: Vec<String>,

    /// time limit for connecting to a registry. Defaults to 5s.
    #[argh(option, default = "String::from(\"5s\")")]
    pub connect_timeout: String,

    /// time limit for one whole registry request. Defaults to 15s.
    #[argh(option, default = "String::from(\"15s\")")]
    pub request_timeout: String,

    /// output of `check`: table or json (one object per line). Defaults to table.
    #[argh(option, default = "String::from(\"table\")")]
    pub output: String,

    /// log level: error, warn, info, debug or trace. Defaults to info.
    #[argh(option, default = "String::from(\"info\")")]
    pub log_level: String,

    /// do not check that images have a build for the platforms of the nodes their pods can run on; Nodes are not watched and the pull path is verified for linux/amd64. Defaults to false.
    #[argh(switch)]
    pub no_platform_check: bool,

    /// how long a digest's verified pull path (manifests by digest, config and layer blobs) is trusted before it is verified again; 0 verifies only the tag. Defaults to 6h.
    #[argh(option, default = "String::from(\"6h\")")]
    pub verify_pull_path_every: String,

    /// share of a registry's announced pull quota (RateLimit-Remaining of RateLimit-Limit) kept for the nodes: no manifest GET is made below it. Defaults to 50%.
    #[argh(option, default = "String::from(\"50%\")")]
    pub pull_quota_reserve: String,

    /// with `check`: platforms (os/arch[/variant]) the images must have, comma-separated; repeatable. Defaults to none.
    #[argh(option)]
    pub platform: Vec<String>,

    /// with `check`: the nodes' container runtime, as Node.status.nodeInfo.containerRuntimeVersion names it (containerd://2.0.4); schema 1 images are platform_unavailable on containerd 2.0 and later. Without --platform, the nodes are linux/amd64. Defaults to none.
    #[argh(option)]
    pub container_runtime: Option<String>,

    /// print the version and exit. Defaults to false.
    #[argh(switch)]
    pub version: bool,

    /// command: `check IMAGE...` checks images now and exits; none runs the exporter.
    #[argh(positional)]
    pub command: Vec<String>,
}

/// Flags that take no value; Go's flag package also accepts `--x=true`.
const SWITCHES: &[&str] = &[
    "skip-registry-cert-verification",
    "allow-plain-http",
    "no-platform-check",
    "version",
];

/// Rewrites Go-style arguments so existing manifests of the Go exporter work:
/// `-flag` becomes `--flag`, `--flag=value` becomes `--flag value`, and
/// `--switch=true|false` becomes `--switch` or nothing.
pub fn normalize_args(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut rest = false;
    for a in args {
        if rest || a == "--" || !a.starts_with('-') || a == "-" {
            rest |= a == "--";
            out.push(a.clone());
            continue;
        }
        let body = a.trim_start_matches('-');
        if body.is_empty() || (a.len() - body.len() == 1 && body.len() == 1) {
            out.push(a.clone());
            continue;
        }
        // The exporter-toolkit's spelling, which argh's names cannot hold.
        let dotted = body.split('=').next().unwrap_or("");
        let body = if dotted == "web.config.file" {
            body.replacen("web.config.file", "web-config-file", 1)
        } else {
            body.to_string()
        };
        let body = body.as_str();
        match body.split_once('=') {
            Some((name, value)) if SWITCHES.contains(&name) => {
                if matches!(value, "true" | "1" | "t" | "T" | "TRUE" | "True") {
                    out.push(format!("--{name}"));
                } else if !matches!(value, "false" | "0" | "f" | "F" | "FALSE" | "False") {
                    // Let argh report it.
                    out.push(format!("--{name}={value}"));
                }
            }
            Some((name, value)) => {
                out.push(format!("--{name}"));
                out.push(value.to_string());
            }
            None => out.push(format!("--{body}")),
        }
    }
    out
}

/// A flag that cannot be used, with the flag's name in the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// What the process was asked to do.
#[derive(Debug, Clone)]
pub enum Command {
    /// Check these images now and exit.
    Check {
        /// Image strings as given.
        images: Vec<String>,
        /// `--platform`: what the images must offer.
        platforms: Vec<crate::image::platform::Platform>,
        /// `--container-runtime`: what the nodes pull with.
        runtime: Option<String>,
    },
    /// Run the exporter.
    Serve,
}

/// The Kubernetes side, validated.
#[derive(Debug, Clone)]
pub struct KubeOptions {
    /// `--kubeconfig`.
    pub kubeconfig: Option<String>,
    /// `--context`.
    pub context: Option<String>,
    /// `--namespace`; empty for all.
    pub namespaces: Vec<String>,
    /// `--no-secrets`.
    pub no_secrets: bool,
    /// Pods and Jobs are watched (no `--no-pod-checks`); pods of these
    /// controllers are covered by their templates.
    pub pods: Option<&'static crate::kube::resources::Covering>,
    /// `--namespace-label`.
    pub namespace_label: Option<String>,
    /// Loop settings.
    pub watch: crate::kube::watch::WatchOptions,
    /// `--ignored-images`.
    pub ignored_images: Vec<regex::Regex>,
    /// `--allowed-images`.
    pub allowed_images: Vec<regex::Regex>,
    /// `--force-check-disabled-controllers`.
    pub force_disabled: std::collections::HashSet<crate::kube::resources::Kind>,
    /// `--pod-template-resource` kinds.
    pub custom_kinds: Vec<crate::kube::resources::Kind>,
    /// Nodes are watched for the platform check (no `--no-platform-check`).
    pub platform_check: bool,
}

impl KubeOptions {
    /// The list/watch streams these options ask for.
    pub fn streams(&self) -> Vec<crate::kube::watch::Stream> {
        use crate::kube::resources::{Kind, Resource};
        use crate::kube::watch::Stream;
        // Argo Rollouts and --pod-template-resource kinds are watched while
        // their CRDs are installed (see `Resource::optional`).
        let mut resources: Vec<Resource> = Kind::ALL
            .iter()
            .chain([Kind::Rollout].iter())
            .chain(self.custom_kinds.iter())
            .map(|k| Resource::Workload(*k))
            .collect();
        if let Some(covering) = self.pods {
            resources.push(Resource::Workload(Kind::Job));
            resources.push(Resource::Pods(covering));
        }
        resources.push(Resource::ServiceAccounts);
        if !self.no_secrets {
            resources.push(Resource::DockerConfigJsonSecrets);
            resources.push(Resource::DockerCfgSecrets);
        }
        let mut streams = Vec::new();
        for r in resources {
            if self.namespaces.is_empty() {
                streams.push(Stream {
                    resource: r,
                    namespace: None,
                    label_selector: None,
                });
            } else {
                for ns in &self.namespaces {
                    streams.push(Stream {
                        resource: r,
                        namespace: Some(ns.clone()),
                        label_selector: None,
                    });
                }
            }
        }
        if let Some(l) = &self.namespace_label {
            streams.push(Stream {
                resource: Resource::Namespaces,
                namespace: None,
                label_selector: Some(l.clone()),
            });
        }
        if self.platform_check {
            streams.push(Stream {
                resource: Resource::Nodes,
                namespace: None,
                label_selector: None,
            });
        }
        streams
    }

    /// The inventory's filters.
    pub fn inventory_config(&self, registry: &RegistryConfig) -> crate::inventory::InventoryConfig {
        crate::inventory::InventoryConfig {
            registry: Some(registry.clone()),
            ignored_images: self.ignored_images.clone(),
            allowed_images: self.allowed_images.clone(),
            force_disabled: self.force_disabled.clone(),
            filter_namespaces: self.namespace_label.is_some(),
            node_platforms: registry.checker.platforms.clone(),
        }
    }
}

/// The exporter's own settings, validated.
#[derive(Debug, Clone)]
pub struct ExporterOptions {
    /// `--bind-address`.
    pub bind_address: String,
    /// Queue timing and limits.
    pub queue: crate::exporter::scheduler::QueueConfig,
    /// `--workers`.
    pub workers: usize,
    /// `--once`.
    pub once: bool,
    /// `--one-series-per-container`.
    pub one_series_per_container: bool,
    /// `--web-config-file`, read and validated.
    pub web: crate::exporter::web_config::WebConfig,
    /// Its TLS side, certificates already loaded (built once, here).
    pub tls: Option<std::sync::Arc<crate::exporter::tls::TlsServer>>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// What to do.
    pub command: Command,
    /// Exporter settings.
    pub exporter: ExporterOptions,
    /// Kubernetes side.
    pub kube: KubeOptions,
    /// Registry side.
    pub registry: RegistryConfig,
    /// Output format of `check`.
    pub output: Output,
    /// Log level.
    pub log_level: LevelFilter,
}

/// Longest duration a flag accepts; longer values are surely mistakes and
/// would overflow deadlines.
const MAX_FLAG_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

fn duration_flag(name: &str, value: &str) -> Result<Duration, ConfigError> {
    match parse_duration(value) {
        Some(d) if d > MAX_FLAG_DURATION => {
            Err(ConfigError(format!("--{name} {value:?}: at most a year")))
        }
        Some(d) if !d.is_zero() => Ok(d),
        _ => Err(ConfigError(format!(
            "--{name} {value:?}: expected a duration such as 500ms, 15s or 10m"
        ))),
    }
}

/// Splits repeatable, comma-separated list flags.
fn list(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn read_file(flag: &str, path: &str) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| ConfigError(format!("--{flag} {path}: {e}")))
}

/// Reads the CA certificates of one `--capath` file.
fn read_cas(path: &str) -> Result<Vec<Vec<u8>>, ConfigError> {
    let pem = read_file("capath", path)?;
    let mut out = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => out.push(c.der().to_vec()),
            Ok(_) => {}
            Err(e) => {
                return Err(ConfigError(format!(
                    "--capath {path}: not a valid PEM file ({e})"
                )))
            }
        }
    }
    if out.is_empty() {
        return Err(ConfigError(format!(
            "--capath {path}: no certificate found"
        )));
    }
    Ok(out)
}

/// Loads the kubelet's credential provider configuration, when given; the
/// kubelet needs both flags, and so do we.
fn credential_providers(
    args: &Args,
) -> Result<Option<std::sync::Arc<crate::credentials::provider::CredentialProviders>>, ConfigError>
{
    let (config, bin_dir) = match (
        &args.image_credential_provider_config,
        &args.image_credential_provider_bin_dir,
    ) {
        (None, None) => return Ok(None),
        (Some(c), Some(b)) => (c, b),
        _ => {
            return Err(ConfigError(
                "--image-credential-provider-config and --image-credential-provider-bin-dir go together".into(),
            ))
        }
    };
    let options = crate::credentials::provider::ProviderOptions {
        config: config.into(),
        bin_dir: bin_dir.into(),
        timeout: duration_flag(
            "image-credential-provider-timeout",
            &args.image_credential_provider_timeout,
        )?,
        max_running: 4,
    };
    crate::credentials::provider::CredentialProviders::load(&options)
        .map(|p| Some(std::sync::Arc::new(p)))
        .map_err(ConfigError)
}

/// Loads `--docker-config` files into one keyring.
fn read_docker_configs(paths: &[String]) -> Result<Keyring, ConfigError> {
    let mut creds: Vec<Arc<Credential>> = Vec::new();
    for path in paths {
        let bytes = read_file("docker-config", path)?;
        let parsed = parse_docker_config(
            &format!("docker-config {path}"),
            &bytes,
            ConfigFormat::DockerConfigJson,
        )
        .map_err(|e| ConfigError(format!("--docker-config: {e}")))?;
        for w in parsed.warnings {
            log::warn!("{w}");
        }
        creds.extend(parsed.credentials.into_iter().map(Arc::new));
    }
    Ok(Keyring::new(creds))
}

fn exporter_options(args: &Args) -> Result<ExporterOptions, ConfigError> {
    let period = match (&args.check_period, &args.check_interval) {
        (Some(p), Some(i)) if p != i => {
            return Err(ConfigError(format!(
                "--check-period {p:?} and --check-interval {i:?} name the same setting; give one"
            )));
        }
        (Some(p), _) => duration_flag("check-period", p)?,
        (None, Some(i)) => duration_flag("check-interval", i)?,
        (None, None) => Duration::from_secs(15),
    };
    let recheck_within = duration_flag("recheck-within", &args.recheck_within)?;
    if recheck_within < period {
        return Err(ConfigError(format!(
            "--recheck-within {:?} must not be shorter than the check period {period:?}",
            args.recheck_within
        )));
    }
    if args.workers == 0 || args.workers > 1024 {
        return Err(ConfigError(format!(
            "--workers {}: expected 1 to 1024",
            args.workers
        )));
    }
    if args.max_per_registry == 0 {
        return Err(ConfigError("--max-per-registry: must be at least 1".into()));
    }
    if args.bind_address.trim().is_empty() || !args.bind_address.contains(':') {
        return Err(ConfigError(format!(
            "--bind-address {:?}: expected host:port or :port",
            args.bind_address
        )));
    }
    let (web, tls) = match &args.web_config_file {
        Some(path) => web_config(path)?,
        None => Default::default(),
    };
    Ok(ExporterOptions {
        bind_address: args.bind_address.clone(),
        queue: crate::exporter::scheduler::QueueConfig {
            period,
            recheck_within,
            max_per_registry: args.max_per_registry,
            max_in_flight: args.workers,
        },
        workers: args.workers,
        once: args.once,
        one_series_per_container: args.one_series_per_container,
        web,
        tls,
    })
}

/// `--web-config-file`, read, and its certificates loaded once, so that a
/// file that cannot serve stops the start before anything runs; the server
/// built here is the one that serves.
type WebParts = (
    crate::exporter::web_config::WebConfig,
    Option<std::sync::Arc<crate::exporter::tls::TlsServer>>,
);

fn web_config(path: &str) -> Result<WebParts, ConfigError> {
    let web = crate::exporter::web_config::load(path).map_err(|e| ConfigError(e.to_string()))?;
    let tls = match &web.tls {
        None => None,
        Some(tls) => Some(std::sync::Arc::new(
            crate::exporter::tls::TlsServer::new(tls.clone())
                .map_err(|e| ConfigError(format!("--web.config.file: {path}: {e}")))?,
        )),
    };
    Ok((web, tls))
}

fn kube_options(args: &Args) -> Result<KubeOptions, ConfigError> {
    use crate::kube::resources::{CustomKind, Kind};
    let mut custom: Vec<Kind> = Vec::new();
    for spec in &args.pod_template_resource {
        let c = CustomKind::parse(spec).map_err(ConfigError)?;
        if custom
            .iter()
            .any(|k| matches!(k, Kind::Custom(o) if **o == c))
        {
            continue;
        }
        custom.push(Kind::Custom(c.leak()));
    }
    let mut force_disabled = std::collections::HashSet::new();
    for k in list(&args.force_check_disabled_controllers) {
        if k == "*" {
            force_disabled.extend(Kind::ALL);
            force_disabled.insert(Kind::Rollout);
            force_disabled.extend(custom.iter().copied());
        } else {
            let named = custom.iter().copied().find(|c| match c {
                Kind::Custom(c) => k == c.plural || c.plural.strip_suffix('s') == Some(k.as_str()),
                _ => false,
            });
            let kind = Kind::parse(&k).or(named).ok_or_else(|| {
                ConfigError(format!("--force-check-disabled-controllers {k:?}: expected deployment, statefulset, daemonset, cronjob, rollout, a --pod-template-resource's resource, or *"))
            })?;
            force_disabled.insert(kind);
        }
    }
    let regexes = |flag: &str, v: &Option<String>| {
        crate::inventory::parse_image_regexes(flag, v.as_deref().unwrap_or("")).map_err(ConfigError)
    };
    let mut namespaces = Vec::new();
    for ns in list(&args.namespace) {
        let ok = !ns.is_empty()
            && ns.len() <= 63
            && ns
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(ConfigError(format!(
                "--namespace {ns:?}: not a valid namespace name"
            )));
        }
        if !namespaces.contains(&ns) {
            namespaces.push(ns);
        }
    }
    if args.page_size == 0 {
        return Err(ConfigError("--page-size: must be at least 1".into()));
    }
    Ok(KubeOptions {
        kubeconfig: args.kubeconfig.clone(),
        context: args.context.clone(),
        namespaces,
        no_secrets: args.no_secrets,
        pods: (!args.no_pod_checks).then(|| {
            let custom = custom.iter().filter_map(|k| match k {
                Kind::Custom(c) => Some(*c),
                _ => None,
            });
            crate::kube::resources::Covering {
                custom: custom.collect(),
            }
            .leak()
        }),
        namespace_label: args
            .namespace_label
            .clone()
            .filter(|l| !l.trim().is_empty()),
        watch: crate::kube::watch::WatchOptions {
            page_size: args.page_size,
            watch_timeout: duration_flag("watch-timeout", &args.watch_timeout)?,
            list_timeout: Duration::from_secs(60),
            discovery_interval: duration_flag("discovery-interval", &args.discovery_interval)?,
        },
        custom_kinds: custom,
        ignored_images: regexes("ignored-images", &args.ignored_images)?,
        allowed_images: regexes("allowed-images", &args.allowed_images)?,
        force_disabled,
        platform_check: !args.no_platform_check,
    })
}

impl Config {
    /// Validates raw arguments.
    pub fn from_args(args: Args) -> Result<Config, ConfigError> {
        let command = match args.command.split_first() {
            None if !args.platform.is_empty() => {
                return Err(ConfigError(
                    "--platform applies to `check`; the exporter reads the platforms of the cluster's nodes".into(),
                ))
            }
            None if args.container_runtime.is_some() => {
                return Err(ConfigError(
                    "--container-runtime applies to `check`; the exporter reads the runtimes of the cluster's nodes".into(),
                ))
            }
            None => Command::Serve,
            Some((c, images)) if c == "check" => {
                if images.is_empty() {
                    return Err(ConfigError("check: name at least one image".into()));
                }
                let mut platforms = Vec::new();
                for p in list(&args.platform) {
                    platforms.push(
                        crate::image::platform::Platform::parse(&p)
                            .map_err(|e| ConfigError(format!("--platform: {e}")))?,
                    );
                }
                let runtime = args
                    .container_runtime
                    .as_deref()
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .map(str::to_string);
                if runtime.is_some() && platforms.is_empty() {
                    let (os, arch) = crate::registry::check::DEFAULT_PLATFORM;
                    platforms.push(crate::image::platform::Platform::new(os, arch, ""));
                }
                Command::Check {
                    images: images.to_vec(),
                    platforms,
                    runtime,
                }
            }
            Some((c, _)) => {
                return Err(ConfigError(format!(
                    "unknown command {c:?}; the only command is `check IMAGE...`"
                )))
            }
        };
        let output = match args.output.as_str() {
            "table" => Output::Table,
            "json" => Output::Json,
            o => {
                return Err(ConfigError(format!(
                    "--output {o:?}: expected table or json"
                )))
            }
        };
        let log_level = crate::sys::logger::parse_level(&args.log_level).ok_or_else(|| {
            ConfigError(format!(
                "--log-level {:?}: expected error, warn, info, debug or trace",
                args.log_level
            ))
        })?;
        let connect_timeout = duration_flag("connect-timeout", &args.connect_timeout)?;
        let request_timeout = duration_flag("request-timeout", &args.request_timeout)?;
        let mut extra_roots = Vec::new();
        for path in &args.capath {
            extra_roots.extend(read_cas(path)?);
        }
        let default_registry = match args.default_registry.as_deref().map(str::trim) {
            None | Some("") => DOCKER_HUB.to_string(),
            Some(r) => {
                let r = r.trim_end_matches('/');
                let r = if r == "index.docker.io" {
                    DOCKER_HUB
                } else {
                    r
                };
                // Validate by parsing a name under it.
                Reference::parse(&format!("{r}/x")).ok().filter(|p| p.registry == r).ok_or_else(|| {
                    ConfigError(format!("--default-registry {r:?}: expected a registry host such as registry.example.com:5000"))
                })?;
                r.to_string()
            }
        };
        let mirrors = Mirrors::parse(&args.image_mirror).map_err(ConfigError)?;
        let node_keyring = read_docker_configs(&args.docker_config)?;
        let providers = credential_providers(&args)?;
        let kube = kube_options(&args)?;
        let exporter = exporter_options(&args)?;
        // On when `check --platform` names platforms; in the exporter, once
        // the inventory knows the nodes.
        let platform_switch = (!args.no_platform_check).then(|| {
            let named: &[crate::image::platform::Platform] = match &command {
                Command::Check { platforms, .. } => platforms,
                Command::Serve => &[],
            };
            Arc::new(crate::image::platform::NodePlatforms::new(
                !named.is_empty(),
                named,
            ))
        });
        // `0` turns the walk off; any other value is a duration.
        let verify_every = match parse_duration(&args.verify_pull_path_every) {
            Some(d) if d.is_zero() => None,
            _ => Some(duration_flag(
                "verify-pull-path-every",
                &args.verify_pull_path_every,
            )?),
        };
        let quota_reserve = crate::registry::quota::parse_reserve(&args.pull_quota_reserve)
            .map_err(|e| ConfigError(format!("--pull-quota-reserve {e}")))?;
        Ok(Config {
            command,
            exporter,
            kube,
            registry: RegistryConfig {
                checker: CheckerConfig {
                    transport: TransportConfig {
                        skip_verify: args.skip_registry_cert_verification,
                        extra_roots,
                        connect_timeout: connect_timeout.min(request_timeout),
                        request_timeout,
                        proxies: crate::registry::proxy::ProxyEnv::from_env()
                            .map_err(ConfigError)?,
                    },
                    allow_plain_http: args.allow_plain_http,
                    plain_http_registries: list(&args.plain_http_registries),
                    get_fallback_registries: list(&args.get_fallback_registries),
                    retries: 2,
                    retry_backoff: Duration::from_millis(250),
                    providers,
                    platforms: platform_switch,
                    verify_every,
                    quota_reserve,
                },
                default_registry,
                mirrors,
                node_keyring,
            },
            output,
            log_level,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn go_style_arguments() {
        assert_eq!(
            normalize_args(&s(&[
                "-bind-address=:9090",
                "--allow-plain-http=true",
                "-skip-registry-cert-verification=false",
                "--image-mirror=docker.io=m.io",
                "check",
                "a=b",
                "-v",
                "--",
                "-x=y"
            ])),
            s(&[
                "--bind-address",
                ":9090",
                "--allow-plain-http",
                "--image-mirror",
                "docker.io=m.io",
                "check",
                "a=b",
                "-v",
                "--",
                "-x=y"
            ])
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15s"), Some(Duration::from_secs(15)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("60"), Some(Duration::from_secs(60)));
        for bad in ["", "s", "10x", "-1s", "1e400s", "1s2"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    fn config(args: &[&str]) -> Result<Config, ConfigError> {
        let args = Args::from_args(&["x"], args).map_err(|e| ConfigError(e.output))?;
        Config::from_args(args)
    }

    #[test]
    fn flag_errors_name_the_flag() {
        for (args, flag) in [
            (&["--connect-timeout", "soon"][..], "--connect-timeout"),
            (&["--output", "xml", "check", "a"][..], "--output"),
            (&["--capath", "/nonexistent/ca.pem"][..], "--capath"),
            (
                &["--docker-config", "/nonexistent/config.json"][..],
                "--docker-config",
            ),
            (&["--image-mirror", "nonsense"][..], "--image-mirror"),
            (
                &["--default-registry", "bad host"][..],
                "--default-registry",
            ),
            (&["--log-level", "loud"][..], "--log-level"),
            (
                &["--ignored-images", "ok~(unclosed"][..],
                "--ignored-images",
            ),
            (
                &["--force-check-disabled-controllers", "pods"][..],
                "--force-check-disabled-controllers",
            ),
            (&["--namespace", "Bad_NS"][..], "--namespace"),
            (&["--watch-timeout", "0s"][..], "--watch-timeout"),
            (
                &["--request-timeout", "99999999999h"][..],
                "--request-timeout",
            ),
            (
                &["--check-period", "10s", "--check-interval", "20s"][..],
                "--check-period",
            ),
            (&["--recheck-within", "1s"][..], "--recheck-within"),
            (&["--workers", "0"][..], "--workers"),
            (&["--bind-address", "8080"][..], "--bind-address"),
        ] {
            let e = config(args).unwrap_err();
            assert!(e.0.contains(flag), "{args:?}: {e}");
        }
        assert!(config(&["check"]).is_err());
        assert!(config(&["frobnicate"]).is_err());
    }

    #[test]
    fn defaults() {
        let c = config(&[]).unwrap();
        assert!(matches!(c.command, Command::Serve));
        assert_eq!(c.registry.default_registry, "docker.io");
        assert_eq!(
            c.registry.checker.transport.request_timeout,
            Duration::from_secs(15)
        );
        let c = config(&[
            "--default-registry",
            "index.docker.io",
            "--plain-http-registries",
            "a:5000,b",
            "check",
            "x",
        ])
        .unwrap();
        assert_eq!(c.registry.default_registry, "docker.io");
        assert_eq!(c.registry.checker.plain_http_registries, ["a:5000", "b"]);
    }
}
