//! Map definitions. Names and value layouts come from `nodetel-common`; sizes here are defaults
//! that the agent overrides at load time (`--cpu-map-entries`).
use aya_ebpf::{
    macros::map,
    maps::{PerCpuArray, PerCpuHashMap},
};
use nodetel_common::{DEFAULT_CPU_NS_ENTRIES, RunState, STAT_SLOTS};

#[map(name = "CPU_NS")]
pub static CPU_NS: PerCpuHashMap<u64, u64> =
    PerCpuHashMap::with_max_entries(DEFAULT_CPU_NS_ENTRIES, 0);

#[map(name = "RUNNING")]
pub static RUNNING: PerCpuArray<RunState> = PerCpuArray::with_max_entries(1, 0);

#[map(name = "STATS")]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STAT_SLOTS, 0);

/// Adds `n` to a self-counter of this CPU.
#[inline(always)]
pub fn stat_add(slot: u32, n: u64) {
    if let Some(p) = STATS.get_ptr_mut(slot) {
        // SAFETY: a per-CPU array slot belongs to this CPU and the program runs with preemption
        // disabled, so nothing else writes it concurrently.
        unsafe { *p += n };
    }
}
