//! Everything that decides whether one image can be pulled from its
//! registry: transport and proxies, the requests of one check (`session`),
//! authentication challenges and tokens, the manifest request and the
//! classification of its answer (`status`, `outcome`, and what registries
//! say in their error bodies, `errors`), the reads past the tag (`reader`:
//! platforms, manifests by digest and blobs, as a node makes them), the
//! pull path walk, and the registries' announced quotas. Imports `sys`,
//! `image` and `credentials` only.

pub mod challenge;
pub mod check;
pub mod errors;
pub mod manifest;
pub mod outcome;
pub mod proxy;
pub mod pull_path;
pub mod quota;
pub mod reader;
pub mod session;
pub mod status;
pub mod token;
pub mod transport;

pub use check::{Checker, CheckerConfig};
pub use outcome::CheckResult;
pub use status::Status;

use crate::credentials::Keyring;
use crate::image::reference::{self, Mirrors, Reference};

/// Everything needed to check images, validated.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Transport, plain-http and fallback settings.
    pub checker: CheckerConfig,
    /// Registry for short names.
    pub default_registry: String,
    /// `--image-mirror` rules.
    pub mirrors: Mirrors,
    /// Credentials from `--docker-config`, applying to every workload.
    pub node_keyring: Keyring,
}

impl RegistryConfig {
    /// Parses an image string as written in a workload.
    pub fn parse_image(&self, image: &str) -> Result<Reference, reference::ReferenceError> {
        Reference::parse_with_default(image, &self.default_registry)
    }
}
