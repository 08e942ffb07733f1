//! k8s-image-availability-exporter: reports, before a pod needs it, whether
//! every image named in the cluster's workloads can still be pulled.
//!
//! Data flows kube -> inventory -> exporter (scheduler and workers) ->
//! registry, and back out through the exporter's metrics, status page and
//! HTTP server. The folders are stages, listed here from the bottom up: a
//! stage imports only the stages above it in this list, never one below,
//! and no file imports a file that imports it back (`tests/layout.rs`
//! checks both).
//!
//! - `sys`: small helpers with no knowledge of the domain (backoff, child
//!   processes, timestamps, durations, YAML, signals, the allocator, the
//!   logger).
//! - `image`: what an image is, shared by every stage: its reference and
//!   mirrors, and the platforms of builds and nodes.
//! - `credentials`: pull-secret keyrings and the kubelet's credential
//!   provider plugins.
//! - `registry`: one image against its registry: transport and proxies,
//!   auth challenges and tokens, manifests, the pull path, quotas, and the
//!   check with its outcome.
//! - `kube`: the Kubernetes API: kubeconfig, client, list/watch loops, and
//!   the little we decode of each object.
//! - `inventory`: what the cluster runs, reduced to distinct checks, and
//!   where each template's pods can land.
//! - `exporter`: the running exporter's parts: scheduler and workers,
//!   metrics, status page, HTTP server.
//!
//! At the top, importing any stage: `config` (flags to the validated
//! configuration of every stage), `check_command` (the `check` command and
//! the `--once` report), `app` (wires the stages together from a `Config`
//! and runs them) and `fuzzing` (the fuzz targets' properties). `main.rs`
//! only parses flags and calls them.

// `Kind::Custom` holds a `CustomKind` that learns its kind name from
// discovery once (a OnceLock); it hashes and compares by its immutable
// group, version and resource only, so it is a sound map key.
#![allow(clippy::mutable_key_type)]

pub mod sys;

pub mod image;

pub mod credentials;

pub mod registry;

pub mod kube;

pub mod inventory;

pub mod exporter;

pub mod app;
pub mod check_command;
pub mod config;
pub mod fuzzing;
