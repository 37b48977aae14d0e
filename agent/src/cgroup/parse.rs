//! Parsers for the shapes cgroupfs files come in. They take text, not paths, so garbled input is
//! tested directly; every failure names the offending key or line.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// A `key value` line whose value is not an integer.
    #[error("bad value for `{key}`: `{value}`")]
    BadValue { key: String, value: String },
    /// A line that is not `key value`.
    #[error("malformed line `{0}`")]
    BadLine(String),
    /// A single-value file that is empty or not a number.
    #[error("not an integer: `{0}`")]
    NotInteger(String),
}

/// Parses "flat keyed" files (`key value` per line: cpu.stat, cpuacct.stat, memory.stat ...),
/// calling `f` for each pair. Unknown keys are passed through; the caller picks what it knows.
pub fn flat_keyed(text: &str, mut f: impl FnMut(&str, u64)) -> Result<(), ParseError> {
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut it = line.split_ascii_whitespace();
        let (Some(key), Some(value), None) = (it.next(), it.next(), it.next()) else {
            return Err(ParseError::BadLine(line.to_string()));
        };
        let v = value.parse::<u64>().map_err(|_| ParseError::BadValue {
            key: key.to_string(),
            value: value.to_string(),
        })?;
        f(key, v);
    }
    Ok(())
}

/// Parses a file holding one integer (`cpu.shares`, `cpu.cfs_quota_us`, `cpu.weight`).
pub fn single_i64(text: &str) -> Result<i64, ParseError> {
    let t = text.trim();
    t.parse::<i64>()
        .map_err(|_| ParseError::NotInteger(t.to_string()))
}

/// Parses a file holding one unsigned integer (`memory.current`, `memory.limit_in_bytes`).
pub fn single_u64(text: &str) -> Result<u64, ParseError> {
    let t = text.trim();
    t.parse::<u64>()
        .map_err(|_| ParseError::NotInteger(t.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_keyed_reads_pairs_and_rejects_garbage() {
        let mut seen = Vec::new();
        flat_keyed("usage_usec 10\nuser_usec 7\n\n", |k, v| {
            seen.push((k.to_string(), v))
        })
        .expect("valid");
        assert_eq!(
            seen,
            vec![("usage_usec".into(), 10), ("user_usec".into(), 7)]
        );
        assert_eq!(
            flat_keyed("usage_usec ten\n", |_, _| {}),
            Err(ParseError::BadValue {
                key: "usage_usec".into(),
                value: "ten".into()
            })
        );
        assert!(flat_keyed("usage_usec\n", |_, _| {}).is_err());
        assert!(flat_keyed("a 1 2\n", |_, _| {}).is_err());
        assert!(flat_keyed("a -1\n", |_, _| {}).is_err());
    }

    #[test]
    fn single_values() {
        assert_eq!(single_i64("-1\n"), Ok(-1));
        assert_eq!(single_i64("1024"), Ok(1024));
        assert!(single_i64("").is_err());
        assert!(single_i64("max").is_err());
    }
}
