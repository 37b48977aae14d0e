//! cAdvisor's creation and deletion events, from one walk to the next.
use std::{sync::Arc, time::SystemTime};

use crate::{
    cgroup::Tree,
    events::{Event, EventKind, EventStore},
    snapshot::ContainerSample,
};

/// Creation events for cgroups new since the last walk (all of them on the first, as cAdvisor
/// reports what it finds at start), dated by the cgroup's birth; deletion events for those gone.
pub fn record(
    events: &EventStore,
    last: &Tree,
    tree: &Tree,
    containers: &[ContainerSample],
    now: SystemTime,
) {
    let mut out = Vec::new();
    for c in containers {
        if !last.contains(c.cgroup_id) {
            let born = c.start_time.and_then(crate::unix_time::from_secs);
            out.push(Event {
                container: Arc::from(c.path.as_str()),
                time: born.unwrap_or(now),
                kind: EventKind::Creation,
                victim: None,
            });
        }
    }
    for cg in &last.cgroups {
        if !tree.contains(cg.id) && last.exported(cg.id) {
            out.push(Event {
                container: Arc::from(cg.path.as_str()),
                time: now,
                kind: EventKind::Deletion,
                victim: None,
            });
        }
    }
    if !out.is_empty() {
        events.add(out);
    }
}
