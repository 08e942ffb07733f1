//! A small stderr logger: one line per record with a UTC timestamp, level
//! and module. Enough for a container; no logging framework needed.

use std::io::Write;
use std::time::SystemTime;

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Logger {
    level: LevelFilter,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        // Dependencies log at debug level about every connection; keep them
        // at warn unless the operator asked for trace.
        let ours = metadata.target().starts_with(env!("CARGO_CRATE_NAME"));
        metadata.level() <= self.level
            && (ours || metadata.level() <= Level::Warn || self.level == LevelFilter::Trace)
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format!(
            "{} {:<5} {}: {}\n",
            crate::sys::timestamp::format_rfc3339_millis(SystemTime::now()),
            record.level(),
            record.target(),
            record.args()
        );
        // One write per record so lines from threads do not interleave.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Parses a level name: error, warn, info, debug, trace, off.
pub fn parse_level(s: &str) -> Option<LevelFilter> {
    s.parse().ok()
}

/// Installs the logger; later calls are ignored.
pub fn init(level: LevelFilter) {
    if log::set_boxed_logger(Box::new(Logger { level })).is_ok() {
        log::set_max_level(level);
    }
}
