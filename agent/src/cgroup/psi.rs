//! Pressure stall information (cgroup v2 `cpu.pressure`, `memory.pressure`, `io.pressure`).
//!
//! cAdvisor's mapping: `waiting` is the `some` total (time at least one task was stalled),
//! `stalled` the `full` total (time all non-idle tasks were stalled at once), in seconds.
use std::path::Path;

use super::{
    parse::ParseError,
    read::{Files, ReadError},
};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pressure {
    pub some_us: u64,
    /// Absent for `cpu.pressure` on kernels before 5.13.
    pub full_us: Option<u64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PressureStats {
    pub cpu: Option<Pressure>,
    pub memory: Option<Pressure>,
    pub io: Option<Pressure>,
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
        let total = fields
            .find_map(|f| f.strip_prefix("total="))
            .ok_or_else(|| ParseError::BadLine(line.to_string()))?;
        let total = total.parse::<u64>().map_err(|_| ParseError::BadValue {
            key: "total".to_string(),
            value: total.to_string(),
        })?;
        match kind {
            Some("some") => some = Some(total),
            Some("full") => full = Some(total),
            _ => {}
        }
    }
    let some_us = some.ok_or_else(|| ParseError::BadLine(text.trim().to_string()))?;
    Ok(Pressure {
        some_us,
        full_us: full,
    })
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
        let old_cpu = parse("some avg10=0.00 avg60=0.00 avg300=0.00 total=5\n").expect("parse");
        assert_eq!(old_cpu.full_us, None);
        assert!(parse("some avg10=0.00\n").is_err());
        assert!(parse("some total=x\n").is_err());
        assert!(parse("").is_err());
    }
}
