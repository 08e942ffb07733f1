//! The classes of a check: the Go exporter's seven, our
//! `platform_unavailable` (decided per container), and `rate_limited`,
//! which is not a verdict on the image. Its own module because the check's
//! outcome and the pull path both speak of it.

use std::fmt;

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

#[cfg(test)]
mod tests {
    use super::*;

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
