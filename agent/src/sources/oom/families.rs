//! The `oom_event` kind's family.
use crate::metrics::families::{ContainerFamily, Kind, Value};

pub static FAMILIES: &[ContainerFamily] = &[ContainerFamily {
    name: "container_oom_events_total",
    help: "Count of out of memory events observed for the container",
    kind: Kind::Counter,
    extra: &[],
    value: Value::One(|c| c.oom_kills.map(|n| n as f64)),
}];
