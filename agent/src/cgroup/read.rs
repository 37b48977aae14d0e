//! Reading cgroupfs files: every controller reader goes through here, so "the cgroup went away"
//! and "the file is garbage" are told apart the same way everywhere.
use std::{io, path::Path};

use super::parse::{self, ParseError};

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A file exists but its content does not parse.
    #[error("`{file}`: {source}")]
    Parse { file: String, source: ParseError },
    /// A file exists but cannot be read for another reason than the cgroup going away.
    #[error("`{file}`: {source}")]
    Io { file: String, source: io::Error },
}

/// Reads a file, mapping "the cgroup or the file is gone" to `None`: a container that exits
/// between the walk and the read is normal, and a file a kernel or controller lacks means the
/// metric is absent, not zero.
pub fn read_opt(path: &Path) -> Result<Option<String>, ReadError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if gone(&e) => Ok(None),
        Err(source) => Err(ReadError::Io {
            file: path.display().to_string(),
            source,
        }),
    }
}

fn gone(e: &io::Error) -> bool {
    // ENODEV: the cgroup was removed while the file was open. ENOTSUP/EOPNOTSUPP: a file that
    // exists but whose controller is off here (e.g. memory.swap.current without swap accounting).
    e.kind() == io::ErrorKind::NotFound || matches!(e.raw_os_error(), Some(19 | 95))
}

pub fn parse_err(path: &Path, source: ParseError) -> ReadError {
    ReadError::Parse {
        file: path.display().to_string(),
        source,
    }
}

/// Reads `dir/name` if present and parses it with `parse`; a parse failure names the file.
/// Every controller reader goes through this, so absent and garbled are told apart once.
pub fn read_parsed<T>(
    dir: &Path,
    name: &str,
    parse: impl FnOnce(&str) -> Result<T, ParseError>,
) -> Result<Option<T>, ReadError> {
    let path = dir.join(name);
    match read_opt(&path)? {
        Some(text) => parse(&text).map(Some).map_err(|e| parse_err(&path, e)),
        None => Ok(None),
    }
}

/// A file holding one unsigned integer (`memory.current`, `pids.current`), if present.
pub fn read_u64(dir: &Path, name: &str) -> Result<Option<u64>, ReadError> {
    read_parsed(dir, name, parse::single_u64)
}

/// A file holding one signed integer (v1 `cpu.cfs_quota_us` is -1 when unlimited), if present.
pub fn read_i64(dir: &Path, name: &str) -> Result<Option<i64>, ReadError> {
    read_parsed(dir, name, parse::single_i64)
}

/// A limit file: a number, or `max` for unlimited (v2), returned as `u64::MAX`.
pub fn read_limit(dir: &Path, name: &str) -> Result<Option<u64>, ReadError> {
    read_parsed(dir, name, |text| match text.trim() {
        "max" => Ok(u64::MAX),
        _ => parse::single_u64(text),
    })
}

/// A flat-keyed file (`memory.stat`, `memory.events`), with `f` picking the keys it knows;
/// false when the file is absent.
pub fn read_flat_keyed(
    dir: &Path,
    name: &str,
    f: impl FnMut(&str, u64),
) -> Result<bool, ReadError> {
    Ok(read_parsed(dir, name, |text| parse::flat_keyed(text, f))?.is_some())
}
