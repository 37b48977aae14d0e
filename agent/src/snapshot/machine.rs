//! The machine: what `/proc` and `/sys` say about it, read at start-up (`machine.rs`).
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MachineInfo {
    /// Online logical CPUs.
    pub cores: Option<u64>,
    pub physical_cores: Option<u64>,
    pub sockets: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub swap_bytes: Option<u64>,
    /// Label values; empty when the host does not provide them.
    pub machine_id: String,
    pub system_uuid: String,
    pub boot_id: String,
    /// What the JSON API's machine endpoints add (cAdvisor's MachineInfo).
    pub details: MachineDetails,
}
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MachineDetails {
    pub vendor_id: String,
    /// Maximum frequency (cpufreq), else the current one from /proc/cpuinfo.
    pub cpu_frequency_khz: u64,
    pub hugepages: Vec<HugePages>,
    pub filesystems: Vec<Filesystem>,
    /// Keyed `major:minor`.
    pub disks: BTreeMap<String, Disk>,
    pub network_devices: Vec<NetDevice>,
    pub nodes: Vec<Node>,
}
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HugePages {
    /// kB, as the sysfs directory names it.
    pub page_size_kb: u64,
    pub pages: u64,
}
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filesystem {
    pub device: String,
    pub capacity: u64,
    pub inodes: u64,
}
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Disk {
    pub name: String,
    pub major: u64,
    pub minor: u64,
    pub size: u64,
    pub scheduler: String,
}
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetDevice {
    pub name: String,
    pub mac_address: String,
    /// Mb/s; -1 where the driver does not know (virtio), 0 where sysfs has none.
    pub speed: i64,
    pub mtu: i64,
}
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Node {
    pub id: u32,
    pub memory: u64,
    pub hugepages: Vec<HugePages>,
    pub cores: Vec<Core>,
    /// Caches shared by more than one core (the L3).
    pub caches: Vec<Cache>,
    pub distances: Vec<u64>,
}
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Core {
    pub id: u32,
    pub threads: Vec<u32>,
    pub caches: Vec<Cache>,
    pub socket_id: u32,
}
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cache {
    pub id: u32,
    pub level: u32,
    pub kind: String,
    pub size: u64,
}
