//! Reading a task's cgroup v2 id from a `task_struct` pointer, with field offsets that the agent
//! took from the running kernel's BTF (see `KernelOffsets`).
use aya_ebpf::helpers::bpf_probe_read_kernel;
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
    task_state: 0,
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

#[inline(always)]
unsafe fn read_at<T>(base: *const u8, off: u32) -> Result<T, i32> {
    // SAFETY: bpf_probe_read_kernel tolerates any address and returns an error instead of
    // faulting; the caller only passes kernel pointers it was given or read.
    unsafe { bpf_probe_read_kernel(base.wrapping_add(off as usize) as *const T) }
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

/// `task->__state`: 0 while runnable (TASK_RUNNING).
#[inline(always)]
pub fn state(task: *const u8, off: &KernelOffsets) -> Result<u32, i32> {
    // SAFETY: see read_at. Before 5.14 the field is a long; its low half (little-endian) holds
    // the same flags.
    unsafe { read_at::<u32>(task, off.task_state) }
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
    // SAFETY: see read_at; a failed read leaves the name empty.
    unsafe { read_at::<[u8; 16]>(task, off.task_comm).unwrap_or([0; 16]) }
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
