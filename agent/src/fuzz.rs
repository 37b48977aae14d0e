//! Entry points of the fuzz targets (`fuzz/`, `cargo xtask fuzz`): every parser of data from
//! outside the agent, fed arbitrary bytes. Each must answer with an error or a skip, never a
//! panic, and never allocate beyond what the input justifies. The committed corpus is replayed
//! through them by a unit test, so a finding once fixed stays fixed without the fuzzer.
use std::{
    sync::{Arc, OnceLock, RwLock},
    time::{Duration, SystemTime},
};

use crate::{
    api::{ApiState, Reply},
    cgroup, identity, machine,
    prepared::Prepared,
    snapshot::{AgentStats, ContainerSample, Snapshot},
};

/// One fuzz target: arbitrary bytes in, nothing out (a panic is the finding).
pub type Target = fn(&[u8]);

/// The targets, by name: what `cargo xtask fuzz` builds and runs, and the corpus folders.
pub const TARGETS: &[(&str, Target)] = &[
    ("cgroupfs", cgroupfs),
    ("procfs", procfs),
    ("tracefs", tracefs),
    ("btf", btf),
    ("cgroup_path", cgroup_path),
    ("runtime_answers", runtime_answers),
    ("times", times),
    ("http_api", http_api),
];

/// Every cgroupfs file parser (cpu, memory, io, pids, pressure; v1 and v2).
pub fn cgroupfs(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let t = text.as_ref();
    let _ = cgroup::cpu::parse_v2_stat(t);
    let _ = cgroup::cpu::parse_v2_max(t);
    let _ = cgroup::cpu::parse_v1_cpu_stat(t);
    let _ = cgroup::cpu::parse_v1_cpuacct(t);
    if let Ok(mask) = cgroup::cpu::parse_mask(t) {
        assert!(
            mask.bytes()
                .all(|b| b.is_ascii_digit() || b == b'-' || b == b',')
        );
    }
    let _ = cgroup::io::parse_v2(t);
    let _ = cgroup::io::parse_v1_rwstat(t);
    let _ = cgroup::memory::parse_meminfo_usage(t);
    let _ = cgroup::parse::flat_keyed(t, |_, _| {});
    let _ = cgroup::parse::single_i64(t);
    let _ = cgroup::parse::single_u64(t);
    let _ = cgroup::pids::parse_first_pid(t);
    let _ = cgroup::psi::parse(t);
    if let Ok(w) = cgroup::parse::single_i64(t) {
        let _ = cgroup::cpu::weight_to_shares(w);
    }
}

/// `/proc` and `/sys` text: network device counters, CPU lists, meminfo, cache sizes, the
/// mount table and diskstats.
pub fn procfs(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let t = text.as_ref();
    let _ = crate::sources::network::netdev::parse(t);
    let _ = crate::sources::network::netns::parse_snmp6_index(t);
    let _ = crate::sources::network::netns::parse_dev_mcast(t);
    let _ = crate::sources::network::netns::parse_igmp(t);
    let _ = machine::parse_cpu_list(t);
    let _ = machine::meminfo_kb(t, "MemTotal");
    let _ = machine::parse_size(t);
    let _ = crate::fs_usage::parse_diskstats(t);
    // A process's stat line, as /api/v2.0/ps formats it.
    if let Some(st) = crate::api::ps::parse_stat(t) {
        let _ = crate::api::ps::status(1, &st);
        let _ = crate::api::ps::cpu_time(st.utime.saturating_add(st.stime));
        let _ = crate::api::ps::start_time(st.start, st.vsize);
    }
    // The host's mount table: a container id read from it is always a plain path component.
    let mounts = crate::fs_usage::mounts::parse(t);
    for id in crate::fs_usage::mounts::rootfs_layers(&mounts).keys() {
        assert!(crate::fs_usage::mounts::valid_id(id));
    }
}

/// A tracepoint's `format` file (first line: the field asked for) and an OOM kill record.
pub fn tracefs(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (field, format) = text.split_once('\n').unwrap_or(("pid", text.as_ref()));
    let _ = crate::ebpf::parse_field_offset(format, field);
    let _ = crate::sources::oom::records::parse_record(data);
}

/// A BTF blob: parsed, then asked for the offsets the programs need.
pub fn btf(data: &[u8]) {
    if let Ok(b) = crate::btf::Btf::parse(data.to_vec()) {
        let _ = b.kernel_offsets();
        let _ = b.member_offset("task_struct", "pid");
    }
}

/// A cgroup path -> runtime, container id and pod UID.
pub fn cgroup_path(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let namespaces = ["k8s.io".to_string(), "moby".to_string()];
    let _ = identity::path::parse(&text, &namespaces);
}

/// The kubelet's `/pods`, CRI-O's container answers, and Docker's listing and inspect answers
/// (decoded by bollard's models, then turned into names by ours).
pub fn runtime_answers(data: &[u8]) {
    let _ = identity::kubelet::parse_pods(data, "node-1");
    let _ = identity::crio::parse_container(data);
    if let Ok(list) = serde_json::from_slice::<Vec<bollard::models::ContainerSummary>>(data) {
        for c in list {
            let _ = identity::docker::listed(c);
        }
    }
    if let Ok(c) = serde_json::from_slice::<bollard::models::ContainerInspectResponse>(data) {
        let _ = identity::docker::inspected(c);
    }
}

/// RFC 3339 times, Go durations, flag durations, Unix seconds.
pub fn times(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = crate::api::rfc3339::parse(&text);
    let _ = crate::api::request::go_duration(&text);
    let _ = crate::config::parse_duration(&text);
    let _ = crate::config::parse_duration_or_zero(&text);
    if let Ok(b) = <[u8; 8]>::try_from(data.get(..8).unwrap_or_default()) {
        if let Some(t) = crate::unix_time::from_secs(f64::from_le_bytes(b)) {
            let _ = crate::api::rfc3339::format(t);
        }
        let _ = crate::api::rfc3339::format_unix(f64::from_le_bytes(b));
    }
}

/// One API request against a small fixture snapshot with history: the first line is the path
/// after `/api`, the second the query string, the rest the body.
pub fn http_api(data: &[u8]) {
    // The raw bytes are also an `Authorization` header value (--web-config-file's users).
    let _ = crate::access::basic_auth::parse_header(data);
    let _ = crate::prepared::accepts_gzip(&String::from_utf8_lossy(data));
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let path = format!("/api{}", parts.next().unwrap_or(""));
    let query = parts.next();
    let body = parts.next().unwrap_or("").as_bytes();
    let (prepared, state) = fixture();
    // Nobody reads the answer: a large one stops at its first chunk (the client went away).
    let (reply, head) = Reply::new();
    drop(head);
    crate::api::handle(&path, query, body, Some(prepared), state, reply);
}

/// Three cgroups with a few samples of history, built once.
fn fixture() -> &'static (Arc<Prepared>, ApiState) {
    static FIXTURE: OnceLock<(Arc<Prepared>, ApiState)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let sample = |id: u64, path: &str| ContainerSample {
            cgroup_id: id,
            path: path.into(),
            cpu_usage_ns: Some(id * 1_000_000),
            start_time: Some(1_795_000_000.0),
            ..ContainerSample::default()
        };
        let mut snap = Snapshot {
            containers: vec![
                sample(1, "/"),
                sample(2, "/docker"),
                sample(
                    3,
                    "/docker/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                ),
                sample(
                    4,
                    "/kubepods/burstable/pod0a1b2c3d-1111-2222-3333-444455556666",
                ),
            ],
            agent: AgentStats::default(),
            machine: Arc::new(crate::machine::MachineInfo::default()),
            labels: Arc::new(crate::metrics::LabelMode::default()),
        };
        let history = Arc::new(RwLock::new(crate::history::History::new(5, None)));
        for i in 0..5 {
            snap.agent.taken_at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000 + i);
            if let Ok(mut h) = history.write() {
                h.record(&snap);
            }
        }
        let events = Arc::new(crate::events::EventStore::new(
            100,
            Duration::from_secs(3600),
        ));
        let state = ApiState::new(history, events, None, vec!["k8s.io".into()], 1000);
        (Arc::new(Prepared::new(snap, 0)), state)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every committed corpus input through its target: what the fuzzer once found stays fixed.
    #[test]
    fn the_corpus_replays_without_a_panic() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
        let mut ran = 0;
        for (name, target) in TARGETS {
            let Ok(dir) = std::fs::read_dir(root.join(name)) else {
                panic!("no corpus for the fuzz target {name}");
            };
            for entry in dir.flatten() {
                let data = std::fs::read(entry.path()).unwrap_or_default();
                target(&data);
                ran += 1;
            }
        }
        assert!(ran >= TARGETS.len(), "the corpus is empty");
    }
}
