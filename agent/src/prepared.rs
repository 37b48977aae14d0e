//! A snapshot with everything a request needs already computed.
use std::{sync::Arc, time::Instant};

use bytes::Bytes;

use crate::{metrics, snapshot::Snapshot};

pub struct Prepared {
    pub snapshot: Arc<Snapshot>,
    /// The rendered exposition, shared by every scrape until the next pass.
    pub metrics: Bytes,
    pub built: Instant,
}

impl Prepared {
    /// `expected`: the last body's length, so the buffer is allocated once at its final size.
    pub fn new(snapshot: Snapshot, expected: usize) -> Self {
        let metrics = Bytes::from(metrics::render_sized(&snapshot, expected));
        Prepared {
            snapshot: Arc::new(snapshot),
            metrics,
            built: Instant::now(),
        }
    }
}
