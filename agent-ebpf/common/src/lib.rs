//! Types and names shared by the kernel programs and the agent.
//!
//! Every map value is plain integers with explicit padding and a compile-time size check, so the
//! kernel and userspace agree on the layout byte for byte. No bool, enum or Option in a map value.
#![no_std]

/// Per-CPU hash: cgroup v2 id -> nanoseconds on CPU committed at context switches (cumulative).
pub const MAP_CPU_NS: &str = "CPU_NS";
/// Per-CPU array with one [`RunState`]: what each CPU is running now, and since when.
pub const MAP_RUNNING: &str = "RUNNING";
/// Per-CPU array of self-counters, indexed by the `STAT_*` constants.
pub const MAP_STATS: &str = "STATS";
/// The global holding the [`KernelOffsets`] that userspace fills from the running kernel's BTF.
pub const GLOBAL_OFFSETS: &str = "OFFSETS";
/// Program name of the context-switch accounting program.
pub const PROG_SCHED_SWITCH: &str = "sched_switch";
/// An empty program for `sched_switch`, attached in its place by `--bench-sched-switch-floor`:
/// what any program on that tracepoint costs, so the benchmark can tell nodetel's work apart.
pub const PROG_SCHED_SWITCH_FLOOR: &str = "sched_switch_floor";
/// Program name of the program that splits a running task's slice when it changes cgroup.
pub const PROG_CGROUP_ATTACH: &str = "cgroup_attach_task";
/// `tp_btf/cgroup_mkdir`, `cgroup_rmdir`, `cgroup_rename`: count changes of the cgroup trees
/// ([`STAT_CGROUP_CHANGES`]), so userspace walks cgroupfs only when something changed.
pub const PROG_CGROUP_MKDIR: &str = "cgroup_mkdir";
pub const PROG_CGROUP_RMDIR: &str = "cgroup_rmdir";
pub const PROG_CGROUP_RENAME: &str = "cgroup_rename";

/// Per-CPU hash: cgroup v2 id -> OOM kills whose victim was in that cgroup (cumulative).
pub const MAP_OOM_KILLS: &str = "OOM_KILLS";
/// Ring buffer of [`OomKill`] records, one per kill, for the event log.
pub const MAP_OOM_EVENTS: &str = "OOM_EVENTS";
/// LRU hash: thread id -> the [`OomKill`] describing the last SIGKILL that thread sent, until
/// `mark_victim` confirms it was the OOM killer's.
pub const MAP_SIGKILLS: &str = "SIGKILLS";
/// Program that records every SIGKILL with its target task (`tp_btf/signal_generate`).
pub const PROG_SIGNAL_GENERATE: &str = "signal_generate";
/// Program that counts an OOM kill when the victim is marked (tracepoint `oom:mark_victim`).
pub const PROG_MARK_VICTIM: &str = "mark_victim";
/// Capacity of [`MAP_OOM_KILLS`]: cgroups with at least one kill since they were last forgotten.
pub const OOM_KILLS_ENTRIES: u32 = 4096;

/// Per-CPU hash: [`NetKey`] (cgroup v2 id of the socket, device, direction) -> [`NetCounters`]
/// (cumulative).
pub const MAP_NET_TRAFFIC: &str = "NET_TRAFFIC";
/// `cgroup_skb/ingress` on the cgroup v2 root: packets delivered to a local socket.
pub const PROG_NET_INGRESS: &str = "net_ingress";
/// `cgroup_skb/egress` on the cgroup v2 root: packets a local socket sends.
pub const PROG_NET_EGRESS: &str = "net_egress";
/// Capacity of [`MAP_NET_TRAFFIC`]: a cgroup uses one entry per device and direction it used.
pub const NET_TRAFFIC_ENTRIES: u32 = 8192;
/// [`NetKey::direction`] of received packets.
pub const NET_INGRESS: u32 = 0;
/// [`NetKey::direction`] of sent packets.
pub const NET_EGRESS: u32 = 1;

/// Per-CPU hash: [`HistKey`] -> [`RunqBucket`]: the run-queue waits of the cgroup's own tasks
/// that fell in that bucket (cumulative). The cgroup's totals are the sums over its buckets, so
/// a context switch updates one entry.
pub const MAP_SCHED_HIST: &str = "SCHED_HIST";
/// Capacity of [`MAP_SCHED_HIST`]: a busy cgroup uses 10-20 buckets, an idle one 1-3.
pub const SCHED_HIST_ENTRIES: u32 = 16384;
/// Histogram buckets: bucket `b` < [`RUNQ_BUCKETS`] - 1 counts waits of at most 2^b µs (1 µs to
/// 2^25 µs, 33.5 s); the last one counts longer waits (+Inf).
pub const RUNQ_BUCKETS: u32 = 27;

/// Per-CPU hash: [`BlkioKey`] -> [`BlkioBucket`]: completed bios of one cgroup, device and
/// operation whose latency fell in that bucket (cumulative).
pub const MAP_BLKIO_HIST: &str = "BLKIO_HIST";
/// Hash: bio address -> [`BlkioInFlight`]: when it was submitted (`block_bio_queue`) and when its
/// request was issued to the driver (`block_rq_issue`), until its completion. Entries whose
/// completion never came are pruned by userspace.
pub const MAP_BLKIO_INFLIGHT: &str = "BLKIO_INFLIGHT";
/// Capacity of [`MAP_BLKIO_INFLIGHT`]: bios in flight at once, node-wide (a busy NVMe queue holds
/// a few thousand).
pub const BLKIO_INFLIGHT_ENTRIES: u32 = 16_384;
/// `tp_btf/block_bio_queue` (a bio enters the block layer, where io.stat counts it),
/// `tp_btf/block_rq_complete` (a request-based device completed bios) and
/// `tp_btf/block_bio_complete` (a bio-based device such as device-mapper completed one):
/// per-cgroup block I/O latency.
pub const PROG_BLOCK_BIO_QUEUE: &str = "block_bio_queue";
/// `tp_btf/block_rq_issue`: a request-based device's driver was handed a request.
pub const PROG_BLOCK_RQ_ISSUE: &str = "block_rq_issue";
pub const PROG_BLOCK_RQ_COMPLETE: &str = "block_rq_complete";
pub const PROG_BLOCK_BIO_COMPLETE: &str = "block_bio_complete";
/// Bios of one request followed at its completion (a request merged from more leaves the rest
/// uncounted, and counts it in [`STAT_BLKIO_BEYOND_REQUEST`]).
pub const BLKIO_BIOS_PER_REQUEST: u32 = 64;
/// The global holding the [`BlkioOffsets`].
pub const GLOBAL_BLKIO_OFFSETS: &str = "BLKIO_OFFSETS";
/// Capacity of [`MAP_BLKIO_HIST`]: a cgroup uses one entry per device, operation and latency
/// bucket it has seen (a busy one 10-30).
pub const BLKIO_HIST_ENTRIES: u32 = 32_768;
/// Latency buckets, as [`RUNQ_BUCKETS`]: bucket `b` < `BLKIO_BUCKETS` - 1 counts latencies of
/// less than 2^b µs (and at least 2^(b-1)); the last one the rest.
pub const BLKIO_BUCKETS: u32 = 27;
/// [`BlkioKey::op`]: what io.stat calls reads (every operation that is not one of the others).
pub const BLKIO_READ: u16 = 0;
/// Writes with data (`REQ_OP_WRITE` and the other write operations but discard).
pub const BLKIO_WRITE: u16 = 1;
pub const BLKIO_DISCARD: u16 = 2;
/// Cache flushes: `REQ_OP_FLUSH`, or a write with no data (a pre-flush).
pub const BLKIO_FLUSH: u16 = 3;

/// Per-CPU hash: socket's cgroup v2 id -> [`TcpCounters`] (cumulative): TCP health events of the
/// cgroup's own sockets (the cgroup `sk->sk_cgrp_data` names, the socket's creator's; an accepted
/// connection's is its listener's).
pub const MAP_TCP_COUNTERS: &str = "TCP_COUNTERS";
/// Capacity of [`MAP_TCP_COUNTERS`]: one entry per cgroup whose sockets had an event.
pub const TCP_COUNTERS_ENTRIES: u32 = 16_384;
/// Per-CPU hash: [`HistKey`] (the socket's cgroup v2 id, log2 bucket of µs) -> [`TcpRttBucket`]:
/// smoothed round-trip times of the cgroup's connections, sampled when a connection is
/// established (the handshake's round trip) and when it leaves ESTABLISHED (its last smoothed
/// RTT).
pub const MAP_TCP_RTT: &str = "TCP_RTT";
/// Capacity of [`MAP_TCP_RTT`]: a cgroup uses one entry per bucket its round trips fell in
/// (loopback and one region: 2-5).
pub const TCP_RTT_ENTRIES: u32 = 32_768;
/// RTT buckets, as [`RUNQ_BUCKETS`]: bucket `b` < `TCP_RTT_BUCKETS` - 1 counts round trips under
/// 2^b µs (and at least 2^(b-1)); the last one the rest.
pub const TCP_RTT_BUCKETS: u32 = 27;
/// The global holding the [`TcpOffsets`].
pub const GLOBAL_TCP_OFFSETS: &str = "TCP_OFFSETS";
/// `tp_btf/tcp_retransmit_skb`, `tp_btf/tcp_send_reset`, `tp_btf/tcp_receive_reset`,
/// `tp_btf/inet_sock_set_state`: the `tcp_health` kind.
pub const PROG_TCP_RETRANSMIT_SKB: &str = "tcp_retransmit_skb";
pub const PROG_TCP_SEND_RESET: &str = "tcp_send_reset";
pub const PROG_TCP_RECEIVE_RESET: &str = "tcp_receive_reset";
pub const PROG_INET_SOCK_SET_STATE: &str = "inet_sock_set_state";
/// [`TcpCounters::counts`] slots: segments retransmitted (as the kernel's `TcpRetransSegs`
/// counts them), resets sent and received, connects by result, connections accepted.
pub const TCP_RETRANS_SEGS: u32 = 0;
pub const TCP_RESETS_SENT: u32 = 1;
pub const TCP_RESETS_RECEIVED: u32 = 2;
pub const TCP_CONNECT_OK: u32 = 3;
pub const TCP_CONNECT_REFUSED: u32 = 4;
pub const TCP_CONNECT_TIMEOUT: u32 = 5;
pub const TCP_CONNECT_OTHER: u32 = 6;
pub const TCP_ACCEPTS: u32 = 7;
/// Connections of the cgroup that entered ESTABLISHED (or were found in it by the start-up walk,
/// [`PROG_TCP_ESTABLISHED_SEED`]) and that left it: their difference is the cgroup's established
/// connections now. Two counters that only grow, so the per-CPU values sum to it exactly.
pub const TCP_ESTABLISHED_OPENED: u32 = 8;
pub const TCP_ESTABLISHED_CLOSED: u32 = 9;
pub const TCP_SLOTS: usize = 10;
/// Hash: a socket's address -> the cgroup its entering ESTABLISHED was charged to, while it is
/// established; or [`TCP_TOMBSTONE`]. Key 0 (no socket) is set while the seed walks.
pub const MAP_TCP_ESTABLISHED: &str = "TCP_ESTABLISHED";
/// Capacity of [`MAP_TCP_ESTABLISHED`], allocated as connections come (no preallocation): about
/// 80 bytes per established connection of the node. A connection beyond it is not counted, and
/// counted in [`STAT_TCP_ESTABLISHED_UNTRACKED`].
pub const TCP_ESTABLISHED_ENTRIES: u32 = 262_144;
/// The value of a socket that left ESTABLISHED while the seed walked: the walk must not count it.
pub const TCP_TOMBSTONE: u64 = u64::MAX;
/// `iter/task_file`: run once at start-up, counts the connections established before the agent
/// (every open file of every task that is a TCP socket in ESTABLISHED, each socket once).
pub const PROG_TCP_ESTABLISHED_SEED: &str = "tcp_established_seed";

/// Default capacity of [`MAP_CPU_NS`]; userspace may resize it at load time.
pub const DEFAULT_CPU_NS_ENTRIES: u32 = 16_384;

/// Inserts into [`MAP_CPU_NS`] refused because the map was full.
pub const STAT_CPU_MAP_FULL: u32 = 0;
/// Nanoseconds that could not be committed because the map was full.
pub const STAT_CPU_MAP_FULL_NS: u32 = 1;
/// Switch-ins whose cgroup could not be read (the in-flight time is then not shown until commit).
pub const STAT_CGROUP_READ_FAILED: u32 = 2;
/// Switch-outs whose task was not the one the CPU's run state recorded: the kernel switched
/// that task in without firing `sched_switch`. Its slice is charged from its own runtime counter.
pub const STAT_STATE_MISMATCH: u32 = 3;
/// Nanoseconds charged at such switch-outs from the task's runtime counter.
pub const STAT_STATE_MISMATCH_NS: u32 = 4;
/// OOM kills counted (victim marked right after the OOM killer's SIGKILL to it).
pub const STAT_OOM_KILLS: u32 = 5;
/// OOM kill records lost because the ring buffer was full (the count is still exact).
pub const STAT_OOM_EVENTS_LOST: u32 = 6;
/// Victims marked with no SIGKILL just before: an exiting task given memory reserves, which the
/// kernel does not count as a kill either.
pub const STAT_OOM_MARKED_ONLY: u32 = 7;
/// OOM kills that could not be counted per cgroup (map full, or the victim's cgroup unreadable).
pub const STAT_OOM_UNCOUNTED: u32 = 8;
/// Packets that could not be counted because [`MAP_NET_TRAFFIC`] was full.
pub const STAT_NET_MAP_FULL: u32 = 9;
/// Bytes of those packets.
pub const STAT_NET_MAP_FULL_BYTES: u32 = 10;
/// Scheduler updates refused because [`MAP_SCHED_HIST`] was full.
pub const STAT_SCHED_MAP_FULL: u32 = 11;
/// cgroups made, removed or renamed, in any hierarchy.
pub const STAT_CGROUP_CHANGES: u32 = 12;
/// Switch-outs whose runtime delta exceeded the time since the switch-in even by the precise
/// clock: the delta was not trusted and the elapsed time charged instead.
pub const STAT_RUNTIME_CLAMPED: u32 = 13;
/// Nanoseconds not charged at those switch-outs (runtime delta minus elapsed time).
pub const STAT_RUNTIME_CLAMPED_NS: u32 = 14;
/// Switch-outs whose runtime delta exceeded the tick-dated elapsed time but not the precise one:
/// the tick clock was stale (jiffies lagging), and the delta was charged.
pub const STAT_TICK_STALE: u32 = 15;
/// Requests completed with more bios than [`BLKIO_BIOS_PER_REQUEST`]: the rest not counted.
pub const STAT_BLKIO_BEYOND_REQUEST: u32 = 16;
/// Bios not counted because [`MAP_BLKIO_HIST`] was full.
pub const STAT_BLKIO_MAP_FULL: u32 = 17;
/// Completed bios whose cgroup or disk could not be read: not counted.
pub const STAT_BLKIO_UNREADABLE: u32 = 18;
/// Bios not timed because [`MAP_BLKIO_INFLIGHT`] was full.
pub const STAT_BLKIO_INFLIGHT_FULL: u32 = 19;
/// Bios of a request-based device completed with no issue time (beyond the first
/// [`BLKIO_BIOS_PER_REQUEST`] of their request at its issue, or completed without one): their
/// whole latency is counted as service time.
pub const STAT_BLKIO_ISSUE_UNSEEN: u32 = 20;
/// TCP events not counted because [`MAP_TCP_COUNTERS`] was full.
pub const STAT_TCP_MAP_FULL: u32 = 21;
/// TCP events whose socket's cgroup could not be read: not counted.
pub const STAT_TCP_UNREADABLE: u32 = 22;
/// Established connections not counted because [`MAP_TCP_ESTABLISHED`] was full.
pub const STAT_TCP_ESTABLISHED_UNTRACKED: u32 = 23;
/// Number of slots in [`MAP_STATS`].
pub const STAT_SLOTS: u32 = 24;

/// What one CPU runs since the last context switch, and what it has not yet written to the
/// shared maps.
///
/// `cgroup_id == 0` means idle, unknown, or not yet seen a switch: userspace adds no in-flight time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunState {
    /// CLOCK_MONOTONIC at switch-in, up to a tick early: `tick_ns` of the switch.
    pub since_ns: u64,
    /// cgroup v2 id of the task switched in.
    pub cgroup_id: u64,
    /// Kernel task id (thread id) switched in; 0 for the idle task.
    pub pid: u32,
    /// 1 when `exec_at_in` holds the task's runtime at switch-in; 0 (unreadable) makes the
    /// switch-out fall back to the clock.
    pub exec_valid: u32,
    /// The task's `se.sum_exec_runtime` at switch-in.
    pub exec_at_in: u64,
    /// The task's `sched_info.run_delay` and `sched_info.pcount` at switch-in (0 unless
    /// [`FEATURE_SCHED`]): the kernel adds the wait that ends with this switch-in only after the
    /// tracepoint, so the switch-out's values minus these are that wait and one run period.
    pub run_delay_at_in: u64,
    pub pcount_at_in: u64,
    /// `jiffies` at the last switch, and CLOCK_MONOTONIC (`bpf_ktime_get_ns`) at the first switch
    /// of that tick on this CPU: later switches of the same tick reuse it instead of reading the
    /// clock again.
    pub tick: u64,
    pub tick_ns: u64,
    /// Context switches seen on this CPU.
    pub switches: u64,
    /// Slices of one cgroup charged on this CPU but not yet added to [`MAP_CPU_NS`] and
    /// [`MAP_SCHED_HIST`]: see [`Pending`].
    pub pending: Pending,
}
const _: () = assert!(core::mem::size_of::<RunState>() == 72 + core::mem::size_of::<Pending>());

/// A per-CPU write-back buffer for one cgroup's CPU time and run-queue waits.
///
/// Consecutive slices on a CPU mostly belong to the same cgroup (a task and the idle task in
/// turn, or tasks of one pod), so `sched_switch` adds them here, in memory only this CPU
/// writes, and updates the shared hashes only when a slice of another cgroup comes: a hash
/// update was about half of a switch's cost. Userspace adds what is pending to what it reads
/// from the maps. Only `sched_switch` (interrupts off) touches it, so no update can interleave.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pending {
    /// The cgroup these figures belong to; 0 when empty.
    pub cgroup_id: u64,
    /// ns on CPU, as committed to [`MAP_CPU_NS`].
    pub cpu_ns: u64,
    /// Bit `b` set: `buckets[b]` holds something (the flush visits only those).
    pub bucket_mask: u32,
    pub _pad: u32,
    /// Run-queue waits per histogram bucket, as added to [`MAP_SCHED_HIST`].
    pub buckets: [RunqBucket; RUNQ_BUCKETS as usize],
}
const _: () = assert!(core::mem::size_of::<Pending>() == 24 + 16 * RUNQ_BUCKETS as usize);

/// One OOM kill: who was killed, in which cgroup, and which task's allocation triggered it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OomKill {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when the SIGKILL was sent.
    pub time_ns: u64,
    /// cgroup v2 id of the victim.
    pub victim_cgroup: u64,
    /// cgroup v2 id of the task whose allocation ran the OOM killer.
    pub trigger_cgroup: u64,
    /// Victim thread id (`task->pid`) and process id (`task->tgid`).
    pub victim_pid: u32,
    pub victim_tgid: u32,
    /// Thread id of the allocating task.
    pub trigger_pid: u32,
    pub _pad: u32,
    /// Victim's `task->comm`, NUL-padded.
    pub comm: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<OomKill>() == 56);

/// Key of [`MAP_NET_TRAFFIC`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NetKey {
    /// cgroup v2 id of the socket (`bpf_skb_cgroup_id`): the cgroup of the task that created it.
    pub cgroup_id: u64,
    /// The socket's network namespace (its inode number, as `/proc/<pid>/ns/net` shows it); 0
    /// when it could not be read. Device indexes mean something only within one namespace.
    pub netns: u32,
    /// The device's index in that namespace (0 when the packet has none).
    pub ifindex: u32,
    /// [`NET_INGRESS`] or [`NET_EGRESS`].
    pub direction: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<NetKey>() == 24);

/// Value of [`MAP_NET_TRAFFIC`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetCounters {
    /// IP-level bytes (`skb->len` at the hook: IP header and payload, no link-layer header).
    pub bytes: u64,
    /// Packets, a GSO/GRO super-packet counted as the segments it stands for.
    pub packets: u64,
}
const _: () = assert!(core::mem::size_of::<NetCounters>() == 16);

/// Value of [`MAP_SCHED_HIST`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunqBucket {
    /// Run periods whose wait fell in the bucket (`/proc/<pid>/schedstat`'s third field, summed
    /// over buckets).
    pub count: u64,
    /// Their waits on a run queue, from wakeup or preemption to running (schedstat's second
    /// field, summed over buckets).
    pub wait_ns: u64,
}
const _: () = assert!(core::mem::size_of::<RunqBucket>() == 16);

/// Key of [`MAP_SCHED_HIST`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HistKey {
    pub cgroup_id: u64,
    /// 0 ..= [`RUNQ_BUCKETS`] - 1.
    pub bucket: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<HistKey>() == 16);

/// Key of [`MAP_BLKIO_HIST`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BlkioKey {
    pub cgroup_id: u64,
    pub dev: u32,
    /// `BLKIO_READ` .. `BLKIO_FLUSH`.
    pub op: u16,
    /// 0 ..= [`BLKIO_BUCKETS`] - 1.
    pub bucket: u16,
}
const _: () = assert!(core::mem::size_of::<BlkioKey>() == 16);

/// Value of [`MAP_TCP_COUNTERS`], indexed by the `TCP_*` slots.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpCounters {
    pub counts: [u64; TCP_SLOTS],
}
const _: () = assert!(core::mem::size_of::<TcpCounters>() == 80);

/// Offsets the TCP programs follow from a `struct sock` and a `struct sk_buff` (from BTF, like
/// [`BlkioOffsets`]; the cgroup's `kn->id` uses [`KernelOffsets`]' two).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpOffsets {
    /// `sock.sk_cgrp_data` + `sock_cgroup_data.cgroup`
    pub sk_cgroup: u32,
    /// `sock.__sk_common` + `sock_common.skc_state` (u8)
    pub sk_state: u32,
    /// `sock.sk_protocol` (u16)
    pub sk_protocol: u32,
    /// `sock.sk_err` (int)
    pub sk_err: u32,
    /// `sk_buff.cb` + `tcp_skb_cb.tcp_gso_segs` (u16)
    pub skb_gso_segs: u32,
    /// `tcp_sock.srtt_us` (u32, the smoothed RTT in µs times 8)
    pub tp_srtt: u32,
    /// `socket.sk` (the seed's way from an open file's socket to its `struct sock`)
    pub socket_sk: u32,
    /// 1 once userspace filled the struct.
    pub valid: u32,
}
const _: () = assert!(core::mem::size_of::<TcpOffsets>() == 32);

/// Value of [`MAP_TCP_RTT`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpRttBucket {
    pub count: u64,
    /// The samples' sum, µs.
    pub rtt_us: u64,
}
const _: () = assert!(core::mem::size_of::<TcpRttBucket>() == 16);

/// `u32` fields' native-endian bytes in order: a `repr(C)` struct of only `u32` as the program
/// reads it (the loader writes them into the object's read-only data).
fn pack<const N: usize>(fields: &[u32]) -> [u8; N] {
    let mut out = [0u8; N];
    for (chunk, f) in out.chunks_exact_mut(4).zip(fields) {
        chunk.copy_from_slice(&f.to_ne_bytes());
    }
    out
}

impl TcpOffsets {
    /// The struct's bytes as the program reads them (eight `u32`, no padding).
    pub fn to_ne_bytes(&self) -> [u8; 32] {
        let fields = [
            self.sk_cgroup,
            self.sk_state,
            self.sk_protocol,
            self.sk_err,
            self.skb_gso_segs,
            self.tp_srtt,
            self.socket_sk,
            self.valid,
        ];
        pack(&fields)
    }
}

/// Value of [`MAP_BLKIO_INFLIGHT`] (`bpf_ktime_get_ns()` values).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlkioInFlight {
    pub submitted_ns: u64,
    /// 0 until the bio's request is issued (again after a requeue: the newest issue).
    pub issued_ns: u64,
}
const _: () = assert!(core::mem::size_of::<BlkioInFlight>() == 16);

/// Value of [`MAP_BLKIO_HIST`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlkioBucket {
    pub count: u64,
    pub bytes: u64,
    /// Submission to completion, summed.
    pub latency_ns: u64,
    /// The part of it before the request was issued to the driver (0 on a bio-based device,
    /// which has no requests); the rest is service time.
    pub queue_ns: u64,
}
const _: () = assert!(core::mem::size_of::<BlkioBucket>() == 32);

/// Offsets the block I/O programs follow from a `struct bio` (filled from BTF like
/// [`KernelOffsets`]; the cgroup's `kn->id` uses that struct's two offsets).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlkioOffsets {
    /// `bio.bi_opf`
    pub bio_opf: u32,
    /// `bio.bi_iter` + `bvec_iter.bi_size`
    pub bio_size: u32,
    /// `bio.bi_bdev`
    pub bio_bdev: u32,
    /// `block_device.bd_disk`
    pub bdev_disk: u32,
    /// `gendisk.major`, `gendisk.first_minor`
    pub disk_major: u32,
    pub disk_first_minor: u32,
    /// `bio.bi_blkg`
    pub bio_blkg: u32,
    /// `blkcg_gq.blkcg`
    pub blkg_blkcg: u32,
    /// `blkcg.css` + `cgroup_subsys_state.cgroup`
    pub blkcg_cgroup: u32,
    /// `request.bio` (the first bio not yet completed), `bio.bi_next` (the next one)
    pub rq_bio: u32,
    pub bio_next: u32,
    /// 1 once userspace filled the struct.
    pub valid: u32,
}
const _: () = assert!(core::mem::size_of::<BlkioOffsets>() == 48);

impl BlkioOffsets {
    /// The struct's bytes as the program reads them: `repr(C)` of twelve `u32`, no padding, so
    /// its fields' native-endian bytes in declaration order (the loader writes them into the
    /// object's read-only data).
    pub fn to_ne_bytes(&self) -> [u8; 48] {
        let fields = [
            self.bio_opf,
            self.bio_size,
            self.bio_bdev,
            self.bdev_disk,
            self.disk_major,
            self.disk_first_minor,
            self.bio_blkg,
            self.blkg_blkcg,
            self.blkcg_cgroup,
            self.rq_bio,
            self.bio_next,
            self.valid,
        ];
        pack(&fields)
    }
}

/// Byte offsets of the kernel struct fields the programs follow from a `task_struct` to its cgroup
/// v2 id. Rust eBPF objects carry no CO-RE relocations, so the agent reads these from
/// `/sys/kernel/btf/vmlinux` at start-up and writes them into the program's read-only data: the
/// same object then runs on any kernel with BTF.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `task_struct.pid`
    pub task_pid: u32,
    /// `task_struct.cgroups` (a `struct css_set *`)
    pub task_cgroups: u32,
    /// `css_set.dfl_cgrp` (the task's cgroup on the v2 hierarchy)
    pub css_set_dfl_cgrp: u32,
    /// `cgroup.kn` (the cgroup's `struct kernfs_node *`)
    pub cgroup_kn: u32,
    /// `kernfs_node.id` (the u64 that `bpf_get_current_cgroup_id()` returns)
    pub kernfs_node_id: u32,
    /// `task_struct.se.sum_exec_runtime`: the task's total runtime (ns), as the scheduler keeps it
    pub task_sum_exec: u32,
    /// `task_struct.se.prev_sum_exec_runtime`: `sum_exec_runtime` when the task was last picked
    pub task_prev_sum_exec: u32,
    /// `task_struct.tgid`
    pub task_tgid: u32,
    /// `task_struct.comm` (16 bytes)
    pub task_comm: u32,
    /// `task_struct.sched_info.run_delay`: ns the task waited on a run queue (cumulative, kept
    /// by the scheduler; `/proc/<pid>/schedstat`'s second field)
    pub task_run_delay: u32,
    /// `task_struct.sched_info.pcount`: times the task was run (schedstat's third field)
    pub task_pcount: u32,
    /// `sock_common.skc_net` (a `possible_net_t`, whose first member is the `struct net *`)
    pub sock_net: u32,
    /// `net.ns.inum`: the namespace's inode number
    pub net_inum: u32,
    /// Offset of the `pid` field in the `oom:mark_victim` tracepoint record, from its format file
    /// (classic tracepoint fields are published there, not in BTF).
    pub tp_mark_victim_pid: u32,
    /// 1 once userspace filled the struct; programs do nothing before that.
    pub valid: u32,
    /// [`FEATURE_SCHED`]: work the agent asked for beyond CPU time.
    pub features: u32,
}

/// [`KernelOffsets::features`] bit: measure run-queue waits and run periods at each switch.
pub const FEATURE_SCHED: u32 = 1;
/// [`KernelOffsets::features`] bit: count traffic over loopback too (`lo`, index 1 in every
/// namespace). Off, as cAdvisor leaves `lo` out: a pod talking to its sidecar over 127.0.0.1 is
/// then no bandwidth, and no map entry.
pub const FEATURE_LOOPBACK: u32 = 2;
/// `LOOPBACK_IFINDEX`: the kernel gives `lo` this index in every network namespace.
pub const LOOPBACK_IFINDEX: u32 = 1;
const _: () = assert!(core::mem::size_of::<KernelOffsets>() == 64);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: these types are #[repr(C)], made only of integers, with explicit padding fields, so
    // every bit pattern is a valid value and there are no uninitialised bytes.
    unsafe impl aya::Pod for super::RunState {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Pending {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::KernelOffsets {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::OomKill {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::NetKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::NetCounters {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RunqBucket {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::HistKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::BlkioKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::BlkioBucket {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::BlkioInFlight {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::TcpCounters {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::TcpRttBucket {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::BlkioOffsets {}
}
