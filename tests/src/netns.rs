//! Network namespaces and devices made with iproute2 for a test, removed on drop.
use std::process::Command;

use anyhow::{Context as _, bail};

/// iproute2's `ip`, by absolute path: a busybox shell runs its own `ip` applet, which has no
/// `netns`, for a bare `ip` even when iproute2's is on the PATH (as in the VM suite).
pub fn ip_bin() -> String {
    ["/usr/sbin/ip", "/usr/bin/ip", "/sbin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| std::fs::canonicalize(p).is_ok_and(|c| c.file_name().is_some_and(|n| n == "ip")))
        .unwrap_or("ip")
        .to_string()
}

/// rx bytes, rx packets, tx bytes, tx packets of `device` in the network namespace of `pid`,
/// from the kernel's own counters (`/proc/<pid>/net/dev`, what cAdvisor reads).
pub fn device_counters(pid: u32, device: &str) -> anyhow::Result<[u64; 4]> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev"))?;
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{device}:")))
        .with_context(|| format!("{device} not in {text}"))?;
    let n: Vec<u64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    anyhow::ensure!(n.len() == 16, "net/dev line {line:?}");
    Ok([n[0], n[1], n[8], n[9]])
}

pub fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(ip_bin())
        .args(args)
        .output()
        .context("run ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A network namespace made with `ip netns`, deleted on drop.
pub struct Netns(pub String);

impl Netns {
    pub fn create(name: &str) -> anyhow::Result<Netns> {
        let name = format!("nodetel-it-{}-{name}", std::process::id());
        let _ = ip(&["netns", "del", &name]);
        ip(&["netns", "add", &name])?;
        let ns = Netns(name);
        ip(&["-n", &ns.0, "link", "set", "lo", "up"])?;
        // No IPv6: the link's own neighbour discovery would be traffic nobody asked for.
        let sysctl = "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6";
        let _ = Command::new(ip_bin())
            .args(["netns", "exec", &ns.0, "sh", "-c", sysctl])
            .status();
        Ok(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.0]);
    }
}
