//! Who owns each cgroup: the path says which runtime, container id and pod (`path`); the
//! runtimes say the name, image and labels (`docker`, `containerd`, `crio`, and the kubelet's
//! pod statuses in `kubelet`, shared through `registry`);
//! `naming` puts the two together for every cgroup of a pass.
pub mod containerd;
pub mod crio;
pub mod docker;
pub(crate) mod http_get;
pub mod kubelet;
pub mod naming;
pub mod path;
pub mod registry;
mod session;

use std::{collections::BTreeMap, sync::Arc};

pub use naming::Namer;
pub use registry::{ContainerMeta, Registry, ResolverStats, Source};

/// Runtime labels the kubelet sets on every container it creates through CRI.
pub const K8S_POD_NAME: &str = "io.kubernetes.pod.name";
pub const K8S_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const K8S_POD_UID: &str = "io.kubernetes.pod.uid";
pub const K8S_CONTAINER_NAME: &str = "io.kubernetes.container.name";

/// Who a cgroup belongs to. Empty strings where unknown: that is what cAdvisor and the kubelet
/// emit for cgroups that are not containers, and dashboards tell containers apart by
/// `image!=""` and `name!=""`, so a slice or service never gets a name or an image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub image: String,
    pub container: String,
    pub pod: String,
    pub namespace: String,
    /// The runtime's labels (standalone label mode and the JSON API).
    pub labels: Arc<BTreeMap<String, String>>,
}
