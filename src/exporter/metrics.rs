//! What `/metrics` shows. The Go exporter's seven gauges and our
//! `platform_unavailable` (one series per container and class, exactly one
//! of them 1) are written straight from the
//! inventory and the results table into the text format, without a heap
//! object per series, because a large cluster has hundreds of thousands of
//! them. The small, fixed metrics use the prometheus crate.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, UNIX_EPOCH};

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::exporter::scheduler::{Observer, Results};
use crate::inventory::{CheckSpec, Inventory};
use crate::kube::watch::{Stream, StreamState};
use crate::registry::{CheckResult, Status};

const PREFIX: &str = "k8s_image_availability_exporter";

/// The fixed metrics, plus the renderer of the per-container ones.
pub struct Metrics {
    registry: Registry,
    completed: IntCounter,
    shared: IntCounter,
    durations: HistogramVec,
    requests: IntCounterVec,
    pauses: IntCounterVec,
    watched: IntGaugeVec,
    checks: IntGauge,
    recheck_within: prometheus::Gauge,
    quota_limit: IntGaugeVec,
    quota_remaining: IntGaugeVec,
    /// `--one-series-per-container`: only the class gauge that is 1.
    one_series: bool,
    /// Since when containers have been seen with their tag moved.
    pub moved_since: crate::exporter::tag_moved::Since,
}

fn must<T>(r: Result<T, prometheus::Error>) -> T {
    // Only fails on invalid names or duplicate registration: a programming error.
    r.expect("metric definition")
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers the fixed metrics.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let completed = must(IntCounter::with_opts(Opts::new(
            format!("{PREFIX}_completed_rechecks_total"),
            "Number of image checks completed.",
        )));
        let shared = must(IntCounter::with_opts(Opts::new(
            format!("{PREFIX}_shared_results_total"),
            "Checks that took the answer of a check of the same image with other credentials, because the registry asked for none (no request made).",
        )));
        let durations = must(HistogramVec::new(
            HistogramOpts::new(
                format!("{PREFIX}_check_duration_seconds"),
                "Time one image check took, by registry host.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["registry"],
        ));
        let requests = must(IntCounterVec::new(
            Opts::new(format!("{PREFIX}_registry_requests_total"), "HTTP requests sent to registries and token servers, by host and status class (2xx, 3xx, 4xx, 5xx, error)."),
            &["registry", "code"],
        ));
        let pauses = must(IntCounterVec::new(
            Opts::new(
                format!("{PREFIX}_rate_limit_pauses_total"),
                "Times a registry answered 429 and was left alone for its Retry-After.",
            ),
            &["registry"],
        ));
        let watched = must(IntGaugeVec::new(
            Opts::new(
                format!("{PREFIX}_watched_objects"),
                "Objects currently known per watched resource.",
            ),
            &["resource"],
        ));
        let checks = must(IntGauge::with_opts(Opts::new(
            format!("{PREFIX}_checks"),
            "Distinct checks (image plus credentials) currently scheduled.",
        )));
        let recheck_within = must(prometheus::Gauge::with_opts(Opts::new(
            format!("{PREFIX}_recheck_within_seconds"),
            "--recheck-within: every image is rechecked within this time (alerts compare check ages with it).",
        )));
        let quota_limit = must(IntGaugeVec::new(
            Opts::new(
                format!("{PREFIX}_registry_rate_limit_limit"),
                "Pulls a registry allows in its window (RateLimit-Limit), as its last answer announced. Absent for registries that announce none.",
            ),
            &["registry"],
        ));
        let quota_remaining = must(IntGaugeVec::new(
            Opts::new(
                format!("{PREFIX}_registry_rate_limit_remaining"),
                "Pulls left in a registry's window (RateLimit-Remaining), as its last answer announced; below the --pull-quota-reserve share of the limit, no manifest GET is made.",
            ),
            &["registry"],
        ));
        let build = must(IntGaugeVec::new(
            Opts::new(
                format!("{PREFIX}_build_info"),
                "Build information; always 1.",
            ),
            &["version"],
        ));
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        for c in [
            Box::new(completed.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(shared.clone()),
            Box::new(durations.clone()),
            Box::new(requests.clone()),
            Box::new(pauses.clone()),
            Box::new(watched.clone()),
            Box::new(checks.clone()),
            Box::new(recheck_within.clone()),
            Box::new(quota_limit.clone()),
            Box::new(quota_remaining.clone()),
            Box::new(build),
        ] {
            must(registry.register(c));
        }
        Metrics {
            registry,
            completed,
            shared,
            durations,
            requests,
            pauses,
            watched,
            checks,
            recheck_within,
            quota_limit,
            quota_remaining,
            one_series: false,
            moved_since: Default::default(),
        }
    }

    /// Registries whose last answer announced no pulls left, with their
    /// limit, by host: the nodes cannot pull new images from them. Read
    /// from the quota gauges (for /status, not a hot path).
    pub fn exhausted_quotas(&self) -> Vec<(String, u64)> {
        let limits = by_host(&self.quota_limit);
        by_host(&self.quota_remaining)
            .into_iter()
            .filter(|(_, remaining)| *remaining == 0)
            .map(|(host, _)| {
                let limit = limits.get(&host).copied().unwrap_or(0);
                (host, limit)
            })
            .collect()
    }

    /// `--one-series-per-container`: a container's series is only the class
    /// gauge that is 1; the other seven are not written (a class change
    /// makes the old series disappear, which Prometheus marks stale at once).
    pub fn one_series_per_container(mut self, on: bool) -> Metrics {
        self.one_series = on;
        self
    }

    /// Records `--recheck-within`, for the stale-checks alert.
    pub fn set_recheck_within(&self, d: Duration) {
        self.recheck_within.set(d.as_secs_f64());
    }

    /// Adds metric families owned elsewhere (credential provider runs).
    pub fn register(&self, collector: Box<dyn prometheus::core::Collector>) {
        must(self.registry.register(collector));
    }

    /// Takes what a scrape shows. The inventory is locked only while the
    /// series are collected; the text is produced as the client reads it,
    /// so a large exposition is never held in memory whole.
    pub fn exposition(
        &self,
        inventory: &RwLock<Inventory>,
        results: &Results,
        streams: &[(Stream, Arc<StreamState>)],
    ) -> io::Result<Exposition> {
        let (rows, last_checked, checks) = {
            let inv = inventory.read().unwrap_or_else(|e| e.into_inner());
            (
                container_rows(&inv, results, &self.moved_since),
                last_checked_lines(&inv, results),
                inv.summary_checks(),
            )
        };
        self.watched.reset();
        for (s, st) in streams {
            self.watched
                .with_label_values(&[s.resource.name()])
                .add(st.objects.load(Ordering::Relaxed) as i64);
        }
        self.checks.set(checks as i64);
        let mut tail = Vec::new();
        write_last_checked(&last_checked, &mut tail)?;
        write_streams(streams, &mut tail)?;
        drop(last_checked);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut tail)
            .map_err(io::Error::other)?;
        render_process(&mut tail)?;
        Ok(Exposition {
            rows,
            one_series: self.one_series,
            class: 0,
            row: 0,
            tail: Some(tail),
            buf: Vec::with_capacity(CHUNK + 512),
            pos: 0,
        })
    }
}

/// Bytes produced per step of an [`Exposition`].
const CHUNK: usize = 64 << 10;

/// The exposition text, produced as it is read: the eight gauges are
/// written from the collected label sets one chunk at a time.
pub struct Exposition {
    rows: Rows,
    /// Write only the gauge that is 1 for each container.
    one_series: bool,
    /// Index into `Status::GAUGES` of the family being written; one past
    /// them is `tag_moved`.
    class: usize,
    /// Next row of that family.
    row: usize,
    /// Everything after the eight gauges, already rendered (small).
    tail: Option<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Exposition {
    /// Produces the next chunk into `buf`; false at the end.
    fn fill(&mut self) -> bool {
        self.buf.clear();
        self.pos = 0;
        while self.buf.len() < CHUNK {
            if self.class == Status::GAUGES.len() {
                self.fill_tag_moved();
                continue;
            }
            let Some(status) = Status::GAUGES.get(self.class).copied() else {
                return match self.tail.take() {
                    Some(t) if self.buf.is_empty() => {
                        self.buf = t;
                        true
                    }
                    Some(t) => {
                        self.buf.extend_from_slice(&t);
                        true
                    }
                    None => !self.buf.is_empty(),
                };
            };
            let name = status.as_str();
            if self.row == 0 {
                let _ = writeln!(self.buf, "# HELP {PREFIX}_{name} Whether the container's image check concluded {name} (1) or not (0).");
                let _ = writeln!(self.buf, "# TYPE {PREFIX}_{name} gauge");
            }
            // A quarter of a million lines: written as bytes, not through
            // the formatting machinery.
            while self.row < self.rows.len() && self.buf.len() < CHUNK {
                let (labels, s, _) = self.rows.get(self.row);
                self.row += 1;
                if self.one_series && s != status {
                    continue;
                }
                series(&mut self.buf, name, labels, s == status);
            }
            if self.row >= self.rows.len() {
                self.class += 1;
                self.row = 0;
            }
        }
        true
    }
}

/// One line of a container's 0-or-1 gauge, written as bytes: a quarter of
/// a million of them go through here, not through the formatting machinery.
fn series(buf: &mut Vec<u8>, name: &str, labels: &str, one: bool) {
    buf.extend_from_slice(PREFIX.as_bytes());
    buf.push(b'_');
    buf.extend_from_slice(name.as_bytes());
    buf.extend_from_slice(labels.as_bytes());
    buf.extend_from_slice(if one { b" 1\n" } else { b" 0\n" });
}

impl Exposition {
    /// `tag_moved`: 1 when a running pod runs another build than the tag
    /// names now, 0 when all run it (the default format only, as the
    /// other zeros); nothing for containers without a verdict.
    fn fill_tag_moved(&mut self) {
        let name = "tag_moved";
        if self.row == 0 {
            let _ = writeln!(self.buf, "# HELP {PREFIX}_{name} Whether a running pod of the container runs another build (digest) than its tag names now (1) or all run it (0).");
            let _ = writeln!(self.buf, "# TYPE {PREFIX}_{name} gauge");
        }
        while self.row < self.rows.len() && self.buf.len() < CHUNK {
            let (labels, _, moved) = self.rows.get(self.row);
            self.row += 1;
            let Some(moved) = moved.filter(|m| *m || !self.one_series) else {
                continue;
            };
            series(&mut self.buf, name, labels, moved);
        }
        if self.row >= self.rows.len() {
            self.class += 1;
            self.row = 0;
        }
    }
}

impl io::Read for Exposition {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.buf.len() && !self.fill() {
            return Ok(0);
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Observer for Metrics {
    fn completed(&self, spec: &CheckSpec, result: &CheckResult, duration: Duration) {
        self.completed.inc();
        if !spec.registry().is_empty() {
            self.durations
                .with_label_values(&[spec.registry()])
                .observe(duration.as_secs_f64());
        }
        if result.status == Status::RateLimited {
            self.pauses.with_label_values(&[spec.registry()]).inc();
        }
    }

    fn shared(&self, checks: usize) {
        self.shared.inc_by(checks as u64);
    }
}

impl crate::registry::check::RequestObserver for Metrics {
    fn request(&self, host: &str, status: Option<u16>) {
        let class = match status {
            Some(s) => ["1xx", "2xx", "3xx", "4xx", "5xx"]
                .get((s / 100).saturating_sub(1) as usize)
                .copied()
                .unwrap_or("other"),
            None => "error",
        };
        self.requests.with_label_values(&[host, class]).inc();
    }

    fn rate_limit(&self, host: &str, quota: crate::registry::quota::Quota) {
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.quota_limit
            .with_label_values(&[host])
            .set(gauge(quota.limit));
        self.quota_remaining
            .with_label_values(&[host])
            .set(gauge(quota.remaining));
    }
}

/// A per-host gauge's values, by host.
fn by_host(gauges: &IntGaugeVec) -> std::collections::BTreeMap<String, u64> {
    use prometheus::core::Collector;
    gauges
        .collect()
        .iter()
        .flat_map(|family| family.get_metric())
        .filter_map(|m| {
            let host = m.get_label().first()?.value().to_string();
            Some((host, m.get_gauge().get_value() as u64))
        })
        .collect()
}

/// Appends a label value with the text format's escapes.
fn escape(out: &mut String, v: &str) {
    // Names and images almost never need it: copy them whole.
    if !v.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// The label sets of every container of a reported workload whose check
/// has a verdict, with the verdict, in label order. All label sets live in
/// one buffer (one large allocation, unmapped as soon as the scrape is
/// written), indexed by offset and length: a scrape of 30,000 containers no
/// longer leaves 30,000 small allocations behind in the heap.
struct Rows {
    text: String,
    index: Vec<Row>,
}

/// A container's label set (offset and length in the buffer), its class,
/// and its `tag_moved` verdict, when it has one.
type Row = (u32, u32, Status, Option<bool>);

/// The label set an index entry points at.
fn labels_of(text: &str, (start, len, ..): Row) -> &str {
    &text[start as usize..start as usize + len as usize]
}

impl Rows {
    fn len(&self) -> usize {
        self.index.len()
    }

    fn get(&self, i: usize) -> (&str, Status, Option<bool>) {
        let row = self.index[i];
        (labels_of(&self.text, row), row.2, row.3)
    }
}

fn container_rows(
    inventory: &Inventory,
    results: &Results,
    since: &crate::exporter::tag_moved::Since,
) -> Rows {
    let mut text = String::new();
    let mut index: Vec<Row> = Vec::new();
    results.with(|table| {
        inventory.for_each_placed(|w, placement, i, id, previous| {
            // While a container's new check has no verdict, its last one stays.
            let Some((outcome, image)) = crate::exporter::scheduler::shown(table, id, previous)
            else {
                return;
            };
            let c = &w.containers[i];
            let image = image.unwrap_or(&c.image);
            let start = text.len();
            text.push_str("{namespace=\"");
            escape(&mut text, &w.key.namespace);
            text.push_str("\",container=\"");
            escape(&mut text, &c.container);
            text.push_str("\",image=\"");
            escape(&mut text, image);
            text.push_str("\",kind=\"");
            text.push_str(w.kind.as_str());
            text.push_str("\",name=\"");
            escape(&mut text, &w.key.name);
            text.push_str("\"}");
            // Label values are Kubernetes names and image strings: far
            // below 4 GiB in all.
            let (Ok(offset), Ok(len)) = (u32::try_from(start), u32::try_from(text.len() - start))
            else {
                text.truncate(start);
                return;
            };
            let running = inventory.running(w, i);
            let moved =
                crate::exporter::tag_moved::judge(outcome, image, Some(&running)).map(|v| {
                    let what = (
                        w.kind.as_str(),
                        &*w.key.namespace,
                        &*w.key.name,
                        &*c.container,
                    );
                    since.observe(what, v.tag, v.moved);
                    v.moved
                });
            index.push((offset, len, outcome.status_for(placement), moved));
        })
    });
    index.sort_unstable_by(|a, b| labels_of(&text, *a).cmp(labels_of(&text, *b)));
    Rows { text, index }
}

/// When each check last finished, by reference and credentials.
fn last_checked_lines(inventory: &Inventory, results: &Results) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    results.with(|table| {
        for spec in inventory.checks() {
            let (Some(o), Some(m)) = (table.get(&spec.id), spec.target.image()) else {
                continue;
            };
            let mut l = format!("{PREFIX}_last_check_timestamp_seconds{{reference=\"");
            escape(&mut l, &m.reference.to_string());
            l.push_str("\",credentials=\"");
            let creds = if spec.credentials.is_empty() {
                "anonymous".to_string()
            } else {
                spec.credentials
                    .iter()
                    .map(|c| c.describe())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            escape(&mut l, &creds);
            let t = o
                .checked_at
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            write!(l, "\"}} {t:.3}").ok();
            lines.push(l);
        }
    });
    lines.sort_unstable();
    // Two checks can share a label set (same reference, credentials with the
    // same names in different order of discovery): keep one series. The
    // value follows the last space; label values may contain spaces.
    lines.dedup_by(|a, b| a.rsplit_once(' ').map(|x| x.0) == b.rsplit_once(' ').map(|x| x.0));
    lines
}

fn write_last_checked(lines: &[String], out: &mut dyn Write) -> io::Result<()> {
    let name = format!("{PREFIX}_last_check_timestamp_seconds");
    let mut s = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum::<usize>() + 200);
    writeln!(s, "# HELP {name} When the check of an image with a set of credentials last finished (Unix seconds).").ok();
    writeln!(s, "# TYPE {name} gauge").ok();
    for l in lines {
        s.push_str(l);
        s.push('\n');
    }
    out.write_all(s.as_bytes())
}

/// Per watch stream: synced, failing, requests and failures, so that an
/// operator can alert on a resource the exporter cannot see.
fn write_streams(streams: &[(Stream, Arc<StreamState>)], out: &mut dyn Write) -> io::Result<()> {
    type Family = (
        &'static str,
        &'static str,
        &'static str,
        fn(&StreamState) -> f64,
    );
    let families: [Family; 4] = [
        ("watch_synced", "gauge", "1 once the resource's first list has arrived, 0 before (and while it is refused).", |st| {
            f64::from(u8::from(st.synced.load(Ordering::SeqCst)))
        }),
        ("watch_failing_seconds", "gauge", "How long every list and watch of the resource has failed (0 while it makes progress).", |st| {
            st.failing_for().map_or(0.0, |(d, _)| d.as_secs_f64())
        }),
        ("watch_requests_total", "counter", "List and watch requests sent for the resource.", |st| {
            st.requests.load(Ordering::Relaxed) as f64
        }),
        ("watch_failures_total", "counter", "Lists and watches of the resource that failed, were very short or ended in an ERROR event.", |st| {
            st.failures.load(Ordering::Relaxed) as f64
        }),
    ];
    let mut s = String::new();
    for (name, kind, help, value) in families {
        writeln!(s, "# HELP {PREFIX}_{name} {help}").ok();
        writeln!(s, "# TYPE {PREFIX}_{name} {kind}").ok();
        for (stream, st) in streams {
            write!(s, "{PREFIX}_{name}{{resource=\"").ok();
            escape(&mut s, stream.resource.name());
            s.push_str("\",namespace=\"");
            escape(&mut s, stream.namespace.as_deref().unwrap_or(""));
            writeln!(s, "\"}} {}", value(st)).ok();
        }
    }
    out.write_all(s.as_bytes())
}

/// `process_*` metrics read from /proc, as client libraries export them.
fn render_process(out: &mut dyn Write) -> io::Result<()> {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Ok(());
    };
    // Fields after the command name, which is in parentheses and may contain spaces.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return Ok(());
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // /proc reports CPU time in USER_HZ (100 on Linux) and RSS in pages.
    let cpu = (num(11) + num(12)) / 100.0;
    let vsize = num(20);
    let rss = num(21) * 4096.0;
    let start_ticks = num(19);
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("btime ")
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
        })
        .unwrap_or(0.0);
    let fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0);
    let threads = num(17);
    let mut s = String::new();
    for (name, kind, help, value) in [
        (
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            cpu,
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            rss,
        ),
        (
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            vsize,
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            boot + start_ticks / 100.0,
        ),
        (
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            fds as f64,
        ),
        (
            "process_threads",
            "gauge",
            "Number of OS threads in the process.",
            threads,
        ),
    ] {
        writeln!(
            s,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        )
        .ok();
    }
    // What of the resident size is live data, and what the allocator holds
    // free (fragmentation after bursts): tells a leak from a high-water mark.
    if let Some((in_use, free)) = crate::sys::malloc::heap() {
        let name = format!("{PREFIX}_heap_bytes");
        writeln!(
            s,
            "# HELP {name} Heap bytes by state: in_use by live allocations, free but held by the allocator.\n# TYPE {name} gauge\n{name}{{state=\"in_use\"}} {in_use}\n{name}{{state=\"free\"}} {free}"
        )
        .ok();
    }
    out.write_all(s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_label_values() {
        let mut s = String::new();
        escape(&mut s, "a\"b\\c\nd");
        assert_eq!(s, "a\\\"b\\\\c\\nd");
    }
}
