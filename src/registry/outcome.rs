//! What a check concluded: its class (`status`), why, with which
//! credential, the platforms the image offers and the pull path's broken
//! pieces; and how long a registry asked us to wait.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::manifest::Platforms;
use super::pull_path::Broken;
use super::status::Status;

/// The result of checking one image with one list of credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// The class.
    pub status: Status,
    /// Why, in words an operator can act on. Never contains a secret.
    pub reason: String,
    /// Which credential got the answer (`Credential::describe`), or `None` for anonymous.
    pub credential: Option<String>,
    /// HTTP requests this check sent (manifest, token and retries).
    pub requests: u32,
    /// The manifest digest the registry reported, when available.
    pub digest: Option<String>,
    /// For `RateLimited`: how long to leave this registry alone.
    pub retry_after: Option<Duration>,
    /// The registry host that gave the verdict (a mirror or the image's own).
    pub host: Option<String>,
    /// For `Available`, when platforms are checked: what the image offers.
    pub platforms: Option<Platforms>,
    /// The answer did not depend on credentials: none was sent and the
    /// registry asked for none (it never challenged). Every check of the
    /// same image would get the same answer now.
    pub shared: bool,
    /// For `Available`: pieces of the pull path past the tag that a node
    /// cannot get (judged per container: see `pull_path::applying`).
    pub broken: Vec<Broken>,
    /// For `Available`: the manifest is Docker's schema 1, which nodes on
    /// containerd 2.0 or later cannot pull (judged per container).
    pub schema1: bool,
    /// For `Available`: the digests the tag's index lists (empty for a
    /// single manifest), when known. A running pod's digest is the tag's
    /// when it is the tag's own or one of these: runtimes report either.
    pub children: Option<std::sync::Arc<[Box<str>]>>,
}

impl CheckResult {
    /// A result that needed no request.
    pub fn without_requests(status: Status, reason: impl Into<String>) -> CheckResult {
        CheckResult {
            status,
            reason: reason.into(),
            credential: None,
            requests: 0,
            digest: None,
            retry_after: None,
            host: None,
            platforms: None,
            shared: false,
            broken: Vec::new(),
            schema1: false,
            children: None,
        }
    }
}

/// Longest pause a `Retry-After` can impose.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(15 * 60);
/// Pause when a 429 carries no usable `Retry-After`.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Turns a `Retry-After` value into a bounded wait. Accepts delta-seconds and
/// HTTP dates; a number that is really a Unix timestamp (Docker Hub has sent
/// those) is read as one rather than as a wait of decades.
pub fn parse_retry_after(value: Option<&str>, now: SystemTime) -> Duration {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return DEFAULT_RETRY_AFTER;
    };
    let until = |t: SystemTime| t.duration_since(now).unwrap_or(Duration::ZERO);
    let wait = if value.bytes().all(|b| b.is_ascii_digit()) {
        match value.parse::<u64>() {
            // Anything past 2001-09-09 as seconds is a timestamp, not a delay.
            Ok(n) if n >= 1_000_000_000 => UNIX_EPOCH
                .checked_add(Duration::from_secs(n))
                .map(until)
                .unwrap_or(MAX_RETRY_AFTER),
            Ok(n) => Duration::from_secs(n),
            Err(_) => MAX_RETRY_AFTER,
        }
    } else {
        match crate::sys::timestamp::parse_http_date(value) {
            Some(t) => until(t),
            None => DEFAULT_RETRY_AFTER,
        }
    };
    wait.clamp(Duration::from_secs(1), MAX_RETRY_AFTER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let s = |v: Option<&str>| parse_retry_after(v, now).as_secs();
        assert_eq!(s(Some("120")), 120);
        assert_eq!(s(Some(" 5 ")), 5);
        assert_eq!(s(Some("0")), 1);
        assert_eq!(s(None), 60);
        assert_eq!(s(Some("soon")), 60);
        assert_eq!(s(Some("-5")), 60);
        assert_eq!(s(Some("99999999")), 900);
        assert_eq!(s(Some("99999999999999999999999")), 900);
        // Found by fuzzing: a timestamp beyond what SystemTime can hold.
        assert_eq!(s(Some("12919599919599192516")), 900);
        // A Unix timestamp 30 s ahead, and one in the past.
        assert_eq!(s(Some("1800000030")), 30);
        assert_eq!(s(Some("1700000000")), 1);
        // HTTP date 90 s ahead: 1_800_000_090 is Fri, 15 Jan 2027 08:01:30 GMT.
        assert_eq!(s(Some("Fri, 15 Jan 2027 08:01:30 GMT")), 90);
        assert_eq!(s(Some("Sat, 01 Jan 2000 00:00:00 GMT")), 1);
        assert_eq!(s(Some("Fri, 01 Jan 9999 00:00:00 GMT")), 900);
    }
}
