//! One receiver's batches waiting to be sent, oldest first, bounded in bytes: in memory, or
//! in its spool on disk.
use std::collections::VecDeque;

use bytes::Bytes;

use super::spool::{Lost, Spool};

/// One pass's series, encoded.
#[derive(Clone, Debug)]
pub struct Batch {
    pub body: Bytes,
    pub samples: usize,
    /// Unix milliseconds of its samples: also its identity in the queue (one batch a pass).
    pub at_ms: i64,
}

pub struct Queue {
    batches: VecDeque<Batch>,
    bytes: usize,
    max_bytes: usize,
}

impl Queue {
    pub fn new(max_bytes: usize) -> Self {
        Queue {
            batches: VecDeque::new(),
            bytes: 0,
            max_bytes,
        }
    }

    /// Appends `batch`, dropping the oldest batches while the queue would exceed its bound (the
    /// newest is always kept); returns the samples dropped.
    pub fn push(&mut self, batch: Batch) -> u64 {
        let mut dropped = 0;
        while !self.batches.is_empty() && self.bytes + batch.body.len() > self.max_bytes {
            if let Some(old) = self.batches.pop_front() {
                self.bytes -= old.body.len();
                dropped += old.samples as u64;
            }
        }
        self.bytes += batch.body.len();
        self.batches.push_back(batch);
        dropped
    }

    /// The oldest batch, left in place until [`Self::pop_if`] says it went.
    pub fn front(&self) -> Option<Batch> {
        self.batches.front().cloned()
    }

    /// Removes the oldest batch if it is still the one stamped `at_ms` (a full queue may have
    /// dropped it while it was being sent).
    pub fn pop_if(&mut self, at_ms: i64) {
        if self.batches.front().is_some_and(|b| b.at_ms == at_ms)
            && let Some(b) = self.batches.pop_front()
        {
            self.bytes -= b.body.len();
        }
    }

    pub fn len(&self) -> usize {
        self.batches.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn oldest_ms(&self) -> Option<i64> {
        self.batches.front().map(|b| b.at_ms)
    }
}

/// Where a receiver's batches wait: in memory, or on disk with `--remote-write-spool-dir`.
pub enum Store {
    Memory(Queue),
    Disk(Spool),
}

impl Store {
    /// Queues `batch`; returns the samples this cost (the oldest, when full).
    pub fn push(&mut self, batch: Batch) -> Lost {
        match self {
            Store::Memory(q) => Lost {
                full: q.push(batch),
                io: 0,
            },
            Store::Disk(s) => s.push(&batch),
        }
    }

    /// The oldest batch, and the samples of spooled batches that could not be read back.
    pub fn front(&mut self) -> (Option<Batch>, u64) {
        match self {
            Store::Memory(q) => (q.front(), 0),
            Store::Disk(s) => s.front(),
        }
    }

    pub fn pop_if(&mut self, at_ms: i64) {
        match self {
            Store::Memory(q) => q.pop_if(at_ms),
            Store::Disk(s) => s.pop_if(at_ms),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn len(&self) -> usize {
        match self {
            Store::Memory(q) => q.len(),
            Store::Disk(s) => s.len(),
        }
    }

    pub fn bytes(&self) -> u64 {
        match self {
            Store::Memory(q) => q.bytes() as u64,
            Store::Disk(s) => s.bytes(),
        }
    }

    pub fn oldest_ms(&self) -> Option<i64> {
        match self {
            Store::Memory(q) => q.oldest_ms(),
            Store::Disk(s) => s.oldest_ms(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(at_ms: i64, len: usize) -> Batch {
        Batch {
            body: Bytes::from(vec![0u8; len]),
            samples: 10,
            at_ms,
        }
    }

    #[test]
    fn oldest_first_bounded_in_bytes() {
        let mut q = Queue::new(250);
        assert_eq!(q.push(batch(1, 100)), 0);
        assert_eq!(q.push(batch(2, 100)), 0);
        assert_eq!((q.len(), q.bytes(), q.oldest_ms()), (2, 200, Some(1)));
        // A third would exceed 250 bytes: the oldest goes.
        assert_eq!(q.push(batch(3, 100)), 10);
        assert_eq!((q.len(), q.oldest_ms()), (2, Some(2)));
        // Sending 2 while it was dropped for 4 and 5: the pop leaves the new front alone.
        let sending = q.front().expect("front");
        assert_eq!(q.push(batch(4, 200)), 20);
        q.pop_if(sending.at_ms);
        assert_eq!(q.oldest_ms(), Some(4));
        // One batch larger than the bound is kept alone.
        assert_eq!(q.push(batch(5, 400)), 10);
        assert_eq!((q.len(), q.bytes()), (1, 400));
        q.pop_if(5);
        assert_eq!((q.len(), q.bytes(), q.oldest_ms()), (0, 0, None));
    }
}
