//! Map definitions. Names and value layouts come from `nodetel-common`; sizes here are defaults
//! that the agent overrides at load time (`--cpu-map-entries`).
use aya_ebpf::{
    macros::map,
    maps::{LruHashMap, PerCpuArray, PerCpuHashMap, RingBuf},
};
use nodetel_common::{
    DEFAULT_CPU_NS_ENTRIES, HistKey, NET_TRAFFIC_ENTRIES, NetCounters, NetKey, OOM_KILLS_ENTRIES,
    OomKill, RunState, RunqBucket, SCHED_HIST_ENTRIES, STAT_SLOTS,
};

#[map(name = "CPU_NS")]
pub static CPU_NS: PerCpuHashMap<u64, u64> =
    PerCpuHashMap::with_max_entries(DEFAULT_CPU_NS_ENTRIES, 0);

#[map(name = "RUNNING")]
pub static RUNNING: PerCpuArray<RunState> = PerCpuArray::with_max_entries(1, 0);

#[map(name = "OOM_KILLS")]
pub static OOM_KILLS: PerCpuHashMap<u64, u64> =
    PerCpuHashMap::with_max_entries(OOM_KILLS_ENTRIES, 0);

/// 256 KiB: room for several thousand kill records between two drains.
#[map(name = "OOM_EVENTS")]
pub static OOM_EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// Only the last SIGKILL per sending thread matters, and most SIGKILLs are not the OOM killer's:
/// an LRU map forgets those without a cleanup path.
#[map(name = "SIGKILLS")]
pub static SIGKILLS: LruHashMap<u32, OomKill> = LruHashMap::with_max_entries(1024, 0);

#[map(name = "NET_TRAFFIC")]
pub static NET_TRAFFIC: PerCpuHashMap<NetKey, NetCounters> =
    PerCpuHashMap::with_max_entries(NET_TRAFFIC_ENTRIES, 0);

#[map(name = "SCHED_HIST")]
pub static SCHED_HIST: PerCpuHashMap<HistKey, RunqBucket> =
    PerCpuHashMap::with_max_entries(SCHED_HIST_ENTRIES, 0);

#[map(name = "STATS")]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STAT_SLOTS, 0);

/// Adds `n` to a counter of this CPU with one atomic instruction.
///
/// A per-CPU value has no writer on another CPU, but it can have one on this CPU: the
/// `cgroup_skb` programs run with only migration disabled, so a softirq (a socket's ACK sent
/// while the same socket's send is being counted) can run a program on the same value between
/// a plain load and store, and one of the two additions was lost (measured: ~100 ACKs in a
/// 20 MiB loopback transfer). An atomic add closes that window for every map.
#[inline(always)]
pub fn atomic_add(p: *mut u64, n: u64) {
    use core::intrinsics::{AtomicOrdering, atomic_xadd};
    // SAFETY: `p` points into a map value, valid and 8-byte aligned for the program's run.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(p, n) };
}

/// Adds `n` to a self-counter of this CPU.
#[inline(always)]
pub fn stat_add(slot: u32, n: u64) {
    if let Some(p) = STATS.get_ptr_mut(slot) {
        atomic_add(p, n);
    }
}

/// Applies `add` to `key`'s value of this CPU, or creates the entry with `init` for this CPU
/// (zero on the others); false when the map is full.
#[inline(always)]
pub fn upsert<K, V>(map: &PerCpuHashMap<K, V>, key: &K, init: &V, add: impl Fn(*mut V)) -> bool {
    if let Some(v) = map.get_ptr_mut(key) {
        add(v);
        return true;
    }
    // BPF_NOEXIST: a concurrent insert of the same key on another CPU creates the entry for every
    // CPU; then our insert fails with EEXIST and we retry the lookup once.
    if map.insert(key, init, 1).is_ok() {
        return true;
    }
    if let Some(v) = map.get_ptr_mut(key) {
        add(v);
        return true;
    }
    false
}

/// Adds `n` to `key`'s value of this CPU in a per-CPU hash; false when the map is full.
#[inline(always)]
pub fn per_cpu_add(map: &PerCpuHashMap<u64, u64>, key: u64, n: u64) -> bool {
    upsert(map, &key, &n, |v| atomic_add(v, n))
}
