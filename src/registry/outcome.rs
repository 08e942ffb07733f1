//! What a check concluded, in the Go exporter's seven classes, our
//! `platform_unavailable` (decided per container), and `rate_limited`,
//! which is not a verdict on the image.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::manifest::Platforms;
use super::pull_path::Broken;

/// The class of a check result. The first seven are the Go exporter's gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    /// The manifest exists and we may pull it.
    Available,
    /// The registry says the tag, digest or repository does not exist.
    Absent,
    /// The image string is not a valid reference.
    BadImageFormat,
    /// The registry could not be reached or kept failing (DNS, connect, TLS, timeouts, 5xx).
    RegistryUnavailable,
    /// Every credential (and anonymous) was refused with 401.
    AuthenticationFailure,
    /// Credentials were accepted but access was denied (403 / DENIED).
    AuthorizationFailure,
    /// Anything else; the reason says what.
    UnknownError,
    /// The manifest is there and may be pulled, but it has no build for a
    /// platform of the nodes the workload's pods can be scheduled on. Not
    /// a registry answer: decided per container from the image's platforms
    /// and the workload's nodes.
    PlatformUnavailable,
    /// The registry asked us to slow down (429); the image's state is unknown.
    RateLimited,
}

impl Status {
    /// The classes that have a gauge: the Go exporter's seven in its order,
    /// then ours.
    pub const GAUGES: [Status; 8] = [
        Status::Available,
        Status::Absent,
        Status::BadImageFormat,
        Status::RegistryUnavailable,
        Status::AuthenticationFailure,
        Status::AuthorizationFailure,
        Status::UnknownError,
        Status::PlatformUnavailable,
    ];

    /// The snake_case name used in metric names and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Available => "available",
            Status::Absent => "absent",
            Status::BadImageFormat => "bad_image_format",
            Status::RegistryUnavailable => "registry_unavailable",
            Status::AuthenticationFailure => "authentication_failure",
            Status::AuthorizationFailure => "authorization_failure",
            Status::UnknownError => "unknown_error",
            Status::PlatformUnavailable => "platform_unavailable",
            Status::RateLimited => "rate_limited",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
        match crate::timestamp::parse_http_date(value) {
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

    #[test]
    fn names_match_the_go_exporter() {
        let names: Vec<&str> = Status::GAUGES.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "available",
                "absent",
                "bad_image_format",
                "registry_unavailable",
                "authentication_failure",
                "authorization_failure",
                "unknown_error",
                "platform_unavailable"
            ]
        );
    }
}
