//! Prometheus exposition: the table of families and the text writer.
mod exposition;
pub mod families;
mod labels;
mod services;

pub use exposition::{CONTENT_TYPE, render, render_sized};
pub use families::{Kind, agent_families, container_families};
pub use labels::{LabelChoice, LabelMode, SWARM_AND_COMPOSE};
pub use services::SERVICE_FAMILIES;
