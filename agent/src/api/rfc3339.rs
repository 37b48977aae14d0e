//! RFC 3339 timestamps as cAdvisor writes them (Go's `RFC3339Nano`: UTC, nanoseconds with
//! trailing zeros trimmed) and reads them (any offset, optional fraction).
use std::time::{Duration, SystemTime};

/// Go's zero `time.Time`, which cAdvisor writes for times it does not know.
pub const ZERO: &str = "0001-01-01T00:00:00Z";

pub fn format(t: SystemTime) -> String {
    let d = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, day) = civil_from_days(days);
    let mut out = format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    let nanos = d.subsec_nanos();
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Unix seconds (as the snapshot keeps creation times) to a timestamp.
pub fn format_unix(secs: f64) -> String {
    crate::unix_time::from_secs(secs).map_or_else(|| ZERO.to_string(), format)
}

/// `2026-11-22T14:30:10.566650779Z`, `2026-11-22T15:30:10+01:00`.
pub fn parse(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos: u64 = 0;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let digits = s.get(start..i)?;
        if digits.is_empty() || digits.len() > 9 {
            return None;
        }
        nanos = format!("{digits:0<9}").parse().ok()?;
    }
    // Compared as bytes: a multi-byte character in the offset must not be sliced through.
    let offset = match &b[i..] {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let off = oh * 3600 + om * 60;
            if *sign == b'+' { off } else { -off }
        }
        _ => return None,
    };
    let unix = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset;
    let unix = u64::try_from(unix).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(unix) + Duration::from_nanos(nanos))
}

// Howard Hinnant's days <-> civil date algorithms (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_as_go_writes_them() {
        // From the recorded cAdvisor answers.
        for s in [
            "2026-11-22T14:30:10.566650779Z",
            "2026-11-22T14:32:18.96313167Z",
            "2000-02-29T00:00:00Z",
            "1970-01-01T00:00:01.5Z",
        ] {
            let t = parse(s).unwrap_or_else(|| panic!("{s}"));
            assert_eq!(format(t), s);
        }
        assert_eq!(
            parse("2026-11-22T15:30:10+01:00"),
            parse("2026-11-22T14:30:10Z")
        );
        assert_eq!(format_unix(0.0), ZERO);
    }

    #[test]
    fn rejects_what_is_not_a_timestamp() {
        for s in [
            "",
            "2026-11-22",
            "2026-13-01T00:00:00Z",
            "2026-11-22T14:30:10",
            "2026-11-22T14:30:10.Z",
            "2026-11-22T14:30:10.1234567890Z",
            "2026-11-22T14:30:10+0100",
            "1969-12-31T23:59:59Z",
            "2026-11-22T1a:30:10Z",
            "２026-11-22T14:30:10Z",
            // A multi-byte character in the offset once panicked the handler (byte slicing).
            "2026-11-22T14:30:10%C3%A90:00",
            "2026-11-22T14:30:10é0:00",
            "2026-11-22T14:30:10+é:00",
            "2026-11-22T14:30:10+01:0é",
            "2026-11-22T14:30:10+24:00",
        ] {
            assert_eq!(parse(s), None, "{s}");
        }
    }
}
