//! Per-container filesystem usage (cAdvisor's `disk` kind): what each container's writable
//! layer holds, walked in the background at a bounded cost, and the figures of the filesystem
//! it lives on; and the host's own filesystems for the root container.
//!
//! The layer is found from what the runtime wrote on the host, keyed by the container id in the
//! cgroup path: Docker's layer database (`<root>/image/overlay2/layerdb/mounts/<id>/mount-id`,
//! as cAdvisor finds it), containerd's root filesystem mount in the host's mount table (also
//! what CRI and k3s use). CRI-O and Podman layers are not found (no figures, nothing wrong).
mod layers;
pub mod mounts;
pub mod walk;
mod worker;

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

pub use layers::Layer;
pub use worker::WalkStats;

pub use crate::snapshot::cgroup::FsStats;
use crate::{identity::Namer, snapshot::ContainerSample};

/// What the collector asks of it: each pass, fill the samples' `filesystems`.
pub struct FsUsage {
    proc_root: PathBuf,
    finder: layers::Finder,
    worker: worker::Worker,
    /// The layer of each live container (`None`: looked for, not found, retried later).
    known: HashMap<String, (Option<Layer>, Instant)>,
    /// Docker's data root when the layers were last looked for: the daemon says its own a
    /// moment after start-up, and containers not found under the default are looked for again.
    docker_root: PathBuf,
}

/// A container whose layer was not found is looked for again after this long (a runtime may
/// write its records a moment after the cgroup appears).
const RETRY_NOT_FOUND: Duration = Duration::from_secs(10);
/// The host's mount table (the root's filesystems, their devices) is read again this often.
const MOUNTS_FRESH: Duration = Duration::from_secs(10);

impl FsUsage {
    /// `interval`: how often each layer is walked again (cAdvisor: every minute).
    pub fn start(
        proc_root: PathBuf,
        interval: Duration,
        docker_root: Arc<dyn Fn() -> Option<PathBuf> + Send + Sync>,
    ) -> FsUsage {
        FsUsage {
            finder: layers::Finder::new(proc_root.clone(), docker_root),
            worker: worker::Worker::start(interval),
            proc_root,
            known: HashMap::new(),
            docker_root: PathBuf::new(),
        }
    }

    /// Fills `filesystems` of the root and of every container whose layer was found and walked.
    pub fn fill(&mut self, containers: &mut [ContainerSample], namer: &Namer) {
        let now = Instant::now();
        self.finder.refresh_mounts(MOUNTS_FRESH);
        let docker_root = self.finder.docker_root();
        if docker_root != self.docker_root {
            self.known.retain(|_, (layer, _)| layer.is_some());
            self.docker_root = docker_root;
        }
        let mut live: HashMap<String, Layer> = HashMap::new();
        let mut ids: Vec<Option<String>> = Vec::with_capacity(containers.len());
        for c in containers.iter() {
            let Some((runtime, id)) = namer.container_of(&c.path) else {
                ids.push(None);
                continue;
            };
            let stale = match self.known.get(id) {
                Some((Some(_), _)) => false,
                Some((None, at)) => now.duration_since(*at) >= RETRY_NOT_FOUND,
                None => true,
            };
            if stale {
                let found = self.finder.find(runtime, id);
                self.known.insert(id.to_string(), (found, now));
            }
            if let Some((Some(layer), _)) = self.known.get(id) {
                live.insert(id.to_string(), layer.clone());
            }
            ids.push(Some(id.to_string()));
        }
        let present: HashSet<&str> = ids.iter().flatten().map(String::as_str).collect();
        self.known.retain(|id, _| present.contains(id.as_str()));
        let figures = self.worker.want(&live);

        let mut devices = Devices {
            diskstats_file: self.proc_root.join("diskstats"),
            ..Devices::default()
        };
        for (c, id) in containers.iter_mut().zip(&ids) {
            if c.path == "/" {
                c.filesystems = Some(self.host_filesystems(&mut devices));
                continue;
            }
            let Some(id) = id else { continue };
            let (Some(layer), Some(f)) = (live.get(id), figures.get(id)) else {
                continue;
            };
            let Some(fs) = devices.of(&self.finder, layer) else {
                continue;
            };
            c.filesystems = Some(vec![FsStats {
                usage: f.base.bytes.saturating_add(f.extra.bytes),
                base_usage: f.base.bytes,
                inodes: f.base.inodes,
                ..fs
            }]);
        }
    }

    /// The host's block-device filesystems, each once, as the root container's.
    fn host_filesystems(&self, devices: &mut Devices) -> Vec<FsStats> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for m in self.finder.mounts().iter() {
            if !m.source.starts_with("/dev/") || !seen.insert(m.source.clone()) {
                continue;
            }
            let path = self.finder.host_path(Path::new(&m.mount_point));
            let Ok(st) = rustix::fs::statvfs(&path) else {
                continue;
            };
            let mut fs = devices.stats(m, &st);
            fs.usage = st
                .f_blocks
                .saturating_sub(st.f_bfree)
                .saturating_mul(st.f_frsize);
            fs.inodes = st.f_files;
            out.push(fs);
        }
        out
    }

    pub fn stats(&self) -> WalkStats {
        self.worker
            .stats(self.known.values().filter(|(l, _)| l.is_some()).count())
    }
}

/// The per-pass figures of each filesystem a layer is on (one `statvfs` each) and the host's
/// `/proc/diskstats`, read once a pass when asked for.
#[derive(Default)]
struct Devices {
    diskstats_file: PathBuf,
    by_dev: HashMap<u64, Option<FsStats>>,
    diskstats: Option<HashMap<(u32, u32), [u64; 11]>>,
}

impl Devices {
    fn of(&mut self, finder: &layers::Finder, layer: &Layer) -> Option<FsStats> {
        if let Some(fs) = self.by_dev.get(&layer.dev) {
            return fs.clone();
        }
        let (major, minor) = (rustix::fs::major(layer.dev), rustix::fs::minor(layer.dev));
        let fs = finder
            .mounts()
            .iter()
            .find(|m| m.major == major && m.minor == minor)
            .cloned()
            .zip(rustix::fs::statvfs(&layer.upper).ok())
            .map(|(m, st)| self.stats(&m, &st));
        self.by_dev.insert(layer.dev, fs.clone());
        fs
    }

    fn stats(&mut self, m: &mounts::Mount, st: &rustix::fs::StatVfs) -> FsStats {
        let disk = self
            .diskstats
            .get_or_insert_with(|| {
                std::fs::read_to_string(&self.diskstats_file)
                    .map(|t| parse_diskstats(&t))
                    .unwrap_or_default()
            })
            .get(&(m.major, m.minor))
            .copied()
            .unwrap_or_default();
        FsStats {
            device: Arc::from(m.source.as_str()),
            major: m.major,
            minor: m.minor,
            capacity: st.f_blocks.saturating_mul(st.f_frsize),
            available: st.f_bavail.saturating_mul(st.f_frsize),
            inodes_free: st.f_ffree,
            disk,
            ..FsStats::default()
        }
    }
}

/// `/proc/diskstats`: `major minor name` and at least eleven counters.
pub fn parse_diskstats(text: &str) -> HashMap<(u32, u32), [u64; 11]> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(Ok(major)), Some(Ok(minor)), Some(_name)) = (
            f.next().map(str::parse::<u32>),
            f.next().map(str::parse::<u32>),
            f.next(),
        ) else {
            continue;
        };
        let mut v = [0u64; 11];
        let mut n = 0;
        for (slot, x) in v.iter_mut().zip(f.by_ref()) {
            let Ok(x) = x.parse() else { break };
            *slot = x;
            n += 1;
        }
        if n == 11 {
            out.insert((major, minor), v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diskstats_lines_of_every_kernel_era() {
        let t = "   8       0 sda 10 1 200 5 20 2 400 7 0 9 12\n\
                 254       0 vda 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20\n\
                 7 0 loop0 1 2\n garbage\n";
        let d = parse_diskstats(t);
        assert_eq!(d[&(8, 0)], [10, 1, 200, 5, 20, 2, 400, 7, 0, 9, 12]);
        assert_eq!(d[&(254, 0)][10], 11);
        assert_eq!(d.len(), 2);
    }
}
