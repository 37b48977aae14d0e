//! What a request asks for: the container name in its path, its query parameters and the v1
//! body, each checked and bounded before anything is looked up.
use std::{collections::HashMap, time::Duration};

use hyper::StatusCode;

use super::rfc3339;
use crate::{
    events::{EventKind, EventQuery},
    history::Range,
};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(m: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: m.into(),
        }
    }

    pub fn not_found(m: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: m.into(),
        }
    }

    pub fn internal(m: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: m.into(),
        }
    }

    pub fn not_ready() -> Self {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "no snapshot yet".into(),
        }
    }
}

/// The container name in a request path (`docker/abc` -> `/docker/abc`), percent-decoded and
/// normalised. `.` and `..` segments are refused, not resolved: a name is a cgroup path below
/// the root and nothing else.
pub fn container_name(args: &str) -> Result<String, ApiError> {
    let decoded = percent_encoding::percent_decode_str(args)
        .decode_utf8()
        .map_err(|_| ApiError::bad_request("container name is not UTF-8"))?;
    if decoded.contains('\0') {
        return Err(ApiError::bad_request("container name contains NUL"));
    }
    let mut name = String::with_capacity(decoded.len() + 1);
    for seg in decoded.split('/').filter(|s| !s.is_empty()) {
        if seg == "." || seg == ".." {
            return Err(ApiError::not_found(
                "container names are paths below the cgroup root; `.` and `..` are not allowed",
            ));
        }
        name.push('/');
        name.push_str(seg);
    }
    if name.is_empty() {
        name.push('/');
    }
    Ok(name)
}

/// Query parameters, the first value of each (Go's `Query().Get`).
pub struct Params(HashMap<String, String>);

impl Params {
    pub fn parse(query: Option<&str>) -> Params {
        let mut map = HashMap::new();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            map.entry(k.into_owned()).or_insert_with(|| v.into_owned());
        }
        Params(map)
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }

    /// Go's `strconv.ParseBool`.
    pub fn bool(&self, k: &str) -> Result<Option<bool>, ApiError> {
        match self.get(k) {
            None => Ok(None),
            Some("1" | "t" | "T" | "TRUE" | "true" | "True") => Ok(Some(true)),
            Some("0" | "f" | "F" | "FALSE" | "false" | "False") => Ok(Some(false)),
            Some(v) => Err(ApiError::bad_request(format!("{k}={v:?} is not a boolean"))),
        }
    }

    fn int(&self, k: &str) -> Result<Option<i64>, ApiError> {
        self.get(k)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| ApiError::bad_request(format!("{k}={v:?} is not an integer")))
            })
            .transpose()
    }

    fn time(&self, k: &str) -> Result<Option<std::time::SystemTime>, ApiError> {
        self.get(k)
            .map(|v| {
                rfc3339::parse(v).ok_or_else(|| {
                    ApiError::bad_request(format!("{k}={v:?} is not an RFC 3339 time"))
                })
            })
            .transpose()
    }
}

/// v2's request options.
#[derive(Debug)]
pub struct V2Options {
    /// `type=docker` (or podman): the name is a runtime id or name.
    pub docker: bool,
    /// `None` = all (`count=-1`).
    pub count: Option<usize>,
    pub recursive: bool,
}

impl V2Options {
    pub fn parse(p: &Params) -> Result<V2Options, ApiError> {
        let docker = match p.get("type") {
            None | Some("name") => false,
            Some("docker" | "podman") => true,
            Some(t) => return Err(ApiError::bad_request(format!("unknown 'type' {t:?}"))),
        };
        let count = match p.int("count")? {
            None => Some(64),
            Some(-1) => None,
            Some(n) if n < -1 => {
                return Err(ApiError::bad_request(format!(
                    "invalid 'count' option: only -1 and larger values allowed, not {n}"
                )));
            }
            // Larger than any history is simply all of it.
            Some(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        };
        // Stats here are never older than one collection interval, which any max_age allows
        // for; it is still checked so a malformed value is reported.
        if let Some(age) = p.get("max_age") {
            go_duration(age).ok_or_else(|| {
                ApiError::bad_request(format!("failed to parse 'max_age' option: {age:?}"))
            })?;
        }
        Ok(V2Options {
            docker,
            count,
            recursive: p.bool("recursive")?.unwrap_or(false),
        })
    }
}

/// Go's `time.ParseDuration` for the units a client would send (`90s`, `1m30s`, `500ms`).
pub fn go_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.')?;
        let n: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total = total.checked_add(Duration::try_from_secs_f64(n * scale).ok()?)?;
        rest = &rest[unit_len..];
    }
    Some(total)
}

/// The events request (cAdvisor's query parameters).
pub struct EventsRequest {
    pub query: EventQuery,
    pub stream: bool,
}

impl EventsRequest {
    pub fn parse(p: &Params, container: String) -> Result<EventsRequest, ApiError> {
        let all = p.bool("all_events")?.unwrap_or(false);
        let mut kinds = [false; 4];
        for (param, kind) in [
            ("oom_events", EventKind::Oom),
            ("oom_kill_events", EventKind::OomKill),
            ("creation_events", EventKind::Creation),
            ("deletion_events", EventKind::Deletion),
        ] {
            kinds[kind as usize] = all || p.bool(param)?.unwrap_or(false);
        }
        // cAdvisor's default is the newest 10; zero or less means all.
        let max_events = match p.int("max_events")? {
            None => 10,
            Some(n) if n <= 0 => 0,
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        };
        Ok(EventsRequest {
            query: EventQuery {
                kinds,
                container,
                subcontainers: p.bool("subcontainers")?.unwrap_or(false),
                start: p.time("start_time")?,
                end: p.time("end_time")?,
                max_events,
            },
            stream: p.bool("stream")?.unwrap_or(false),
        })
    }
}

/// The v1 body `{"num_stats": N, "start": t, "end": t}`; empty means the default 60 samples.
pub fn v1_range(body: &[u8]) -> Result<Range, ApiError> {
    let mut range = Range {
        count: Some(60),
        ..Range::default()
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(range);
    }
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("unable to decode the json value: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::bad_request("the request body must be a JSON object"))?;
    if let Some(n) = obj.get("num_stats") {
        let n = n
            .as_i64()
            .ok_or_else(|| ApiError::bad_request("num_stats must be an integer"))?;
        range.count = usize::try_from(n).ok();
    }
    for (key, slot) in [("start", &mut range.start), ("end", &mut range.end)] {
        if let Some(t) = obj.get(key) {
            let s = t
                .as_str()
                .ok_or_else(|| ApiError::bad_request(format!("{key} must be a time string")))?;
            // Go's zero time is "no bound".
            if s != rfc3339::ZERO {
                *slot = Some(rfc3339::parse(s).ok_or_else(|| {
                    ApiError::bad_request(format!("{key} {s:?} is not an RFC 3339 time"))
                })?);
            }
        }
    }
    Ok(range)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_and_never_leave_the_root() {
        assert_eq!(container_name("").unwrap_or_default(), "/");
        assert_eq!(
            container_name("docker//abc/").unwrap_or_default(),
            "/docker/abc"
        );
        assert_eq!(
            container_name("system.slice/docker-ab%2Dc.scope").unwrap_or_default(),
            "/system.slice/docker-ab-c.scope"
        );
        for hostile in [
            "../../etc",
            "docker/../../etc",
            "%2e%2e/%2E%2E/etc",
            "..%2f..%2fetc",
            "./docker",
        ] {
            let e = container_name(hostile).err().map(|e| e.status);
            assert_eq!(e, Some(StatusCode::NOT_FOUND), "{hostile}");
        }
        for malformed in ["a%00b", "%ff%fe"] {
            let e = container_name(malformed).err().map(|e| e.status);
            assert_eq!(e, Some(StatusCode::BAD_REQUEST), "{malformed}");
        }
    }

    #[test]
    fn v2_options_as_cadvisor() {
        let o = |q: &str| V2Options::parse(&Params::parse(Some(q)));
        let d = o("").map(|o| (o.docker, o.count, o.recursive)).ok();
        assert_eq!(d, Some((false, Some(64), false)));
        let all = o("count=-1&type=docker&recursive=true")
            .map(|o| (o.docker, o.count, o.recursive))
            .ok();
        assert_eq!(all, Some((true, None, true)));
        assert_eq!(
            o("count=99999999999").map(|o| o.count).ok(),
            Some(Some(99_999_999_999))
        );
        for bad in [
            "count=-2",
            "count=lots",
            "count=99999999999999999999999",
            "type=lxc",
            "recursive=maybe",
            "max_age=soon",
        ] {
            assert!(o(bad).is_err(), "{bad}");
        }
        assert!(o("max_age=1m30s").is_ok());
        assert_eq!(go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(go_duration("5"), None);
    }

    #[test]
    fn events_request() {
        let p = Params::parse(Some(
            "oom_kill_events=true&max_events=-1&subcontainers=1&start_time=2026-11-22T14:30:10Z",
        ));
        let r = EventsRequest::parse(&p, "/docker".into()).ok();
        let Some(r) = r else { panic!("parse failed") };
        assert_eq!(r.query.kinds, [false, true, false, false]);
        assert_eq!(r.query.max_events, 0);
        assert!(r.query.subcontainers && !r.stream);
        assert!(r.query.start.is_some());
        let bad = Params::parse(Some("start_time=yesterday"));
        assert!(EventsRequest::parse(&bad, "/".into()).is_err());
    }

    #[test]
    fn v1_bodies() {
        assert_eq!(v1_range(b"").map(|r| r.count).ok(), Some(Some(60)));
        assert_eq!(
            v1_range(b"{\"num_stats\": 2}").map(|r| r.count).ok(),
            Some(Some(2))
        );
        assert_eq!(
            v1_range(b"{\"num_stats\": -1}").map(|r| r.count).ok(),
            Some(None)
        );
        assert!(
            v1_range(b"{\"start\": \"2026-11-22T14:30:10Z\", \"end\": \"0001-01-01T00:00:00Z\"}")
                .is_ok_and(|r| r.start.is_some() && r.end.is_none())
        );
        for bad in [
            &b"{"[..],
            b"[]",
            b"{\"num_stats\": \"ten\"}",
            b"{\"start\": 5}",
        ] {
            assert!(v1_range(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
