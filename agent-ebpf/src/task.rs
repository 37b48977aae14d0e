//! Reading a task's cgroup v2 id from a `task_struct` pointer, with field offsets that the agent
//! took from the running kernel's BTF (see `KernelOffsets`).
use nodetel_common::KernelOffsets;

/// Filled by the agent before load (`EbpfLoader::set_global`); `valid == 0` means "not filled".
#[unsafe(no_mangle)]
static OFFSETS: KernelOffsets = KernelOffsets {
    task_pid: 0,
    task_cgroups: 0,
    css_set_dfl_cgrp: 0,
    cgroup_kn: 0,
    kernfs_node_id: 0,
    task_sum_exec: 0,
    task_prev_sum_exec: 0,
    task_tgid: 0,
    task_comm: 0,
    sock_net: 0,
    net_inum: 0,
    task_run_delay: 0,
    task_pcount: 0,
    tp_mark_victim_pid: 0,
    valid: 0,
    features: 0,
};

#[inline(always)]
pub fn offsets() -> KernelOffsets {
    // SAFETY: OFFSETS is a plain static; the volatile read stops the compiler from folding the
    // zero initialiser into the code, because the loader rewrites it before the program runs.
    unsafe { core::ptr::read_volatile(&OFFSETS) }
}

/// Whether the agent asked for loopback traffic ([`nodetel_common::FEATURE_LOOPBACK`]).
#[inline(always)]
pub fn count_loopback() -> bool {
    // SAFETY: as in `offsets`, a volatile read of a plain static.
    let features = unsafe { core::ptr::read_volatile(&OFFSETS.features) };
    features & nodetel_common::FEATURE_LOOPBACK != 0
}

/// The two offsets the traffic programs need, read alone: they run per packet, and copying the
/// whole struct costs a load per field. `None` before userspace filled it.
#[inline(always)]
pub fn net_offsets() -> Option<(u32, u32)> {
    // SAFETY: as in `offsets`, volatile reads of a plain static.
    let (valid, sock_net, net_inum) = unsafe {
        (
            core::ptr::read_volatile(&OFFSETS.valid),
            core::ptr::read_volatile(&OFFSETS.sock_net),
            core::ptr::read_volatile(&OFFSETS.net_inum),
        )
    };
    (valid != 0).then_some((sock_net, net_inum))
}

/// A field of a kernel object: a BTF-typed tracepoint argument, or a pointer loaded from one.
///
/// A plain load, not `bpf_probe_read_kernel`: the verifier knows the offsets (they sit in the
/// frozen read-only data, so it reads them as constants), checks each load against the kernel's
/// BTF and emits a fault-tolerant load that reads 0 from a bad address. A helper call per field
/// cost about 40 ns on the context-switch path; this costs about one.
#[inline(always)]
pub unsafe fn read_at<T: Copy>(base: *const u8, off: u32) -> Result<T, i32> {
    if base.is_null() {
        return Err(-1);
    }
    // SAFETY: see above; the caller only passes kernel pointers it was given or read.
    Ok(unsafe { core::ptr::read_volatile(base.wrapping_add(off as usize) as *const T) })
}

/// `task->pid`.
#[inline(always)]
pub fn pid(task: *const u8, off: &KernelOffsets) -> Result<u32, i32> {
    // SAFETY: see read_at.
    unsafe { read_at::<i32>(task, off.task_pid).map(|p| p as u32) }
}

/// `task->cgroups->dfl_cgrp->kn->id`: the same id `bpf_get_current_cgroup_id()` gives for the
/// current task, here for any task the program was handed.
#[inline(always)]
pub fn cgroup_id(task: *const u8, off: &KernelOffsets) -> Result<u64, i32> {
    // SAFETY: see read_at; each pointer read is checked before it is followed.
    unsafe {
        let css_set: *const u8 = read_at(task, off.task_cgroups)?;
        if css_set.is_null() {
            return Err(-1);
        }
        let cgrp: *const u8 = read_at(css_set, off.css_set_dfl_cgrp)?;
        if cgrp.is_null() {
            return Err(-1);
        }
        let kn: *const u8 = read_at(cgrp, off.cgroup_kn)?;
        if kn.is_null() {
            return Err(-1);
        }
        read_at(kn, off.kernfs_node_id)
    }
}

/// `task->sched_info`'s `(run_delay, pcount)`: the scheduler's own run-queue wait total and
/// run count for the task, as `/proc/<pid>/schedstat` shows them.
#[inline(always)]
pub fn sched_info(task: *const u8, off: &KernelOffsets) -> Result<(u64, u64), i32> {
    // SAFETY: see read_at.
    unsafe {
        Ok((
            read_at(task, off.task_run_delay)?,
            read_at(task, off.task_pcount)?,
        ))
    }
}

/// `task->tgid`: the process id of a thread.
#[inline(always)]
pub fn tgid(task: *const u8, off: &KernelOffsets) -> Result<u32, i32> {
    // SAFETY: see read_at.
    unsafe { read_at::<i32>(task, off.task_tgid).map(|p| p as u32) }
}

/// `task->comm`, NUL-padded.
#[inline(always)]
pub fn comm(task: *const u8, off: &KernelOffsets) -> [u8; 16] {
    // SAFETY: bpf_probe_read_kernel tolerates any address; a failed read leaves the name empty.
    // (A helper, not a load: plain loads are at most 8 bytes, and this runs once per SIGKILL.)
    unsafe {
        aya_ebpf::helpers::bpf_probe_read_kernel(
            task.wrapping_add(off.task_comm as usize) as *const [u8; 16]
        )
        .unwrap_or([0; 16])
    }
}

/// `task->se.sum_exec_runtime`.
#[inline(always)]
pub fn exec_ns(task: *const u8, off: &KernelOffsets) -> Result<u64, i32> {
    // SAFETY: see read_at.
    unsafe { read_at(task, off.task_sum_exec) }
}

/// How long `task` has run since the scheduler last picked it: `se.sum_exec_runtime -
/// se.prev_sum_exec_runtime`, both kept by the scheduler itself, so this holds even when the
/// switch that put the task on the CPU was never traced.
#[inline(always)]
pub fn slice_ns(task: *const u8, off: &KernelOffsets) -> Result<u64, i32> {
    // SAFETY: see read_at.
    unsafe {
        let sum: u64 = read_at(task, off.task_sum_exec)?;
        let at_pick: u64 = read_at(task, off.task_prev_sum_exec)?;
        Ok(sum.saturating_sub(at_pick))
    }
}
