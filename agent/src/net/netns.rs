//! Network namespaces: which one a process is in, and the names of its devices by index.
use std::{collections::HashMap, io, os::unix::fs::MetadataExt as _, path::Path};

/// The namespace's identity: the inode of `/proc/<pid>/ns/net` (what `ip netns identify` and
/// `lsns` compare).
pub fn id(proc_root: &Path, pid: u32) -> io::Result<u64> {
    Ok(std::fs::metadata(proc_root.join(pid.to_string()).join("ns/net"))?.ino())
}

/// The host's namespace and a process in it: init's, or, where init is out of reach (a sandbox
/// that hides it), the agent's own, which is the host's when it runs with hostNetwork as
/// deployed.
pub fn host(proc_root: &Path) -> Option<(u64, u32)> {
    if let Ok(ns) = id(proc_root, 1) {
        return Some((ns, 1));
    }
    // `self` in that procfs names us by the pid its namespace knows us by.
    let me: u32 = std::fs::read_link(proc_root.join("self"))
        .ok()?
        .to_str()?
        .parse()
        .ok()?;
    id(proc_root, me).ok().map(|ns| (ns, me))
}

/// Device index -> name in the namespace of `pid`, for the devices named in `names`.
///
/// Indexes are per namespace (every container has its own eth0 with its own index), and only a
/// socket inside the namespace can look them up. So a short-lived thread joins the namespace,
/// opens a socket and asks; only that thread ever changes namespace, and no socket outlives the
/// call, so the agent never keeps a dead container's namespace alive.
pub fn device_indexes(
    proc_root: &Path,
    pid: u32,
    names: &[String],
) -> io::Result<HashMap<u32, String>> {
    let ns = std::fs::File::open(proc_root.join(pid.to_string()).join("ns/net"))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            use rustix::{
                net::{AddressFamily, SocketType, netdevice::name_to_index, socket},
                thread::{LinkNameSpaceType, move_into_link_name_space},
            };
            use std::os::fd::AsFd as _;
            move_into_link_name_space(ns.as_fd(), Some(LinkNameSpaceType::Network))?;
            // Any socket reaches the device ioctls of its namespace; a unix one needs no protocol.
            let sock = socket(AddressFamily::UNIX, SocketType::DGRAM, None)?;
            let mut out = HashMap::with_capacity(names.len());
            for name in names {
                // A device removed since the names were read is simply not in the answer.
                if let Ok(index) = name_to_index(&sock, name) {
                    out.insert(index, name.clone());
                }
            }
            Ok(out)
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("namespace lookup thread panicked")))
    })
}
