//! What every resolver does around its connection: back off between attempts, and log a state
//! change once (socket absent, lost, back) instead of every retry.
use std::{path::Path, sync::Arc, time::Duration};

use super::registry::{Registry, Source};

/// How often a connected runtime is asked a cheap question (version, ping): one that accepts
/// connections but answers nothing (SIGSTOP, a deadlock) is reported down within this plus
/// [`PROBE_DEADLINE`], since an idle event stream shows nothing wrong.
pub const PROBE_EVERY: Duration = Duration::from_secs(3);
/// How long that answer may take.
pub const PROBE_DEADLINE: Duration = Duration::from_secs(5);

const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(30);
/// How often an absent socket is looked for: a runtime that starts later is picked up about
/// this fast, and a `stat` costs nothing.
const ABSENT_POLL: Duration = Duration::from_secs(2);

/// Doubling delays from half a second to 30 s, back to the start after a good connection.
struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: FIRST_RETRY }
    }
}

impl Backoff {
    fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(MAX_RETRY);
        d
    }

    fn absent(&self) -> Duration {
        ABSENT_POLL
    }

    fn reset(&mut self) {
        self.next = FIRST_RETRY;
    }
}

#[derive(PartialEq, Eq)]
enum Logged {
    Nothing,
    Absent,
    Down,
    Up,
}

/// Logs transitions only: one line when a runtime goes away, one when it is back.
struct SessionLog {
    resolver: &'static str,
    socket: String,
    last: Logged,
}

impl SessionLog {
    fn new(source: Source, socket: &Path) -> Self {
        SessionLog {
            resolver: source.as_str(),
            socket: socket.display().to_string(),
            last: Logged::Nothing,
        }
    }

    fn absent(&mut self) {
        if self.last != Logged::Absent {
            tracing::info!(resolver = self.resolver, socket = %self.socket,
                "runtime socket not present; names from this runtime resume when it appears");
            self.last = Logged::Absent;
        }
    }

    fn failed(&mut self, error: &dyn std::error::Error) {
        if self.last == Logged::Down {
            tracing::debug!(resolver = self.resolver, error = %error, "runtime still unreachable");
        } else {
            tracing::warn!(resolver = self.resolver, socket = %self.socket, error = %error,
                "runtime unreachable; keeping the names already known and retrying with backoff");
            self.last = Logged::Down;
        }
    }

    fn connected(&mut self) {
        if self.last != Logged::Up {
            tracing::info!(resolver = self.resolver, socket = %self.socket, "runtime connected");
            self.last = Logged::Up;
        }
    }
}

/// A resolver that talks to a runtime over a unix socket.
pub trait SocketResolver: Sync {
    type Error: std::error::Error + Send;

    /// One connection: answers until something fails, and returns what.
    fn session(&self, rc: &mut Reconnect) -> impl Future<Output = Self::Error> + Send;
}

/// The loop every socket resolver runs until aborted: wait for the socket, run a session until
/// it fails, report the failure and back off, again.
pub async fn run_sessions(resolver: &impl SocketResolver, mut rc: Reconnect, socket: &Path) {
    loop {
        if rc.socket_present(socket).await {
            let err = resolver.session(&mut rc).await;
            let delay = rc.failed(&err, Duration::MAX);
            tokio::time::sleep(delay).await;
        }
    }
}

/// A resolver's connection state: what it reports to the registry, the log and its backoff.
pub struct Reconnect {
    registry: Arc<Registry>,
    source: Source,
    log: SessionLog,
    backoff: Backoff,
}

impl Reconnect {
    pub fn new(registry: Arc<Registry>, source: Source, socket: &Path) -> Self {
        Reconnect {
            registry,
            source,
            log: SessionLog::new(source, socket),
            backoff: Backoff::default(),
        }
    }

    /// Whether `socket` exists; when it does not, reports the runtime absent and waits a poll.
    pub async fn socket_present(&mut self, socket: &Path) -> bool {
        if socket.exists() {
            return true;
        }
        self.registry.set_up(self.source, false);
        self.log.absent();
        tokio::time::sleep(self.backoff.absent()).await;
        false
    }

    /// Connected and answering: back to the shortest retry.
    pub fn connected(&mut self) {
        self.registry.set_up(self.source, true);
        self.backoff.reset();
        self.log.connected();
    }

    /// A failed connection or request: counted and logged on the transition; returns how long
    /// to wait before the next attempt.
    pub fn failed(&mut self, error: &dyn std::error::Error, at_most: Duration) -> Duration {
        self.registry.set_up(self.source, false);
        self.registry.count_error(self.source);
        self.log.failed(error);
        self.backoff.next_delay().min(at_most)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap_and_resets() {
        let mut b = Backoff::default();
        let delays: Vec<_> = (0..8).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
        b.reset();
        assert_eq!(b.next_delay(), FIRST_RETRY);
    }
}
