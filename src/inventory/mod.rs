//! What the cluster runs, reduced to what we check: per workload its
//! containers and images, per namespace its pull secrets and service
//! accounts. From these it derives the distinct checks (one image plus the
//! credentials a pod of that workload would use, in the kubelet's order) and
//! which containers use each check. It tells the scheduler when checks
//! appear and disappear. `placement` says where a template's pods can land.
//! Imports `sys`, `image`, `credentials`, `registry` (the configuration
//! that names images) and `kube`.

pub mod placement;
pub mod running;

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::Arc;

use regex::Regex;

use crate::credentials::{Credential, Keyring};
use crate::image::platform::{NodeGroup, Platform};
use crate::image::reference::Mirrored;
use crate::kube::resources::{Kind, Object, ObjectKey, Resource, Workload};
use crate::kube::scheduling::{Node, Scheduling};
use crate::kube::template::ContainerImage;
use crate::kube::watch::Event;
use crate::registry::RegistryConfig;

/// Identifies a check for the scheduler and the results table.
pub type CheckId = u64;

/// What the inventory thread is told: the watch loops' events, and the
/// scheduler's word that a check has its first verdict.
#[derive(Debug, Clone)]
pub enum Input {
    /// From a watch loop.
    Watch(Event),
    /// The scheduler has the first verdict of this check.
    Verdict(CheckId),
}

impl From<Event> for Input {
    fn from(e: Event) -> Input {
        Input::Watch(e)
    }
}

/// What a check looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An image, with the mirrors to try before its own registry.
    Image(Mirrored),
    /// The image string is not a reference (`bad_image_format`, no request).
    Invalid(String),
    /// A pull secret of the pod cannot be parsed: `MakeDockerKeyring` fails,
    /// so the kubelet fails every pull of the pod before any request.
    BrokenPullSecret(String),
}

impl Target {
    /// The image, when there is one to ask a registry about.
    pub fn image(&self) -> Option<&Mirrored> {
        match self {
            Target::Image(m) => Some(m),
            _ => None,
        }
    }
}

/// One distinct check.
#[derive(Debug)]
pub struct CheckSpec {
    /// Stable for the check's lifetime.
    pub id: CheckId,
    /// What to check.
    pub target: Target,
    /// Credentials in the order a pod would try them; none means anonymous.
    pub credentials: Vec<Arc<Credential>>,
}

impl CheckSpec {
    /// The image this check asks about, the same for its checks with other
    /// credentials; `None` when the check makes no request.
    pub fn image_key(&self) -> Option<String> {
        self.target.image().map(|m| m.reference.check_key())
    }

    /// The registry host checks are grouped by for per-registry limits: the
    /// first host tried.
    pub fn registry(&self) -> &str {
        match self.target.image().and_then(|m| m.candidates().next()) {
            Some((r, _)) => r.api_host(),
            None => "",
        }
    }
}

/// A change the scheduler must act on.
#[derive(Debug, Clone)]
pub enum Change {
    /// A check appeared: run it soon.
    Added(Arc<CheckSpec>),
    /// No container uses this check any more: stop running it. Its verdict
    /// stays shown (`keep_result`) while a container that moved away from it
    /// waits for the first verdict of its new check.
    Removed {
        /// The check.
        id: CheckId,
        /// Keep its last verdict until [`Change::Forget`].
        keep_result: bool,
    },
    /// A verdict kept by `Removed { keep_result: true }` is no longer shown.
    Forget(CheckId),
}

/// What a container showed before it moved to another check: kept until the
/// new check has a verdict, so no scrape sees the container without a series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Previous {
    /// The check whose verdict is still shown.
    pub check: CheckId,
    /// The image label of those series, when the image itself changed.
    pub image: Option<Arc<str>>,
}

/// Filters and switches from flags.
#[derive(Debug, Clone, Default)]
pub struct InventoryConfig {
    /// References, mirrors and node credentials.
    pub registry: Option<RegistryConfig>,
    /// `--ignored-images`: images matching any of these are not checked.
    pub ignored_images: Vec<Regex>,
    /// `--allowed-images`: when set, only images matching one of these are checked.
    pub allowed_images: Vec<Regex>,
    /// `--force-check-disabled-controllers`: kinds reported even when disabled.
    pub force_disabled: HashSet<Kind>,
    /// `--namespace-label` is set: only namespaces the namespace watch reports count.
    pub filter_namespaces: bool,
    /// Turned on once the nodes are known, so the checker reads the
    /// platforms of images; `None` with `--no-platform-check`.
    pub node_platforms: Option<Arc<crate::image::platform::NodePlatforms>>,
}

/// The platforms a workload's pods can land on, with node counts.
pub type Placement = Arc<[NodeGroup]>;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CheckKey {
    image: String,
    credentials: Vec<u64>,
}

/// What one container needs checked.
struct Resolution {
    key: CheckKey,
    target: Target,
    credentials: Vec<Arc<Credential>>,
}

/// The key of a workload.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadKey {
    /// Kind.
    pub kind: Kind,
    /// Namespace and name.
    pub key: ObjectKey,
}

/// Counts for log lines and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Workloads known.
    pub workloads: usize,
    /// Workloads reported (enabled or forced, in an allowed namespace).
    pub reported_workloads: usize,
    /// Containers of reported workloads with a checked image.
    pub containers: usize,
    /// Distinct normalised images among them.
    pub images: usize,
    /// Distinct checks (image plus credentials).
    pub checks: usize,
    /// Pull secrets known.
    pub pull_secrets: usize,
}

/// The inventory. Owned by the inventory thread; read by the metrics renderer.
pub struct Inventory {
    config: InventoryConfig,
    /// Boxed: the table then holds 72-byte entries, not 240 (a hash table
    /// of 2,000 workloads has 4,096 slots).
    workloads: HashMap<WorkloadKey, Box<Workload>>,
    /// Per reported workload: (container index, check) for each checked container.
    resolved: HashMap<WorkloadKey, Vec<(usize, CheckId)>>,
    secrets: HashMap<ObjectKey, Result<Vec<Arc<Credential>>, Arc<str>>>,
    service_accounts: HashMap<ObjectKey, Vec<Arc<str>>>,
    namespaces: HashSet<Arc<str>>,
    /// Each key is held once, shared by both tables.
    checks: HashMap<Arc<CheckKey>, (CheckId, usize)>,
    specs: HashMap<CheckId, (Arc<CheckSpec>, Arc<CheckKey>)>,
    next_id: CheckId,
    hasher: RandomState,
    dirty_workloads: HashSet<WorkloadKey>,
    dirty_namespaces: HashSet<Arc<str>>,
    changes: Vec<Change>,
    /// Checks that have a verdict (the scheduler says so once per check).
    verdicts: HashSet<CheckId>,
    /// Containers between two checks: (workload, container index) -> previous.
    previous: HashMap<(WorkloadKey, usize), Previous>,
    /// How many containers still show each previous check.
    held: HashMap<CheckId, usize>,
    /// The containers of workloads replaced since the last flush, to match
    /// containers by name when a template changed.
    replaced: HashMap<WorkloadKey, Vec<ContainerImage>>,
    /// Deployment -> the Rollouts whose `workloadRef` names it: such a
    /// Deployment is reported only through them.
    referenced: HashMap<ObjectKey, HashSet<ObjectKey>>,
    /// The cluster's nodes by name, for the platform check.
    nodes: HashMap<Arc<str>, Node>,
    /// The node list has been delivered once.
    nodes_synced: bool,
    /// Nodes changed since the last flush.
    nodes_dirty: bool,
    /// Every distinct scheduling of the workloads (interned: workloads
    /// with equal templates share one), with its placement.
    schedulings: HashMap<Arc<Scheduling>, Placement>,
    /// Container names and images, interned: thousands of containers name
    /// a few hundred images (and `app`, `main`, ...).
    strings: HashSet<Arc<str>>,
    /// Workloads replaced or deleted since `strings` was last swept.
    churn: usize,
    /// What the running pods run, for `tag_moved`.
    running: running::RunningPods,
}

impl Inventory {
    /// An empty inventory.
    pub fn new(config: InventoryConfig) -> Inventory {
        Inventory {
            config,
            workloads: HashMap::new(),
            resolved: HashMap::new(),
            secrets: HashMap::new(),
            service_accounts: HashMap::new(),
            namespaces: HashSet::new(),
            checks: HashMap::new(),
            specs: HashMap::new(),
            next_id: 1,
            hasher: RandomState::new(),
            dirty_workloads: HashSet::new(),
            dirty_namespaces: HashSet::new(),
            changes: Vec::new(),
            verdicts: HashSet::new(),
            previous: HashMap::new(),
            held: HashMap::new(),
            replaced: HashMap::new(),
            referenced: HashMap::new(),
            nodes: HashMap::new(),
            nodes_synced: false,
            nodes_dirty: false,
            schedulings: HashMap::new(),
            strings: HashSet::new(),
            churn: 0,
            running: Default::default(),
        }
    }

    /// Records one watch event or verdict. Derived state is updated by
    /// [`Inventory::flush`], so a burst of events (an initial list) is
    /// resolved once.
    pub fn apply(&mut self, input: impl Into<Input>) {
        let event = match input.into() {
            Input::Verdict(id) => return self.verdict(id),
            Input::Watch(e) => e,
        };
        match event {
            Event::Synced(Resource::Nodes, _) => {
                self.nodes_synced = true;
                self.nodes_dirty = true;
            }
            Event::Synced(..) => {}
            Event::Upsert(_, Object::Node(key, node)) => {
                if self.nodes.get(&key.name) != Some(&*node) {
                    self.nodes.insert(key.name, *node);
                    self.nodes_dirty = true;
                }
            }
            Event::Delete(Resource::Nodes, key) => {
                if self.nodes.remove(&key.name).is_some() {
                    self.nodes_dirty = true;
                }
            }
            Event::Upsert(_, Object::Running(key, r)) => self.running.set(&key, Some(r)),
            Event::Upsert(_, Object::Workload(mut w)) => {
                if w.kind == Kind::Pod {
                    self.running.set(&w.key, w.running.take());
                }
                w.scheduling = self.intern(w.scheduling);
                for c in &mut w.containers {
                    c.container = self.intern_str(&c.container);
                    c.image = self.intern_str(&c.image);
                }
                w.service_account = self.intern_str(&w.service_account);
                for n in &mut w.pull_secrets {
                    *n = self.intern_str(n);
                }
                let key = WorkloadKey {
                    kind: w.kind,
                    key: w.key.clone(),
                };
                // A Rollout with workloadRef is stored with the Deployment's
                // containers filled in, so it is compared by its own fields.
                let same = match self.workloads.get(&key) {
                    Some(old) if w.template_ref.is_some() => {
                        old.template_ref == w.template_ref && old.enabled == w.enabled
                    }
                    Some(old) => **old == w,
                    None => false,
                };
                if !same {
                    let old_ref = self
                        .workloads
                        .get(&key)
                        .and_then(|o| o.template_ref.clone());
                    self.reference(&key, old_ref, w.template_ref.clone());
                    if let Some(old) = self.workloads.insert(key.clone(), Box::new(w)) {
                        self.churn += 1;
                        self.replaced.entry(key.clone()).or_insert(old.containers);
                    }
                    self.mark_dependents(&key);
                    self.dirty_workloads.insert(key);
                }
            }
            // The watch loop turns a skipped object into a Delete when it
            // was known; this is that, for a caller that sends it as is.
            Event::Upsert(r, Object::Skipped(key)) => self.apply(Event::Delete(r, key)),
            Event::Gone(_, id) => self.running.remove(id),
            Event::Delete(r @ (Resource::Workload(_) | Resource::Pods(_)), key) => {
                if matches!(r, Resource::Pods(_)) {
                    self.running.set(&key, None);
                }
                let Some(kind) = r.kind() else { return };
                let key = WorkloadKey { kind, key };
                if let Some(old) = self.workloads.remove(&key) {
                    self.churn += 1;
                    self.reference(&key, old.template_ref, None);
                    self.mark_dependents(&key);
                    self.dirty_workloads.insert(key);
                }
            }
            Event::Upsert(_, Object::PullSecret(s)) => {
                if self.secrets.get(&s.key) != Some(&s.credentials) {
                    self.dirty_namespaces.insert(s.key.namespace.clone());
                    self.secrets.insert(s.key, s.credentials);
                }
            }
            Event::Delete(Resource::DockerConfigJsonSecrets | Resource::DockerCfgSecrets, key) => {
                if self.secrets.remove(&key).is_some() {
                    self.dirty_namespaces.insert(key.namespace);
                }
            }
            Event::Upsert(_, Object::ServiceAccount(sa)) => {
                if self.service_accounts.get(&sa.key) != Some(&sa.pull_secrets) {
                    self.dirty_namespaces.insert(sa.key.namespace.clone());
                    self.service_accounts.insert(sa.key, sa.pull_secrets);
                }
            }
            Event::Delete(Resource::ServiceAccounts, key) => {
                if self.service_accounts.remove(&key).is_some() {
                    self.dirty_namespaces.insert(key.namespace);
                }
            }
            Event::Upsert(_, Object::Namespace(ns)) => {
                if self.namespaces.insert(ns.name.clone()) {
                    self.dirty_namespaces.insert(ns.name);
                }
            }
            Event::Delete(Resource::Namespaces, key) => {
                if self.namespaces.remove(&key.name) {
                    self.dirty_namespaces.insert(key.name);
                }
            }
        }
    }

    /// The shared copy of a string.
    fn intern_str(&mut self, s: &Arc<str>) -> Arc<str> {
        if let Some(k) = self.strings.get(s) {
            return k.clone();
        }
        self.strings.insert(s.clone());
        s.clone()
    }

    /// Drops interned strings and schedulings no workload uses any more,
    /// once enough workloads changed that some may be unused.
    fn sweep_strings(&mut self) {
        if self.churn < 1024.max(self.strings.len() / 4) {
            return;
        }
        self.churn = 0;
        self.strings.retain(|s| Arc::strong_count(s) > 1);
        self.strings.shrink_to_fit();
        // Schedulings too: without node changes nothing else drops them.
        self.schedulings.retain(|k, _| Arc::strong_count(k) > 1);
    }

    /// The shared copy of a scheduling, computing its placement when new.
    fn intern(&mut self, s: Arc<Scheduling>) -> Arc<Scheduling> {
        if let Some((k, _)) = self.schedulings.get_key_value(&s) {
            return k.clone();
        }
        let placement = self.place(&s);
        self.schedulings.insert(s.clone(), placement);
        s
    }

    fn place(&self, s: &Scheduling) -> Placement {
        placement::platforms(s, self.nodes.values()).into()
    }

    /// After node changes: every placement again, and schedulings no
    /// workload uses any more are dropped.
    fn replace_all(&mut self) {
        self.nodes_dirty = false;
        self.schedulings.retain(|k, _| Arc::strong_count(k) > 1);
        let nodes = &self.nodes;
        for (s, placement) in self.schedulings.iter_mut() {
            *placement = placement::platforms(s, nodes.values()).into();
        }
        if let Some(known) = &self.config.node_platforms {
            let on = self.nodes_synced && !self.nodes.is_empty();
            let platforms: Vec<Platform> = self
                .nodes
                .values()
                .filter_map(|n| n.platform.clone())
                .collect();
            known.set(on, &platforms);
        }
    }

    /// The platforms the pods of `w` can land on; `None` while the nodes
    /// are unknown (not listed yet, not listable, or the check is off).
    pub fn placement(&self, w: &Workload) -> Option<&[NodeGroup]> {
        if !self.nodes_synced || self.config.node_platforms.is_none() {
            return None;
        }
        self.schedulings
            .get(&w.scheduling)
            .map(|p| &p[..])
            .filter(|p| !p.is_empty())
    }

    /// Resolves what changed since the last flush and returns the check changes.
    pub fn flush(&mut self) -> Vec<Change> {
        if self.nodes_dirty {
            self.replace_all();
        }
        self.sweep_strings();
        let mut todo: Vec<WorkloadKey> = self.dirty_workloads.drain().collect();
        if !self.dirty_namespaces.is_empty() {
            let dirty = std::mem::take(&mut self.dirty_namespaces);
            todo.extend(
                self.workloads
                    .keys()
                    .filter(|k| dirty.contains(&k.key.namespace))
                    .cloned(),
            );
            // Workloads already gone but still resolved in those namespaces.
            todo.extend(
                self.resolved
                    .keys()
                    .filter(|k| dirty.contains(&k.key.namespace))
                    .cloned(),
            );
        }
        todo.sort();
        todo.dedup();
        for key in todo {
            self.resolve(&key);
        }
        self.replaced.clear();
        // After a burst (the initial list), these sets are empty again but
        // would keep the burst's capacity.
        if self.dirty_workloads.capacity() > 1024 {
            self.dirty_workloads.shrink_to_fit();
        }
        if self.replaced.capacity() > 1024 {
            self.replaced.shrink_to_fit();
        }
        std::mem::take(&mut self.changes)
    }

    /// The scheduler has a first verdict for `id`: containers that moved to
    /// it stop showing their previous check.
    fn verdict(&mut self, id: CheckId) {
        if !self.specs.contains_key(&id) {
            return;
        }
        self.verdicts.insert(id);
        let done: Vec<(WorkloadKey, usize)> = self
            .previous
            .keys()
            .filter(|(w, i)| {
                self.resolved
                    .get(w)
                    .is_some_and(|list| list.iter().any(|&(j, c)| j == *i && c == id))
            })
            .cloned()
            .collect();
        for k in done {
            if let Some(p) = self.previous.remove(&k) {
                self.unhold(p.check);
            }
        }
    }

    fn unhold(&mut self, id: CheckId) {
        let Some(n) = self.held.get_mut(&id) else {
            return;
        };
        *n -= 1;
        if *n == 0 {
            self.held.remove(&id);
            if !self.specs.contains_key(&id) {
                self.verdicts.remove(&id);
                self.changes.push(Change::Forget(id));
            }
        }
    }

    /// What container `index` of `key` showed before: its old check if that
    /// has a verdict, else what the old check itself was waiting to replace.
    fn carried(
        &self,
        key: &WorkloadKey,
        old: &[(usize, CheckId)],
        old_containers: Option<&[ContainerImage]>,
        new_container: &ContainerImage,
        new_check: CheckId,
    ) -> Option<Previous> {
        let w = self.workloads.get(key)?;
        // Match by container name when the template changed, else by index.
        let (old_index, old_image) = match old_containers {
            Some(list) => list
                .iter()
                .enumerate()
                .find(|(_, c)| c.container == new_container.container)
                .map(|(i, c)| (i, c.image.clone()))?,
            None => {
                let i = w
                    .containers
                    .iter()
                    .position(|c| c.container == new_container.container)?;
                (i, new_container.image.clone())
            }
        };
        let &(_, old_check) = old.iter().find(|(i, _)| *i == old_index)?;
        if old_check == new_check {
            return None;
        }
        let image = (old_image != new_container.image).then_some(old_image);
        if self.verdicts.contains(&old_check) {
            return Some(Previous {
                check: old_check,
                image,
            });
        }
        self.previous
            .get(&(key.clone(), old_index))
            .map(|p| Previous {
                check: p.check,
                image: p.image.clone().or(image),
            })
    }

    fn reported(&self, w: &Workload) -> bool {
        // A Deployment a Rollout runs (workloadRef) is reported through it.
        let through_rollout = w.kind == Kind::Deployment
            && self.referenced.get(&w.key).is_some_and(|r| !r.is_empty());
        !through_rollout
            && (w.enabled || self.config.force_disabled.contains(&w.kind))
            && (!self.config.filter_namespaces || self.namespaces.contains(&w.key.namespace))
    }

    /// Moves a Rollout's reference from one Deployment to another; both
    /// Deployments are resolved again (reported alone, or not).
    fn reference(&mut self, rollout: &WorkloadKey, old: Option<String>, new: Option<String>) {
        if old == new {
            return;
        }
        let deployment = |name: String| ObjectKey {
            namespace: rollout.key.namespace.clone(),
            name: name.into(),
        };
        if let Some(d) = old.map(deployment) {
            if let Some(set) = self.referenced.get_mut(&d) {
                set.remove(&rollout.key);
                if set.is_empty() {
                    self.referenced.remove(&d);
                }
            }
            self.dirty_workloads.insert(WorkloadKey {
                kind: Kind::Deployment,
                key: d,
            });
        }
        if let Some(d) = new.map(deployment) {
            self.referenced
                .entry(d.clone())
                .or_default()
                .insert(rollout.key.clone());
            self.dirty_workloads.insert(WorkloadKey {
                kind: Kind::Deployment,
                key: d,
            });
        }
    }

    /// A Deployment changed: the Rollouts that run its template follow.
    fn mark_dependents(&mut self, key: &WorkloadKey) {
        if key.kind != Kind::Deployment {
            return;
        }
        if let Some(rollouts) = self.referenced.get(&key.key) {
            for r in rollouts {
                self.dirty_workloads.insert(WorkloadKey {
                    kind: Kind::Rollout,
                    key: r.clone(),
                });
            }
        }
    }

    /// Fills a Rollout's containers from the Deployment its workloadRef names.
    fn materialize(&mut self, key: &WorkloadKey) {
        let Some(name) = self.workloads.get(key).and_then(|w| w.template_ref.clone()) else {
            return;
        };
        let deployment = WorkloadKey {
            kind: Kind::Deployment,
            key: ObjectKey {
                namespace: key.key.namespace.clone(),
                name: name.into(),
            },
        };
        let (containers, secrets, sa, scheduling) = match self.workloads.get(&deployment) {
            Some(d) => (
                d.containers.clone(),
                d.pull_secrets.clone(),
                d.service_account.clone(),
                d.scheduling.clone(),
            ),
            None => (
                Vec::new(),
                Vec::new(),
                Arc::from("default"),
                self.intern(Arc::default()),
            ),
        };
        if let Some(w) = self.workloads.get_mut(key) {
            w.containers = containers;
            w.pull_secrets = secrets;
            w.service_account = sa;
            w.scheduling = scheduling;
        }
    }

    fn image_selected(&self, image: &str) -> bool {
        if self.config.ignored_images.iter().any(|r| r.is_match(image)) {
            return false;
        }
        self.config.allowed_images.is_empty()
            || self.config.allowed_images.iter().any(|r| r.is_match(image))
    }

    /// The pull secrets a pod of `w` gets: its own, or else its service
    /// account's (pkg/kubelet: getPullSecretsForPod; a missing secret is
    /// skipped), in one keyring as `MakeDockerKeyring` builds it. A secret
    /// the kubelet cannot parse is an error for the whole pod.
    fn keyring_for(&self, w: &Workload) -> Result<Keyring, String> {
        let names: &[Arc<str>] = if !w.pull_secrets.is_empty() {
            &w.pull_secrets
        } else {
            let sa = ObjectKey {
                namespace: w.key.namespace.clone(),
                name: w.service_account.clone(),
            };
            self.service_accounts
                .get(&sa)
                .map(Vec::as_slice)
                .unwrap_or(&[])
        };
        let mut creds: Vec<Arc<Credential>> = Vec::new();
        for n in names {
            let key = ObjectKey {
                namespace: w.key.namespace.clone(),
                name: n.clone(),
            };
            match self.secrets.get(&key) {
                None => {}
                Some(Ok(c)) => creds.extend(c.iter().cloned()),
                Some(Err(why)) => {
                    return Err(format!(
                        "{why}; the kubelet cannot build the pod's keyring, so every pull of this pod fails"
                    ))
                }
            }
        }
        Ok(Keyring::new(creds))
    }

    fn resolve(&mut self, key: &WorkloadKey) {
        self.materialize(key);
        let old_containers = self.replaced.remove(key);
        let mut new: Vec<(usize, CheckId)> = Vec::new();
        if let Some(w) = self.workloads.get(key).filter(|w| self.reported(w)) {
            let keyring = self.keyring_for(w);
            let wanted: Vec<(usize, Resolution)> = w
                .containers
                .iter()
                .enumerate()
                .filter(|(_, c)| self.image_selected(&c.image))
                .map(|(i, c)| (i, self.check_for(&c.image, keyring.as_ref())))
                .collect();
            for (i, r) in wanted {
                new.push((i, self.acquire(r)));
            }
        }
        let old = self.resolved.get(key).cloned().unwrap_or_default();
        // Carry each container's last verdict over to its new check.
        let mut carried: Vec<(usize, Previous)> = Vec::new();
        if let Some(w) = self.workloads.get(key) {
            for &(i, id) in &new {
                if let Some(p) =
                    self.carried(key, &old, old_containers.as_deref(), &w.containers[i], id)
                {
                    carried.push((i, p));
                }
            }
        }
        let stale: Vec<usize> = self
            .previous
            .keys()
            .filter(|(w, _)| w == key)
            .map(|(_, i)| *i)
            .collect();
        for (i, p) in carried {
            *self.held.entry(p.check).or_default() += 1;
            if let Some(before) = self.previous.insert((key.clone(), i), p) {
                self.unhold(before.check);
            }
        }
        for i in stale {
            if !new
                .iter()
                .any(|(j, id)| *j == i && !self.verdicts.contains(id))
            {
                if let Some(p) = self.previous.remove(&(key.clone(), i)) {
                    self.unhold(p.check);
                }
            }
        }
        if new.is_empty() {
            self.resolved.remove(key);
        } else {
            self.resolved.insert(key.clone(), new);
        }
        for (_, id) in old {
            self.release(id);
        }
    }

    /// The check for one container. As in the kubelet's PullImage, the
    /// image is parsed before the keyring is built: a bad reference wins
    /// over a broken pull secret.
    fn check_for(&self, image: &str, keyring: Result<&Keyring, &String>) -> Resolution {
        let without_request = |key: String, target: Target| Resolution {
            key: CheckKey {
                image: key,
                credentials: vec![],
            },
            target,
            credentials: vec![],
        };
        let Some(reg) = &self.config.registry else {
            return without_request(
                format!("invalid {image}"),
                Target::Invalid("no registry configuration".into()),
            );
        };
        let r = match reg.parse_image(image) {
            Ok(r) => r,
            Err(e) => {
                return without_request(format!("invalid {image}"), Target::Invalid(e.to_string()))
            }
        };
        let keyring = match keyring {
            Ok(k) => k,
            Err(why) => {
                return without_request(
                    format!("broken-secret {why}"),
                    Target::BrokenPullSecret(why.clone()),
                )
            }
        };
        let m = reg.mirrors.apply(&r);
        // The kubelet looks credentials up by the image's own name, then
        // sends them to every host the runtime tries (mirrors included).
        let mut creds = keyring.lookup(&m.reference);
        for c in reg.node_keyring.lookup(&m.reference) {
            if !creds.iter().any(|x| x.same_secret(&c)) {
                creds.push(c);
            }
        }
        let ids = creds
            .iter()
            .map(|c| {
                let mut h = self.hasher.build_hasher();
                c.hash_identity(&mut h);
                std::hash::Hasher::finish(&h)
            })
            .collect();
        Resolution {
            key: CheckKey {
                image: m.reference.check_key(),
                credentials: ids,
            },
            target: Target::Image(m),
            credentials: creds,
        }
    }

    fn acquire(&mut self, r: Resolution) -> CheckId {
        let Resolution {
            key,
            target,
            credentials,
        } = r;
        if let Some((id, users)) = self.checks.get_mut(&key) {
            *users += 1;
            return *id;
        }
        let id = self.next_id;
        self.next_id += 1;
        let spec = Arc::new(CheckSpec {
            id,
            target,
            credentials,
        });
        let key = Arc::new(key);
        self.checks.insert(key.clone(), (id, 1));
        self.specs.insert(id, (spec.clone(), key));
        self.changes.push(Change::Added(spec));
        id
    }

    fn release(&mut self, id: CheckId) {
        let Some((_, key)) = self.specs.get(&id) else {
            return;
        };
        let key = key.clone();
        let gone = match self.checks.get_mut(&key) {
            Some((_, users)) => {
                *users -= 1;
                *users == 0
            }
            None => false,
        };
        if gone {
            self.checks.remove(&key);
            self.specs.remove(&id);
            let keep_result = self.held.contains_key(&id);
            if !keep_result {
                self.verdicts.remove(&id);
            }
            self.changes.push(Change::Removed { id, keep_result });
        }
    }

    /// Every check currently needed.
    pub fn checks(&self) -> impl Iterator<Item = &Arc<CheckSpec>> {
        self.specs.values().map(|(s, _)| s)
    }

    /// The check with this id.
    pub fn check(&self, id: CheckId) -> Option<&Arc<CheckSpec>> {
        self.specs.get(&id).map(|(s, _)| s)
    }

    /// Calls `f(workload, container index, check)` for every reported container.
    pub fn for_each_container(&self, mut f: impl FnMut(&Workload, usize, CheckId)) {
        self.for_each_shown(|w, i, id, _| f(w, i, id));
    }

    /// Calls `f(workload, container index, check, previous)` for every
    /// reported container: `previous` is what to show while `check` has no
    /// verdict yet.
    pub fn for_each_shown(&self, mut f: impl FnMut(&Workload, usize, CheckId, Option<&Previous>)) {
        self.for_each_placed(|w, _, i, id, previous| f(w, i, id, previous));
    }

    /// As [`Inventory::for_each_shown`], with the workload's placement
    /// ([`Inventory::placement`]), looked up once per workload: the lookup
    /// hashes its whole scheduling, and scrapes visit every container.
    pub fn for_each_placed(
        &self,
        mut f: impl FnMut(&Workload, Option<&[NodeGroup]>, usize, CheckId, Option<&Previous>),
    ) {
        for (key, list) in &self.resolved {
            if let Some(w) = self.workloads.get(key) {
                let placement = self.placement(w);
                for &(i, id) in list {
                    let previous = if self.previous.is_empty() {
                        None
                    } else {
                        self.previous.get(&(key.clone(), i))
                    };
                    f(w, placement, i, id, previous);
                }
            }
        }
    }

    /// The digests the running pods of `w` run for its container `i`, with
    /// pod counts; empty when none reports one, or `w` opted out.
    pub fn running(&self, w: &Workload, i: usize) -> Vec<(Arc<str>, u32)> {
        match w.containers.get(i) {
            Some(c) if !w.ignore_tag_moved => self.running.of(w.kind, &w.key, &c.container),
            _ => Vec::new(),
        }
    }

    /// Distinct checks (cheap, for metrics).
    pub fn summary_checks(&self) -> usize {
        self.specs.len()
    }

    /// Counts for log lines.
    pub fn summary(&self) -> Summary {
        let mut images = HashSet::new();
        let mut containers = 0;
        for list in self.resolved.values() {
            containers += list.len();
            for (_, id) in list {
                if let Some((_, key)) = self.specs.get(id) {
                    images.insert(key.image.as_str());
                }
            }
        }
        Summary {
            workloads: self.workloads.len(),
            reported_workloads: self.resolved.len(),
            containers,
            images: images.len(),
            checks: self.specs.len(),
            pull_secrets: self.secrets.len(),
        }
    }
}

/// Parses `~`-separated regular expressions (`--ignored-images`, `--allowed-images`).
pub fn parse_image_regexes(flag: &str, value: &str) -> Result<Vec<Regex>, String> {
    value
        .split('~')
        .filter(|s| !s.is_empty())
        .map(|s| {
            Regex::new(s)
                .map_err(|e| format!("--{flag}: {s:?} is not a valid regular expression: {e}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::reference::Mirrors;
    use crate::kube::resources::{PullSecret, ServiceAccountInfo};

    fn config() -> InventoryConfig {
        InventoryConfig {
            registry: Some(RegistryConfig {
                checker: crate::registry::CheckerConfig {
                    transport: crate::registry::transport::TransportConfig {
                        skip_verify: false,
                        extra_roots: vec![],
                        connect_timeout: std::time::Duration::from_secs(1),
                        request_timeout: std::time::Duration::from_secs(1),
                        proxies: Default::default(),
                    },
                    allow_plain_http: false,
                    plain_http_registries: vec![],
                    get_fallback_registries: vec![],
                    retries: 0,
                    retry_backoff: std::time::Duration::ZERO,
                    providers: None,
                    platforms: None,
                    verify_every: None,
                    quota_reserve: 50,
                },
                default_registry: "docker.io".into(),
                mirrors: Mirrors::default(),
                node_keyring: Keyring::default(),
            }),
            ..Default::default()
        }
    }

    fn key(ns: &str, name: &str) -> ObjectKey {
        ObjectKey {
            namespace: ns.into(),
            name: name.into(),
        }
    }

    fn workload(ns: &str, name: &str, images: &[&str], secrets: &[&str]) -> Event {
        Event::Upsert(
            Resource::Workload(Kind::Deployment),
            Object::Workload(Workload {
                kind: Kind::Deployment,
                key: key(ns, name),
                containers: images
                    .iter()
                    .enumerate()
                    .map(|(i, im)| ContainerImage {
                        container: format!("c{i}").into(),
                        image: (*im).into(),
                    })
                    .collect(),
                pull_secrets: secrets.iter().map(|s| Arc::from(*s)).collect(),
                service_account: "default".into(),
                enabled: true,
                template_ref: None,
                scheduling: Arc::default(),
                ignore_tag_moved: false,
                running: None,
            }),
        )
    }

    fn secret(ns: &str, name: &str, registry: &str, user: &str) -> Event {
        Event::Upsert(
            Resource::DockerConfigJsonSecrets,
            Object::PullSecret(PullSecret {
                key: key(ns, name),
                credentials: Ok(vec![Arc::new(Credential::new(
                    format!("secret {ns}/{name}"),
                    registry,
                    user,
                    "pw",
                ))]),
            }),
        )
    }

    fn added(changes: &[Change]) -> Vec<Arc<CheckSpec>> {
        changes
            .iter()
            .filter_map(|c| {
                if let Change::Added(s) = c {
                    Some(s.clone())
                } else {
                    None
                }
            })
            .collect()
    }

    #[test]
    fn same_image_written_twice_is_one_check() {
        let mut inv = Inventory::new(config());
        inv.apply(workload(
            "a",
            "w1",
            &["nginx", "docker.io/library/nginx:latest"],
            &[],
        ));
        inv.apply(workload("b", "w2", &["index.docker.io/library/nginx"], &[]));
        let changes = inv.flush();
        assert_eq!(added(&changes).len(), 1);
        let s = inv.summary();
        assert_eq!((s.containers, s.images, s.checks), (3, 1, 1));
    }

    #[test]
    fn credentials_stay_in_their_namespace() {
        let mut inv = Inventory::new(config());
        inv.apply(secret("a", "pull", "r.io", "alice"));
        inv.apply(workload("a", "w", &["r.io/app:1"], &["pull"]));
        inv.apply(workload("b", "w", &["r.io/app:1"], &["pull"]));
        let specs = added(&inv.flush());
        assert_eq!(
            specs.len(),
            2,
            "namespace b has no secret named pull: a separate, anonymous check"
        );
        let mut creds: Vec<usize> = specs.iter().map(|s| s.credentials.len()).collect();
        creds.sort();
        assert_eq!(creds, [0, 1]);
        // The secret appears in b too: b's check now carries b's own credential.
        inv.apply(secret("b", "pull", "r.io", "bob"));
        let changes = inv.flush();
        let new = added(&changes);
        assert_eq!(new.len(), 1);
        assert_eq!(new[0].credentials[0].source, "secret b/pull");
        assert!(changes.iter().any(|c| matches!(c, Change::Removed { .. })));
    }

    #[test]
    fn service_account_secrets_only_when_the_template_names_none() {
        let mut inv = Inventory::new(config());
        inv.apply(secret("a", "sa-pull", "r.io", "sa-user"));
        inv.apply(secret("a", "own", "r.io", "own-user"));
        inv.apply(Event::Upsert(
            Resource::ServiceAccounts,
            Object::ServiceAccount(ServiceAccountInfo {
                key: key("a", "default"),
                pull_secrets: vec!["sa-pull".into()],
            }),
        ));
        inv.apply(workload("a", "uses-sa", &["r.io/x:1"], &[]));
        inv.apply(workload("a", "own", &["r.io/y:1"], &["own"]));
        inv.flush();
        let users = |image: &str| -> Vec<String> {
            let mut out = vec![];
            inv.for_each_container(|w, i, id| {
                if &*w.containers[i].image == image {
                    out = inv
                        .check(id)
                        .unwrap()
                        .credentials
                        .iter()
                        .map(|c| c.username.clone())
                        .collect();
                }
            });
            out
        };
        assert_eq!(users("r.io/x:1"), ["sa-user"]);
        assert_eq!(users("r.io/y:1"), ["own-user"]);
    }

    #[test]
    fn deletes_and_disabled_workloads_remove_checks() {
        let mut cfg = config();
        cfg.force_disabled.insert(Kind::StatefulSet);
        let mut inv = Inventory::new(cfg);
        inv.apply(workload("a", "w", &["nginx:1"], &[]));
        assert_eq!(added(&inv.flush()).len(), 1);
        inv.apply(Event::Delete(
            Resource::Workload(Kind::Deployment),
            key("a", "w"),
        ));
        let changes = inv.flush();
        assert!(matches!(changes.as_slice(), [Change::Removed { .. }]));
        assert_eq!(inv.summary().checks, 0);
        let Event::Upsert(r, Object::Workload(mut w)) = workload("a", "w", &["nginx:1"], &[])
        else {
            unreachable!()
        };
        w.enabled = false;
        inv.apply(Event::Upsert(r, Object::Workload(w.clone())));
        assert!(
            inv.flush().is_empty(),
            "a disabled deployment is not reported"
        );
        w.kind = Kind::StatefulSet;
        inv.apply(Event::Upsert(
            Resource::Workload(Kind::StatefulSet),
            Object::Workload(w),
        ));
        assert_eq!(
            added(&inv.flush()).len(),
            1,
            "forced kinds are reported while disabled"
        );
    }

    #[test]
    fn bad_images_and_filters() {
        let mut cfg = config();
        cfg.ignored_images = parse_image_regexes("ignored-images", "^ignored/~skip").unwrap();
        let mut inv = Inventory::new(cfg);
        inv.apply(workload(
            "a",
            "w",
            &["Bad:Image:x", "ignored/app", "x/skipme", "ok/app"],
            &[],
        ));
        let specs = added(&inv.flush());
        assert_eq!(specs.len(), 2);
        assert!(specs.iter().any(|s| matches!(s.target, Target::Invalid(_))));
        assert!(parse_image_regexes("allowed-images", "ok~(unclosed")
            .unwrap_err()
            .contains("--allowed-images"));
    }

    fn shown(inv: &Inventory) -> Vec<(CheckId, Option<Previous>)> {
        let mut out = Vec::new();
        inv.for_each_shown(|_, _, id, p| out.push((id, p.cloned())));
        out
    }

    #[test]
    fn a_container_keeps_its_verdict_until_its_new_check_has_one() {
        let mut inv = Inventory::new(config());
        inv.apply(secret("a", "pull", "r.io", "old-user"));
        inv.apply(workload("a", "w", &["r.io/app:1"], &["pull"]));
        let first = added(&inv.flush())[0].id;
        inv.apply(Input::Verdict(first));
        assert!(inv.flush().is_empty());
        // The secret rotates: a new check; the old verdict stays shown.
        inv.apply(secret("a", "pull", "r.io", "new-user"));
        let changes = inv.flush();
        let second = added(&changes)[0].id;
        assert!(changes
            .iter()
            .any(|c| matches!(c, Change::Removed { id, keep_result: true } if *id == first)));
        assert_eq!(
            shown(&inv),
            [(
                second,
                Some(Previous {
                    check: first,
                    image: None
                })
            )]
        );
        // Rotating again before a verdict: still the first verdict.
        inv.apply(secret("a", "pull", "r.io", "newer-user"));
        let changes = inv.flush();
        let third = added(&changes)[0].id;
        assert!(changes
            .iter()
            .any(|c| matches!(c, Change::Removed { id, keep_result: false } if *id == second)));
        assert_eq!(
            shown(&inv),
            [(
                third,
                Some(Previous {
                    check: first,
                    image: None
                })
            )]
        );
        // The new check's first verdict: the old one is forgotten.
        inv.apply(Input::Verdict(third));
        let changes = inv.flush();
        assert!(matches!(changes.as_slice(), [Change::Forget(id)] if *id == first));
        assert_eq!(shown(&inv), [(third, None)]);
        // A new image: the old series (old image label) stay until then.
        inv.apply(workload("a", "w", &["r.io/app:2"], &["pull"]));
        let changes = inv.flush();
        let fourth = added(&changes)[0].id;
        assert_eq!(
            shown(&inv),
            [(
                fourth,
                Some(Previous {
                    check: third,
                    image: Some("r.io/app:1".into())
                })
            )]
        );
        // Deleted: nothing to show, nothing kept.
        inv.apply(Event::Delete(
            Resource::Workload(Kind::Deployment),
            key("a", "w"),
        ));
        let changes = inv.flush();
        assert!(changes
            .iter()
            .any(|c| matches!(c, Change::Forget(id) if *id == third)));
        assert!(shown(&inv).is_empty());
        assert!(inv.previous.is_empty() && inv.held.is_empty());
    }

    #[test]
    fn namespace_label_filter() {
        let mut cfg = config();
        cfg.filter_namespaces = true;
        let mut inv = Inventory::new(cfg);
        inv.apply(workload("a", "w", &["nginx:1"], &[]));
        assert!(inv.flush().is_empty());
        inv.apply(Event::Upsert(
            Resource::Namespaces,
            Object::Namespace(key("", "a")),
        ));
        assert_eq!(added(&inv.flush()).len(), 1);
        inv.apply(Event::Delete(Resource::Namespaces, key("", "a")));
        assert!(matches!(inv.flush().as_slice(), [Change::Removed { .. }]));
    }
}

/// Counts streams whose first list has arrived.
#[derive(Debug, Default)]
pub struct SyncProgress {
    /// Streams expected.
    pub expected: usize,
    /// Streams whose first list has been applied.
    pub synced: std::sync::atomic::AtomicUsize,
}

impl SyncProgress {
    /// Whether every stream has delivered its first list.
    pub fn done(&self) -> bool {
        self.synced.load(std::sync::atomic::Ordering::SeqCst) >= self.expected
    }
}

/// Decides when checks may start: once every credential source has
/// delivered its first list (or was refused), so that no check runs with
/// credentials that simply have not arrived yet.
pub type Gate = Arc<dyn Fn() -> bool + Send + Sync>;

/// The inventory thread: applies watch events in batches and forwards check
/// changes once `gate` opens (with no gate, at once). Returns when every
/// watch loop has hung up.
pub fn run(
    rx: crossbeam_channel::Receiver<Input>,
    inventory: Arc<std::sync::RwLock<Inventory>>,
    changes: Option<crossbeam_channel::Sender<Change>>,
    progress: Arc<SyncProgress>,
    gate: Option<Gate>,
) {
    let started = std::time::Instant::now();
    let mut announced = false;
    let mut open = gate.is_none();
    loop {
        let first = match rx.recv_timeout(std::time::Duration::from_millis(250)) {
            Ok(e) => Some(e),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        };
        let mut batch: Vec<Input> = first.into_iter().collect();
        // Apply what is already queued in one go: an initial list is resolved once.
        while !batch.is_empty() && batch.len() < 50_000 {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        let synced = batch
            .iter()
            .filter(|e| matches!(e, Input::Watch(Event::Synced(..))))
            .count();
        let out = if batch.is_empty() {
            Vec::new()
        } else {
            let mut inv = inventory.write().unwrap_or_else(|e| e.into_inner());
            for e in batch {
                inv.apply(e);
            }
            inv.flush()
        };
        if synced > 0 {
            progress
                .synced
                .fetch_add(synced, std::sync::atomic::Ordering::SeqCst);
        }
        let to_send = if open {
            out
        } else if gate.as_ref().is_some_and(|g| g()) {
            open = true;
            // Everything held back is summed up by what the inventory needs now.
            let inv = inventory.read().unwrap_or_else(|e| e.into_inner());
            log::info!(
                "credential sources listed after {:.1?}: starting {} checks",
                started.elapsed(),
                inv.summary_checks()
            );
            inv.checks().cloned().map(Change::Added).collect()
        } else {
            Vec::new()
        };
        if let Some(tx) = &changes {
            for c in to_send {
                let _ = tx.send(c);
            }
        }
        if !announced && progress.done() {
            announced = true;
            // The list pages are gone; give their memory back.
            crate::sys::malloc::trim();
            let s = inventory
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .summary();
            let heap = crate::sys::malloc::heap()
                .map(|(used, free)| {
                    format!(
                        "; heap {:.1} MiB in use, {:.1} MiB free",
                        used as f64 / 1048576.0,
                        free as f64 / 1048576.0
                    )
                })
                .unwrap_or_default();
            log::info!(
                "initial sync done in {:.1?}: {} workloads ({} reported), {} containers, {} distinct images, {} distinct checks, {} pull secrets{heap}",
                started.elapsed(),
                s.workloads,
                s.reported_workloads,
                s.containers,
                s.images,
                s.checks,
                s.pull_secrets
            );
        }
    }
}
