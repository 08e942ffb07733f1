//! Small helpers with no knowledge of images or clusters: retry backoff
//! and rate limiting, child processes with deadlines, RFC 3339 and HTTP
//! dates, Go-style durations, YAML documents as JSON values, signals, the
//! glibc allocator's settings, readiness polling, and the logger. Imports nothing of this
//! crate.

pub mod backoff;
pub mod duration;
pub mod logger;
pub mod malloc;
pub mod poll;
pub mod process;
pub mod signal;
pub mod timestamp;
pub mod yaml;
