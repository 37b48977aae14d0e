//! The host's mount table (`/proc/1/mountinfo`): which device a filesystem is on, and where
//! containerd put each container's root filesystem.
//!
//! Only the host's own table is read (PID 1's mount namespace, writable by the host's root
//! alone): a tenant can mount an overlay in a namespace of its own, naming any upper
//! directory it likes, and no figure may follow such a claim.
use std::{collections::HashMap, path::PathBuf};

/// One line of `mountinfo`, the fields nodetel reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub major: u32,
    pub minor: u32,
    pub mount_point: String,
    pub fstype: String,
    pub source: String,
    pub super_options: String,
}

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`; lines
/// that do not read so are skipped.
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Mount> {
    let (left, right) = line.split_once(" - ")?;
    let mut left = left.split(' ');
    let dev = left.nth(2)?;
    let mount_point = left.nth(1)?;
    let (major, minor) = dev.split_once(':')?;
    let mut right = right.split(' ');
    Some(Mount {
        major: major.parse().ok()?,
        minor: minor.parse().ok()?,
        mount_point: unescape(mount_point),
        fstype: right.next()?.to_string(),
        source: unescape(right.next()?),
        super_options: right.next().unwrap_or("").to_string(),
    })
}

/// The kernel writes space, tab, newline, backslash (and in option values, comma) as `\ooo`.
fn unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let v = b[i + 1..i + 4]
                .iter()
                .fold(0u32, |a, d| a * 8 + u32::from(d - b'0'));
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An overlay's upper directory, from its super options.
pub fn upperdir(super_options: &str) -> Option<PathBuf> {
    super_options
        .split(',')
        .find_map(|o| o.strip_prefix("upperdir="))
        .filter(|p| p.starts_with('/'))
        .map(|p| PathBuf::from(unescape(p)))
}

/// The container a root filesystem mount belongs to, by where its runtime mounts it:
/// containerd's `<state>/io.containerd.runtime.v2.task/<namespace>/<id>/rootfs` (also under
/// k3s' and Docker's own containerd), and Docker's containerd image store
/// (`<docker root>/rootfs/overlayfs/<id>`).
pub fn container_of_mount(mount_point: &str) -> Option<&str> {
    let parts: Vec<&str> = mount_point.rsplitn(5, '/').collect();
    let id = match parts.as_slice() {
        ["rootfs", id, _ns, "io.containerd.runtime.v2.task", ..] => *id,
        [id, "overlayfs", "rootfs", ..] => *id,
        _ => return None,
    };
    valid_id(id).then_some(id)
}

/// A runtime's container id as it may appear in a path: no separators, no dots-only names.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Root filesystem mounts of the host's table, by container id: where their upper directory is.
pub fn rootfs_layers(mounts: &[Mount]) -> HashMap<String, PathBuf> {
    mounts
        .iter()
        .filter(|m| m.fstype == "overlay")
        .filter_map(|m| {
            let id = container_of_mount(&m.mount_point)?;
            Some((id.to_string(), upperdir(&m.super_options)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
29 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
417 29 0:52 / /run/containerd/io.containerd.runtime.v2.task/k8s.io/0123abcd/rootfs rw,relatime - overlay overlay rw,lowerdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/3/fs,upperdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/9/fs,workdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/9/work
418 29 0:53 / /var/lib/docker/overlay2/5e1f/merged rw,relatime - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/ABC,upperdir=/var/lib/docker/overlay2/5e1f/diff,workdir=/var/lib/docker/overlay2/5e1f/work
419 29 0:54 / /var/lib/docker/rootfs/overlayfs/feed01 rw - overlay overlay rw,upperdir=/var/lib/d\\054x/up,workdir=/w
420 29 0:55 / /tmp/evil/io.containerd.runtime.v2.task/ns/../rootfs rw - overlay overlay rw,upperdir=/
421 29 0:56 / /mnt/with\\040space rw - tmpfs none rw
";

    #[test]
    fn reads_devices_and_containerd_rootfs_layers() {
        let m = parse(TABLE);
        assert_eq!(m.len(), 6);
        assert_eq!(
            (m[0].major, m[0].minor, m[0].source.as_str()),
            (254, 0, "/dev/vda")
        );
        assert_eq!(m[5].mount_point, "/mnt/with space");
        let layers = rootfs_layers(&m);
        assert_eq!(
            layers.get("0123abcd").map(PathBuf::as_path),
            Some(std::path::Path::new(
                "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/9/fs"
            ))
        );
        // Docker's own overlay2 mounts name a layer, not a container: found through its layerdb.
        assert!(
            !layers
                .values()
                .any(|p| p.starts_with("/var/lib/docker/overlay2"))
        );
        assert_eq!(
            layers.get("feed01").map(PathBuf::as_path),
            Some(std::path::Path::new("/var/lib/d,x/up"))
        );
        assert_eq!(layers.len(), 2, "{layers:?}");
    }

    #[test]
    fn unescapes_only_octal_triples() {
        assert_eq!(unescape("a\\040b\\134c"), "a b\\c");
        assert_eq!(unescape("a\\9"), "a\\9");
        assert_eq!(unescape("\\"), "\\");
        assert_eq!(unescape("x\\777"), "x\\777");
    }

    /// Arbitrary text never panics and never yields an id with a separator.
    #[test]
    fn arbitrary_lines_are_skipped_or_read() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let alphabet = b" -/\\0123:,=abcoverlayupperdirrootfsio.containerd.runtime.v2.task\n";
        for _ in 0..2000 {
            let mut s = String::new();
            for _ in 0..(seed % 200) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                s.push(alphabet[(seed % alphabet.len() as u64) as usize] as char);
            }
            let m = parse(&s);
            for id in rootfs_layers(&m).keys() {
                assert!(valid_id(id), "{id:?}");
            }
        }
    }
}
