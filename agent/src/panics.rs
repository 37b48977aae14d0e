//! Panics caught where they would otherwise take the daemon down: one collection pass, one HTTP
//! request, one runtime resolver. Each is logged with its cause and counted
//! (`nodetel_panics_total{where}`); the agent goes on serving the previous snapshot, and
//! `/healthz` names the last cause.
//!
//! This is why the release profile keeps `panic = "unwind"`: with `abort`, any panic that
//! hostile input still reaches (a tenant's cgroup, a runtime's answer, a request) would kill
//! every node's agent at once and crash-loop it; caught, it costs one pass or one request.
pub use crate::snapshot::health::PanicCounts;
use std::{
    any::Any,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

/// Where a panic was caught (the `where` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Collection,
    Request,
    Resolver,
}

impl Place {
    pub const ALL: [Place; 3] = [Place::Collection, Place::Request, Place::Resolver];

    pub fn label(self) -> &'static str {
        match self {
            Place::Collection => "collection",
            Place::Request => "request",
            Place::Resolver => "resolver",
        }
    }
}

/// Shared by the collection loop, the HTTP layer and the resolvers.
#[derive(Default)]
pub struct Panics {
    counts: [AtomicU64; 3],
    /// The latest cause, for `/healthz` (one line, bounded).
    last: Mutex<Option<String>>,
}

/// Longest cause kept: a panic message can quote outside data.
const CAUSE_LIMIT: usize = 300;

impl Panics {
    /// Logs and counts a caught panic's payload.
    pub fn caught(&self, place: Place, payload: &(dyn Any + Send)) {
        let cause = cause(payload);
        tracing::error!(r#where = place.label(), cause = %cause, "panic caught; the agent goes on");
        self.counts[place as usize].fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.last.lock() {
            *last = Some(format!("{}: {cause}", place.label()));
        }
    }

    pub fn counts(&self) -> PanicCounts {
        PanicCounts {
            counts: std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed)),
            last: self.last.lock().ok().and_then(|l| l.clone()),
        }
    }
}

/// The panic's message, cut to [`CAUSE_LIMIT`] bytes on a character boundary.
fn cause(payload: &(dyn Any + Send)) -> String {
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_string());
    let mut end = msg.len().min(CAUSE_LIMIT);
    while !msg.is_char_boundary(end) {
        end -= 1;
    }
    msg[..end].replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_place_and_keeps_a_bounded_cause() {
        let p = Panics::default();
        let long = "é".repeat(400);
        let r = std::panic::catch_unwind(|| panic!("{long}"));
        p.caught(Place::Request, &*r.expect_err("it panicked"));
        let r = std::panic::catch_unwind(|| panic!("overflow when adding duration to instant"));
        p.caught(Place::Collection, &*r.expect_err("it panicked"));
        let c = p.counts();
        assert_eq!(c.counts, [1, 1, 0]);
        assert_eq!(
            c.last.as_deref(),
            Some("collection: overflow when adding duration to instant")
        );
        let r = std::panic::catch_unwind(|| panic!("{long}"));
        p.caught(Place::Request, &*r.expect_err("it panicked"));
        let last = p.counts().last.unwrap_or_default();
        assert!(
            last.len() <= CAUSE_LIMIT + "request: ".len(),
            "{}",
            last.len()
        );
    }
}
