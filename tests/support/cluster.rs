//! Runs the exporter's watch loops and inventory in-process against the fake
//! apiserver, so tests can look at the inventory directly.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_image_availability_exporter::credentials::Keyring;
use k8s_image_availability_exporter::image::reference::Mirrors;
use k8s_image_availability_exporter::inventory::{self, Inventory, InventoryConfig, SyncProgress};
use k8s_image_availability_exporter::kube::client::ApiClient;
use k8s_image_availability_exporter::kube::config::discover;
use k8s_image_availability_exporter::kube::watch::{spawn_all, Stream, StreamState, WatchOptions};
use k8s_image_availability_exporter::registry::transport::TransportConfig;
use k8s_image_availability_exporter::registry::CheckerConfig;
use k8s_image_availability_exporter::registry::RegistryConfig;

use super::wait_until;

/// One container as the inventory reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seen {
    /// `kind ns/name container`.
    pub who: String,
    /// The image as written.
    pub image: String,
    /// User names of the credentials the check would try.
    pub users: Vec<String>,
}

/// The exporter's Kubernetes half, running.
pub struct Watching {
    /// The inventory.
    pub inventory: Arc<RwLock<Inventory>>,
    /// Initial-sync progress.
    pub progress: Arc<SyncProgress>,
    /// Per-stream state.
    pub streams: Vec<(Stream, Arc<StreamState>)>,
    stop: Arc<AtomicBool>,
}

/// A registry configuration for tests that never contact a registry.
pub fn registry_config() -> RegistryConfig {
    RegistryConfig {
        checker: CheckerConfig {
            transport: TransportConfig {
                skip_verify: false,
                extra_roots: vec![],
                connect_timeout: Duration::from_secs(1),
                request_timeout: Duration::from_secs(1),
                proxies: Default::default(),
            },
            allow_plain_http: false,
            plain_http_registries: vec![],
            get_fallback_registries: vec![],
            retries: 0,
            retry_backoff: Duration::ZERO,
            providers: None,
            platforms: None,
            verify_every: None,
            quota_reserve: 50,
        },
        default_registry: "docker.io".into(),
        mirrors: Mirrors::default(),
        node_keyring: Keyring::default(),
    }
}

/// Short timeouts so resumes happen within a test.
pub fn fast_watch() -> WatchOptions {
    WatchOptions {
        page_size: 500,
        watch_timeout: Duration::from_secs(2),
        list_timeout: Duration::from_secs(10),
        discovery_interval: Duration::from_secs(1),
    }
}

impl Watching {
    /// Starts loops for `streams` with the kubeconfig at `kubeconfig`.
    pub fn start(
        kubeconfig: &str,
        streams: Vec<Stream>,
        opts: WatchOptions,
        config: InventoryConfig,
    ) -> Watching {
        let cluster = discover(Some(kubeconfig), None).expect("kubeconfig");
        let client = Arc::new(ApiClient::new(cluster).expect("client"));
        Watching::with_client(client, streams, opts, config)
    }

    /// Starts loops with an existing client.
    pub fn with_client(
        client: Arc<ApiClient>,
        streams: Vec<Stream>,
        opts: WatchOptions,
        config: InventoryConfig,
    ) -> Watching {
        // Set KIAE_TEST_LOG=debug to see the loops' log lines.
        if let Some(level) = std::env::var("KIAE_TEST_LOG")
            .ok()
            .and_then(|l| l.parse().ok())
        {
            k8s_image_availability_exporter::sys::logger::init(level);
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(SyncProgress {
            expected: streams.len(),
            ..Default::default()
        });
        let inv = Arc::new(RwLock::new(Inventory::new(config)));
        let states = spawn_all(client, streams, opts, tx, stop.clone());
        let (i, p) = (inv.clone(), progress.clone());
        std::thread::spawn(move || inventory::run(rx, i, None, p, None));
        Watching {
            inventory: inv,
            progress,
            streams: states,
            stop,
        }
    }

    /// Waits for every stream's first list.
    pub fn wait_synced(&self) {
        wait_until("initial sync", Duration::from_secs(20), || {
            self.progress.done()
        });
    }

    /// Every reported container, sorted.
    pub fn seen(&self) -> Vec<Seen> {
        let inv = self.inventory.read().unwrap();
        let mut out = Vec::new();
        inv.for_each_container(|w, i, id| {
            let c = &w.containers[i];
            let users = inv
                .check(id)
                .map(|s| s.credentials.iter().map(|c| c.username.clone()).collect())
                .unwrap_or_default();
            out.push(Seen {
                who: format!("{} {} {}", w.kind, w.key, c.container),
                image: c.image.to_string(),
                users,
            });
        });
        out.sort();
        out
    }

    /// The `who` of every reported container.
    pub fn who(&self) -> Vec<String> {
        self.seen().into_iter().map(|s| s.who).collect()
    }

    /// Waits until `cond` holds for the reported containers.
    pub fn wait_for(&self, what: &str, cond: impl Fn(&[Seen]) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if cond(&self.seen()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "timed out waiting for {what}; the inventory reports {:#?}",
            self.seen()
        );
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
