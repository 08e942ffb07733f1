//! `check IMAGE...`: check images now, print one line per image, and exit
//! 0 when all are available. What an operator runs to ask "why does the
//! exporter say that?", and what a pipeline runs before a deploy.

use std::collections::HashMap;
use std::io::{self, Write};

use crate::image::platform::{refuses_schema1, NodeGroup, Platform};
use crate::image::reference::Mirrored;
use crate::registry::manifest::Platforms;
use crate::registry::{CheckResult, Checker, RegistryConfig, Status};

/// How `check` prints results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// One JSON object per line for programs.
    Json,
}

/// The workload container a row is about (`--once`).
#[derive(Debug, Clone)]
pub struct WorkloadRef {
    /// Namespace.
    pub namespace: String,
    /// Lowercase kind.
    pub kind: String,
    /// Name.
    pub name: String,
    /// Container name.
    pub container: String,
}

/// One image's line of output.
#[derive(Debug, Clone)]
pub struct Row {
    /// The container, for `--once` rows.
    pub workload: Option<WorkloadRef>,
    /// The image as given.
    pub image: String,
    /// The normalised reference after mirrors, when the image parsed.
    pub reference: Option<String>,
    /// The mirror rule used, if any.
    pub mirror: Option<String>,
    /// The verdict.
    pub result: CheckResult,
}

impl Row {
    /// A row for `image`; reference and mirror are those of the host that
    /// gave the verdict (a mirror, or the image's own registry).
    pub fn new(
        workload: Option<WorkloadRef>,
        image: &str,
        target: Option<&Mirrored>,
        result: CheckResult,
    ) -> Row {
        let on_host = target.map(|m| m.on_host(result.host.as_deref().unwrap_or("")));
        Row {
            workload,
            image: image.to_string(),
            reference: on_host.map(|(r, _)| r.to_string()),
            mirror: on_host.and_then(|(_, rule)| rule.map(str::to_string)),
            result,
        }
    }
}

/// Checks every image once (the same image written two ways is one check),
/// one after another so that request counts show what caching saves. With
/// `platforms`, an available image must have a build for each of them,
/// pullable by nodes of the container `runtime` (`containerd://2.0.4`).
pub fn run(
    config: &RegistryConfig,
    checker: &Checker,
    images: &[String],
    platforms: &[Platform],
    runtime: Option<&str>,
) -> Vec<Row> {
    let required: Vec<NodeGroup> = platforms
        .iter()
        .map(|p| NodeGroup {
            refuses_schema1: runtime.filter(|r| refuses_schema1(r)).map(Into::into),
            ..NodeGroup::new(p.clone(), 0)
        })
        .collect();
    let mut done: HashMap<String, CheckResult> = HashMap::new();
    let mut rows = Vec::with_capacity(images.len());
    for image in images {
        let reference = match config.parse_image(image) {
            Ok(r) => r,
            Err(e) => {
                rows.push(Row {
                    workload: None,
                    image: image.clone(),
                    reference: None,
                    mirror: None,
                    result: CheckResult::without_requests(Status::BadImageFormat, e.to_string()),
                });
                continue;
            }
        };
        let mirrored = config.mirrors.apply(&reference);
        let key = mirrored.reference.check_key();
        let result = match done.get(&key) {
            Some(r) => CheckResult {
                requests: 0,
                ..r.clone()
            },
            None => {
                let creds = config.node_keyring.lookup(&mirrored.reference);
                let r = checker.check_mirrored(&mirrored, &creds);
                log::debug!(
                    "{image}: {} ({}), {} requests",
                    r.status,
                    r.reason,
                    r.requests
                );
                done.insert(key, r.clone());
                r
            }
        };
        rows.push(Row::new(
            None,
            image,
            Some(&mirrored),
            against(result, &required),
        ));
    }
    rows
}

/// An available result, judged against the platforms pods can land on:
/// a broken pull path for a build they pull, then a missing build.
pub fn against(mut result: CheckResult, required: &[NodeGroup]) -> CheckResult {
    if result.status != Status::Available {
        return result;
    }
    let offered = match &result.platforms {
        Some(Platforms::Known(p)) => Some(&p[..]),
        _ => None,
    };
    let nodes = (!required.is_empty()).then_some(required);
    if let Some(j) =
        crate::registry::pull_path::judge(offered, &result.broken, result.schema1, nodes)
    {
        (result.status, result.reason) = (j.status(), j.reason());
        return result;
    }
    if let (Some(Platforms::Unknown(why)), Some(_)) = (&result.platforms, nodes) {
        result.reason = format!("{}; platforms not checked: {why}", result.reason);
    }
    result
}

/// 0 when every image is available, 1 otherwise.
pub fn exit_code(rows: &[Row]) -> i32 {
    if rows.iter().all(|r| r.result.status == Status::Available) {
        0
    } else {
        1
    }
}

/// Writes the rows as a table or as JSON lines.
pub fn print(rows: &[Row], output: Output, w: &mut dyn Write) -> io::Result<()> {
    match output {
        Output::Json => {
            for r in rows {
                let mut v = serde_json::json!({
                    "image": r.image,
                    "reference": r.reference,
                    "mirror": r.mirror,
                    "status": r.result.status.as_str(),
                    "reason": r.result.reason,
                    "credential": r.result.credential.as_deref().unwrap_or("anonymous"),
                    "host": r.result.host,
                    "requests": r.result.requests,
                    "digest": r.result.digest,
                    "retry_after_seconds": r.result.retry_after.map(|d| d.as_secs()),
                });
                if let Some(Platforms::Known(p)) = &r.result.platforms {
                    v["platforms"] = p.iter().map(|p| p.to_string()).collect::<Vec<_>>().into();
                }
                if let Some(wl) = &r.workload {
                    v["namespace"] = wl.namespace.clone().into();
                    v["kind"] = wl.kind.clone().into();
                    v["name"] = wl.name.clone().into();
                    v["container"] = wl.container.clone().into();
                }
                writeln!(w, "{v}")?;
            }
        }
        Output::Table => {
            let with_workload = rows.iter().any(|r| r.workload.is_some());
            let mut header: Vec<&str> = Vec::new();
            if with_workload {
                header.extend(["NAMESPACE", "KIND", "NAME", "CONTAINER"]);
            }
            header.extend(["IMAGE", "STATUS", "CREDENTIAL", "REQUESTS", "REASON"]);
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    let mut c = Vec::new();
                    if with_workload {
                        let wl = r.workload.clone().unwrap_or(WorkloadRef {
                            namespace: String::new(),
                            kind: String::new(),
                            name: String::new(),
                            container: String::new(),
                        });
                        c.extend([wl.namespace, wl.kind, wl.name, wl.container]);
                    }
                    c.extend([
                        r.image.clone(),
                        r.result.status.to_string(),
                        r.result
                            .credential
                            .clone()
                            .unwrap_or_else(|| "anonymous".into()),
                        r.result.requests.to_string(),
                        r.result.reason.clone(),
                    ]);
                    c
                })
                .collect();
            let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
            for row in &cells {
                for (i, c) in row.iter().enumerate() {
                    width[i] = width[i].max(c.chars().count());
                }
            }
            let line = |w: &mut dyn Write, cols: &[&str]| -> io::Result<()> {
                let mut s = String::new();
                for (i, c) in cols.iter().enumerate() {
                    if i + 1 == cols.len() {
                        s.push_str(c);
                    } else {
                        s.push_str(&format!("{c:<width$}  ", width = width[i]));
                    }
                }
                writeln!(w, "{}", s.trim_end())
            };
            line(w, &header)?;
            for row in &cells {
                let cols: Vec<&str> = row.iter().map(String::as_str).collect();
                line(w, &cols)?;
            }
        }
    }
    Ok(())
}
