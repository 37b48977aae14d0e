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
    pub fn new(snapshot: Snapshot) -> Self {
        let metrics = Bytes::from(metrics::render(&snapshot));
        Prepared {
            snapshot: Arc::new(snapshot),
            metrics,
            built: Instant::now(),
        }
    }
}
