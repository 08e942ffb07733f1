//! Everything that decides whether one image can be pulled: references,
//! authentication, the manifest request and the classification of its answer.

pub mod challenge;
pub mod check;
pub mod outcome;
pub mod reference;
pub mod token;
pub mod transport;

pub use check::{Checker, CheckerConfig};
pub use outcome::{CheckResult, Status};
pub use reference::{Mirrored, Mirrors, Reference};
