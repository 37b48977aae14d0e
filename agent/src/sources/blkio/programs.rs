//! The kind's kernel programs (agent-ebpf/src/blkio.rs) and the struct offsets they follow from
//! a `struct bio`, read from the running kernel's BTF.
use nodetel_common::{
    BlkioOffsets, GLOBAL_BLKIO_OFFSETS, PROG_BLOCK_BIO_COMPLETE, PROG_BLOCK_BIO_QUEUE,
    PROG_BLOCK_RQ_COMPLETE, PROG_BLOCK_RQ_ISSUE,
};

use crate::{
    btf::{Btf, BtfError},
    ebpf::{Attach, KindPrograms},
};

pub fn programs() -> KindPrograms {
    KindPrograms {
        programs: vec![
            (PROG_BLOCK_BIO_QUEUE, Attach::Btf("block_bio_queue")),
            (PROG_BLOCK_RQ_ISSUE, Attach::Btf("block_rq_issue")),
            (PROG_BLOCK_RQ_COMPLETE, Attach::Btf("block_rq_complete")),
            (PROG_BLOCK_BIO_COMPLETE, Attach::Btf("block_bio_complete")),
        ],
        global: Some((GLOBAL_BLKIO_OFFSETS, |btf| {
            Ok(offsets(btf)?.to_ne_bytes().to_vec())
        })),
    }
}

/// An error on a kernel without the block cgroup controller (`CONFIG_BLK_CGROUP`: no
/// `bi_blkg`).
fn offsets(btf: &Btf) -> Result<BlkioOffsets, BtfError> {
    Ok(BlkioOffsets {
        bio_opf: btf.member_offset("bio", "bi_opf")?,
        bio_size: btf.member_offset("bio", "bi_iter")?
            + btf.member_offset("bvec_iter", "bi_size")?,
        bio_bdev: btf.member_offset("bio", "bi_bdev")?,
        bdev_disk: btf.member_offset("block_device", "bd_disk")?,
        disk_major: btf.member_offset("gendisk", "major")?,
        disk_first_minor: btf.member_offset("gendisk", "first_minor")?,
        bio_blkg: btf.member_offset("bio", "bi_blkg")?,
        blkg_blkcg: btf.member_offset("blkcg_gq", "blkcg")?,
        blkcg_cgroup: btf.member_offset("blkcg", "css")?
            + btf.member_offset("cgroup_subsys_state", "cgroup")?,
        rq_bio: btf.member_offset("request", "bio")?,
        bio_next: btf.member_offset("bio", "bi_next")?,
        valid: 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes the loader writes are the struct's own memory, field for field.
    #[test]
    fn offsets_bytes_are_the_struct_layout() {
        let o = BlkioOffsets {
            bio_opf: 1,
            bio_size: 2,
            bio_bdev: 3,
            bdev_disk: 4,
            disk_major: 5,
            disk_first_minor: 6,
            bio_blkg: 7,
            blkg_blkcg: 8,
            blkcg_cgroup: 9,
            rq_bio: 10,
            bio_next: 11,
            valid: 12,
        };
        // SAFETY: reading a plain-integer repr(C) struct's bytes.
        let raw = unsafe {
            std::slice::from_raw_parts(
                (&o as *const BlkioOffsets).cast::<u8>(),
                std::mem::size_of::<BlkioOffsets>(),
            )
        };
        assert_eq!(o.to_ne_bytes().as_slice(), raw);
    }

    /// The running kernel's BTF has every field (this host and the VM's 6.1 both do).
    #[test]
    fn this_kernels_btf_has_the_fields() {
        let Some(btf) = Btf::running_kernel() else {
            return;
        };
        let o = offsets(&btf).expect("offsets");
        assert_eq!(o.valid, 1);
        assert!(o.bio_size > o.bio_opf && o.bio_blkg > 0);
    }
}
