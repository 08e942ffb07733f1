//! The status page at `/` and its data at `/status.json`, for the person who
//! was just paged: totals per class, then every container that is not
//! available, grouped by namespace, with the reason and the credential
//! tried. Server-rendered HTML with no script and no external asset;
//! everything that comes from the cluster is escaped (the apiserver accepts
//! any string as an image). Filters come from the query string.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::inventory::Inventory;
use crate::registry::Status;
use crate::scheduler::Results;

/// Rows shown at most; a note says how many more there are.
pub const MAX_ROWS: usize = 1000;

/// `?namespace=...&kind=...&status=...`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Filter {
    /// Only this namespace.
    pub namespace: Option<String>,
    /// Only this kind (`deployment`, ..., `job`, `pod`).
    pub kind: Option<String>,
    /// Only this class.
    pub status: Option<Status>,
}

impl Filter {
    /// Reads the filter from a query string; unknown keys and classes are ignored.
    pub fn from_query(query: &str) -> Filter {
        let mut f = Filter::default();
        for (k, v) in parse_query(query) {
            match k.as_str() {
                "namespace" if !v.is_empty() => f.namespace = Some(v),
                "kind" if !v.is_empty() => f.kind = Some(v),
                "status" => f.status = Status::GAUGES.into_iter().find(|s| s.as_str() == v),
                _ => {}
            }
        }
        f
    }
}

/// Splits `a=1&b=x%20y` into decoded pairs (`+` is a space, as forms send it).
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (
                    b.get(i + 1).and_then(|&c| hex(c)),
                    b.get(i + 2).and_then(|&c| hex(c)),
                ) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One container that is not available.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Namespace.
    pub namespace: String,
    /// Lower-case kind.
    pub kind: &'static str,
    /// Workload name.
    pub name: String,
    /// Container name.
    pub container: String,
    /// The image as written.
    pub image: String,
    /// The class.
    pub status: Status,
    /// Why.
    pub reason: String,
    /// The credential that got the answer, or anonymous.
    pub credential: String,
    /// When the check finished (Unix seconds).
    pub checked_at: u64,
}

/// What the page shows.
#[derive(Debug, Default)]
pub struct Report {
    /// Containers per class, over the whole cluster (not filtered).
    pub totals: BTreeMap<&'static str, usize>,
    /// Containers with no verdict yet.
    pub unchecked: usize,
    /// Namespaces with a container that is not available, for the filter.
    pub namespaces: Vec<String>,
    /// Kinds with a container that is not available, for the filter.
    pub kinds: Vec<&'static str>,
    /// Matching rows, at most [`MAX_ROWS`], sorted by namespace, kind, name, container.
    pub rows: Vec<Row>,
    /// Matching rows left out.
    pub more: usize,
}

/// Collects the report under the inventory's and the results' read locks.
pub fn collect(inventory: &Inventory, results: &Results, filter: &Filter) -> Report {
    let mut r = Report::default();
    for s in Status::GAUGES {
        r.totals.insert(s.as_str(), 0);
    }
    let mut namespaces: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let mut kinds: std::collections::BTreeSet<&'static str> = std::collections::BTreeSet::new();
    let mut matching = 0usize;
    results.with(|table| {
        inventory.for_each_shown(|w, i, id, previous| {
            let Some((outcome, image)) = crate::scheduler::shown(table, id, previous) else {
                r.unchecked += 1;
                return;
            };
            let placement = inventory.placement(w);
            let status = outcome.status_for(placement);
            *r.totals.entry(status.as_str()).or_default() += 1;
            if status == Status::Available {
                return;
            }
            if !namespaces.contains(&*w.key.namespace) {
                namespaces.insert(w.key.namespace.to_string());
            }
            kinds.insert(w.kind.as_str());
            if filter
                .namespace
                .as_deref()
                .is_some_and(|n| n != &*w.key.namespace)
                || filter.kind.as_deref().is_some_and(|k| k != w.kind.as_str())
                || filter.status.is_some_and(|s| s != status)
            {
                return;
            }
            matching += 1;
            if r.rows.len() >= MAX_ROWS * 2 {
                // Keep memory bounded; the sort below keeps the first MAX_ROWS.
                r.rows.sort_unstable_by(row_order);
                r.rows.truncate(MAX_ROWS);
            }
            let c = &w.containers[i];
            r.rows.push(Row {
                namespace: w.key.namespace.to_string(),
                kind: w.kind.as_str(),
                name: w.key.name.to_string(),
                container: c.container.to_string(),
                image: image.unwrap_or(&c.image).to_string(),
                status,
                reason: outcome.reason_for(placement),
                credential: outcome
                    .credential
                    .clone()
                    .unwrap_or_else(|| "anonymous".into()),
                checked_at: outcome
                    .checked_at
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs(),
            });
        });
    });
    r.rows.sort_unstable_by(row_order);
    r.rows.truncate(MAX_ROWS);
    r.more = matching - r.rows.len();
    r.namespaces = namespaces.into_iter().collect();
    r.kinds = kinds.into_iter().collect();
    r
}

fn row_order(a: &Row, b: &Row) -> std::cmp::Ordering {
    (&a.namespace, a.kind, &a.name, &a.container).cmp(&(
        &b.namespace,
        b.kind,
        &b.name,
        &b.container,
    ))
}

/// HTML-escapes text and attribute values.
pub fn escape(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

fn ago(now: u64, t: u64) -> String {
    let d = now.saturating_sub(t);
    match d {
        0..=59 => format!("{d} s ago"),
        60..=3599 => format!("{} min ago", d / 60),
        _ => format!("{} h ago", d / 3600),
    }
}

/// A `<select>` of `values` (plus "all") for the filter form.
fn select(
    h: &mut String,
    (label, name): (&str, &str),
    values: &[impl AsRef<str>],
    chosen: Option<&str>,
) {
    let _ = write!(
        h,
        "<label>{label} <select name=\"{name}\"><option value=\"\">all</option>"
    );
    for v in values {
        let v = v.as_ref();
        let selected = if chosen == Some(v) { " selected" } else { "" };
        h.push_str("<option value=\"");
        escape(h, v);
        let _ = write!(h, "\"{selected}>");
        escape(h, v);
        h.push_str("</option>");
    }
    h.push_str("</select></label> ");
}

/// The page.
pub fn html(r: &Report, filter: &Filter) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut h = String::with_capacity(4096 + r.rows.len() * 400);
    h.push_str("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>k8s-image-availability-exporter</title><style>\
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}\
td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}th{background:#f3f3f3}\
.available{color:#176f2c}.bad{color:#a11}code{word-break:break-all}nav a{margin-right:1em}</style></head><body>\
<h1>k8s-image-availability-exporter</h1><nav><a href=\"/metrics\">/metrics</a><a href=\"/healthz\">/healthz</a>\
<a href=\"/readyz\">/readyz</a><a href=\"/status.json\">/status.json</a></nav>");
    h.push_str("<h2>Containers by class</h2><table id=\"totals\"><tr>");
    for s in Status::GAUGES {
        let _ = write!(h, "<th>{}</th>", s.as_str());
    }
    h.push_str("<th>not checked yet</th></tr><tr>");
    for s in Status::GAUGES {
        let n = r.totals.get(s.as_str()).copied().unwrap_or(0);
        let class = if s == Status::Available {
            "available"
        } else if n > 0 {
            "bad"
        } else {
            ""
        };
        let _ = write!(
            h,
            "<td class=\"{class}\" data-status=\"{}\">{n}</td>",
            s.as_str()
        );
    }
    let _ = write!(h, "<td>{}</td></tr></table>", r.unchecked);
    // A plain GET form: filters work without JavaScript.
    h.push_str("<form method=\"get\" action=\"/\">");
    // Namespaces and kinds come from the cluster (a custom kind from
    // discovery): escaped like everything else.
    select(
        &mut h,
        ("Namespace", "namespace"),
        &r.namespaces,
        filter.namespace.as_deref(),
    );
    select(&mut h, ("Kind", "kind"), &r.kinds, filter.kind.as_deref());
    h.push_str("<label>Class <select name=\"status\"><option value=\"\">all</option>");
    for s in Status::GAUGES
        .into_iter()
        .filter(|s| *s != Status::Available)
    {
        let selected = if filter.status == Some(s) {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            h,
            "<option value=\"{0}\"{selected}>{0}</option>",
            s.as_str()
        );
    }
    h.push_str("</select></label> <button type=\"submit\">Filter</button></form>");
    if r.rows.is_empty() {
        h.push_str("<p id=\"none\">No container matching the filter is unavailable.</p>");
    }
    let mut current: Option<&str> = None;
    for row in &r.rows {
        if current != Some(row.namespace.as_str()) {
            if current.is_some() {
                h.push_str("</table>");
            }
            current = Some(&row.namespace);
            h.push_str("<h2>Namespace ");
            escape(&mut h, &row.namespace);
            h.push_str("</h2><table class=\"rows\"><tr><th>workload</th><th>container</th><th>image</th><th>class</th><th>reason</th><th>credential</th><th>last checked</th></tr>");
        }
        let _ = write!(h, "<tr data-status=\"{}\"><td>", row.status.as_str());
        escape(&mut h, row.kind);
        h.push('/');
        escape(&mut h, &row.name);
        h.push_str("</td><td>");
        escape(&mut h, &row.container);
        h.push_str("</td><td><code>");
        escape(&mut h, &row.image);
        let _ = write!(
            h,
            "</code></td><td class=\"bad\">{}</td><td>",
            row.status.as_str()
        );
        escape(&mut h, &row.reason);
        h.push_str("</td><td>");
        escape(&mut h, &row.credential);
        let _ = write!(h, "</td><td>{}</td></tr>", ago(now, row.checked_at));
    }
    if current.is_some() {
        h.push_str("</table>");
    }
    if r.more > 0 {
        let _ = write!(
            h,
            "<p id=\"more\">{} more containers match; narrow the filter or read /status.json.</p>",
            r.more
        );
    }
    h.push_str("</body></html>\n");
    h
}

/// The same data for scripts.
pub fn json(r: &Report) -> String {
    let rows: Vec<serde_json::Value> = r
        .rows
        .iter()
        .map(|row| {
            serde_json::json!({
                "namespace": row.namespace,
                "kind": row.kind,
                "name": row.name,
                "container": row.container,
                "image": row.image,
                "status": row.status.as_str(),
                "reason": row.reason,
                "credential": row.credential,
                "checked_at": row.checked_at,
            })
        })
        .collect();
    serde_json::json!({
        "totals": r.totals,
        "not_checked_yet": r.unchecked,
        "containers": rows,
        "more": r.more,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings() {
        assert_eq!(
            parse_query("namespace=team%2Da&status=absent&x&=y&q=a+b%zz%4"),
            [
                ("namespace".to_string(), "team-a".to_string()),
                ("status".into(), "absent".into()),
                ("x".into(), "".into()),
                ("".into(), "y".into()),
                ("q".into(), "a b%zz%4".into()),
            ]
        );
        let f = Filter::from_query("namespace=prod&status=registry_unavailable&kind=pod");
        assert_eq!(f.namespace.as_deref(), Some("prod"));
        assert_eq!(f.kind.as_deref(), Some("pod"));
        assert_eq!(f.status, Some(Status::RegistryUnavailable));
        assert_eq!(
            Filter::from_query("status=nonsense&namespace=&kind="),
            Filter::default()
        );
    }

    #[test]
    fn escaping() {
        let mut s = String::new();
        escape(&mut s, r#"<script>alert("x")</script>&'"#);
        assert_eq!(
            s,
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"
        );
    }
}
