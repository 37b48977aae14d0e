//! Who may talk to the agent: `--web-config-file`, the Prometheus exporter toolkit's web
//! configuration (TLS, client certificates, basic auth, response headers, a request rate limit).
//!
//! The file and every file it names are watched: at most once a second, on a connection or
//! request, their identity (device, inode, mtime, size) is compared with the last load, and a
//! change reloads them, so a certificate rotated by cert-manager (a new Secret volume behind
//! the same path) is served to the next connection without a restart. A reload that fails keeps
//! the last good configuration (the toolkit instead fails every request until the file is
//! fixed), logs the reason once and shows in `nodetel_web_config_last_reload_successful`.
//! Whether TLS is on is fixed at start: turning it on or off is a restart.
pub mod basic_auth;
pub mod tls;
pub mod web_config;

use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, atomic::Ordering},
    time::{Duration, Instant},
};

use hyper::header::{HeaderName, HeaderValue};

use crate::http::HttpStats;
use basic_auth::{Budget, Users, Verdict, Verifier};
use web_config::WebConfig;

/// How often the files' identities are compared at most.
const RECHECK: Duration = Duration::from_secs(1);

/// One loaded configuration.
pub struct Active {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    users: Option<Arc<Users>>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    limiter: Option<Mutex<Budget>>,
}

/// What a request may do.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// 401 with `WWW-Authenticate`.
    Unauthorized,
    /// 429.
    TooMany,
}

pub struct Access {
    path: PathBuf,
    tls_on: bool,
    state: Mutex<State>,
    verifier: Verifier,
    stats: Arc<HttpStats>,
}

struct State {
    active: Arc<Active>,
    stamps: Stamps,
    checked: Instant,
    /// The last reload error logged, so a broken file is logged once, not every second.
    last_error: Option<String>,
}

/// The files of one load, each with its identity when read (None: it did not exist).
type Stamps = Vec<(PathBuf, Option<Stamp>)>;

/// A file's identity: any change (rewritten in place, or a new file renamed or symlinked over
/// it) changes one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    mtime_ns: i128,
    size: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        dev: m.dev(),
        ino: m.ino(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        size: m.len(),
    })
}

impl Access {
    /// Loads the file; any error is a refusal to start, with the reason.
    pub fn load(path: &Path, stats: Arc<HttpStats>) -> Result<Access, String> {
        let (active, stamps) = load(path)?;
        let tls_on = active.tls.is_some();
        stats.web_config_valid.store(1, Ordering::Relaxed);
        Ok(Access {
            path: path.to_path_buf(),
            tls_on,
            state: Mutex::new(State {
                active: Arc::new(active),
                stamps,
                checked: Instant::now(),
                last_error: None,
            }),
            verifier: Verifier::default(),
            stats,
        })
    }

    pub fn tls_on(&self) -> bool {
        self.tls_on
    }

    pub fn users_configured(&self) -> bool {
        self.current().users.is_some()
    }

    /// The configuration to use now, reloaded first if its files changed.
    pub fn current(&self) -> Arc<Active> {
        let mut st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if st.checked.elapsed() >= RECHECK {
            st.checked = Instant::now();
            let changed = st.stamps.iter().any(|(p, s)| stamp(p) != *s);
            if changed {
                self.reload(&mut st);
            }
        }
        Arc::clone(&st.active)
    }

    fn reload(&self, st: &mut State) {
        let result = load(&self.path).and_then(|(active, stamps)| {
            if active.tls.is_some() != self.tls_on {
                Err(
                    "turning TLS on or off needs a restart; keeping the running configuration"
                        .to_string(),
                )
            } else {
                Ok((active, stamps))
            }
        });
        match result {
            Ok((active, stamps)) => {
                st.active = Arc::new(active);
                st.stamps = stamps;
                st.last_error = None;
                self.stats
                    .web_config_reloads
                    .fetch_add(1, Ordering::Relaxed);
                self.stats.web_config_valid.store(1, Ordering::Relaxed);
                tracing::info!(file = %self.path.display(), "web config reloaded");
            }
            Err(e) => {
                // Stamps are taken anew so the same broken state is not re-read every second;
                // the next change to any file is tried again.
                st.stamps = current_stamps(&st.stamps);
                self.stats
                    .web_config_reload_failures
                    .fetch_add(1, Ordering::Relaxed);
                self.stats.web_config_valid.store(0, Ordering::Relaxed);
                if st.last_error.as_deref() != Some(e.as_str()) {
                    tracing::error!(file = %self.path.display(), error = %e, "web config reload failed; the last good one stays in use");
                    st.last_error = Some(e);
                }
            }
        }
    }

    /// Checks a request against the rate limit and the users. `authorization` is the header's
    /// raw value.
    pub async fn decide(&self, active: &Active, authorization: Option<&[u8]>) -> Decision {
        if let Some(limiter) = &active.limiter
            && !limiter
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take(Instant::now())
        {
            self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
            return Decision::TooMany;
        }
        let Some(users) = &active.users else {
            return Decision::Allowed;
        };
        let verdict = self.verifier.check(users, authorization).await;
        let counter = match verdict {
            Verdict::Allowed => return Decision::Allowed,
            Verdict::Missing => &self.stats.auth_missing,
            Verdict::Denied => &self.stats.auth_denied,
            Verdict::Throttled => &self.stats.auth_throttled,
        };
        let n = counter.fetch_add(1, Ordering::Relaxed);
        // One line for the first failure of each kind, then at powers of two: a client retrying
        // with a wrong password does not fill the log.
        if verdict != Verdict::Missing && (n + 1).is_power_of_two() {
            tracing::warn!(outcome = ?verdict, count = n + 1, "basic authentication failed");
        }
        match verdict {
            Verdict::Throttled => Decision::TooMany,
            _ => Decision::Unauthorized,
        }
    }
}

/// The same files' identities now.
fn current_stamps(old: &[(PathBuf, Option<Stamp>)]) -> Stamps {
    old.iter().map(|(p, _)| (p.clone(), stamp(p))).collect()
}

/// Reads the config and the files it names. The stamps are taken before reading, so a file
/// replaced during the read is seen as changed at the next check and read again.
fn load(path: &Path) -> Result<(Active, Stamps), String> {
    let config_stamp = stamp(path);
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let config = WebConfig::parse(&text, dir).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut stamps = vec![(path.to_path_buf(), config_stamp)];
    for f in config.files() {
        let s = stamp(&f);
        stamps.push((f, s));
    }
    let read = |inline: &Option<String>,
                file: &Option<PathBuf>,
                what: &str|
     -> Result<Option<Vec<u8>>, String> {
        match (inline, file) {
            (Some(text), _) => Ok(Some(text.clone().into_bytes())),
            (None, Some(f)) => std::fs::read(f)
                .map(Some)
                .map_err(|e| format!("{what} {}: {e}", f.display())),
            (None, None) => Ok(None),
        }
    };
    let t = &config.tls_server_config;
    let tls = if config.tls_enabled() {
        let pems = tls::Pems {
            cert: read(&t.cert, &t.cert_file, "cert_file")?.unwrap_or_default(),
            key: read(&t.key, &t.key_file, "key_file")?.unwrap_or_default(),
            client_ca: read(&t.client_ca, &t.client_ca_file, "client_ca_file")?,
        };
        Some(Arc::new(
            tls::server_config(t, &pems).map_err(|e| format!("tls_server_config: {e}"))?,
        ))
    } else {
        if t.client_ca.is_some() || t.client_ca_file.is_some() {
            return Err("tls_server_config: client CAs without a certificate and key".into());
        }
        None
    };
    let headers = config
        .http_server_config
        .headers
        .iter()
        .map(|(k, v)| {
            Ok((
                HeaderName::from_bytes(k.as_bytes()).map_err(|e| format!("header {k}: {e}"))?,
                HeaderValue::from_str(v).map_err(|e| format!("header {k}: {e}"))?,
            ))
        })
        .collect::<Result<_, String>>()?;
    let limiter = match &config.rate_limit {
        Some(r) => {
            let interval = go_duration(r.interval.as_deref().unwrap_or("0"))
                .map_err(|e| format!("rate_limit.interval: {e}"))?;
            if interval.is_zero() {
                None
            } else {
                let burst = f64::from(r.burst.max(1));
                Some(Mutex::new(Budget::new(1.0 / interval.as_secs_f64(), burst)))
            }
        }
        None => None,
    };
    let users = Users::new(config.basic_auth_users)?.map(Arc::new);
    Ok((
        Active {
            tls,
            users,
            headers,
            limiter,
        },
        stamps,
    ))
}

/// A Go duration with one unit ("1s", "250ms", "0").
fn go_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .ok_or_else(|| format!("{s:?} has no unit"))?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration"))?;
    let secs = match unit {
        "ns" => n / 1e9,
        "us" | "µs" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit in {s:?}")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration("0"), Ok(Duration::ZERO));
        assert_eq!(go_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(go_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(go_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert!(go_duration("5").is_err());
        assert!(go_duration("5y").is_err());
        assert!(go_duration("-1s").is_err());
    }
}
