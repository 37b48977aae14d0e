//! Pressure stall information (cgroup v2 `cpu.pressure`, `memory.pressure`, `io.pressure`).
//!
//! cAdvisor's mapping: `waiting` is the `some` total (time at least one task was stalled),
//! `stalled` the `full` total (time all non-idle tasks were stalled at once), in seconds. The
//! kernel's running averages (the share of the last 10, 60 and 300 s spent stalled) are kept as
//! it prints them, in hundredths of a percent, for the JSON API's `avg10/avg60/avg300`.
use std::path::Path;

use super::{
    parse::ParseError,
    read::{Files, ReadError},
};
pub use crate::snapshot::cgroup::Averages;
pub use crate::snapshot::cgroup::{Pressure, PressureStats};

impl Averages {
    /// As cAdvisor's JSON has them: percent.
    pub fn percent(&self) -> [f64; 3] {
        self.0.map(|h| f64::from(h) / 100.0)
    }
}

impl PressureStats {
    /// Whether any running average is above zero: the kernel is still moving it.
    pub fn averaging(&self) -> bool {
        [self.cpu, self.memory, self.io]
            .into_iter()
            .flatten()
            .any(|p| {
                p.some_avg != Averages::default()
                    || p.full_avg.is_some_and(|a| a != Averages::default())
            })
    }
}

pub fn read(files: &mut Files, dir: &Path) -> Result<PressureStats, ReadError> {
    let mut one = |name: &str| files.parsed(dir, name, parse);
    Ok(PressureStats {
        cpu: one("cpu.pressure")?,
        memory: one("memory.pressure")?,
        io: one("io.pressure")?,
    })
}

/// `some avg10=0.00 avg60=0.00 avg300=0.00 total=123` and an optional `full ...` line.
pub fn parse(text: &str) -> Result<Pressure, ParseError> {
    let mut some = None;
    let mut full = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut fields = line.split_ascii_whitespace();
        let kind = fields.next();
        let mut total = None;
        let mut avg = [None; 3];
        for field in fields {
            let Some((key, value)) = field.split_once('=') else {
                continue;
            };
            let bad = || ParseError::BadValue {
                key: key.chars().take(16).collect(),
                value: value.chars().take(32).collect(),
            };
            let slot = match key {
                "total" => {
                    total = Some(value.parse::<u64>().map_err(|_| bad())?);
                    continue;
                }
                "avg10" => 0,
                "avg60" => 1,
                "avg300" => 2,
                _ => continue,
            };
            avg[slot] = Some(hundredths(value).ok_or_else(bad)?);
        }
        let total = total.ok_or_else(|| ParseError::BadLine(line.chars().take(64).collect()))?;
        // Averages are optional: a line with only a total still gives the total.
        let avg = Averages(avg.map(|a| a.unwrap_or(0)));
        match kind {
            Some("some") => some = Some((total, avg)),
            Some("full") => full = Some((total, avg)),
            _ => {}
        }
    }
    let (some_us, some_avg) =
        some.ok_or_else(|| ParseError::BadLine(text.trim().chars().take(64).collect()))?;
    Ok(Pressure {
        some_us,
        full_us: full.map(|f| f.0),
        some_avg,
        full_avg: full.map(|f| f.1),
    })
}

/// `12.34` to 1234; the kernel's figure is a percentage with two decimals, at most `100.00`.
fn hundredths(text: &str) -> Option<u16> {
    let (whole, frac) = text.split_once('.').unwrap_or((text, "00"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(frac) || whole.len() > 3 {
        return None;
    }
    let frac: u32 = match frac.len() {
        1 => frac.parse::<u32>().ok()? * 10,
        2 => frac.parse().ok()?,
        _ => return None,
    };
    let v = whole.parse::<u32>().ok()? * 100 + frac;
    u16::try_from(v).ok().filter(|v| *v <= 10_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn some_and_full() {
        let p = parse(
            "some avg10=0.04 avg60=1.20 avg300=3.81 total=139824063\n\
             full avg10=0.00 avg60=0.00 avg300=0.00 total=17\n",
        )
        .expect("parse");
        assert_eq!(p.some_us, 139_824_063);
        assert_eq!(p.full_us, Some(17));
        assert_eq!(p.some_avg, Averages([4, 120, 381]));
        assert_eq!(p.some_avg.percent(), [0.04, 1.2, 3.81]);
        assert_eq!(p.full_avg, Some(Averages([0, 0, 0])));
        let busy = parse("some avg10=100.00 avg60=99.5 avg300=7 total=1\n").expect("busy");
        assert_eq!(busy.some_avg, Averages([10_000, 9_950, 700]));
        for bad in [
            "100.01", "1.234", "-1.00", "1e2", ".5", "5.", "1000", "999.99", "nan",
        ] {
            let line = format!("some avg10={bad} avg60=0.00 avg300=0.00 total=1\n");
            assert!(parse(&line).is_err(), "{bad} taken");
        }
        let old_cpu = parse("some avg10=0.00 avg60=0.00 avg300=0.00 total=5\n").expect("parse");
        assert_eq!(old_cpu.full_us, None);
        assert!(parse("some avg10=0.00\n").is_err());
        assert!(parse("some total=x\n").is_err());
        assert!(parse("").is_err());
    }
}
