//! The status page at `/` and its data at `/status.json`, for the person who
//! was just paged: totals per class, then every container that is not
//! available, grouped by namespace, with the reason and the credential
//! tried. Server-rendered HTML with no script and no external asset;
//! everything that comes from the cluster is escaped (the apiserver accepts
//! any string as an image). Filters come from the query string.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::exporter::scheduler::Results;
use crate::inventory::Inventory;
use crate::registry::Status;

/// Rows on a page of `/`: a screenful or two, fast to render at any size.
pub const PAGE_ROWS: usize = 100;
/// Rows per page of `/status.json`, for scripts.
pub const JSON_PAGE_ROWS: usize = 1000;

/// `?namespace=...&kind=...&status=...&page=...`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Filter {
    /// Only this namespace.
    pub namespace: Option<String>,
    /// Only this kind (`deployment`, ..., `job`, `pod`).
    pub kind: Option<String>,
    /// Only this class.
    pub status: Option<Status>,
    /// The page, from 1 (0 and unreadable numbers read as 1).
    pub page: usize,
}

impl Filter {
    /// Reads the filter from a query string; unknown keys and classes are ignored.
    pub fn from_query(query: &str) -> Filter {
        let mut f = Filter {
            page: 1,
            ..Filter::default()
        };
        for (k, v) in parse_query(query) {
            match k.as_str() {
                "namespace" if !v.is_empty() => f.namespace = Some(v),
                "kind" if !v.is_empty() => f.kind = Some(v),
                "status" => f.status = Status::GAUGES.into_iter().find(|s| s.as_str() == v),
                "page" => f.page = v.trim().parse().unwrap_or(1).max(1),
                _ => {}
            }
        }
        f
    }

    /// The query string of this filter on another page.
    fn query_for_page(&self, page: usize) -> String {
        let encode = crate::registry::transport::percent_encode;
        let mut q = Vec::new();
        if let Some(n) = &self.namespace {
            q.push(format!("namespace={}", encode(n)));
        }
        if let Some(k) = &self.kind {
            q.push(format!("kind={}", encode(k)));
        }
        if let Some(s) = self.status {
            q.push(format!("status={}", s.as_str()));
        }
        q.push(format!("page={page}"));
        q.join("&")
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
    /// Since when the check has given this verdict (Unix seconds).
    pub since: u64,
}

/// A container whose running pods do not all run the build its tag names now.
#[derive(Debug, Clone)]
pub struct MovedRow {
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
    /// The digest the tag names now.
    pub tag: String,
    /// The digests the running pods run, with pod counts, most pods first.
    pub running: Vec<(String, u32)>,
    /// Since when it has been seen moved (Unix seconds).
    pub since: u64,
}

/// Rows of the "tag moved" section kept at most (the count is whole).
pub const MOVED_ROWS: usize = 1000;

/// What the page shows.
#[derive(Debug, Default)]
pub struct Report {
    /// Containers whose running pods do not all run what the tag names now
    /// (at most [`MOVED_ROWS`]), and how many there are.
    pub moved: (Vec<MovedRow>, usize),
    /// Containers per class, over the whole cluster (not filtered).
    pub totals: BTreeMap<&'static str, usize>,
    /// Containers with no verdict yet.
    pub unchecked: usize,
    /// Containers that cannot be pulled now (any class but available), and
    /// since when the longest-failing of them has.
    pub failing: (usize, Option<u64>),
    /// Namespaces with a container that is not available, for the filter.
    pub namespaces: Vec<String>,
    /// Kinds with a container that is not available, for the filter.
    pub kinds: Vec<&'static str>,
    /// The rows of the page asked for, sorted by namespace, kind, name, container.
    pub rows: Vec<Row>,
    /// Rows matching the filter, on every page.
    pub matching: usize,
    /// The page shown (from 1) and its size.
    pub page: (usize, usize),
    /// Registries that announced no pulls left, with their limit.
    pub exhausted: Vec<(String, u64)>,
}

impl Report {
    /// Matching rows after this page.
    pub fn more(&self) -> usize {
        self.matching.saturating_sub(self.page.0 * self.page.1)
    }

    /// Pages of matching rows (at least 1).
    pub fn pages(&self) -> usize {
        self.matching.div_ceil(self.page.1.max(1)).max(1)
    }
}

fn unix(t: std::time::SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// Collects a page of `per_page` rows under the inventory's and the
/// results' read locks. Only the rows up to the end of that page are kept
/// while collecting, however many containers fail.
pub fn collect(
    inventory: &Inventory,
    results: &Results,
    since: &crate::exporter::tag_moved::Since,
    filter: &Filter,
    per_page: usize,
) -> Report {
    let per_page = per_page.max(1);
    let page = filter.page.max(1);
    let keep = page.saturating_mul(per_page);
    let mut r = Report {
        page: (page, per_page),
        ..Report::default()
    };
    for s in Status::GAUGES {
        r.totals.insert(s.as_str(), 0);
    }
    let mut namespaces: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let mut kinds: std::collections::BTreeSet<&'static str> = std::collections::BTreeSet::new();
    let mut rows = Vec::new();
    results.with(|table| {
        inventory.for_each_placed(|w, placement, i, id, previous| {
            let Some((outcome, image)) = crate::exporter::scheduler::shown(table, id, previous)
            else {
                r.unchecked += 1;
                return;
            };
            let status = outcome.status_for(placement);
            *r.totals.entry(status.as_str()).or_default() += 1;
            let c = &w.containers[i];
            let shown_image = image.unwrap_or(&c.image);
            let running = inventory.running(w, i);
            if let Some(v) = crate::exporter::tag_moved::judge(outcome, shown_image, Some(&running))
                .filter(|v| v.moved)
            {
                let what = (
                    w.kind.as_str(),
                    &*w.key.namespace,
                    &*w.key.name,
                    &*c.container,
                );
                let first = since.observe(what, v.tag, true).map_or(0, unix);
                r.moved.1 += 1;
                if r.moved.0.len() < MOVED_ROWS {
                    let mut running: Vec<(String, u32)> =
                        v.running.iter().map(|(d, n)| (d.to_string(), *n)).collect();
                    running.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                    r.moved.0.push(MovedRow {
                        namespace: w.key.namespace.to_string(),
                        kind: w.kind.as_str(),
                        name: w.key.name.to_string(),
                        container: c.container.to_string(),
                        image: shown_image.to_string(),
                        tag: v.tag.to_string(),
                        running,
                        since: first,
                    });
                }
            }
            if status == Status::Available {
                return;
            }
            let since = unix(outcome.since);
            r.failing.0 += 1;
            r.failing.1 = Some(r.failing.1.map_or(since, |s| s.min(since)));
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
            r.matching += 1;
            if rows.len() >= keep.saturating_mul(2).max(1024) {
                // Keep memory bounded; the sort below keeps the first rows.
                rows.sort_unstable_by(row_order);
                rows.truncate(keep);
            }
            let c = &w.containers[i];
            rows.push(Row {
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
                checked_at: unix(outcome.checked_at),
                since,
            });
        });
    });
    rows.sort_unstable_by(row_order);
    rows.truncate(keep);
    r.rows = rows.split_off(rows.len().min((page - 1) * per_page));
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

/// `42 s`, `5 min`, `3 h`, `4 days`: from `t` to `now`.
fn span(now: u64, t: u64) -> String {
    let d = now.saturating_sub(t);
    match d {
        0..=59 => format!("{d} s"),
        60..=3599 => format!("{} min", d / 60),
        3600..=172_799 => format!("{} h", d / 3600),
        _ => format!("{} days", d / 86_400),
    }
}

fn ago(now: u64, t: u64) -> String {
    span(now, t) + " ago"
}

/// `2026-12-06 10:04 UTC`.
fn when(t: u64) -> String {
    let text = crate::sys::timestamp::format_rfc3339_millis(
        UNIX_EPOCH + std::time::Duration::from_secs(t),
    );
    format!("{} {} UTC", &text[..10], &text[11..16])
}

/// `1,234`.
fn count(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// What the page says of a registry whose pull quota is used up: the
/// verdicts still stand (the tags are there), but no node pulls from it.
fn quota_note(host: &str, limit: u64) -> String {
    format!(
        "{host} announces 0 of {limit} pulls left: nodes cannot pull new images from it (a manifest GET gets 429) until its window resets. The verdicts below do not include this."
    )
}

/// "Tag moved": workloads whose running pods do not all run what their
/// tag names now, with the digests and pod counts.
fn moved_section(h: &mut String, r: &Report, now: u64) {
    let (rows, total) = &r.moved;
    if *total == 0 {
        return;
    }
    let _ = write!(
        h,
        "<h2 id=\"tag-moved\">Tag moved</h2><p>{} containers run another build than their tag names now: the next pod started on a node without the old image (a scale-up, a drain, a restart with imagePullPolicy Always) runs the new one.</p>\
<table class=\"moved\"><thead><tr><th>Workload</th><th>Container</th><th>Image</th><th>The tag now</th><th>Running (pods)</th><th>Since</th></tr></thead><tbody>",
        count(*total)
    );
    for m in rows {
        h.push_str("<tr><td>");
        escape(h, &format!("{} {}/{}", m.kind, m.namespace, m.name));
        h.push_str("</td><td>");
        escape(h, &m.container);
        h.push_str("</td><td>");
        escape(h, &m.image);
        h.push_str("</td><td>");
        escape(h, &m.tag);
        h.push_str("</td><td>");
        for (d, n) in &m.running {
            let mark = if *d == m.tag { "" } else { " class=\"bad\"" };
            let _ = write!(h, "<div{mark}>");
            escape(h, d);
            let _ = write!(h, " ({n})</div>");
        }
        h.push_str("</td><td>");
        escape(h, &format!("{} ({})", when(m.since), ago(now, m.since)));
        h.push_str("</td></tr>");
    }
    h.push_str("</tbody></table>");
}

/// The sentence the page opens with.
fn summary(r: &Report, now: u64) -> String {
    let checked: usize = r.totals.values().sum();
    let (failing, since) = r.failing;
    let mut s = match (failing, since) {
        (0, _) if checked == 0 => "No container has been checked yet.".to_string(),
        (0, _) => format!("All {} checked containers can be pulled.", count(checked)),
        (n, Some(t)) => format!(
            "{} of {} checked containers cannot be pulled, the first of them since {} ({}).",
            count(n),
            count(checked),
            when(t),
            ago(now, t)
        ),
        (n, None) => format!(
            "{} of {} checked containers cannot be pulled.",
            count(n),
            count(checked)
        ),
    };
    if r.unchecked > 0 {
        let _ = write!(s, " {} not checked yet.", count(r.unchecked));
    }
    s
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

/// The page. It fits a 1280-pixel window: the class totals wrap, and the
/// rows' tables take the window's width with long images and reasons
/// broken inside their cells.
pub fn html(r: &Report, filter: &Filter) -> String {
    let now = unix(SystemTime::now());
    let mut h = String::with_capacity(4096 + r.rows.len() * 400);
    h.push_str("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width\"><title>k8s-image-availability-exporter</title><style>\
body{font-family:system-ui,sans-serif;margin:1em 1.5em;color:#222}h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.15em}\
#summary{font-size:1.1em}#summary.bad{color:#a11}\
#totals{display:flex;flex-wrap:wrap;gap:.4em;list-style:none;padding:0;margin:.5em 0 1em}\
#totals li{border:1px solid #ccc;border-radius:4px;padding:.25em .6em}#totals b{margin-right:.3em}\
table{border-collapse:collapse;margin:.5em 0 1.5em;width:100%;table-layout:fixed}\
td,th{border:1px solid #ccc;padding:.3em .5em;text-align:left;vertical-align:top;overflow-wrap:anywhere}th{background:#f3f3f3}\
.available{color:#176f2c}.bad{color:#a11}nav a{margin-right:1em}form{margin:.5em 0}</style></head><body>\
<h1>k8s-image-availability-exporter</h1>");
    let bad = if r.failing.0 > 0 {
        " class=\"bad\""
    } else {
        ""
    };
    h.push_str(&format!("<p id=\"summary\"{bad}>"));
    escape(&mut h, &summary(r, now));
    h.push_str("</p>");
    for (host, limit) in &r.exhausted {
        h.push_str("<p class=\"quota bad\">");
        escape(&mut h, &quota_note(host, *limit));
        h.push_str("</p>");
    }
    h.push_str(
        "<nav><a href=\"/metrics\">/metrics</a><a href=\"/healthz\">/healthz</a>\
<a href=\"/readyz\">/readyz</a><a href=\"/status.json\">/status.json</a></nav>",
    );
    moved_section(&mut h, r, now);
    h.push_str("<h2>Containers by class</h2><ul id=\"totals\">");
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
            "<li class=\"{class}\" data-status=\"{0}\"><b>{1}</b>{0}</li>",
            s.as_str(),
            count(n)
        );
    }
    let _ = write!(
        h,
        "<li data-status=\"unchecked\"><b>{}</b>not checked yet</li></ul>",
        count(r.unchecked)
    );
    // A plain GET form: filters work without JavaScript. Namespaces and
    // kinds come from the cluster (a custom kind from discovery): escaped
    // like everything else.
    h.push_str("<form method=\"get\" action=\"/\">");
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
    if r.matching == 0 {
        h.push_str("<p id=\"none\">No container matching the filter is unavailable.</p>");
    } else {
        pager(&mut h, r, filter);
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
            h.push_str("</h2><table class=\"rows\"><colgroup><col style=\"width:17%\"><col style=\"width:9%\">\
<col style=\"width:20%\"><col style=\"width:10%\"><col style=\"width:22%\"><col style=\"width:10%\"><col style=\"width:12%\"></colgroup>\
<tr><th>workload</th><th>container</th><th>image</th><th>class</th><th>reason</th><th>credential</th><th>for how long</th></tr>");
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
        let _ = write!(
            h,
            "</td><td title=\"since {}\">{}<br><small>checked {}</small></td></tr>",
            when(row.since),
            span(now, row.since),
            ago(now, row.checked_at)
        );
    }
    if current.is_some() {
        h.push_str("</table>");
    }
    if r.pages() > 1 {
        pager(&mut h, r, filter);
    }
    h.push_str("</body></html>\n");
    h
}

/// `Rows 101-200 of 3,000 · page 2 of 30 · previous · next`.
fn pager(h: &mut String, r: &Report, filter: &Filter) {
    let (page, per_page) = r.page;
    let first = (page - 1) * per_page + 1;
    let _ = write!(h, "<p class=\"pages\">");
    if r.rows.is_empty() {
        let _ = write!(
            h,
            "No rows on page {page}; {} rows match.",
            count(r.matching)
        );
    } else {
        let _ = write!(
            h,
            "Rows {}&ndash;{} of {} &middot; page {page} of {}",
            count(first),
            count(first + r.rows.len() - 1),
            count(r.matching),
            count(r.pages())
        );
    }
    if page > 1 {
        let back = page.min(r.pages() + 1) - 1;
        let _ = write!(
            h,
            " &middot; <a rel=\"prev\" href=\"/?{}\">previous</a>",
            filter.query_for_page(back)
        );
    }
    if r.more() > 0 {
        let _ = write!(
            h,
            " &middot; <a rel=\"next\" href=\"/?{}\">next</a>",
            filter.query_for_page(page + 1)
        );
    }
    h.push_str("</p>");
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
                "since": row.since,
            })
        })
        .collect();
    serde_json::json!({
        "totals": r.totals,
        "not_checked_yet": r.unchecked,
        "cannot_be_pulled": r.failing.0,
        "cannot_be_pulled_since": r.failing.1,
        "tag_moved": r.moved.0.iter().map(|m| serde_json::json!({
            "namespace": m.namespace,
            "kind": m.kind,
            "name": m.name,
            "container": m.container,
            "image": m.image,
            "tag_digest": m.tag,
            "running": m.running.iter().map(|(d, n)| serde_json::json!({"digest": d, "pods": n})).collect::<Vec<_>>(),
            "since": m.since,
        })).collect::<Vec<_>>(),
        "tag_moved_total": r.moved.1,
        "pull_quota_exhausted": r
            .exhausted
            .iter()
            .map(|(host, limit)| serde_json::json!({"registry": host, "limit": limit}))
            .collect::<Vec<_>>(),
        "containers": rows,
        "matching": r.matching,
        "page": r.page.0,
        "pages": r.pages(),
        "more": r.more(),
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
            Filter::from_query("status=nonsense&namespace=&kind=&page=x"),
            Filter {
                page: 1,
                ..Filter::default()
            }
        );
        assert_eq!(Filter::from_query("page=0").page, 1);
        assert_eq!(Filter::from_query("page=7").page, 7);
        let f = Filter::from_query("namespace=a%20b&kind=pod&status=absent&page=3");
        assert_eq!(
            f.query_for_page(4),
            "namespace=a%20b&kind=pod&status=absent&page=4"
        );
        assert_eq!(
            Filter::from_query(&f.query_for_page(4)).namespace,
            f.namespace
        );
    }

    #[test]
    fn numbers_and_times_read_as_people_write_them() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(30_100), "30,100");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(when(1_795_838_400), "2026-11-28 04:00 UTC");
        assert_eq!(ago(100_000, 100_000 - 7_200), "2 h ago");
        assert_eq!(ago(1_000_000, 1_000_000 - 3 * 86_400), "3 days ago");
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
