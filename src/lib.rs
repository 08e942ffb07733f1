//! k8s-image-availability-exporter: reports, before a pod needs it, whether
//! every image named in the cluster's workloads can still be pulled.
//!
//! Data flows kube -> inventory -> scheduler -> registry -> metrics/server;
//! the modules follow that order.

// `Kind::Custom` holds a `CustomKind` that learns its kind name from
// discovery once (a OnceLock); it hashes and compares by its immutable
// group, version and resource only, so it is a sound map key.
#![allow(clippy::mutable_key_type)]

pub mod app;
pub mod backoff;
pub mod check_command;
pub mod config;
pub mod credential_provider;
pub mod credentials;
pub mod fuzzing;
pub mod inventory;
pub mod kube;
pub mod logger;
pub mod malloc;
pub mod metrics;
pub mod placement;
pub mod platform;
pub mod process;
pub mod proxy;
pub mod registry;
pub mod scheduler;
pub mod server;
pub mod signal;
pub mod status_page;
pub mod timestamp;
