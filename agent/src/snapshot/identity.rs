//! What a cgroup is called: its container, pod and labels (`identity/`).
use std::{collections::BTreeMap, sync::Arc};

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
