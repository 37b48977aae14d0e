//! The CPU controllers: accounting (user/system), CFS throttling, and the limits (spec).
//!
//! cgroup v2 keeps all of it in the cgroup's own directory (`cpu.stat`, `cpu.max`, `cpu.weight`).
//! On a hybrid host the v2 directory has only `cpu.stat` with usage/user/system; quotas,
//! throttling and shares live in the v1 `cpu` hierarchy at the same relative path. Accounting is
//! read from v2 when it is there: its membership is the one the eBPF programs see, and it is in
//! microseconds where v1 `cpuacct.stat` is in USER_HZ ticks.
use std::path::Path;

pub use super::read::ReadError;
use super::{
    parse::{self, ParseError},
    read::Files,
};
pub use crate::snapshot::cgroup::Throttling;
pub use crate::snapshot::cgroup::{CpuSpec, CpuStats};

/// Linux's USER_HZ, the unit of v1 `cpuacct.stat`: 100 on every architecture Kubernetes runs on.
const USER_HZ: u64 = 100;
/// CFS shares range for the v2 weight conversion (the kernel's and runc's formula).
const MIN_SHARES: u64 = 2;
const MAX_SHARES: u64 = 262_144;

/// The longest CPU list accepted: `0-8191` at worst takes 9 characters per CPU, and the
/// kernel prints ranges; past this a file is not a CPU list.
const MAX_MASK: usize = 4096;

/// A cpuset list (`0-3,6,8-11`, or empty when the set is empty): digits, `-` and `,` only, as
/// the kernel prints it.
pub fn parse_mask(text: &str) -> Result<std::sync::Arc<str>, ParseError> {
    let t = text.trim();
    let ok = t.len() <= MAX_MASK
        && t.split(',').filter(|r| !r.is_empty()).all(|range| {
            let mut ends = range.splitn(2, '-');
            let num = |s: Option<&str>| {
                s.is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            };
            let first = ends.next();
            num(first) && ends.next().is_none_or(|s| num(Some(s)))
        });
    if !ok {
        return Err(ParseError::BadLine(t.chars().take(64).collect()));
    }
    Ok(t.into())
}

/// The cpuset list of the cgroup in `dir`: `name` is `cpuset.cpus.effective` (v2) or
/// `cpuset.cpus` (v1). `None` where the controller is not enabled for it.
pub fn read_mask(
    files: &mut Files,
    dir: &Path,
    name: &str,
) -> Result<Option<std::sync::Arc<str>>, ReadError> {
    files.parsed(dir, name, parse_mask)
}

/// Reads v2 `cpu.stat` in `dir`.
pub fn read_v2_stat(files: &mut Files, dir: &Path) -> Result<CpuStats, ReadError> {
    Ok(files
        .parsed(dir, "cpu.stat", parse_v2_stat)?
        .unwrap_or_default())
}

pub fn parse_v2_stat(text: &str) -> Result<CpuStats, ParseError> {
    let mut s = CpuStats::default();
    let mut t = Throttling::default();
    let mut has_throttling = false;
    parse::flat_keyed(text, |k, v| match k {
        "usage_usec" => s.usage_ns = Some(v.saturating_mul(1000)),
        "user_usec" => s.user_ns = Some(v.saturating_mul(1000)),
        "system_usec" => s.system_ns = Some(v.saturating_mul(1000)),
        "nr_periods" => {
            t.periods = v;
            has_throttling = true;
        }
        "nr_throttled" => t.throttled_periods = v,
        "throttled_usec" => t.throttled_ns = v.saturating_mul(1000),
        "nr_bursts" => t.bursts = v,
        "burst_usec" => t.burst_ns = v.saturating_mul(1000),
        _ => {}
    })?;
    s.throttling = has_throttling.then_some(t);
    Ok(s)
}

/// Reads v2 `cpu.max` and `cpu.weight` in `dir` (absent in the root and where the cpu controller
/// is not enabled).
pub fn read_v2_spec(files: &mut Files, dir: &Path) -> Result<CpuSpec, ReadError> {
    let mut spec = CpuSpec::default();
    if let Some((quota, period)) = files.parsed(dir, "cpu.max", parse_v2_max)? {
        spec.quota_us = quota;
        spec.period_us = Some(period);
    }
    spec.shares = files.i64(dir, "cpu.weight")?.map(weight_to_shares);
    Ok(spec)
}

/// `cpu.max` is `$MAX $PERIOD`, `$MAX` being `max` when unlimited.
pub fn parse_v2_max(text: &str) -> Result<(Option<u64>, u64), ParseError> {
    let mut it = text.split_ascii_whitespace();
    let (Some(max), Some(period), None) = (it.next(), it.next(), it.next()) else {
        return Err(ParseError::BadLine(text.trim().to_string()));
    };
    let bad = |v: &str| ParseError::NotInteger(v.to_string());
    let quota = match max {
        "max" => None,
        v => Some(v.parse::<u64>().map_err(|_| bad(v))?),
    };
    let period = period.parse::<u64>().map_err(|_| bad(period))?;
    Ok((quota, period))
}

/// cgroup v2 `cpu.weight` [1, 10000] to v1 shares [2, 262144], the inverse of the mapping the
/// kernel documents and runc applies, so `container_spec_cpu_shares` reads the same on both.
pub fn weight_to_shares(weight: i64) -> u64 {
    let w = weight.clamp(1, 10_000) as u64;
    MIN_SHARES + ((w - 1) * (MAX_SHARES - MIN_SHARES)) / 9_999
}

/// Reads the v1 `cpu` controller directory: CFS spec and throttling.
pub fn read_v1_cpu(
    files: &mut Files,
    dir: &Path,
) -> Result<(CpuSpec, Option<Throttling>), ReadError> {
    let mut spec = CpuSpec::default();
    let mut one = |name: &str| files.i64(dir, name);
    spec.shares = one("cpu.shares")?.map(|v| v.max(0) as u64);
    spec.period_us = one("cpu.cfs_period_us")?.map(|v| v.max(0) as u64);
    spec.quota_us = one("cpu.cfs_quota_us")?.and_then(|v| (v > 0).then_some(v as u64));
    let throttling = files.parsed(dir, "cpu.stat", parse_v1_cpu_stat)?.flatten();
    Ok((spec, throttling))
}

/// v1 `cpu.stat`: `nr_periods`, `nr_throttled`, `throttled_time`, `nr_bursts`, `burst_time` (ns).
pub fn parse_v1_cpu_stat(text: &str) -> Result<Option<Throttling>, ParseError> {
    let mut t = Throttling::default();
    let mut seen = false;
    parse::flat_keyed(text, |k, v| match k {
        "nr_periods" => {
            t.periods = v;
            seen = true;
        }
        "nr_throttled" => t.throttled_periods = v,
        "throttled_time" => t.throttled_ns = v,
        "nr_bursts" => t.bursts = v,
        "burst_time" => t.burst_ns = v,
        _ => {}
    })?;
    Ok(seen.then_some(t))
}

/// Reads v1 `cpuacct.stat` (user/system in USER_HZ ticks) in `dir`.
pub fn read_v1_cpuacct(files: &mut Files, dir: &Path) -> Result<Option<(u64, u64)>, ReadError> {
    files.parsed(dir, "cpuacct.stat", parse_v1_cpuacct)
}

pub fn parse_v1_cpuacct(text: &str) -> Result<(u64, u64), ParseError> {
    let (mut user, mut system) = (None, None);
    let ns_per_tick = 1_000_000_000 / USER_HZ;
    parse::flat_keyed(text, |k, v| match k {
        "user" => user = Some(v.saturating_mul(ns_per_tick)),
        "system" => system = Some(v.saturating_mul(ns_per_tick)),
        _ => {}
    })?;
    match (user, system) {
        (Some(u), Some(s)) => Ok((u, s)),
        _ => Err(ParseError::BadLine(text.trim().to_string())),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn cpu_lists_are_taken_as_the_kernel_prints_them_and_nothing_else() {
        for ok in ["0-1", "0-3,6,8-11\n", "5", ""] {
            assert_eq!(&*parse_mask(ok).expect(ok), ok.trim());
        }
        for bad in ["0-", "-1", "0--2", "a", "0-1\n2", "0 1", "0-1-2"] {
            assert!(parse_mask(bad).is_err(), "{bad:?} taken");
        }
        assert!(parse_mask(&"1,".repeat(3000)).is_err(), "no list that long");
    }

    use super::*;
    use crate::testutil::fixture;

    #[test]
    fn v2_stat_with_and_without_the_cpu_controller() {
        let with = parse_v2_stat(
            "usage_usec 2000\nuser_usec 1500\nsystem_usec 500\nnr_periods 10\nnr_throttled 3\n\
             throttled_usec 7\nnr_bursts 2\nburst_usec 40\n",
        )
        .expect("parse");
        assert_eq!(with.usage_ns, Some(2_000_000));
        assert_eq!(with.user_ns, Some(1_500_000));
        assert_eq!(
            with.throttling,
            Some(Throttling {
                periods: 10,
                throttled_periods: 3,
                throttled_ns: 7_000,
                bursts: 2,
                burst_ns: 40_000,
            })
        );
        let without = parse_v2_stat("usage_usec 1\nuser_usec 1\nsystem_usec 0\n").expect("parse");
        assert_eq!(without.throttling, None);
    }

    #[test]
    fn v2_max_and_weight() {
        assert_eq!(parse_v2_max("max 100000\n"), Ok((None, 100_000)));
        assert_eq!(parse_v2_max("50000 100000\n"), Ok((Some(50_000), 100_000)));
        assert!(parse_v2_max("50000\n").is_err());
        assert!(parse_v2_max("lots 100000").is_err());
        // Kubernetes' 1 CPU request = 1024 shares = weight 39 on v2 (and back, with rounding).
        assert_eq!(weight_to_shares(100), 2 + (99 * 262_142) / 9_999);
        assert_eq!(weight_to_shares(1), 2);
        assert_eq!(weight_to_shares(10_000), 262_144);
        assert_eq!(weight_to_shares(0), 2);
    }

    #[test]
    fn v1_cpuacct_in_ticks() {
        assert_eq!(
            parse_v1_cpuacct("user 150\nsystem 25\n"),
            Ok((1_500_000_000, 250_000_000))
        );
        assert!(parse_v1_cpuacct("user 1\n").is_err());
        assert!(parse_v1_cpuacct("user x\nsystem 1\n").is_err());
    }

    #[test]
    fn v2_fixture_tree() {
        let root = fixture("v2");
        let c = root.join("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice");
        let stats = read_v2_stat(&mut Files::new(8), &c).expect("cpu.stat");
        assert_eq!(stats.user_ns, Some(3_000_000));
        assert!(stats.throttling.is_some());
        let spec = read_v2_spec(&mut Files::new(8), &c).expect("spec");
        assert_eq!(spec.quota_us, Some(50_000));
        assert_eq!(spec.period_us, Some(100_000));
        assert_eq!(spec.shares, Some(weight_to_shares(39)));
        // The root has cpu.stat but no cpu.max / cpu.weight.
        let root_spec = read_v2_spec(&mut Files::new(8), &root).expect("root spec");
        assert_eq!(root_spec, CpuSpec::default());
    }

    #[test]
    fn hybrid_fixture_tree() {
        let root = fixture("hybrid");
        let (spec, thr) =
            read_v1_cpu(&mut Files::new(8), &root.join("cpu/docker/abc")).expect("v1 cpu");
        assert_eq!(spec.quota_us, Some(50_000));
        assert_eq!(spec.shares, Some(512));
        assert_eq!(thr.map(|t| t.throttled_ns), Some(123_456_789));
        // v1 counts burst time in ns where v2 has microseconds.
        let v1 = parse_v1_cpu_stat(
            "nr_periods 9\nnr_throttled 1\nthrottled_time 5\nnr_bursts 4\nburst_time 1234\n",
        )
        .expect("v1 cpu.stat")
        .expect("throttling");
        assert_eq!((v1.bursts, v1.burst_ns), (4, 1234));
        let (unlimited, _) =
            read_v1_cpu(&mut Files::new(8), &root.join("cpu")).expect("v1 cpu root");
        assert_eq!(unlimited.quota_us, None);
        assert_eq!(unlimited.period_us, Some(100_000));
        let acct =
            read_v1_cpuacct(&mut Files::new(8), &root.join("cpuacct/docker/abc")).expect("cpuacct");
        assert_eq!(acct, Some((2_000_000_000, 1_000_000_000)));
        // The unified side of a hybrid host has accounting but no throttling.
        let v2 = read_v2_stat(&mut Files::new(8), &root.join("unified/docker/abc"))
            .expect("unified cpu.stat");
        assert_eq!(v2.user_ns, Some(2_010_000_000));
        assert_eq!(v2.throttling, None);
    }

    #[test]
    fn garbled_and_vanished_files() {
        let root = fixture("garbled");
        let err = read_v2_stat(&mut Files::new(8), &root).expect_err("garbled cpu.stat");
        assert!(err.to_string().contains("cpu.stat"), "{err}");
        assert!(read_v2_spec(&mut Files::new(8), &root).is_err());
        // A cgroup that is gone reads as "nothing", not as an error.
        let gone = root.join("no-such-cgroup");
        assert_eq!(
            read_v2_stat(&mut Files::new(8), &gone).expect("gone"),
            CpuStats::default()
        );
        assert_eq!(
            read_v1_cpuacct(&mut Files::new(8), &gone).expect("gone"),
            None
        );
    }
}
