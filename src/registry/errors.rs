//! What a registry said when it refused or failed: the codes and messages
//! of its error body (`{"errors":[{"code":"...","message":"..."}]}`), and
//! what we know of registry families that use one answer for two things
//! (a missing repository and a private one; an upstream outage and a bad
//! request), so that a reason tells the operator where to look.

/// The errors of a registry error body,
/// `{"errors":[{"code":"...","message":"..."}]}`, read once per answer:
/// `(code, message)`, either possibly empty; messages cut to 200
/// characters, control characters dropped.
#[derive(Debug, Default)]
pub struct RegistryErrors(Vec<(String, String)>);

impl RegistryErrors {
    /// Reads an answer's body; anything that is not an error body has none.
    pub fn parse(body: &[u8]) -> RegistryErrors {
        if body.is_empty() {
            return RegistryErrors::default();
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
            return RegistryErrors::default();
        };
        let Some(errors) = v.get("errors").and_then(|e| e.as_array()) else {
            return RegistryErrors::default();
        };
        let text = |e: &serde_json::Value, field: &str| -> String {
            e.get(field)
                .and_then(|m| m.as_str())
                .unwrap_or("")
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect()
        };
        RegistryErrors(
            errors
                .iter()
                .map(|e| (text(e, "code"), text(e, "message")))
                .collect(),
        )
    }

    /// The errors as (code, message), in order.
    pub fn errors(&self) -> &[(String, String)] {
        &self.0
    }

    /// Whether one of the errors has `code`.
    pub fn has(&self, code: &str) -> bool {
        self.0.iter().any(|(c, _)| c == code)
    }

    /// The non-empty codes, in order.
    pub fn codes(&self) -> Vec<&str> {
        self.0
            .iter()
            .map(|(c, _)| c.as_str())
            .filter(|c| !c.is_empty())
            .collect()
    }

    /// `, CODE, CODE`, after a status code.
    pub fn codes_suffix(&self) -> String {
        let codes = self.codes();
        if codes.is_empty() {
            String::new()
        } else {
            format!(", {}", codes.join(", "))
        }
    }

    /// `, CODE: message` for the first three errors: download policies
    /// say why in them ("download blocked", the violated policy).
    pub fn detail(&self) -> String {
        let mut out = String::new();
        for (code, message) in self.0.iter().take(3) {
            match (code.is_empty(), message.is_empty()) {
                (true, true) => {}
                (false, true) => out.push_str(&format!(", {code}")),
                (true, false) => out.push_str(&format!(", {message}")),
                (false, false) => out.push_str(&format!(", {code}: {message}")),
            }
        }
        out
    }
}

/// Registries that answer 401 or 403 both for a repository that does not
/// exist and for one these credentials may not pull, by design: Docker Hub,
/// Quay and GHCR (401 even to valid credentials), Google's Artifact Registry
/// and gcr.io ("... denied on resource (or it may not exist)"). Matched on
/// the API host; `*.` entries match any subdomain.
const AMBIGUOUS_REFUSALS: [&str; 6] = [
    "registry-1.docker.io",
    "quay.io",
    "ghcr.io",
    "gcr.io",
    "*.gcr.io",
    "*.pkg.dev",
];

/// For a refusal (401 or 403) by `host`: a note (`"; …"`, to append to the
/// error) that the registry does not tell a missing repository from a private
/// one, when it is one of those that do not, or its message says so; empty
/// otherwise. The class stays what the kubelet would report; the note sends
/// the operator to the image name as well.
pub fn ambiguous_refusal(host: &str, errors: &RegistryErrors) -> String {
    let host = super::transport::host_of(host).to_ascii_lowercase();
    let listed = AMBIGUOUS_REFUSALS
        .iter()
        .any(|pattern| match pattern.strip_prefix("*.") {
            Some(domain) => host
                .strip_suffix(domain)
                .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1),
            None => host == *pattern,
        });
    let says = errors
        .0
        .iter()
        .any(|(_, m)| m.to_ascii_lowercase().contains("may not exist"));
    if !(listed || says) {
        return String::new();
    }
    format!(
        "; {host} answers the same for a repository that does not exist and for one these credentials may not pull: check the image name too"
    )
}

/// Whether a 400 is a proxy cache's way of saying its upstream failed:
/// Quay's proxy-cache organisations answer `400 INVALID_REQUEST` when the
/// registry they mirror cannot be reached or refuses them.
pub fn upstream_trouble(status: u16, errors: &RegistryErrors) -> bool {
    status == 400 && errors.has("INVALID_REQUEST")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies() {
        assert_eq!(
            RegistryErrors::parse(
                br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"m"},{"code":"DENIED"}]}"#
            )
            .codes(),
            ["MANIFEST_UNKNOWN", "DENIED"]
        );
        assert!(RegistryErrors::parse(b"<html>").codes().is_empty());
        assert!(RegistryErrors::parse(br#"{"errors":"x"}"#)
            .codes()
            .is_empty());
    }

    #[test]
    fn registries_that_hide_missing_repositories() {
        let none = RegistryErrors::default();
        for host in [
            "registry-1.docker.io",
            "quay.io",
            "ghcr.io",
            "eu.gcr.io",
            "europe-west1-docker.pkg.dev",
            "Quay.io:443",
        ] {
            assert!(!ambiguous_refusal(host, &none).is_empty(), "{host}");
        }
        for host in [
            "registry.example.com",
            "pkg.dev",
            "evilquay.io",
            "127.0.0.1:5000",
        ] {
            assert!(ambiguous_refusal(host, &none).is_empty(), "{host}");
        }
        let ar = RegistryErrors::parse(
            br#"{"errors":[{"code":"DENIED","message":"Permission denied on resource project p (or it may not exist)."}]}"#,
        );
        assert!(!ambiguous_refusal("127.0.0.1:5000", &ar).is_empty());
    }

    #[test]
    fn quay_proxy_upstream_failures() {
        let quay = RegistryErrors::parse(
            br#"{"errors":[{"code":"INVALID_REQUEST","message":"upstream registry unavailable"}]}"#,
        );
        assert!(upstream_trouble(400, &quay));
        assert!(!upstream_trouble(404, &quay));
        assert!(!upstream_trouble(400, &RegistryErrors::default()));
    }
}
