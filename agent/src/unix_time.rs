//! Unix seconds from outside data (a cgroup directory's mtime, a runtime's timestamp) turned
//! into `SystemTime` without the arithmetic that panics: `UNIX_EPOCH + Duration::from_secs_f64`
//! panics for a NaN, a negative or a huge value, and anyone who owns a delegated cgroup can set
//! its directory's mtime to 2^63 s with `touch -d`.
use std::time::{Duration, SystemTime};

/// `secs` after the epoch, or `None` for a value no clock can hold (NaN, infinite, not after the
/// epoch, or beyond what `SystemTime` represents).
pub fn from_secs(secs: f64) -> Option<SystemTime> {
    // NaN fails this too.
    if secs.is_nan() || secs <= 0.0 {
        return None;
    }
    let d = Duration::try_from_secs_f64(secs).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(d)
}

/// Seconds since the epoch; 0 for a time before it.
pub fn secs(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_values_are_refused_not_panicked_on() {
        for s in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -1.0,
            0.0,
            9_223_372_036_854_775_807.0,
            f64::MAX,
        ] {
            // 2^63 s (what `touch -d @9223372036854775807` leaves) fits a Duration but not a
            // SystemTime: refused by checked_add where `+` panicked.
            assert_eq!(from_secs(s), None, "{s}");
        }
        let t = from_secs(1_795_000_000.5).expect("an ordinary time");
        assert_eq!(secs(t), 1_795_000_000.5);
    }
}
