//! Prometheus text format 0.0.4, the format cAdvisor serves.
//!
//! Written by hand rather than with prometheus-client's encoder: that encoder speaks only
//! OpenMetrics, which appends `_total` to every counter, and cAdvisor's names include counters
//! without it (`container_memory_failcnt`) that dashboards query by exact name. Labels are sorted
//! by name, as cAdvisor writes them. No sample timestamps: Prometheus then marks series of
//! removed cgroups stale at once instead of keeping them for five minutes.
use std::fmt::Write as _;

use super::{
    families::{Extra, MACHINE_FAMILIES, Value, agent_families, container_families},
    services::SERVICE_FAMILIES,
};
use crate::snapshot::{ContainerSample, Snapshot};

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders the whole exposition for a snapshot. Called once per collection pass, not per scrape.
pub fn render(snapshot: &Snapshot) -> String {
    render_sized(snapshot, 0)
}

/// [`render`] into a buffer sized for `expected` bytes (the last body's length): a body grown by
/// doubling keeps up to twice its size allocated for as long as it is served (measured: 24 MiB
/// held for a 13.6 MB body at 3000 cgroups).
pub fn render_sized(snapshot: &Snapshot, expected: usize) -> String {
    let guess = 256 + snapshot.containers.len() * 1024;
    let mut out = String::with_capacity(guess.max(expected + expected / 16));
    let mut containers: Vec<&ContainerSample> = snapshot.containers.iter().collect();
    containers.sort_by(|a, b| a.path.cmp(&b.path));
    let names = super::labels::label_names(&snapshot.labels, &containers);
    // Empty values are written (`pod=""`), as the kubelet writes them: under `honor_labels`
    // (the kubelet job's, nodetel's ServiceMonitor's) an absent label would be filled from the
    // target's own labels, putting raw cgroups under the agent's pod and namespace.
    let bases: Vec<Vec<(&str, &str)>> = containers
        .iter()
        .map(|c| super::labels::base(&snapshot.labels, &names, c))
        .collect();
    for family in container_families() {
        let mut header = false;
        for (c, base) in containers.iter().zip(&bases) {
            let mut emit_as = |name: &str, extra: Extra<'_>, value: f64| {
                if !header {
                    write_header(&mut out, family.name, family.help, family.kind.as_str());
                    header = true;
                }
                let mut labels: Vec<(&str, &str)> =
                    Vec::with_capacity(base.len() + family.extra.len() + extra.len());
                labels.extend(base.iter().copied());
                labels.extend(family.extra.iter().copied());
                labels.extend(extra.iter().copied());
                labels.sort_unstable_by(|a, b| a.0.cmp(b.0));
                write_sample(&mut out, name, &labels, value);
            };
            match &family.value {
                Value::One(get) => {
                    if let Some(v) = get(c) {
                        emit_as(family.name, &[], v);
                    }
                }
                Value::Many(each) => each(c, &mut |extra, v| emit_as(family.name, extra, v)),
                Value::Histogram(each) => each(c, &mut |extra, h| {
                    let bucket = format!("{}_bucket", family.name);
                    for (le, n) in &h.buckets {
                        let mut le_text = String::new();
                        write_value(&mut le_text, *le);
                        let mut labels = extra.to_vec();
                        labels.push(("le", &le_text));
                        emit_as(&bucket, &labels, *n as f64);
                    }
                    emit_as(&format!("{}_sum", family.name), extra, h.sum);
                    emit_as(&format!("{}_count", family.name), extra, h.count as f64);
                }),
            }
        }
    }
    for family in SERVICE_FAMILIES {
        let series = (family.series)(&containers);
        write_owned(&mut out, family.name, family.help, "gauge", &series);
    }
    let m = &snapshot.machine;
    for family in MACHINE_FAMILIES {
        let Some(value) = (family.value)(m) else {
            continue;
        };
        write_header(&mut out, family.name, family.help, "gauge");
        let labels = [
            ("boot_id", m.boot_id.as_str()),
            ("machine_id", m.machine_id.as_str()),
            ("system_uuid", m.system_uuid.as_str()),
        ];
        write_sample(&mut out, family.name, &labels, value as f64);
    }
    for family in agent_families() {
        let series = (family.series)(&snapshot.agent);
        write_owned(
            &mut out,
            family.name,
            family.help,
            family.kind.as_str(),
            &series,
        );
    }
    // The first pass (no hint) or a shrunk node: give back what doubling overshot.
    if out.capacity() > out.len() + out.len() / 4 {
        out.shrink_to_fit();
    }
    out
}

/// A family whose series own their label values; nothing at all when it has none.
fn write_owned(
    out: &mut String,
    name: &str,
    help: &str,
    kind: &str,
    series: &[(Vec<(&'static str, String)>, f64)],
) {
    if series.is_empty() {
        return;
    }
    write_header(out, name, help, kind);
    for (owned, value) in series {
        let borrowed: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
        write_sample(out, name, &borrowed, *value);
    }
}

fn write_header(out: &mut String, name: &str, help: &str, kind: &str) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    for ch in help.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push_str("\n# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(kind);
    out.push('\n');
}

fn write_sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            escape_label_value(out, v);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    write_value(out, value);
    out.push('\n');
}

/// Label values come from cgroup paths and, later, container names: untrusted text.
fn escape_label_value(out: &mut String, v: &str) {
    for ch in v.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn write_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        // Rust's shortest round-trip form: integers print without a fraction, as Go's do.
        let _ = write!(out, "{v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        cgroup::{
            cpu::{CpuSpec, CpuStats, Throttling},
            io::DeviceIo,
            memory::{MemorySpec, MemoryStats},
            pids::ProcessStats,
            psi::{Pressure, PressureStats},
        },
        snapshot::{AgentStats, Identity, InterfaceStats, RunqueueLatency, Schedstat},
    };

    fn snapshot() -> Snapshot {
        let limited = ContainerSample {
            cgroup_id: 7,
            path: "/docker/abc".into(),
            identity: std::sync::Arc::new(Identity {
                name: "web".into(),
                image: "nginx:1.27".into(),
                container: "nginx".into(),
                pod: "web-0".into(),
                namespace: "prod".into(),
                labels: std::sync::Arc::new(
                    [("app", "web"), ("io.kubernetes.pod.name", "web-0")]
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .into(),
                ),
            }),
            cpu_usage_ns: Some(2_500_000_000),
            cpu: CpuStats {
                usage_ns: None,
                user_ns: Some(2_000_000_000),
                system_ns: Some(500_000_000),
                throttling: Some(Throttling {
                    periods: 12,
                    throttled_periods: 3,
                    throttled_ns: 250_000_000,
                    bursts: 2,
                    burst_ns: 40_000_000,
                }),
            },
            cpu_spec: CpuSpec {
                shares: Some(512),
                period_us: Some(100_000),
                quota_us: Some(50_000),
                mask: Some("0-1".into()),
            },
            memory: MemoryStats {
                usage: Some(73_400_320),
                max_usage: Some(83_886_080),
                failcnt: Some(3),
                cache: Some(20_971_520),
                rss: Some(52_428_800),
                swap: Some(0),
                mapped_file: Some(4_194_304),
                kernel: Some(1_048_576),
                active_file: Some(10_485_760),
                inactive_file: Some(10_485_760),
                pgfault: Some(100),
                pgmajfault: Some(2),
                pgfault_hierarchy: Some(150),
                pgmajfault_hierarchy: Some(3),
                ..MemoryStats::default()
            },
            memory_spec: MemorySpec {
                limit: Some(134_217_728),
                swap_limit: Some(9_223_372_036_854_771_712),
                reservation: Some(u64::MAX),
            },
            io: Some(vec![DeviceIo {
                major: 254,
                minor: 0,
                device: "/dev/vda".into(),
                read_bytes: 20_480,
                write_bytes: 8_388_608,
                reads: 3,
                writes: 16,
                bytes_by_op: vec![("Read", 20_480), ("Write", 8_388_608)],
            }]),
            processes: ProcessStats {
                processes: Some(2),
                threads: Some(7),
                threads_max: Some(u64::MAX),
                first_pid: Some(4242),
            },
            tasks: Some(crate::cgroup::tasks::TaskLoad {
                states: crate::cgroup::tasks::TaskStates {
                    running: 2,
                    sleeping: 4,
                    stopped: 1,
                    uninterruptible: 0,
                },
                load_milli: 1264,
                load_d_milli: 0,
            }),
            pressure: PressureStats {
                cpu: Some(Pressure {
                    some_us: 2_500_000,
                    full_us: Some(1_000_000),
                    ..Default::default()
                }),
                memory: None,
                io: Some(Pressure {
                    some_us: 300,
                    full_us: None,
                    ..Default::default()
                }),
            },
            start_time: Some(1_795_000_000.5),
            seen_at: 1_795_358_029.25,
            quiet: false,
            oom_kills: Some(3),
            schedstat: Some(Schedstat {
                runqueue_ns: 1_500_000_000,
                run_periods: 4200,
            }),
            // Figures of cAdvisor's sample for a container that wrote 50 MiB into its layer.
            blkio: Some(vec![crate::snapshot::BlkioLatency {
                major: 8,
                minor: 0,
                device: "/dev/sda".into(),
                op: "read",
                count: 12,
                bytes: 49_152,
                latency_ns: 2_400_000,
                queue_ns: 300_000,
                // 10 reads in [128, 256) µs, 2 in [16.4, 32.8) ms.
                buckets: (0..27u64)
                    .map(|b| match b {
                        8 => 10,
                        15 => 2,
                        _ => 0,
                    })
                    .collect(),
            }]),
            filesystems: Some(vec![crate::fs_usage::FsStats {
                device: "/dev/vda".into(),
                major: 254,
                minor: 0,
                capacity: 270_553_174_016,
                usage: 52_473_856,
                base_usage: 52_436_992,
                available: 83_546_312_704,
                inodes: 3,
                inodes_free: 16_358_611,
                disk: [0; 11],
            }]),
            tcp: Some(crate::snapshot::TcpHealth {
                retransmits: 42,
                resets_sent: 1,
                resets_received: 2,
                connects_ok: 120,
                connects_refused: 3,
                connects_timeout: 1,
                connects_other: 0,
                accepts: 7,
                established: Some(4),
                // 100 round trips around 100 ms (bucket 17: 65.5-131 ms), 20 on loopback.
                rtt_buckets: (0..27u64)
                    .map(|b| match b {
                        5 => 20,
                        17 => 100,
                        _ => 0,
                    })
                    .collect(),
                rtt_sum_us: 10_000_600,
                rtt_count: 120,
            }),
            runqueue_latency: Some(RunqueueLatency {
                // 3 waits under 1 µs, 5 under 2 µs, 1 over 33.5 s (+Inf).
                buckets: {
                    let mut b = vec![0; 27];
                    b[0] = 3;
                    b[1] = 5;
                    b[26] = 1;
                    b
                },
                sum_ns: 40_000_000_000,
                count: 9,
            }),
            network: Some(vec![
                InterfaceStats {
                    name: "eth0".into(),
                    rx_bytes: Some(1_028_000),
                    rx_packets: Some(1000),
                    rx_errors: Some(2),
                    rx_dropped: Some(5),
                    tx_bytes: Some(56_000),
                    tx_packets: Some(1000),
                    tx_errors: Some(0),
                    tx_dropped: Some(1),
                },
                InterfaceStats {
                    name: "lo".into(),
                    rx_bytes: Some(600),
                    rx_packets: Some(10),
                    tx_bytes: Some(600),
                    tx_packets: Some(10),
                    ..InterfaceStats::default()
                },
            ]),
        };
        let root = ContainerSample {
            cgroup_id: 1,
            path: "/".into(),
            oom_kills: Some(0),
            cpu_usage_ns: Some(10_000_000_000),
            cpu: CpuStats {
                throttling: Some(Throttling::default()),
                ..CpuStats::default()
            },
            cpu_spec: CpuSpec {
                shares: Some(1024),
                period_us: Some(100_000),
                quota_us: None,
                mask: None,
            },
            ..ContainerSample::default()
        };
        let odd = ContainerSample {
            cgroup_id: 9,
            path: "/we\"ird\\name\n".into(),
            cpu_usage_ns: Some(1),
            ..ContainerSample::default()
        };
        Snapshot {
            containers: vec![limited, root, odd],
            agent: AgentStats {
                programs_attached: vec!["sched_switch"],
                programs_not_attached: vec![crate::ebpf::NotAttached {
                    program: "mark_victim",
                    reason: "tracepoint oom:mark_victim not found".into(),
                }],
                cpu_map_capacity: 16384,
                identity: vec![crate::identity::ResolverStats {
                    resolver: "docker",
                    up: true,
                    errors: 2,
                    containers: 1,
                }],
                pods: std::sync::Arc::new(vec![crate::identity::kubelet::PodInfo {
                    uid: "5d3a1c2e-8f4b-4d6a-9c1e-2b7f3a9d0e11".into(),
                    name: "web-0".into(),
                    namespace: "prod".into(),
                    owner_kind: "StatefulSet".into(),
                    owner_name: "web".into(),
                    node: "node-1".into(),
                    containers: vec![],
                }]),
                ..AgentStats::default()
            },
            machine: std::sync::Arc::new(crate::machine::MachineInfo {
                cores: Some(4),
                physical_cores: Some(2),
                sockets: Some(1),
                memory_bytes: Some(25_276_514_304),
                swap_bytes: Some(0),
                machine_id: "3d1219c7c4c5404aaa1f6d2a48adfda4".into(),
                system_uuid: String::new(),
                boot_id: "163af18a-b764-4094-8815-81fbbedb3fac".into(),
                details: Default::default(),
            }),
            labels: Default::default(),
        }
    }

    /// Standalone mode: cAdvisor's `id, name, image` and the union of `container_label_*`.
    #[test]
    fn standalone_labels() {
        let mut s = snapshot();
        s.labels = std::sync::Arc::new(crate::metrics::LabelMode::Standalone { whitelist: None });
        let text = render(&s);
        let cpu = |id: &str| {
            text.lines()
                .find(|l| l.starts_with("container_cpu_usage_seconds_total{") && l.contains(id))
                .unwrap_or_default()
                .to_string()
        };
        assert_eq!(
            cpu("/docker/abc"),
            r#"container_cpu_usage_seconds_total{container_label_app="web",container_label_io_kubernetes_pod_name="web-0",cpu="total",id="/docker/abc",image="nginx:1.27",name="web"} 2.5"#
        );
        let root = cpu(r#"id="/""#);
        assert!(root.contains(r#"container_label_app="""#), "{root}");
    }

    /// Arbitrary Unicode, quotes, backslashes, newlines and control characters.
    fn wild_string(rng: &mut crate::testutil::Rng) -> String {
        const POOL: &[char] = &[
            'a',
            'Z',
            '0',
            '_',
            '.',
            '-',
            '/',
            ' ',
            '"',
            '\\',
            '\n',
            '\r',
            '\t',
            '{',
            '}',
            '=',
            ',',
            '#',
            'é',
            'ß',
            '中',
            '\u{1F600}',
            '\u{FFFD}',
            '\u{7}',
            '\u{0}',
            '\u{200B}',
        ];
        let len = rng.below(12) as usize;
        (0..len)
            .map(|_| POOL[rng.below(POOL.len() as u64) as usize])
            .collect()
    }

    /// The label values of one exposition line, unescaped as Prometheus reads them; `None`
    /// when the line is not well formed.
    fn label_values(line: &str) -> Option<Vec<(String, String)>> {
        let open = line.find('{')?;
        let mut chars = line[open + 1..].chars();
        let mut out = Vec::new();
        loop {
            let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
            if chars.next()? != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()? {
                    '\\' => match chars.next()? {
                        'n' => value.push('\n'),
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        _ => return None,
                    },
                    '"' => break,
                    '\n' => return None,
                    c => value.push(c),
                }
            }
            out.push((name, value));
            match chars.next()? {
                ',' => continue,
                '}' => return Some(out),
                _ => return None,
            }
        }
    }

    /// Property: whatever a container's names, path and runtime labels hold, in either label
    /// mode every line reads back as the values that went in, no series repeats a label name,
    /// and promtool parses the whole exposition.
    #[test]
    fn any_label_value_is_exposed_exactly() {
        let mut rng = crate::testutil::Rng::new(7);
        for mode in [
            crate::metrics::LabelMode::Kubelet,
            crate::metrics::LabelMode::Standalone { whitelist: None },
        ] {
            let mut s = snapshot();
            s.labels = std::sync::Arc::new(mode);
            let base = s.containers[1].clone();
            s.containers.truncate(1);
            let mut want = Vec::new();
            for i in 0..60 {
                let mut c = base.clone();
                c.cgroup_id = 1000 + i;
                c.path = format!("/w{i}/{}", wild_string(&mut rng));
                let labels = (0..rng.below(4))
                    .map(|_| (wild_string(&mut rng), wild_string(&mut rng)))
                    .collect();
                c.identity = std::sync::Arc::new(crate::identity::Identity {
                    name: wild_string(&mut rng),
                    image: wild_string(&mut rng),
                    container: wild_string(&mut rng),
                    pod: wild_string(&mut rng),
                    namespace: wild_string(&mut rng),
                    labels: std::sync::Arc::new(labels),
                });
                want.push(c.clone());
                s.containers.push(c);
            }
            let text = render(&s);
            for c in &want {
                let line = text
                    .lines()
                    .find(|l| {
                        l.starts_with("container_cpu_usage_seconds_total{")
                            && label_values(l)
                                .is_some_and(|v| v.iter().any(|(k, v)| k == "id" && *v == c.path))
                    })
                    .unwrap_or_else(|| panic!("no series reads back id {:?}", c.path));
                let values = label_values(line).unwrap_or_default();
                let get = |k: &str| values.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
                assert_eq!(get("name"), Some(c.identity.name.as_str()), "{line}");
                assert_eq!(get("image"), Some(c.identity.image.as_str()), "{line}");
            }
            for line in text
                .lines()
                .filter(|l| !l.starts_with('#') && l.contains('{'))
            {
                let values = label_values(line).unwrap_or_else(|| panic!("malformed: {line}"));
                let mut names: Vec<&str> = values.iter().map(|(n, _)| n.as_str()).collect();
                names.sort_unstable();
                let n = names.len();
                names.dedup();
                assert_eq!(names.len(), n, "a label name repeats: {line}");
            }
            promtool_parses(&text);
        }
    }

    /// `promtool check metrics` finds no parse error (lint findings are another test's). Absent
    /// promtool is a loud skip, a failure where CI demands privileged tools.
    fn promtool_parses(text: &str) {
        use std::io::Write as _;
        let child = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn();
        let Ok(mut child) = child else {
            assert!(
                std::env::var("NODETEL_REQUIRE_PRIVILEGED").is_err(),
                "promtool is required here"
            );
            eprintln!("!!!!!!!! SKIPPED the promtool half: promtool not installed !!!!!!!!");
            return;
        };
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(text.as_bytes()).expect("write to promtool");
        }
        let out = child.wait_with_output().expect("promtool ran");
        let report = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            !report.contains("error while linting")
                && !report.contains("text format parsing error"),
            "{report}"
        );
    }

    /// The exposition for a fixed snapshot, byte for byte (golden file: review diffs to it).
    #[test]
    fn golden_exposition() {
        crate::testutil::assert_golden("exposition.prom", &render(&snapshot()));
    }

    #[test]
    fn quota_gates_the_cfs_families() {
        let text = render(&snapshot());
        let cfs: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("container_cpu_cfs_periods_total{"))
            .collect();
        assert_eq!(cfs.len(), 1, "{cfs:?}");
        assert!(cfs[0].contains("id=\"/docker/abc\""));
        assert!(!text.contains("container_spec_cpu_quota{container=\"\",id=\"/\""));
    }

    #[test]
    fn escapes_hostile_label_values() {
        let text = render(&snapshot());
        assert!(text.contains(r#"id="/we\"ird\\name\n""#), "{text}");
        // Every sample is one line: no raw newline leaked from a label.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(
                line.rsplit_once(' ')
                    .is_some_and(|(_, v)| v.parse::<f64>().is_ok()),
                "{line}"
            );
        }
    }

    #[test]
    fn special_values() {
        let mut s = String::new();
        write_value(&mut s, f64::NAN);
        s.push(' ');
        write_value(&mut s, f64::INFINITY);
        s.push(' ');
        write_value(&mut s, 0.1);
        s.push(' ');
        write_value(&mut s, 3.0);
        assert_eq!(s, "NaN +Inf 0.1 3");
    }
}
