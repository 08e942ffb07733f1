//! The Kubernetes side: configuration, an API client over ureq, and one
//! list/watch loop per watched resource.

pub mod client;
pub mod config;
pub mod exec;
pub mod resources;
pub mod template;
pub mod watch;
