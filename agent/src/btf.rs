//! Just enough of a BTF reader to find struct member offsets in `/sys/kernel/btf/vmlinux`.
//!
//! Rust eBPF objects carry no CO-RE relocations, so a program that follows kernel pointers needs
//! the running kernel's field offsets handed in at load time. Offsets compiled from one kernel's
//! headers silently read garbage on another; these come from the kernel the agent runs on.
//! (A crate exists for this, btf-rs, but it is LGPL and we link statically; the subset we need is
//! the type table walk below.)
use std::path::Path;

use nodetel_common::KernelOffsets;

const BTF_MAGIC: u16 = 0xeb9f;
const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    /// The BTF file could not be read.
    #[error("failed to read BTF from `{path}`: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The bytes are not BTF or are cut short.
    #[error("malformed BTF: {0}")]
    Malformed(&'static str),
    /// A struct the programs need is not described.
    #[error("BTF has no struct `{0}`")]
    NoStruct(String),
    /// A member the programs need is missing from its struct.
    #[error("BTF struct `{strukt}` has no member `{member}`")]
    NoMember { strukt: String, member: String },
    /// A member is a bitfield or not byte-aligned; the programs only read whole fields.
    #[error("BTF member `{strukt}.{member}` is not byte-aligned")]
    Unaligned { strukt: String, member: String },
}

/// A parsed type table: where each type's record starts, plus the string section.
pub struct Btf {
    data: Vec<u8>,
    strings: std::ops::Range<usize>,
    /// Byte offset of each type record; index 0 is type id 1.
    offsets: Vec<usize>,
}

struct TypeHeader {
    name_off: u32,
    kind: u32,
    vlen: u32,
    kind_flag: bool,
    size_or_type: u32,
    /// Offset of the kind-specific data that follows the 12-byte header.
    extra: usize,
}

struct Member {
    name_off: u32,
    type_id: u32,
    bit_offset: u32,
    bitfield: bool,
}

impl Btf {
    /// The running kernel's BTF for a test of the fields a kind needs: `None`, said, on a
    /// machine without it (a test that then checks nothing says so rather than pass quietly).
    #[cfg(test)]
    pub fn running_kernel() -> Option<Btf> {
        let path = Path::new("/sys/kernel/btf/vmlinux");
        if !path.exists() {
            eprintln!("SKIP: no {} on this machine", path.display());
            return None;
        }
        Some(Btf::from_file(path).expect("the running kernel's BTF parses"))
    }

    /// Reads the running kernel's BTF.
    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let data = std::fs::read(path).map_err(|source| BtfError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(data)
    }

    pub fn parse(data: Vec<u8>) -> Result<Self, BtfError> {
        let u16_at = |o: usize| data.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
        if u16_at(0) != Some(BTF_MAGIC) {
            return Err(BtfError::Malformed(
                "bad magic (big-endian BTF is not supported)",
            ));
        }
        let hdr_len = read_u32(&data, 4).ok_or(BtfError::Malformed("short header"))? as usize;
        let field = |o| read_u32(&data, o).ok_or(BtfError::Malformed("short header"));
        let (type_off, type_len) = (field(8)? as usize, field(12)? as usize);
        let (str_off, str_len) = (field(16)? as usize, field(20)? as usize);
        let types_start = hdr_len + type_off;
        let types_end = types_start + type_len;
        let strings = (hdr_len + str_off)..(hdr_len + str_off + str_len);
        if types_end > data.len() || strings.end > data.len() {
            return Err(BtfError::Malformed("sections extend past the end"));
        }
        let mut btf = Btf {
            data,
            strings,
            offsets: Vec::new(),
        };
        let mut pos = types_start;
        while pos < types_end {
            let header = btf.header_at(pos)?;
            btf.offsets.push(pos);
            pos = header.extra + extra_len(&header)?;
        }
        if pos != types_end {
            return Err(BtfError::Malformed("type section does not end on a record"));
        }
        Ok(btf)
    }

    fn header_at(&self, pos: usize) -> Result<TypeHeader, BtfError> {
        let word = |o| read_u32(&self.data, o).ok_or(BtfError::Malformed("truncated type"));
        let info = word(pos + 4)?;
        Ok(TypeHeader {
            name_off: word(pos)?,
            kind: (info >> 24) & 0x1f,
            vlen: info & 0xffff,
            kind_flag: info >> 31 == 1,
            size_or_type: word(pos + 8)?,
            extra: pos + 12,
        })
    }

    fn name(&self, off: u32) -> &str {
        let start = self.strings.start + off as usize;
        let Some(rest) = self.data.get(start..self.strings.end) else {
            return "";
        };
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    fn type_by_id(&self, id: u32) -> Option<TypeHeader> {
        let pos = *self.offsets.get((id as usize).checked_sub(1)?)?;
        self.header_at(pos).ok()
    }

    fn members(&self, t: &TypeHeader) -> impl Iterator<Item = Member> + '_ {
        let (base, flag) = (t.extra, t.kind_flag);
        (0..t.vlen as usize).filter_map(move |i| {
            let o = base + i * 12;
            let raw = read_u32(&self.data, o + 8)?;
            Some(Member {
                name_off: read_u32(&self.data, o)?,
                type_id: read_u32(&self.data, o + 4)?,
                bit_offset: if flag { raw & 0x00ff_ffff } else { raw },
                bitfield: flag && (raw >> 24) != 0,
            })
        })
    }

    /// Follows typedefs and qualifiers to the type they name.
    fn resolve(&self, mut id: u32) -> Option<TypeHeader> {
        for _ in 0..32 {
            let t = self.type_by_id(id)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_or_type
                }
                _ => return Some(t),
            }
        }
        None
    }

    /// Byte offset of `member` in struct `strukt`, looking through anonymous structs and unions
    /// (the kernel nests many fields in them, and randomised layouts move them around).
    pub fn member_offset(&self, strukt: &str, member: &str) -> Result<u32, BtfError> {
        let t = (1..=self.offsets.len() as u32)
            .filter_map(|id| self.type_by_id(id))
            .find(|t| t.kind == KIND_STRUCT && t.vlen > 0 && self.name(t.name_off) == strukt)
            .ok_or_else(|| BtfError::NoStruct(strukt.to_string()))?;
        let bits = self
            .find_member(&t, member, 0, 0)
            .ok_or_else(|| BtfError::NoMember {
                strukt: strukt.into(),
                member: member.into(),
            })?;
        if bits.1 || bits.0 % 8 != 0 {
            return Err(BtfError::Unaligned {
                strukt: strukt.into(),
                member: member.into(),
            });
        }
        Ok(bits.0 / 8)
    }

    fn find_member(
        &self,
        t: &TypeHeader,
        name: &str,
        base: u32,
        depth: u32,
    ) -> Option<(u32, bool)> {
        if depth > 8 {
            return None;
        }
        for m in self.members(t) {
            // A hostile or corrupt blob can nest offsets past u32 (found by the fuzzer).
            let here = base.checked_add(m.bit_offset)?;
            if m.name_off != 0 && self.name(m.name_off) == name {
                return Some((here, m.bitfield));
            }
            if m.name_off == 0 {
                let inner = self.resolve(m.type_id)?;
                if matches!(inner.kind, KIND_STRUCT | KIND_UNION)
                    && let Some(found) = self.find_member(&inner, name, here, depth + 1)
                {
                    return Some(found);
                }
            }
        }
        None
    }

    fn sched_info_offset(&self, member: &str) -> Result<u32, BtfError> {
        Ok(self.member_offset("task_struct", "sched_info")?
            + self.member_offset("sched_info", member)?)
    }

    /// The offsets the kernel programs need to go from a `task_struct` to its cgroup v2 id.
    pub fn kernel_offsets(&self) -> Result<KernelOffsets, BtfError> {
        Ok(KernelOffsets {
            task_pid: self.member_offset("task_struct", "pid")?,
            task_cgroups: self.member_offset("task_struct", "cgroups")?,
            css_set_dfl_cgrp: self.member_offset("css_set", "dfl_cgrp")?,
            cgroup_kn: self.member_offset("cgroup", "kn")?,
            kernfs_node_id: self.member_offset("kernfs_node", "id")?,
            task_sum_exec: self.member_offset("task_struct", "se")?
                + self.member_offset("sched_entity", "sum_exec_runtime")?,
            task_prev_sum_exec: self.member_offset("task_struct", "se")?
                + self.member_offset("sched_entity", "prev_sum_exec_runtime")?,
            task_tgid: self.member_offset("task_struct", "tgid")?,
            task_comm: self.member_offset("task_struct", "comm")?,
            // Absent without CONFIG_SCHED_INFO (0: run-queue waits are then not measured).
            task_run_delay: self.sched_info_offset("run_delay").unwrap_or(0),
            task_pcount: self.sched_info_offset("pcount").unwrap_or(0),
            sock_net: self.member_offset("sock_common", "skc_net")?,
            net_inum: self.member_offset("net", "ns")? + self.member_offset("ns_common", "inum")?,
            // Not in BTF: the loader fills it from the tracepoint's format file.
            tp_mark_victim_pid: 0,
            valid: 1,
            // Set by the loader from the configuration.
            features: 0,
        })
    }
}

fn read_u32(data: &[u8], o: usize) -> Option<u32> {
    let b = data.get(o..o + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Length of the kind-specific data after a type's 12-byte header (see the kernel's btf.rst).
fn extra_len(t: &TypeHeader) -> Result<usize, BtfError> {
    let n = t.vlen as usize;
    Ok(match t.kind {
        KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
        KIND_ARRAY => 12,
        KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * n,
        KIND_ENUM | KIND_FUNC_PROTO => 8 * n,
        0 => return Err(BtfError::Malformed("type of kind 0")),
        k if k > KIND_ENUM64 => return Err(BtfError::Malformed("unknown type kind")),
        _ => 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a BTF blob by hand: `struct inner { int a; int b; }` and
    /// `struct outer { int x; union { struct inner in; long y; }; int z:3; }`.
    fn sample() -> Vec<u8> {
        let strings = b"\0int\0inner\0a\0b\0outer\0x\0in\0y\0z\0long\0";
        let s = |name: &str| -> u32 {
            let pat = format!("\0{name}\0");
            strings
                .windows(pat.len())
                .position(|w| w == pat.as_bytes())
                .map(|p| p as u32 + 1)
                .unwrap_or(0)
        };
        let mut t: Vec<u32> = Vec::new();
        let info = |kind: u32, vlen: u32, flag: bool| (kind << 24) | vlen | ((flag as u32) << 31);
        // 1: int
        t.extend([s("int"), info(KIND_INT, 0, false), 4, 32]);
        // 2: struct inner
        t.extend([s("inner"), info(KIND_STRUCT, 2, false), 8]);
        t.extend([s("a"), 1, 0, s("b"), 1, 32]);
        // 3: long
        t.extend([s("long"), info(KIND_INT, 0, false), 8, 64]);
        // 4: anonymous union { struct inner in; long y; }
        t.extend([0, info(KIND_UNION, 2, false), 8]);
        t.extend([s("in"), 2, 0, s("y"), 3, 0]);
        // 5: struct outer, kind_flag set: z is a 3-bit bitfield at bit 128
        t.extend([s("outer"), info(KIND_STRUCT, 3, true), 24]);
        t.extend([s("x"), 1, 0, 0, 4, 64, s("z"), 1, (3 << 24) | 128]);
        let types: Vec<u8> = t.iter().flat_map(|w| w.to_le_bytes()).collect();
        let mut out = Vec::new();
        out.extend(BTF_MAGIC.to_le_bytes());
        out.extend([1u8, 0]);
        for w in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            out.extend(w.to_le_bytes());
        }
        out.extend(types);
        out.extend(strings);
        out
    }

    #[test]
    fn finds_direct_and_anonymous_members() {
        let btf = Btf::parse(sample()).expect("parse");
        assert_eq!(btf.member_offset("inner", "b").expect("b"), 4);
        assert_eq!(btf.member_offset("outer", "x").expect("x"), 0);
        // `y` lives in the anonymous union at byte 8.
        assert_eq!(btf.member_offset("outer", "y").expect("y"), 8);
        assert!(matches!(
            btf.member_offset("outer", "z"),
            Err(BtfError::Unaligned { .. })
        ));
        assert!(matches!(
            btf.member_offset("outer", "nope"),
            Err(BtfError::NoMember { .. })
        ));
        assert!(matches!(
            btf.member_offset("missing", "x"),
            Err(BtfError::NoStruct(_))
        ));
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        assert!(Btf::parse(Vec::new()).is_err());
        assert!(Btf::parse(vec![0x9f, 0xeb, 1, 0, 24, 0, 0, 0]).is_err());
        let mut cut = sample();
        cut.truncate(cut.len() - 30);
        assert!(Btf::parse(cut).is_err());
        let mut bad_kind = sample();
        bad_kind[24 + 7] = 0x1f; // kind 31 in the first type's info word
        assert!(Btf::parse(bad_kind).is_err());
    }

    /// The running kernel's own BTF, when there is one: offsets must be found and plausible.
    #[test]
    fn reads_the_running_kernel() {
        let Some(btf) = Btf::running_kernel() else {
            return;
        };
        let off = btf.kernel_offsets().expect("offsets");
        assert!(off.task_cgroups > 0 && off.cgroup_kn > 0, "{off:?}");
        assert_eq!(off.valid, 1);
    }
}
