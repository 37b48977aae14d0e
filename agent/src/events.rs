//! Container events for the JSON API: OOMs, OOM kills, cgroup creation and deletion, kept in a
//! bounded store (count and age) and fanned out to streaming clients.
use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use tokio::sync::broadcast;

/// Events a streaming client may fall behind by before it is dropped: a client that stops
/// reading costs this much at most, never an unbounded buffer.
const STREAM_BACKLOG: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    Oom,
    OomKill,
    Creation,
    Deletion,
}

impl EventKind {
    pub const ALL: [EventKind; 4] = [
        EventKind::Oom,
        EventKind::OomKill,
        EventKind::Creation,
        EventKind::Deletion,
    ];

    /// cAdvisor's `event_type` value.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Oom => "oom",
            EventKind::OomKill => "oomKill",
            EventKind::Creation => "containerCreation",
            EventKind::Deletion => "containerDeletion",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The cgroup path (cAdvisor's container name).
    pub container: Arc<str>,
    pub time: SystemTime,
    pub kind: EventKind,
    /// The victim, on OOM kills.
    pub victim: Option<Victim>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Victim {
    pub pid: u32,
    pub process_name: String,
}

/// What a client asked for (cAdvisor's events request).
#[derive(Clone, Debug)]
pub struct EventQuery {
    pub kinds: [bool; 4],
    pub container: String,
    pub subcontainers: bool,
    pub start: Option<SystemTime>,
    pub end: Option<SystemTime>,
    /// The newest this many; 0 = all that match.
    pub max_events: usize,
}

impl EventQuery {
    pub fn wants(&self, e: &Event) -> bool {
        if !self.kinds[e.kind.index()] {
            return false;
        }
        if self.start.is_some_and(|s| e.time < s) || self.end.is_some_and(|end| e.time > end) {
            return false;
        }
        if self.subcontainers {
            self.container == "/"
                || e.container.as_ref() == self.container
                || e.container
                    .strip_prefix(self.container.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        } else {
            e.container.as_ref() == self.container
        }
    }
}

pub struct EventStore {
    limit: usize,
    max_age: Duration,
    stored: Mutex<VecDeque<Arc<Event>>>,
    stream: broadcast::Sender<Arc<Event>>,
}

impl EventStore {
    pub fn new(limit: usize, max_age: Duration) -> Self {
        EventStore {
            limit,
            max_age,
            stored: Mutex::new(VecDeque::new()),
            stream: broadcast::channel(STREAM_BACKLOG).0,
        }
    }

    pub fn add(&self, events: impl IntoIterator<Item = Event>) {
        let now = SystemTime::now();
        let Ok(mut stored) = self.stored.lock() else {
            return;
        };
        for e in events {
            let e = Arc::new(e);
            // No receivers is fine: nobody is streaming.
            let _ = self.stream.send(Arc::clone(&e));
            stored.push_back(e);
        }
        while stored.len() > self.limit {
            stored.pop_front();
        }
        // Stored in arrival order, which is time order but for creation events dated by their
        // cgroup's birth: age out by scanning, not by the front alone.
        if stored
            .iter()
            .any(|e| now.duration_since(e.time).unwrap_or_default() > self.max_age)
        {
            stored.retain(|e| now.duration_since(e.time).unwrap_or_default() <= self.max_age);
        }
    }

    /// Matching events, oldest first, the newest `max_events` of them.
    pub fn query(&self, q: &EventQuery) -> Vec<Arc<Event>> {
        let mut out: Vec<Arc<Event>> = match self.stored.lock() {
            Ok(s) => s.iter().filter(|e| q.wants(e)).cloned().collect(),
            Err(_) => Vec::new(),
        };
        out.sort_by_key(|e| e.time);
        if q.max_events > 0 && out.len() > q.max_events {
            out.drain(..out.len() - q.max_events);
        }
        out
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.stream.subscribe()
    }

    pub fn len(&self) -> usize {
        self.stored.lock().map_or(0, |s| s.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(container: &str, secs_ago: u64, kind: EventKind) -> Event {
        Event {
            container: Arc::from(container),
            time: SystemTime::now() - Duration::from_secs(secs_ago),
            kind,
            victim: None,
        }
    }

    fn all(container: &str, subcontainers: bool) -> EventQuery {
        EventQuery {
            kinds: [true; 4],
            container: container.into(),
            subcontainers,
            start: None,
            end: None,
            max_events: 0,
        }
    }

    #[test]
    fn bounded_by_count_and_age() {
        let store = EventStore::new(3, Duration::from_secs(60));
        store.add((0..5).map(|i| ev(&format!("/c{i}"), 1, EventKind::Creation)));
        assert_eq!(store.len(), 3, "the oldest two went");
        store.add([ev("/old", 120, EventKind::Creation)]);
        assert_eq!(store.len(), 2, "older than the age limit: dropped");
    }

    #[test]
    fn filters_as_cadvisor() {
        let store = EventStore::new(100, Duration::from_secs(3600));
        store.add([
            ev("/docker/a", 30, EventKind::Creation),
            ev("/docker/a", 20, EventKind::OomKill),
            ev("/docker/ab", 10, EventKind::Oom),
            ev("/", 5, EventKind::Deletion),
        ]);
        assert_eq!(store.query(&all("/docker/a", false)).len(), 2);
        assert_eq!(
            store.query(&all("/docker", true)).len(),
            3,
            "a prefix at a path boundary"
        );
        assert_eq!(
            store.query(&all("/docker/a", true)).len(),
            2,
            "/docker/ab is not under /docker/a"
        );
        assert_eq!(store.query(&all("/", true)).len(), 4);
        let mut q = all("/", true);
        q.kinds = [false, true, false, false];
        assert_eq!(store.query(&q)[0].kind, EventKind::OomKill);
        q = all("/", true);
        q.max_events = 2;
        let newest = store.query(&q);
        assert_eq!(newest.len(), 2);
        assert_eq!(newest[1].kind, EventKind::Deletion, "newest last");
        q.max_events = 0;
        q.start = Some(SystemTime::now() - Duration::from_secs(15));
        assert_eq!(store.query(&q).len(), 2);
    }

    #[test]
    fn a_lagging_stream_is_told_so() {
        let store = EventStore::new(10, Duration::from_secs(3600));
        let mut rx = store.subscribe();
        store.add((0..STREAM_BACKLOG + 5).map(|_| ev("/", 0, EventKind::Creation)));
        assert!(matches!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(_))
        ));
    }
}
