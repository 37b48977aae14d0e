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

pub use crate::snapshot::identity::Identity;

pub use naming::Namer;
pub use registry::{ContainerMeta, Registry, ResolverStats, Source};

/// Runtime labels the kubelet sets on every container it creates through CRI.
pub const K8S_POD_NAME: &str = "io.kubernetes.pod.name";
pub const K8S_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const K8S_POD_UID: &str = "io.kubernetes.pod.uid";
pub const K8S_CONTAINER_NAME: &str = "io.kubernetes.container.name";
