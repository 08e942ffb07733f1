//! What an image is, in the words every stage shares: its reference
//! (registry, repository, tag, digest) with the mirrors to try, and the
//! platforms (os/architecture/variant) of its builds and of the nodes.
//! Imports only `sys`.

pub mod platform;
pub mod reference;
