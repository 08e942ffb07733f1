//! The running exporter's parts: the scheduler's queue of checks, its
//! workers and their verdicts, the metrics, the status page, and the HTTP
//! server behind its bounded front. The top stage: it may import every other one. (`app`, which
//! wires them to the watch loops and inventory from a `Config`, sits above
//! it beside `config`, because the configuration is built from every
//! stage's options, the exporter's included.)

pub mod auth;
pub mod front;
pub mod metrics;
pub mod request;
pub mod scheduler;
pub mod server;
pub mod status_page;
pub mod tag_moved;
pub mod tls;
pub mod web_config;
