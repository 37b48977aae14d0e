//! `basic_auth_users`: checking an `Authorization: Basic` header against bcrypt hashes.
//!
//! bcrypt is slow on purpose (cost 10: about 70 ms of a core), so, as in the exporter toolkit:
//! a verified (user, hash, password) is remembered, and hashes are computed one at a time. Only
//! successes are remembered, under a SHA-256 of the three (the cache holds no password), at most
//! [`CACHE_ENTRIES`]. A flood of wrong passwords cannot be cached away, so the hashes computed for
//! requests the cache does not answer are rate limited ([`Budget`]); beyond it the answer is 429
//! without computing anything. An unknown user is checked against a dummy hash of the same cost,
//! so the time taken does not tell which users exist.
use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex},
    time::Instant,
};

use base64::Engine as _;

/// Verified credentials remembered; the whole set is dropped when full (a scraper re-verifies
/// once; more than this many distinct live credentials is not a basic-auth use case).
pub const CACHE_ENTRIES: usize = 256;
/// Hash computations per second for requests the cache does not answer, and the burst allowed.
const VERIFY_PER_SEC: f64 = 4.0;
const VERIFY_BURST: f64 = 8.0;

/// What a request's credentials came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// No usable `Authorization: Basic` header.
    Missing,
    /// Unknown user or wrong password (not told apart to the client).
    Denied,
    /// Too many uncached checks right now: try again shortly.
    Throttled,
}

/// The users of one loaded configuration.
pub struct Users {
    hashes: BTreeMap<String, String>,
    /// For unknown users: a hash of the configured cost.
    dummy: String,
}

impl Users {
    /// `None` when no users are configured (no authentication). Computes one hash for the dummy.
    pub fn new(hashes: BTreeMap<String, String>) -> Result<Option<Users>, String> {
        if hashes.is_empty() {
            return Ok(None);
        }
        let cost = hashes
            .values()
            .filter_map(|h| h.parse::<bcrypt::HashParts>().ok())
            .map(|p| p.get_cost())
            .max()
            .unwrap_or(bcrypt::DEFAULT_COST);
        let dummy = bcrypt::hash(b"nodetel: no such user", cost)
            .map_err(|e| format!("basic_auth_users: {e}"))?;
        Ok(Some(Users { hashes, dummy }))
    }
}

/// Shared by every connection: the cache and the rate of uncached checks.
pub struct Verifier {
    cache: Mutex<HashSet<[u8; 32]>>,
    budget: Mutex<Budget>,
    /// One hash at a time: a burst of new credentials costs one core, not all of them.
    hashing: tokio::sync::Semaphore,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier {
            cache: Mutex::new(HashSet::new()),
            budget: Mutex::new(Budget::new(VERIFY_PER_SEC, VERIFY_BURST)),
            hashing: tokio::sync::Semaphore::new(1),
        }
    }
}

impl Verifier {
    pub async fn check(&self, users: &Arc<Users>, authorization: Option<&[u8]>) -> Verdict {
        let Some((user, password)) = authorization.and_then(parse_header) else {
            return Verdict::Missing;
        };
        let (hash, known) = match users.hashes.get(&user) {
            Some(h) => (h.clone(), true),
            None => (users.dummy.clone(), false),
        };
        let key = cache_key(&user, &hash, &password);
        if known && self.lock_cache().contains(&key) {
            return Verdict::Allowed;
        }
        if !self
            .budget
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take(Instant::now())
        {
            return Verdict::Throttled;
        }
        let Ok(_turn) = self.hashing.acquire().await else {
            return Verdict::Throttled;
        };
        let matched = tokio::task::spawn_blocking(move || {
            bcrypt::verify(password.as_slice(), &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        if matched && known {
            let mut cache = self.lock_cache();
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(key);
            Verdict::Allowed
        } else {
            Verdict::Denied
        }
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// `Basic <base64(user:password)>` -> (user, password). The scheme name is case-insensitive
/// (RFC 7617); the user may not contain ':' (the first one splits), the password may.
pub fn parse_header(value: &[u8]) -> Option<(String, Vec<u8>)> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

fn cache_key(user: &str, hash: &str, password: &[u8]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    // Lengths first: no two different triples hash the same bytes.
    for part in [user.as_bytes(), hash.as_bytes(), password] {
        ctx.update(&(part.len() as u64).to_le_bytes());
        ctx.update(part);
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(ctx.finish().as_ref());
    key
}

/// A token bucket.
pub struct Budget {
    per_sec: f64,
    burst: f64,
    tokens: f64,
    at: Option<Instant>,
}

impl Budget {
    pub fn new(per_sec: f64, burst: f64) -> Budget {
        Budget {
            per_sec,
            burst,
            tokens: burst,
            at: None,
        }
    }

    pub fn take(&mut self, now: Instant) -> bool {
        if let Some(at) = self.at {
            let gained = now.saturating_duration_since(at).as_secs_f64() * self.per_sec;
            self.tokens = (self.tokens + gained).min(self.burst);
        }
        self.at = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn header(user_pass: &str) -> Vec<u8> {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
        .into_bytes()
    }

    #[test]
    fn header_parsing_follows_rfc_7617() {
        assert_eq!(
            parse_header(&header("alice:pa:ss")),
            Some(("alice".into(), b"pa:ss".to_vec()))
        );
        assert_eq!(
            parse_header(b"bAsIc YWxpY2U6"),
            Some(("alice".into(), vec![]))
        );
        for bad in [
            &b"Bearer abc"[..],
            b"Basic",
            b"Basic !!!",
            b"Basic YWxpY2U=", // no colon
            b"\xff\xfe",
            b"",
        ] {
            assert_eq!(parse_header(bad), None, "{bad:?}");
        }
    }

    /// Property: no header value, however malformed, panics the parser.
    #[test]
    fn any_header_bytes_are_handled() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..400 {
            let mut v = b"Basic ".to_vec();
            for _ in 0..len % 40 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                v.push(x as u8);
            }
            let _ = parse_header(&v);
            let _ = parse_header(&v[6..]);
        }
    }

    #[test]
    fn budget_refills_at_its_rate() {
        let t0 = Instant::now();
        let mut b = Budget::new(4.0, 2.0);
        assert!(b.take(t0));
        assert!(b.take(t0));
        assert!(!b.take(t0), "burst spent");
        assert!(!b.take(t0 + Duration::from_millis(100)), "0.4 token");
        assert!(b.take(t0 + Duration::from_millis(300)), "1.2 tokens");
        assert!(!b.take(t0 + Duration::from_millis(300)));
        // Refills stop at the burst.
        assert!(b.take(t0 + Duration::from_secs(60)));
        assert!(b.take(t0 + Duration::from_secs(60)));
        assert!(!b.take(t0 + Duration::from_secs(60)));
    }

    /// One user, alice, password "s3cret" (cost 4: fast, and as valid as 10).
    fn alice() -> Arc<Users> {
        let hash = bcrypt::hash("s3cret", 4).expect("hash");
        Arc::new(
            Users::new(BTreeMap::from([("alice".to_string(), hash)]))
                .expect("users")
                .expect("some"),
        )
    }

    #[tokio::test]
    async fn right_wrong_unknown_and_missing() {
        let users = alice();
        let v = Verifier::default();
        assert_eq!(
            v.check(&users, Some(&header("alice:s3cret"))).await,
            Verdict::Allowed
        );
        // Now from the cache (no budget spent).
        assert_eq!(
            v.check(&users, Some(&header("alice:s3cret"))).await,
            Verdict::Allowed
        );
        assert_eq!(v.lock_cache().len(), 1);
        assert_eq!(
            v.check(&users, Some(&header("alice:wrong"))).await,
            Verdict::Denied
        );
        assert_eq!(
            v.check(&users, Some(&header("mallory:s3cret"))).await,
            Verdict::Denied
        );
        assert_eq!(v.check(&users, None).await, Verdict::Missing);
        assert_eq!(v.check(&users, Some(b"Bearer x")).await, Verdict::Missing);
        assert_eq!(v.lock_cache().len(), 1, "failures are not remembered");
    }

    #[tokio::test]
    async fn a_flood_of_wrong_passwords_is_throttled_but_the_cached_user_is_not() {
        let users = alice();
        let v = Verifier::default();
        assert_eq!(
            v.check(&users, Some(&header("alice:s3cret"))).await,
            Verdict::Allowed
        );
        let mut throttled = 0;
        for i in 0..40 {
            if v.check(&users, Some(&header(&format!("alice:guess{i}"))))
                .await
                == Verdict::Throttled
            {
                throttled += 1;
            }
        }
        // 8 in the burst, a few more refilled while the allowed ones hash.
        assert!(throttled >= 10, "only {throttled} of 40 throttled");
        assert_eq!(
            v.check(&users, Some(&header("alice:s3cret"))).await,
            Verdict::Allowed
        );
    }

    #[test]
    fn no_users_no_authentication() {
        assert!(Users::new(BTreeMap::new()).expect("ok").is_none());
    }
}
