//! Per-cgroup block I/O latency. Each bio is stamped when it enters the block layer
//! (`block_bio_queue`, once per bio, where io.stat counts it) and charged at its completion to
//! the cgroup the kernel charges it to (`bio->bi_blkg->blkcg`, buffered writeback included), per
//! whole disk and operation, with its latency in a log2 bucket. Timing the bio, not the request,
//! keeps what a stacked device adds (a device-mapper target's delay) in that device's figures,
//! and counts what io.stat counts. (The kernel's own stamp, `bio->bi_issue`, cannot stand in:
//! since 6.12 it is written only where blk-iolatency is enabled.)
//!
//! Completion is seen in one of two places: a request-based device (SCSI, NVMe, virtio, loop)
//! completes its bios through its requests, traced by `block_rq_complete` (the block layer clears
//! the bios' own completion trace there); a bio-based one (device-mapper, md) completes each bio
//! through `bio_endio`, traced by `block_bio_complete`.
//!
//! A request-based device's bios are also split into queue time (submission to the request's
//! issue to the driver, `block_rq_issue`: waiting for a tag, in the I/O scheduler, behind a
//! plug) and service time (issue to completion: the device). A bio-based device has no requests:
//! its whole latency is service time.
use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::{btf_tracepoint, map},
    maps::{HashMap, PerCpuHashMap},
    programs::BtfTracePointContext,
};
use nodetel_common::{
    BLKIO_BIOS_PER_REQUEST, BLKIO_BUCKETS, BLKIO_DISCARD, BLKIO_FLUSH, BLKIO_HIST_ENTRIES,
    BLKIO_INFLIGHT_ENTRIES, BLKIO_READ, BLKIO_WRITE, BlkioBucket, BlkioInFlight, BlkioKey,
    BlkioOffsets, STAT_BLKIO_BEYOND_REQUEST, STAT_BLKIO_INFLIGHT_FULL, STAT_BLKIO_ISSUE_UNSEEN,
    STAT_BLKIO_MAP_FULL, STAT_BLKIO_UNREADABLE,
};

use crate::{
    maps::{atomic_add, stat_add, upsert},
    task::{self, read_at},
};

/// A plain hash, not an LRU: a full map refuses (and counts) a new bio rather than silently
/// evicting one in flight; userspace prunes entries whose completion never came.
#[map(name = "BLKIO_INFLIGHT")]
pub static BLKIO_INFLIGHT: HashMap<u64, BlkioInFlight> =
    HashMap::with_max_entries(BLKIO_INFLIGHT_ENTRIES, 0);

#[map(name = "BLKIO_HIST")]
pub static BLKIO_HIST: PerCpuHashMap<BlkioKey, BlkioBucket> =
    PerCpuHashMap::with_max_entries(BLKIO_HIST_ENTRIES, 0);

/// `tp_btf/block_bio_queue(struct bio *bio)`: a bio enters the block layer.
#[btf_tracepoint(function = "block_bio_queue")]
pub fn block_bio_queue(ctx: BtfTracePointContext) -> i32 {
    on_queue(ctx.arg(0));
    0
}

/// `tp_btf/block_rq_issue(struct request *rq)`: the driver of a request-based device is handed a
/// request (again, after a requeue: the newest issue counts).
#[btf_tracepoint(function = "block_rq_issue")]
pub fn block_rq_issue(ctx: BtfTracePointContext) -> i32 {
    on_issue(ctx.arg(0));
    0
}

/// `tp_btf/block_rq_complete(struct request *rq, blk_status_t error, unsigned int nr_bytes)`: a
/// request-based device completed `nr_bytes` of a request.
#[btf_tracepoint(function = "block_rq_complete")]
pub fn block_rq_complete(ctx: BtfTracePointContext) -> i32 {
    let nr_bytes: u32 = ctx.arg(2);
    on_request_complete(ctx.arg(0), nr_bytes);
    0
}

/// `tp_btf/block_bio_complete(struct request_queue *q, struct bio *bio)`: a bio-based device
/// (device-mapper, md) completed a bio.
#[btf_tracepoint(function = "block_bio_complete")]
pub fn block_bio_complete(ctx: BtfTracePointContext) -> i32 {
    on_bio_complete(ctx.arg(1));
    0
}

/// Filled by the agent before load; `valid == 0` means "not filled" (the programs do nothing).
#[unsafe(no_mangle)]
static BLKIO_OFFSETS: BlkioOffsets = BlkioOffsets {
    bio_opf: 0,
    bio_size: 0,
    bio_bdev: 0,
    bdev_disk: 0,
    disk_major: 0,
    disk_first_minor: 0,
    bio_blkg: 0,
    blkg_blkcg: 0,
    blkcg_cgroup: 0,
    rq_bio: 0,
    bio_next: 0,
    valid: 0,
};

/// `REQ_OP_*` values (`include/linux/blk_types.h`, stable since 4.10).
const REQ_OP_MASK: u32 = 0xff;
const REQ_OP_FLUSH: u32 = 2;
const REQ_OP_DISCARD: u32 = 3;

#[inline(always)]
fn offsets() -> BlkioOffsets {
    // SAFETY: a volatile read of a plain static the loader rewrites before the program runs.
    unsafe { core::ptr::read_volatile(&BLKIO_OFFSETS) }
}

/// Adds one completed bio to the map. Not inlined: a copy per loop iteration was too large to
/// verify.
#[inline(never)]
fn count_bio(key: &BlkioKey, bytes: u64, latency_ns: u64, queue_ns: u64) {
    let init = BlkioBucket {
        count: 1,
        bytes,
        latency_ns,
        queue_ns,
    };
    let counted = upsert(&BLKIO_HIST, key, &init, |v| {
        // SAFETY: `v` points into this CPU's map value (see atomic_add).
        unsafe {
            atomic_add(&raw mut (*v).count, 1);
            atomic_add(&raw mut (*v).bytes, bytes);
            atomic_add(&raw mut (*v).latency_ns, latency_ns);
            atomic_add(&raw mut (*v).queue_ns, queue_ns);
        }
    });
    if !counted {
        stat_add(STAT_BLKIO_MAP_FULL, 1);
    }
}

/// What the bios of one request share: cgroup, disk and operation code (the block layer merges no
/// bios across cgroups or operations).
#[derive(Clone, Copy)]
struct Owner {
    cgroup_id: u64,
    dev: u32,
    opf: u32,
}

/// A bio enters the block layer: remember when. A bio address reused before its completion was
/// seen replaces the stale entry.
#[inline(always)]
pub fn on_queue(bio: *const u8) {
    let now = unsafe { bpf_ktime_get_ns() };
    let entry = BlkioInFlight {
        submitted_ns: now,
        issued_ns: 0,
    };
    if BLKIO_INFLIGHT.insert(&(bio as u64), &entry, 0).is_err() {
        stat_add(STAT_BLKIO_INFLIGHT_FULL, 1);
    }
}

/// A request is issued: stamp its bios' entries. Written into the entries the bios already
/// have rather than kept per request: a second map's insert and delete cost 250 ns more per
/// request (cargo xtask bench, fio 4 KiB reads: 1.22 µs per bio in all, against 0.80-0.97).
#[inline(always)]
pub fn on_issue(rq: *const u8) {
    let off = offsets();
    if off.valid == 0 {
        return;
    }
    // SAFETY: see task::read_at; a null pointer ends the walk.
    let Ok(mut bio) = (unsafe { read_at::<*const u8>(rq, off.rq_bio) }) else {
        return;
    };
    let now = unsafe { bpf_ktime_get_ns() };
    for _ in 0..BLKIO_BIOS_PER_REQUEST {
        if bio.is_null() {
            break;
        }
        if let Some(entry) = BLKIO_INFLIGHT.get_ptr_mut(&(bio as u64)) {
            // SAFETY: `entry` points into the map's value; a plain store of one field.
            unsafe { (*entry).issued_ns = now };
        }
        // SAFETY: as above; `bio` is not null.
        bio = unsafe {
            core::ptr::read_volatile(bio.wrapping_add(off.bio_next as usize) as *const *const u8)
        };
    }
}

/// The bio's in-flight entry, forgetting it; `None` for a bio submitted before the programs
/// were attached (or not stamped: the map was full).
#[inline(always)]
fn take(bio: *const u8) -> Option<BlkioInFlight> {
    let key = bio as u64;
    // SAFETY: the value is copied out at once; only this bio's completion deletes the key.
    let entry = unsafe { BLKIO_INFLIGHT.get(&key) }.copied()?;
    let _ = BLKIO_INFLIGHT.remove(&key);
    Some(entry)
}

/// A request completes `nr_bytes`: its bios from the first, as far as those bytes go (a partial
/// completion leaves the bio it ends in for a later call). Kept to few branches: the verifier
/// walks every iteration of the loop.
#[inline(always)]
pub fn on_request_complete(rq: *const u8, nr_bytes: u32) {
    let off = offsets();
    if off.valid == 0 {
        return;
    }
    // SAFETY: see task::read_at; a null or unreadable pointer ends the walk.
    let Ok(mut bio) = (unsafe { read_at::<*const u8>(rq, off.rq_bio) }) else {
        return;
    };
    // A request without bios (a flush sequence's own, a passthrough command) is no cgroup's.
    if bio.is_null() {
        return;
    }
    let Ok(owner) = owner(bio, &off) else {
        stat_add(STAT_BLKIO_UNREADABLE, 1);
        return;
    };
    let now = unsafe { bpf_ktime_get_ns() };
    // The operation is the request's; a write bio with no data is a flush.
    let (op, write) = operation(owner.opf);
    let mut left = u64::from(nr_bytes);
    let mut key = BlkioKey {
        cgroup_id: owner.cgroup_id,
        dev: owner.dev,
        op,
        bucket: u16::MAX,
    };
    for _ in 0..BLKIO_BIOS_PER_REQUEST {
        if bio.is_null() {
            break;
        }
        // SAFETY: as above; `bio` is not null.
        let (size, next) = unsafe {
            (
                core::ptr::read_volatile(bio.wrapping_add(off.bio_size as usize) as *const u32),
                core::ptr::read_volatile(
                    bio.wrapping_add(off.bio_next as usize) as *const *const u8
                ),
            )
        };
        if u64::from(size) > left {
            break;
        }
        left -= u64::from(size);
        let Some(entry) = take(bio) else {
            bio = next;
            continue;
        };
        let latency = now.saturating_sub(entry.submitted_ns);
        // No issue seen: all service, and counted.
        let queue = if entry.issued_ns == 0 {
            stat_add(STAT_BLKIO_ISSUE_UNSEEN, 1);
            0
        } else {
            entry
                .issued_ns
                .saturating_sub(entry.submitted_ns)
                .min(latency)
        };
        key.op = if write && size == 0 { BLKIO_FLUSH } else { op };
        key.bucket = bucket(latency);
        // One update per bio: batching bios of one bucket made the verifier's walk of the loop
        // branch on every comparison, past its limit.
        count_bio(&key, u64::from(size), latency, queue);
        bio = next;
    }
    // More bios than the walk follows: the rest are not counted (and counted here).
    if !bio.is_null() && left > 0 {
        stat_add(STAT_BLKIO_BEYOND_REQUEST, 1);
    }
}

/// The operation of a request or bio by its flags, and whether it writes (a write without data
/// is a flush).
#[inline(always)]
fn operation(opf: u32) -> (u16, bool) {
    match opf & REQ_OP_MASK {
        REQ_OP_DISCARD => (BLKIO_DISCARD, false),
        REQ_OP_FLUSH => (BLKIO_FLUSH, false),
        o if o & 1 == 1 => (BLKIO_WRITE, true),
        _ => (BLKIO_READ, false),
    }
}

/// A bio-based device completed a bio.
#[inline(always)]
pub fn on_bio_complete(bio: *const u8) {
    let off = offsets();
    if off.valid == 0 {
        return;
    }
    let Some(entry) = take(bio) else {
        return;
    };
    let Ok(owner) = owner(bio, &off) else {
        stat_add(STAT_BLKIO_UNREADABLE, 1);
        return;
    };
    // SAFETY: see task::read_at.
    let Ok(size) = (unsafe { read_at::<u32>(bio, off.bio_size) }) else {
        stat_add(STAT_BLKIO_UNREADABLE, 1);
        return;
    };
    let latency = unsafe { bpf_ktime_get_ns() }.saturating_sub(entry.submitted_ns);
    let (op, write) = operation(owner.opf);
    let key = BlkioKey {
        cgroup_id: owner.cgroup_id,
        dev: owner.dev,
        op: if write && size == 0 { BLKIO_FLUSH } else { op },
        bucket: bucket(latency),
    };
    count_bio(&key, u64::from(size), latency, 0);
}

/// The bio's cgroup, whole disk and operation flags.
#[inline(always)]
fn owner(bio: *const u8, off: &BlkioOffsets) -> Result<Owner, i32> {
    let kernel = task::offsets();
    // SAFETY: see task::read_at; every pointer is checked before it is followed.
    unsafe {
        let blkg: *const u8 = read_at(bio, off.bio_blkg)?;
        let blkcg: *const u8 = read_at(blkg, off.blkg_blkcg)?;
        let cgroup: *const u8 = read_at(blkcg, off.blkcg_cgroup)?;
        let kn: *const u8 = read_at(cgroup, kernel.cgroup_kn)?;
        let cgroup_id: u64 = read_at(kn, kernel.kernfs_node_id)?;
        let bdev: *const u8 = read_at(bio, off.bio_bdev)?;
        let disk: *const u8 = read_at(bdev, off.bdev_disk)?;
        let major: i32 = read_at(disk, off.disk_major)?;
        let minor: i32 = read_at(disk, off.disk_first_minor)?;
        Ok(Owner {
            cgroup_id,
            dev: ((major as u32) << 20) | (minor as u32 & 0xfffff),
            opf: read_at(bio, off.bio_opf)?,
        })
    }
}

/// As the run-queue histogram: bucket b holds [2^(b-1), 2^b) µs, bucket 0 under 1 µs.
#[inline(always)]
fn bucket(ns: u64) -> u16 {
    let bits = 64 - (ns / 1000).leading_zeros();
    if bits >= BLKIO_BUCKETS - 1 {
        (BLKIO_BUCKETS - 1) as u16
    } else {
        bits as u16
    }
}
