//! Finding a container's writable layer on the host, from the runtime's own records.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use super::mounts::{self, Mount};
use crate::identity::path::Runtime;

/// Where a container's files are, as paths this process can open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    /// The writable (upper) layer.
    pub upper: PathBuf,
    /// The runtime's own files for the container (Docker's `containers/<id>`: its log, hosts,
    /// resolv.conf), added to usage as cAdvisor adds them.
    pub extra: Option<PathBuf>,
    /// The device the layer is on (`st_dev`).
    pub dev: u64,
}

/// The host's mount table is read again at most this often when a layer is looked for.
const MOUNTS_FRESH: Duration = Duration::from_secs(1);
/// Docker's default data root, when the daemon has not said its own.
const DOCKER_ROOT: &str = "/var/lib/docker";
/// Bytes of a `mount-id` file read at most (it holds one 64-character id).
const MOUNT_ID_MAX: u64 = 256;

pub struct Finder {
    proc_root: PathBuf,
    docker_root: Arc<dyn Fn() -> Option<PathBuf> + Send + Sync>,
    mounts: Vec<Mount>,
    /// containerd's root filesystem mounts of that table, by container id.
    rootfs: HashMap<String, PathBuf>,
    mounts_read: Option<Instant>,
}

impl Finder {
    pub fn new(
        proc_root: PathBuf,
        docker_root: Arc<dyn Fn() -> Option<PathBuf> + Send + Sync>,
    ) -> Finder {
        Finder {
            proc_root,
            docker_root,
            mounts: Vec::new(),
            rootfs: HashMap::new(),
            mounts_read: None,
        }
    }

    /// The host's mount table as last read.
    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }

    /// Reads the host's mount table again if it is older than `fresh`.
    pub fn refresh_mounts(&mut self, fresh: Duration) {
        if self.mounts_read.is_some_and(|t| t.elapsed() < fresh) {
            return;
        }
        self.mounts_read = Some(Instant::now());
        match std::fs::read_to_string(self.proc_root.join("1/mountinfo")) {
            Ok(text) => {
                self.mounts = mounts::parse(&text);
                self.rootfs = mounts::rootfs_layers(&self.mounts);
            }
            Err(e) => tracing::debug!(error = %e, "cannot read the host's mount table"),
        }
    }

    /// A host path as this process can open it: through PID 1's root when the agent runs in a
    /// container with the host's `/proc` (no extra mounts needed), else as it is.
    pub fn host_path(&self, p: &Path) -> PathBuf {
        let via_pid1 = self
            .proc_root
            .join("1/root")
            .join(p.strip_prefix("/").unwrap_or(p));
        if std::fs::symlink_metadata(&via_pid1).is_ok() {
            via_pid1
        } else {
            p.to_path_buf()
        }
    }

    pub fn find(&mut self, runtime: Runtime, id: &str) -> Option<Layer> {
        if !mounts::valid_id(id) {
            return None;
        }
        if matches!(runtime, Runtime::Docker | Runtime::Cri)
            && let Some(l) = self.docker(id)
        {
            return Some(l);
        }
        if matches!(runtime, Runtime::Containerd | Runtime::Cri) {
            self.refresh_mounts(MOUNTS_FRESH);
            let upper = self.rootfs.get(id)?.clone();
            return self.layer(&upper, None);
        }
        None
    }

    /// Docker's data root: as the daemon said, else its default.
    pub fn docker_root(&self) -> PathBuf {
        (self.docker_root)().unwrap_or_else(|| PathBuf::from(DOCKER_ROOT))
    }

    /// Docker's overlay2 layer of a container, from its layer database.
    fn docker(&self, id: &str) -> Option<Layer> {
        let root = self.docker_root();
        let record = root
            .join("image/overlay2/layerdb/mounts")
            .join(id)
            .join("mount-id");
        let mount_id = read_small(&self.host_path(&record))?;
        let mount_id = mount_id.trim();
        if !mounts::valid_id(mount_id) {
            return None;
        }
        let upper = root.join("overlay2").join(mount_id).join("diff");
        self.layer(&upper, Some(&root.join("containers").join(id)))
    }

    fn layer(&self, upper: &Path, extra: Option<&Path>) -> Option<Layer> {
        let upper = self.host_path(upper);
        let st = rustix::fs::stat(&upper).ok()?;
        Some(Layer {
            upper,
            extra: extra.map(|e| self.host_path(e)).filter(|e| e.is_dir()),
            dev: st.st_dev,
        })
    }
}

fn read_small(path: &Path) -> Option<String> {
    use std::io::Read as _;
    let mut s = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(MOUNT_ID_MAX)
        .read_to_string(&mut s)
        .ok()?;
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Docker data root laid out as dockerd 20.10 writes it, under a temporary directory.
    #[test]
    fn docker_layer_from_its_layer_database() {
        let t = tempfile::tempdir().expect("test fixture");
        let root = t.path().to_path_buf();
        let id = "a".repeat(64);
        let rec = root.join("image/overlay2/layerdb/mounts").join(&id);
        std::fs::create_dir_all(&rec).expect("test fixture");
        std::fs::write(rec.join("mount-id"), "5e1f00\n").expect("test fixture");
        std::fs::create_dir_all(root.join("overlay2/5e1f00/diff")).expect("test fixture");
        std::fs::create_dir_all(root.join("containers").join(&id)).expect("test fixture");
        let r = root.clone();
        // A /proc without PID 1: paths are taken as they are.
        let mut f = Finder::new(t.path().join("no-proc"), Arc::new(move || Some(r.clone())));
        let l = f.find(Runtime::Docker, &id).expect("found");
        assert_eq!(l.upper, root.join("overlay2/5e1f00/diff"));
        assert_eq!(l.extra, Some(root.join("containers").join(&id)));
        // A record naming a path outside the data root is refused.
        std::fs::write(rec.join("mount-id"), "../../etc").expect("test fixture");
        assert_eq!(f.find(Runtime::Docker, &id), None);
        assert_eq!(f.find(Runtime::Docker, "../x"), None);
        assert_eq!(f.find(Runtime::Podman, &id), None);
    }
}
