//! Network namespaces: which one a process is in, and the indexes of its devices.
//!
//! Everything here is read from `/proc/<pid>/net/`, which shows the namespace of `<pid>` to any
//! reader: no `setns` (CAP_SYS_ADMIN, which the DaemonSet does not grant), no thread per
//! namespace, and nothing held open that could keep a dead container's namespace alive.
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

/// Device index -> name in the namespace of `pid`, for the devices named in `names` (the
/// namespace's `net/dev`). A name missing from the answer could not be looked up.
///
/// Three files of the namespace carry indexes; none lists every device on every kernel, so they
/// are read in turn until every name has its index:
/// - `dev_snmp6/<name>` (`ifIndex N` first): every device with IPv6 state, which is every device
///   of MTU >= 1280 unless IPv6 is off at boot (`ipv6.disable=1`).
/// - `dev_mcast`: devices with link-layer multicast addresses (Ethernet-like, veth included).
/// - `igmp`: devices with IPv4 up (loopback included).
pub fn device_indexes(
    proc_root: &Path,
    pid: u32,
    names: &[String],
) -> io::Result<HashMap<u32, String>> {
    let net = proc_root.join(pid.to_string()).join("net");
    let mut out = HashMap::with_capacity(names.len());
    let mut missing: Vec<&String> = Vec::new();
    for name in names {
        if !valid_name(name) {
            continue;
        }
        match std::fs::read_to_string(net.join("dev_snmp6").join(name)) {
            Ok(text) => match parse_snmp6_index(&text) {
                Some(i) => {
                    out.insert(i, name.clone());
                }
                None => missing.push(name),
            },
            // The whole namespace is gone: say so rather than answer "no devices".
            Err(e) if e.kind() == io::ErrorKind::NotFound && !net.exists() => return Err(e),
            // No IPv6 state for it (or IPv6 off): the next files may know it.
            Err(_) => missing.push(name),
        }
    }
    for (file, parse) in [
        (
            "dev_mcast",
            parse_dev_mcast as fn(&str) -> Vec<(u32, String)>,
        ),
        ("igmp", parse_igmp),
    ] {
        if missing.is_empty() {
            break;
        }
        let Ok(text) = std::fs::read_to_string(net.join(file)) else {
            continue;
        };
        let found = parse(&text);
        missing.retain(|name| match found.iter().find(|(_, n)| n == *name) {
            Some((i, _)) => {
                out.insert(*i, (*name).clone());
                false
            }
            None => true,
        });
    }
    Ok(out)
}

/// What the kernel accepts as a device name (`dev_valid_name`): anything else did not come from
/// it, and must not become a path.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name.contains(['/', ':'])
        && !name.chars().any(char::is_whitespace)
}

/// `dev_snmp6/<name>`: `ifIndex <tab> N` on the first line.
pub fn parse_snmp6_index(text: &str) -> Option<u32> {
    text.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        (f.next() == Some("ifIndex")).then(|| f.next()?.parse().ok())?
    })
}

/// `dev_mcast`: `index name users global address`, one line per multicast address.
pub fn parse_dev_mcast(text: &str) -> Vec<(u32, String)> {
    let mut out: Vec<(u32, String)> = Vec::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(i), Some(name)) = (f.next().and_then(|i| i.parse().ok()), f.next()) else {
            continue;
        };
        if valid_name(name) && !out.iter().any(|(j, _)| *j == i) {
            out.push((i, name.to_string()));
        }
    }
    out
}

/// `igmp`: a header, then per device `index<tab>name<pad>: count ...`, each followed by
/// indented group lines. The name is padded to ten columns, so a long one meets the colon.
pub fn parse_igmp(text: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((head, _)) = line.split_once(':') else {
            continue;
        };
        let mut f = head.split_whitespace();
        let (Some(i), Some(name), None) =
            (f.next().and_then(|i| i.parse().ok()), f.next(), f.next())
        else {
            continue;
        };
        if valid_name(name) {
            out.push((i, name.to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_files_as_the_kernel_writes_them() {
        assert_eq!(
            parse_snmp6_index("ifIndex                         \t4\nIp6InReceives    \t0\n"),
            Some(4)
        );
        assert_eq!(parse_snmp6_index("Ip6InReceives 0\n"), None);
        assert_eq!(parse_snmp6_index("ifIndex x\n"), None);

        let mcast = "2    ifb0            1     0     333300000001\n\
                     4    eth0            1     0     333300000001\n\
                     4    eth0            1     0     01005e000001\n";
        assert_eq!(
            parse_dev_mcast(mcast),
            vec![(2, "ifb0".to_string()), (4, "eth0".to_string())]
        );

        let igmp = "Idx\tDevice    : Count Querier\tGroup    Users Timer\tReporter\n\
                    1\tlo        :     1      V3\n\
                    \t\t\t\t010000E0     1 0:00000000\t\t0\n\
                    7\tcali0123456789a:     1      V3\n";
        assert_eq!(
            parse_igmp(igmp),
            vec![(1, "lo".to_string()), (7, "cali0123456789a".to_string())]
        );
    }

    #[test]
    fn names_that_are_not_device_names_never_become_paths() {
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "a:b",
            "a b",
            "abcdefghijklmnop",
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert!(valid_name("eth0") && valid_name("cali0123456789a"));
    }

    #[test]
    fn this_process_devices_have_their_kernel_indexes() {
        // Ground truth: sysfs of our own namespace.
        let root = Path::new("/proc");
        let me = std::process::id();
        let Ok(text) = std::fs::read_to_string("/proc/self/net/dev") else {
            return;
        };
        let names: Vec<String> = super::super::netdev::parse(&text)
            .0
            .into_iter()
            .map(|d| d.name)
            .collect();
        let got = device_indexes(root, me, &names).expect("own namespace");
        for name in &names {
            let Ok(want) = std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex")) else {
                continue;
            };
            let want: u32 = want.trim().parse().expect("sysfs ifindex");
            assert_eq!(got.get(&want), Some(name), "{name}");
        }
    }
}
