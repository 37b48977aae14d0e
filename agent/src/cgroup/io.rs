//! Block I/O per device: v2 `io.stat`, or the v1 blkio hierarchy.
//!
//! On v1, the kernel keeps these figures per scheduler or layer; like runc (cAdvisor's source),
//! BFQ's `blkio.bfq.*_recursive` is used when it has figures and `blkio.throttle.*_recursive`
//! otherwise. Since 5.x the throttle layer counts a device's I/O only once some cgroup has a
//! throttle rule on it, so a v1 node with neither BFQ nor a rule has no per-cgroup I/O figures.
use std::{collections::HashMap, path::Path};

use super::{
    parse::ParseError,
    read::{Files, ReadError},
};
pub use crate::snapshot::cgroup::DeviceIo;

/// `None`: this cgroup has no I/O accounting here (file absent); `Some(empty)`: no I/O yet.
pub fn read_v2(files: &mut Files, dir: &Path) -> Result<Option<Vec<DeviceIo>>, ReadError> {
    files.parsed(dir, "io.stat", parse_v2)
}

/// `8:0 rbytes=1459200 wbytes=314773504 rios=192 wios=353 dbytes=0 dios=0`
pub fn parse_v2(text: &str) -> Result<Vec<DeviceIo>, ParseError> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut fields = line.split_ascii_whitespace();
        let (major, minor) = parse_dev(fields.next().unwrap_or_default(), line)?;
        let mut d = DeviceIo {
            major,
            minor,
            ..DeviceIo::default()
        };
        for f in fields {
            let (k, v) = f
                .split_once('=')
                .ok_or_else(|| ParseError::BadLine(line.to_string()))?;
            let n = || {
                v.parse::<u64>().map_err(|_| ParseError::BadValue {
                    key: k.to_string(),
                    value: v.to_string(),
                })
            };
            match k {
                "rbytes" => d.read_bytes = n()?,
                "wbytes" => d.write_bytes = n()?,
                "rios" => d.reads = n()?,
                "wios" => d.writes = n()?,
                // Newer kernels add cost.* and other keys: not ours to interpret.
                _ => {}
            }
        }
        d.bytes_by_op = vec![("Read", d.read_bytes), ("Write", d.write_bytes)];
        out.push(d);
    }
    Ok(out)
}

/// Reads the v1 blkio directory: BFQ's figures when it has any, else the throttle layer's.
pub fn read_v1(files: &mut Files, dir: &Path) -> Result<Option<Vec<DeviceIo>>, ReadError> {
    for prefix in ["blkio.bfq", "blkio.throttle"] {
        let bytes_file = format!("{prefix}.io_service_bytes_recursive");
        let ios_file = format!("{prefix}.io_serviced_recursive");
        let (Some(bytes), Some(ios)) = (
            files.parsed(dir, &bytes_file, parse_v1_rwstat)?,
            files.parsed(dir, &ios_file, parse_v1_rwstat)?,
        ) else {
            continue;
        };
        if bytes.is_empty() && prefix != "blkio.throttle" {
            continue;
        }
        return Ok(Some(merge_v1(bytes, &ios)));
    }
    Ok(None)
}

type Rwstat = Vec<((u32, u32), Vec<(&'static str, u64)>)>;

/// `8:0 Read 20480` lines per device and operation, then a grand `Total N` line.
pub fn parse_v1_rwstat(text: &str) -> Result<Rwstat, ParseError> {
    let mut out: Rwstat = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut fields = line.split_ascii_whitespace();
        let (Some(first), Some(second), third) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(ParseError::BadLine(line.to_string()));
        };
        let Some(value) = third else {
            if first == "Total" {
                continue; // the grand total over devices
            }
            return Err(ParseError::BadLine(line.to_string()));
        };
        let dev = parse_dev(first, line)?;
        let Some(op) = ["Read", "Write", "Sync", "Async", "Discard", "Total"]
            .into_iter()
            .find(|o| *o == second)
        else {
            continue; // an operation this version does not know
        };
        let v = value.parse::<u64>().map_err(|_| ParseError::BadValue {
            key: format!("{first} {second}"),
            value: value.to_string(),
        })?;
        match out.iter_mut().find(|(d, _)| *d == dev) {
            Some((_, ops)) => ops.push((op, v)),
            None => out.push((dev, vec![(op, v)])),
        }
    }
    Ok(out)
}

fn merge_v1(bytes: Rwstat, ios: &Rwstat) -> Vec<DeviceIo> {
    let ios: HashMap<(u32, u32), &Vec<(&'static str, u64)>> =
        ios.iter().map(|(d, ops)| (*d, ops)).collect();
    let get = |ops: &[(&'static str, u64)], op: &str| {
        ops.iter().find(|(o, _)| *o == op).map_or(0, |(_, v)| *v)
    };
    bytes
        .into_iter()
        .map(|((major, minor), ops)| {
            let dev_ios = ios.get(&(major, minor)).map_or(&[][..], |v| v.as_slice());
            DeviceIo {
                major,
                minor,
                device: String::new(),
                read_bytes: get(&ops, "Read"),
                write_bytes: get(&ops, "Write"),
                reads: get(dev_ios, "Read"),
                writes: get(dev_ios, "Write"),
                bytes_by_op: ops,
            }
        })
        .collect()
}

fn parse_dev(field: &str, line: &str) -> Result<(u32, u32), ParseError> {
    let bad = || ParseError::BadLine(line.to_string());
    let (ma, mi) = field.split_once(':').ok_or_else(bad)?;
    Ok((
        ma.parse().map_err(|_| bad())?,
        mi.parse().map_err(|_| bad())?,
    ))
}

/// Devices remembered at most; past that the cache starts over (names are read again as asked).
/// A node has tens of block devices; a host making loop devices in a loop cannot grow it.
const DEVICE_NAMES_MAX: usize = 4096;

/// `major:minor` -> `/dev/<name>`, from `<sys>/dev/block/M:m/uevent`, remembered: devices come
/// and go rarely, cgroups are read every second.
#[derive(Debug)]
pub struct DeviceNames {
    sys_root: std::path::PathBuf,
    known: HashMap<(u32, u32), String>,
}

impl DeviceNames {
    pub fn new(sys_root: std::path::PathBuf) -> Self {
        DeviceNames {
            sys_root,
            known: HashMap::new(),
        }
    }

    /// The device's name; `/dev/block/M:m` (udev's stable link) when sysfs does not say.
    pub fn name(&mut self, major: u32, minor: u32) -> &str {
        if self.known.len() >= DEVICE_NAMES_MAX && !self.known.contains_key(&(major, minor)) {
            self.known.clear();
        }
        let sys_root = &self.sys_root;
        self.known.entry((major, minor)).or_insert_with(|| {
            let uevent = sys_root.join(format!("dev/block/{major}:{minor}/uevent"));
            std::fs::read_to_string(uevent)
                .ok()
                .and_then(|t| {
                    t.lines()
                        .find_map(|l| l.strip_prefix("DEVNAME="))
                        .filter(|n| !n.is_empty() && !n.contains(".."))
                        .map(|n| format!("/dev/{n}"))
                })
                .unwrap_or_else(|| format!("/dev/block/{major}:{minor}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::fixture;

    #[test]
    fn device_names_are_bounded() {
        let mut names = DeviceNames::new(std::path::PathBuf::from("/nonexistent"));
        for minor in 0..DEVICE_NAMES_MAX as u32 + 10 {
            assert_eq!(names.name(7, minor), format!("/dev/block/7:{minor}"));
            assert!(names.known.len() <= DEVICE_NAMES_MAX);
        }
        // Started over once: the last ten since.
        assert_eq!(names.known.len(), 10);
    }

    #[test]
    fn v2_io_stat() {
        let d = parse_v2(
            "254:0 rbytes=1459200 wbytes=314773504 rios=192 wios=353 dbytes=0 dios=0\n\
             8:16 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0 cost.usage=5\n",
        )
        .expect("parse");
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].major, d[0].minor), (254, 0));
        assert_eq!(d[0].write_bytes, 314_773_504);
        assert_eq!(d[0].writes, 353);
        assert_eq!(d[1].bytes_by_op, vec![("Read", 1), ("Write", 2)]);
        assert!(parse_v2("254 rbytes=1\n").is_err());
        assert!(parse_v2("254:0 rbytes=x\n").is_err());
        assert!(parse_v2("254:0 rbytes\n").is_err());
    }

    #[test]
    fn v1_prefers_bfq_with_figures_then_throttle() {
        let dir = fixture("hybrid").join("blkio/docker/abc");
        let d = read_v1(&mut Files::new(8), &dir)
            .expect("read")
            .expect("some");
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!((d[0].major, d[0].minor), (254, 0));
        assert_eq!(d[0].write_bytes, 8_388_608);
        assert_eq!(d[0].writes, 16);
        assert_eq!(d[0].reads, 3);
        assert_eq!(d[0].bytes_by_op.len(), 6);
        // No blkio files at all: no figures, not zeroes.
        assert_eq!(
            read_v1(&mut Files::new(8), &fixture("hybrid").join("cpu")).expect("read"),
            None
        );
    }

    #[test]
    fn v1_rwstat_rejects_garbage() {
        assert!(parse_v1_rwstat("254:0 Read x\n").is_err());
        assert!(parse_v1_rwstat("nonsense\n").is_err());
        assert_eq!(parse_v1_rwstat("Total 0\n").expect("empty"), Vec::new());
    }

    #[test]
    fn device_names_from_sysfs_with_a_fallback() {
        let mut names = DeviceNames::new(crate::testutil::testdata("sys"));
        assert_eq!(names.name(254, 0), "/dev/vda");
        assert_eq!(names.name(8, 0), "/dev/block/8:0");
    }
}
