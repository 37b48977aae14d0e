//! InfluxDB line protocol in cAdvisor's schema (`--storage-driver=influxdb`), so dashboards and
//! queries written for cAdvisor's InfluxDB storage driver keep working: its measurement names
//! (`cpu_usage_total`, `memory_working_set`, `rx_bytes`...), one integer field `value` in its
//! units (nanoseconds, bytes), the tags `machine` and `container_name`, and the container's
//! runtime labels as tags, as cAdvisor's `influxdb.go` writes them. The figures are the JSON
//! API's for the same pass (`history::Stored`), so the two never disagree.
//!
//! Beside cAdvisor's tags, nodetel's own identity is added where it has one: `id` (the cgroup
//! path), `image`, `namespace`, `pod`, `container`. They and cAdvisor's two win over a runtime
//! label of the same name: a label must not move a container's points under another name.
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    time::{Duration, Instant, SystemTime},
};

use super::queue::Batch;
use crate::{
    api::json::Reference,
    history::{Field, Stored},
    snapshot::{ContainerSample, Snapshot},
};

/// How a pass becomes points: the agent's side of cAdvisor's schema.
#[derive(Clone, Debug)]
pub struct Schema {
    /// The `machine` tag: the host name, as cAdvisor's `os.Hostname()`.
    pub machine: String,
    /// For containerd's container references (`--containerd-namespaces`).
    pub containerd_namespaces: Vec<String>,
}

/// cAdvisor's measurements from the CPU and memory stats, in its order, with our fields.
const SCALARS: &[(&str, Field)] = &[
    ("cpu_usage_total", Field::CpuTotal),
    ("cpu_usage_system", Field::CpuSystem),
    ("cpu_usage_user", Field::CpuUser),
    ("load_average", Field::LoadMilli),
    ("memory_usage", Field::MemUsage),
    ("memory_max_usage", Field::MemMaxUsage),
    ("memory_cache", Field::MemCache),
    ("memory_rss", Field::MemRss),
    ("memory_swap", Field::MemSwap),
    ("memory_mapped_file", Field::MemMappedFile),
    ("memory_working_set", Field::MemWorkingSet),
    ("memory_total_active_file", Field::MemActiveFile),
    ("memory_total_inactive_file", Field::MemInactiveFile),
    ("memory_failcnt", Field::MemFailcnt),
];

/// `memory_failure` points: (failure_type, scope, field).
const FAILURES: &[(&str, &str, Field)] = &[
    ("pgfault", "container", Field::PgFault),
    ("pgmajfault", "container", Field::PgMajFault),
    ("pgfault", "hierarchical", Field::PgFaultHierarchy),
    ("pgmajfault", "hierarchical", Field::PgMajFaultHierarchy),
];

/// A request is sent once this much text waits, whatever the buffer duration: a bound on the
/// agent's memory (cAdvisor's driver held every point of the duration), and about 30,000 points,
/// within InfluxDB's advice of 5,000 to 10,000 points a request give or take.
const MAX_PENDING: usize = 4 << 20;

/// The InfluxDB receivers' settings.
#[derive(Clone, Debug)]
pub struct Buffering {
    pub schema: Schema,
    /// `--storage-driver-buffer-duration`.
    pub duration: Duration,
}

/// Points gathered until a request is due.
pub struct Buffer {
    settings: Buffering,
    text: String,
    points: usize,
    first_ms: i64,
    since: Instant,
}

impl Buffer {
    pub fn new(settings: Buffering) -> Self {
        Buffer {
            settings,
            text: String::new(),
            points: 0,
            first_ms: 0,
            since: Instant::now(),
        }
    }

    /// Adds the points of the pass taken at `at_ms` (the exposition's pass time).
    pub fn add(&mut self, snapshot: &Snapshot, at_ms: i64) {
        if self.text.is_empty() {
            self.since = Instant::now();
            self.first_ms = at_ms;
        }
        self.points += encode(snapshot, &self.settings.schema, at_ms, &mut self.text);
    }

    pub fn due(&self) -> bool {
        self.text.len() >= MAX_PENDING || self.since.elapsed() >= self.settings.duration
    }

    /// What was gathered, gzipped (InfluxDB and VictoriaMetrics take `Content-Encoding: gzip`;
    /// line protocol shrinks about 20x); `None` when nothing was.
    pub fn take(&mut self) -> Option<Batch> {
        if self.text.is_empty() {
            return None;
        }
        let body = crate::prepared::gzip(self.text.as_bytes());
        self.text.clear();
        if self.text.capacity() > MAX_PENDING * 2 {
            self.text.shrink_to(MAX_PENDING);
        }
        Some(Batch {
            body,
            samples: std::mem::take(&mut self.points),
            at_ms: self.first_ms,
        })
    }
}

/// Appends the points of every container of `snapshot` at `at_ms` to `out`; returns how many.
pub fn encode(snapshot: &Snapshot, schema: &Schema, at_ms: i64, out: &mut String) -> usize {
    let at_ns = snapshot
        .agent
        .taken_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut points = 0;
    let mut tags = String::new();
    for c in &snapshot.containers {
        tags.clear();
        container_tags(c, schema, &mut tags);
        let stored = Stored::of(c, at_ns);
        points += container_points(&stored, c, &tags, at_ms, out);
    }
    points
}

/// `,key=value` for each of the container's tags, sorted by key (as InfluxDB keeps them).
fn container_tags(c: &ContainerSample, schema: &Schema, out: &mut String) {
    let reference = Reference::of(c, &schema.containerd_namespaces);
    // cAdvisor: the first alias (a Docker container's name), else the cgroup's name.
    let container_name = reference
        .aliases
        .into_iter()
        .next()
        .unwrap_or(reference.name);
    let mut tags: BTreeMap<&str, &str> = c
        .identity
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let id = &c.identity;
    for (k, v) in [
        ("machine", schema.machine.as_str()),
        ("container_name", container_name.as_str()),
        ("id", c.path.as_str()),
        ("image", id.image.as_str()),
        ("namespace", id.namespace.as_str()),
        ("pod", id.pod.as_str()),
        ("container", id.container.as_str()),
    ] {
        tags.insert(k, v);
    }
    for (k, v) in tags {
        // InfluxDB has no empty tag value, and a `time` key cannot be queried.
        if v.is_empty() || k.is_empty() || k == "time" {
            continue;
        }
        out.push(',');
        escape(k, out);
        out.push('=');
        escape(v, out);
    }
}

fn container_points(
    s: &Stored,
    c: &ContainerSample,
    tags: &str,
    at_ms: i64,
    out: &mut String,
) -> usize {
    let r = &s.record;
    let get = |f: Field| r.get(f).unwrap_or(0);
    let mut n = 0;
    let mut point = |out: &mut String, measurement: &str, extra: &[(&str, &str)], v: u64| {
        out.push_str(measurement);
        for (k, val) in extra {
            let _ = write!(out, ",{k}=");
            escape(val, out);
        }
        out.push_str(tags);
        // cAdvisor writes unsigned figures as signed 64-bit integers.
        let _ = writeln!(out, " value={}i {at_ms}", v.min(i64::MAX as u64));
        n += 1;
    };
    let has = crate::api::json::Has::of(c);
    if has.cpu {
        for &(m, f) in &SCALARS[..4] {
            point(out, m, &[], get(f));
        }
    }
    // cAdvisor's network figures are the first interface's (its `InterfaceStats` inline).
    if has.network {
        let row = s.ifaces.first().map_or([0; 8], |(_, row)| *row);
        for (m, i) in [
            ("rx_bytes", 0),
            ("rx_errors", 2),
            ("tx_bytes", 4),
            ("tx_errors", 6),
        ] {
            point(out, m, &[], row[i]);
        }
    }
    if has.memory {
        for &(m, f) in &SCALARS[4..] {
            point(out, m, &[], get(f));
        }
        for &(kind, scope, f) in FAILURES {
            point(
                out,
                "memory_failure",
                &[("failure_type", kind), ("scope", scope)],
                get(f),
            );
        }
    }
    for (key, row) in &s.filesystems {
        point(
            out,
            "fs_usage",
            &[("device", &key.name), ("type", "usage")],
            row[1],
        );
        point(
            out,
            "fs_limit",
            &[("device", &key.name), ("type", "limit")],
            row[0],
        );
    }
    n
}

/// A tag key or value as line protocol needs it. Commas, equals signs and spaces get a
/// backslash; line breaks and tabs become escaped spaces (a point is one line). InfluxDB 1.x
/// keeps any other backslash as it is, but one before a space, comma, equals sign or the end
/// would escape what follows (measured on 1.6: `z=end\` is refused), so such a backslash is
/// written as `/`.
fn escape(s: &str, out: &mut String) {
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ',' | '=' | ' ' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' | '\t' => out.push_str("\\ "),
            '\\' => {
                let special = chars
                    .peek()
                    .is_none_or(|n| matches!(n, ',' | '=' | ' ' | '\n' | '\r' | '\t' | '\\'));
                out.push(if special { '/' } else { '\\' });
            }
            _ => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{identity::Identity, snapshot::AgentStats};
    use std::sync::Arc;

    fn esc(s: &str) -> String {
        let mut out = String::new();
        escape(s, &mut out);
        out
    }

    #[test]
    fn tags_are_escaped_so_a_point_stays_one_line() {
        assert_eq!(esc("a b,c=d"), "a\\ b\\,c\\=d");
        assert_eq!(esc("two\nlines\ttab"), "two\\ lines\\ tab");
        assert_eq!(esc("c:\\dir"), "c:\\dir");
        assert_eq!(esc("end\\"), "end/");
        assert_eq!(esc("a\\ b"), "a/\\ b");
        assert_eq!(esc("a\\\\b"), "a/\\b");
    }

    /// Any label text: one line per point, and every line parses as `measurement,tags value=Ni
    /// time` with no unescaped separator in the tags.
    #[test]
    fn any_label_keeps_points_well_formed() {
        let alphabet = ['a', ' ', ',', '=', '\\', '\n', '"', 'é', '\t', '\r'];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let mut text = String::new();
            for _ in 0..(state % 7) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                text.push(alphabet[(state % alphabet.len() as u64) as usize]);
            }
            let escaped = esc(&text);
            assert!(!escaped.contains(['\n', '\r', '\t']), "{text:?}");
            // Unescaped separators: a special char not preceded by a backslash.
            let b = escaped.as_bytes();
            for (i, ch) in b.iter().enumerate() {
                if matches!(ch, b',' | b'=' | b' ') {
                    assert!(i > 0 && b[i - 1] == b'\\', "{text:?} -> {escaped:?}");
                }
            }
            assert!(!escaped.ends_with('\\'), "{text:?} -> {escaped:?}");
        }
    }

    fn snapshot(c: ContainerSample) -> Snapshot {
        Snapshot {
            containers: vec![c],
            agent: AgentStats {
                taken_at: SystemTime::UNIX_EPOCH
                    + std::time::Duration::from_millis(1_700_000_000_123),
                ..AgentStats::default()
            },
            machine: Default::default(),
            labels: Default::default(),
        }
    }

    const ID: &str = "/docker/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn a_docker_container_in_cadvisor_s_schema() {
        let mut c = ContainerSample {
            path: ID.into(),
            identity: Arc::new(Identity {
                name: "web".into(),
                image: "nginx:1.27".into(),
                labels: Arc::new(
                    [
                        ("com.docker.compose.service".to_string(), "web".to_string()),
                        ("machine".into(), "spoof".into()),
                    ]
                    .into(),
                ),
                ..Identity::default()
            }),
            cpu_usage_ns: Some(5),
            ..ContainerSample::default()
        };
        c.cpu.usage_ns = Some(2_500_000_000);
        c.cpu.user_ns = Some(2_000_000_000);
        c.cpu.system_ns = Some(500_000_000);
        c.memory.usage = Some(1 << 20);
        let schema = Schema {
            machine: "node-1".into(),
            containerd_namespaces: vec![],
        };
        let mut out = String::new();
        let n = encode(&snapshot(c), &schema, 1_700_000_000_123, &mut out);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(n, lines.len());
        // 4 CPU, 10 memory, 4 memory_failure; no network (the sample has none), no filesystem.
        assert_eq!(n, 18);
        let tags = format!(
            ",com.docker.compose.service=web,container_name=web,id=/docker/{H},image=nginx:1.27,machine=node-1",
            H = &ID[8..]
        );
        assert_eq!(
            lines[0],
            format!("cpu_usage_total{tags} value=2500000000i 1700000000123")
        );
        assert_eq!(
            lines[1],
            format!("cpu_usage_system{tags} value=500000000i 1700000000123")
        );
        assert!(
            lines.contains(&format!("memory_usage{tags} value=1048576i 1700000000123").as_str())
        );
        assert!(lines.contains(
            &format!("memory_failure,failure_type=pgmajfault,scope=hierarchical{tags} value=0i 1700000000123")
                .as_str()
        ));
    }
}
