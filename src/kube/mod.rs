//! The Kubernetes side: kubeconfig and in-cluster configuration, an API
//! client over ureq, one list/watch loop per watched resource, and what we
//! decode of each object (`resources`, `template`, `scheduling`). Imports
//! `sys`, `image`, `credentials` (pull secrets are parsed as they are read)
//! and `registry` (the HTTP transport's URL and user agent).

pub mod client;
pub mod config;
pub mod exec;
pub mod resources;
pub mod running;
pub mod scheduling;
pub mod template;
pub mod watch;
