//! client-go credential plugins (`users[].user.exec` in a kubeconfig): run
//! the program, pass `KUBERNETES_EXEC_INFO`, read an `ExecCredential`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use base64::Engine;
use serde::Deserialize;

use super::config::{ClientCert, ExecConfig};
use crate::sys::process::Unfinished;

/// How long a plugin may take before we give up on it.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// What a plugin returned.
#[derive(Clone)]
pub struct ExecCredential {
    /// Bearer token, if any.
    pub token: Option<String>,
    /// Client certificate and key, if any.
    pub client_cert: Option<ClientCert>,
    /// When to run the plugin again; `None` means only after a 401.
    pub expires: Option<SystemTime>,
}

impl std::fmt::Debug for ExecCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecCredential")
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Output {
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    kind: Option<String>,
    status: Option<Status>,
}

#[derive(Deserialize)]
struct Status {
    token: Option<String>,
    #[serde(rename = "clientCertificateData")]
    client_certificate_data: Option<String>,
    #[serde(rename = "clientKeyData")]
    client_key_data: Option<String>,
    #[serde(rename = "expirationTimestamp")]
    expiration_timestamp: Option<String>,
}

/// The cluster as passed to plugins that set `provideClusterInfo`.
pub struct ClusterInfo<'a> {
    /// API server URL.
    pub server: &'a str,
    /// CA, PEM.
    pub ca_pem: Option<&'a [u8]>,
    /// `insecure-skip-tls-verify`.
    pub insecure: bool,
    /// `tls-server-name`.
    pub tls_server_name: Option<&'a str>,
}

/// Runs the plugin and parses its answer. Errors never contain its output.
pub fn run(cfg: &ExecConfig, cluster: &ClusterInfo) -> Result<ExecCredential, String> {
    let mut spec = serde_json::json!({ "interactive": false });
    if cfg.provide_cluster_info {
        let mut c = serde_json::json!({ "server": cluster.server, "insecure-skip-tls-verify": cluster.insecure });
        if let Some(ca) = cluster.ca_pem {
            c["certificate-authority-data"] =
                base64::engine::general_purpose::STANDARD.encode(ca).into();
        }
        if let Some(n) = cluster.tls_server_name {
            c["tls-server-name"] = n.into();
        }
        spec["cluster"] = c;
    }
    let info = serde_json::json!({ "apiVersion": cfg.api_version, "kind": "ExecCredential", "spec": spec });
    // A command with a path separator is relative to the kubeconfig, as in client-go.
    let command = if cfg.command.contains('/') && !Path::new(&cfg.command).is_absolute() {
        cfg.base_dir
            .join(&cfg.command)
            .to_string_lossy()
            .into_owned()
    } else {
        cfg.command.clone()
    };
    let mut cmd = Command::new(&command);
    cmd.args(&cfg.args)
        .envs(cfg.env.iter().map(|(k, v)| (k, v)))
        .env("KUBERNETES_EXEC_INFO", info.to_string())
        .stderr(Stdio::inherit());
    let finished = crate::sys::process::run(cmd, None, 1 << 20, PLUGIN_TIMEOUT).map_err(|e| {
        let hint = cfg
            .install_hint
            .as_deref()
            .map(|h| format!("; {h}"))
            .unwrap_or_default();
        format!("credential plugin {command:?}: {e}{hint}")
    })?;
    let status = match finished.status {
        Ok(s) => s,
        Err(Unfinished::Timeout) => {
            return Err(format!(
                "credential plugin {command:?} did not finish within {PLUGIN_TIMEOUT:?}"
            ))
        }
        Err(Unfinished::Wait(e)) => return Err(format!("credential plugin {command:?}: {e}")),
    };
    let out = finished.stdout;
    if !status.success() {
        return Err(format!("credential plugin {command:?} failed: {status}"));
    }
    parse_output(&out, &cfg.api_version).map_err(|e| format!("credential plugin {command:?}: {e}"))
}

/// Parses an `ExecCredential` printed by a plugin.
pub fn parse_output(out: &[u8], api_version: &str) -> Result<ExecCredential, String> {
    let o: Output = serde_json::from_slice(out)
        .map_err(|_| "output is not an ExecCredential JSON object".to_string())?;
    if o.kind.as_deref() != Some("ExecCredential") {
        return Err("output kind is not ExecCredential".into());
    }
    if o.api_version.as_deref() != Some(api_version) {
        return Err(format!(
            "output apiVersion {:?} does not match {api_version:?}",
            o.api_version.unwrap_or_default()
        ));
    }
    let s = o.status.ok_or("output has no status")?;
    let token = s.token.filter(|t| !t.is_empty());
    let client_cert = match (s.client_certificate_data, s.client_key_data) {
        (Some(c), Some(k)) if !c.is_empty() && !k.is_empty() => Some(ClientCert {
            cert_pem: c.into_bytes(),
            key_pem: k.into_bytes(),
        }),
        (None, None) => None,
        _ => return Err("status has only one of clientCertificateData and clientKeyData".into()),
    };
    if token.is_none() && client_cert.is_none() {
        return Err("status has neither token nor client certificate".into());
    }
    let expires = match s.expiration_timestamp.as_deref() {
        None | Some("") => None,
        Some(t) => Some(
            crate::sys::timestamp::parse_rfc3339(t)
                .ok_or("expirationTimestamp is not an RFC 3339 time")?,
        ),
    };
    Ok(ExecCredential {
        token,
        client_cert,
        expires,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = "client.authentication.k8s.io/v1";

    #[test]
    fn parses_exec_credentials() {
        let c = parse_output(br#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"t","expirationTimestamp":"2030-01-01T00:00:00Z"}}"#, V1).unwrap();
        assert_eq!(c.token.as_deref(), Some("t"));
        assert!(c.expires.is_some());
        assert!(!format!("{c:?}").contains("\"t\""));
        for bad in [
            &br#"{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","status":{"token":"t"}}"#[..],
            br#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"Other","status":{"token":"t"}}"#,
            br#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{}}"#,
            br#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"t","expirationTimestamp":"soon"}}"#,
            br#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"clientKeyData":"k"}}"#,
            b"secret-token-not-json",
        ] {
            let e = parse_output(bad, V1).map(|_| ()).unwrap_err();
            assert!(!e.contains("secret-token"), "{e}");
        }
    }
}
