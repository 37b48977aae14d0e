//! The background walker: one thread, at low CPU priority, walking one layer at a time, each
//! at most once per interval, and resting between walks so that it uses at most a tenth of one
//! core however many layers there are (the interval stretches instead; the age of the oldest
//! figure served says by how much).
use std::{
    collections::HashMap,
    sync::{Arc, Condvar, Mutex, MutexGuard},
    thread,
    time::{Duration, Instant},
};

use super::{
    layers::Layer,
    walk::{DirUsage, dir_usage},
};
pub use crate::snapshot::health::WalkStats;

/// Entries one walk examines at most: a tenant who fills its layer with small files gets a
/// lower bound (said in `nodetel_fs_usage_incomplete_walks_total`), not an agent that walks for
/// minutes. Measured here: 4.2 µs per entry with warm caches (`/usr`, 135,791 entries, 0.57 s;
/// `du` 0.72 s), 27 µs cold (3.6 s), so a full budget is 4 to 27 s of walking.
const ENTRY_BUDGET: u64 = 1_000_000;
/// Rest after a walk, as a multiple of its duration: 9 keeps the walker under 10 % of a core.
const REST_FACTOR: u32 = 9;
/// The walker's nice value: below every workload's default priority.
const NICE: i32 = 10;

/// One walk's result.
#[derive(Clone, Copy, Debug)]
pub struct Figure {
    pub base: DirUsage,
    pub extra: DirUsage,
    pub at: Instant,
}

#[derive(Default)]
struct State {
    wanted: HashMap<String, Layer>,
    /// Last walk of each wanted layer: `None` when it failed (retried after an interval).
    figures: HashMap<String, (Option<Figure>, Instant)>,
    stats: WalkStats,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    // A poisoned lock means the walker panicked mid-update; the maps are still whole.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct Worker {
    shared: Arc<Shared>,
}

impl Worker {
    pub fn start(interval: Duration) -> Worker {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let s = Arc::clone(&shared);
        let spawned = thread::Builder::new()
            .name("fs-usage".into())
            .spawn(move || run(&s, interval));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the filesystem usage walker");
        }
        Worker { shared }
    }

    /// Says which layers to walk (the live containers'), forgets the rest, and returns the
    /// latest figures of those it has.
    pub fn want(&self, layers: &HashMap<String, Layer>) -> HashMap<String, Figure> {
        let mut st = self.shared.lock();
        let new = layers.iter().any(|(id, l)| st.wanted.get(id) != Some(l));
        if new || st.wanted.len() != layers.len() {
            st.wanted.clone_from(layers);
            let State {
                wanted, figures, ..
            } = &mut *st;
            figures.retain(|id, _| wanted.contains_key(id));
            self.shared.wake.notify_one();
        }
        let now = Instant::now();
        let mut oldest = Duration::ZERO;
        let out: HashMap<String, Figure> = st
            .figures
            .iter()
            .filter_map(|(id, (f, _))| {
                let f = (*f)?;
                oldest = oldest.max(now.duration_since(f.at));
                Some((id.clone(), f))
            })
            .collect();
        st.stats.oldest_seconds = oldest.as_secs_f64();
        out
    }

    pub fn stats(&self, layers: usize) -> WalkStats {
        WalkStats {
            layers: layers as u64,
            ..self.shared.lock().stats.clone()
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
    }
}

fn run(shared: &Shared, interval: Duration) {
    // This thread only: a nice value is per thread on Linux.
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), NICE) {
        tracing::debug!(error = %e, "cannot lower the walker's priority");
    }
    loop {
        let Some((id, layer)) = next_due(shared, interval) else {
            return;
        };
        let started = Instant::now();
        let base = dir_usage(&layer.upper, ENTRY_BUDGET);
        let extra = layer
            .extra
            .as_deref()
            .map(|e| dir_usage(e, ENTRY_BUDGET))
            .transpose();
        let took = started.elapsed();
        {
            let mut st = shared.lock();
            st.stats.walks += 1;
            st.stats.seconds += took.as_secs_f64();
            let figure = match (base, extra) {
                (Ok(base), Ok(extra)) => {
                    let extra = extra.unwrap_or_default();
                    st.stats.entries += base.entries + extra.entries;
                    if base.skipped + extra.skipped > 0 {
                        st.stats.incomplete += 1;
                    }
                    Some(Figure {
                        base,
                        extra,
                        at: Instant::now(),
                    })
                }
                (Err(e), _) | (_, Err(e)) => {
                    st.stats.errors += 1;
                    tracing::debug!(error = %e, container = %id, "filesystem usage walk failed");
                    None
                }
            };
            // A container removed meanwhile keeps no figure.
            if st.wanted.get(&id) == Some(&layer) {
                st.figures.insert(id, (figure, Instant::now()));
            }
        }
        thread::sleep((took * REST_FACTOR).min(interval));
    }
}

/// Waits for the layer whose figure is oldest to be due (a new one is due at once); `None` when
/// told to stop.
fn next_due(shared: &Shared, interval: Duration) -> Option<(String, Layer)> {
    let mut st = shared.lock();
    loop {
        if st.stop {
            return None;
        }
        let now = Instant::now();
        let mut due: Option<(&String, Duration)> = None;
        let mut wait = interval;
        for id in st.wanted.keys() {
            let age = st
                .figures
                .get(id)
                .map_or(Duration::MAX, |(_, at)| now.duration_since(*at));
            if age >= interval {
                if due.is_none_or(|(_, a)| age > a) {
                    due = Some((id, age));
                }
            } else {
                wait = wait.min(interval - age);
            }
        }
        if let Some((id, _)) = due {
            let id = id.clone();
            let layer = st.wanted[&id].clone();
            return Some((id, layer));
        }
        st = shared
            .wake
            .wait_timeout(st, wait)
            .map_or_else(|e| e.into_inner().0, |(g, _)| g);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_what_is_wanted_and_forgets_what_is_not() {
        let t = tempfile::tempdir().expect("test fixture");
        std::fs::write(t.path().join("f"), vec![1u8; 64 << 10]).expect("test fixture");
        let w = Worker::start(Duration::from_secs(60));
        let layer = Layer {
            upper: t.path().to_path_buf(),
            extra: None,
            dev: 0,
        };
        let wanted = HashMap::from([("c1".to_string(), layer)]);
        let deadline = Instant::now() + Duration::from_secs(10);
        let figures = loop {
            let f = w.want(&wanted);
            if !f.is_empty() || Instant::now() > deadline {
                break f;
            }
            thread::sleep(Duration::from_millis(20));
        };
        assert!(figures["c1"].base.bytes >= 64 << 10, "{figures:?}");
        assert_eq!(w.stats(1).walks, 1);
        assert!(w.want(&HashMap::new()).is_empty());
    }
}
