//! The `--web-config-file` schema: the Prometheus exporter toolkit's web configuration, so the
//! file an operator already has for node_exporter works here unchanged. Unknown keys are refused
//! (the toolkit unmarshals strictly too), so a typo is an error at start, not a silent hole.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::Deserialize;

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    #[serde(default)]
    pub tls_server_config: TlsServerConfig,
    #[serde(default)]
    pub http_server_config: HttpServerConfig,
    /// user -> bcrypt hash. Empty: no basic authentication.
    #[serde(default)]
    pub basic_auth_users: BTreeMap<String, String>,
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsServerConfig {
    pub cert: Option<String>,
    pub key: Option<String>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub client_ca: Option<String>,
    pub client_ca_file: Option<PathBuf>,
    #[serde(default)]
    pub client_auth_type: ClientAuth,
    pub client_allowed_sans: Option<Vec<String>>,
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    #[serde(default)]
    pub cipher_suites: Vec<String>,
    pub prefer_server_cipher_suites: Option<bool>,
    #[serde(default)]
    pub curve_preferences: Vec<String>,
}

/// Go's `tls.ClientAuthType` names, as the toolkit spells them.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum ClientAuth {
    #[default]
    #[serde(alias = "")]
    NoClientCert,
    RequestClientCert,
    #[serde(alias = "RequireClientCert")]
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpServerConfig {
    /// Accepted for compatibility; nodetel serves HTTP/1.1 only (what Prometheus scrapes with).
    pub http2: Option<bool>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Go duration text ("1s", "100ms"); 0 turns the limiter off.
    #[serde(default)]
    pub interval: Option<String>,
    #[serde(default)]
    pub burst: u32,
}

/// The response headers the toolkit lets an operator set, with the values it accepts (`None`:
/// any).
const ALLOWED_HEADERS: &[(&str, Option<&[&str]>)] = &[
    ("Strict-Transport-Security", None),
    ("X-Content-Type-Options", Some(&["nosniff"])),
    ("X-Frame-Options", Some(&["deny", "sameorigin"])),
    ("X-XSS-Protection", None),
    ("Content-Security-Policy", None),
];

impl WebConfig {
    /// Parses and checks a file's text. `dir` is the file's directory: relative paths in it are
    /// relative to the file, as in the toolkit.
    pub fn parse(text: &str, dir: &Path) -> Result<WebConfig, String> {
        // An empty file is a valid, empty config (the toolkit's too).
        let mut c: WebConfig = if text.trim().is_empty() {
            WebConfig::default()
        } else {
            serde_norway::from_str(text).map_err(|e| e.to_string())?
        };
        c.check()?;
        let t = &mut c.tls_server_config;
        for p in [&mut t.cert_file, &mut t.key_file, &mut t.client_ca_file]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        }
        Ok(c)
    }

    fn check(&self) -> Result<(), String> {
        for (name, value) in &self.http_server_config.headers {
            let Some((_, allowed)) = ALLOWED_HEADERS.iter().find(|(n, _)| n == name) else {
                return Err(format!(
                    "http_server_config.headers: {name:?} cannot be configured (allowed: {})",
                    ALLOWED_HEADERS
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            };
            if let Some(allowed) = allowed
                && !allowed.contains(&value.as_str())
            {
                return Err(format!(
                    "http_server_config.headers: {name} must be one of {allowed:?}, not {value:?}"
                ));
            }
        }
        for (user, hash) in &self.basic_auth_users {
            // Parsed, not computed: a hash is checked at load without spending its cost.
            hash.parse::<bcrypt::HashParts>().map_err(|e| {
                format!("basic_auth_users: the hash of {user:?} is not a bcrypt hash ({e})")
            })?;
        }
        let t = &self.tls_server_config;
        if t.cert.is_some() && t.cert_file.is_some() {
            return Err("tls_server_config: cert and cert_file are both set".into());
        }
        if t.key.is_some() && t.key_file.is_some() {
            return Err("tls_server_config: key and key_file are both set".into());
        }
        if t.client_ca.is_some() && t.client_ca_file.is_some() {
            return Err("tls_server_config: client_ca and client_ca_file are both set".into());
        }
        if self.tls_enabled() {
            if t.cert.is_none() && t.cert_file.is_none() {
                return Err("tls_server_config: missing one of cert or cert_file".into());
            }
            if t.key.is_none() && t.key_file.is_none() {
                return Err("tls_server_config: missing one of key or key_file".into());
            }
        }
        Ok(())
    }

    /// The toolkit's rule: TLS is on when a certificate or key is given.
    pub fn tls_enabled(&self) -> bool {
        let t = &self.tls_server_config;
        t.cert.is_some() || t.key.is_some() || t.cert_file.is_some() || t.key_file.is_some()
    }

    /// Every file the config reads: a change to any of them is a reload.
    pub fn files(&self) -> Vec<PathBuf> {
        let t = &self.tls_server_config;
        [&t.cert_file, &t.key_file, &t.client_ca_file]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<WebConfig, String> {
        WebConfig::parse(text, Path::new("/etc/nodetel"))
    }

    #[test]
    fn node_exporters_file_parses_and_paths_are_relative_to_it() {
        let hash = bcrypt::hash("pw", 4).expect("hash");
        let c = parse(&format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: /abs/server.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  \
             min_version: TLS13\n  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n  \
             curve_preferences: [X25519]\n\
             http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n\
             basic_auth_users:\n  alice: {hash}\n",
        ))
        .expect("valid");
        let t = &c.tls_server_config;
        assert_eq!(
            t.cert_file.as_deref(),
            Some(Path::new("/etc/nodetel/server.crt"))
        );
        assert_eq!(t.key_file.as_deref(), Some(Path::new("/abs/server.key")));
        assert_eq!(t.client_auth_type, ClientAuth::RequireAndVerifyClientCert);
        assert!(c.tls_enabled());
        assert_eq!(c.files().len(), 3);
        assert_eq!(c.basic_auth_users.len(), 1);
    }

    #[test]
    fn empty_file_is_an_empty_config() {
        let c = parse("").expect("valid");
        assert!(!c.tls_enabled());
        assert!(c.basic_auth_users.is_empty());
    }

    #[test]
    fn mistakes_are_refused_with_the_reason() {
        for (text, says) in [
            ("tls_server_config:\n  cert_fle: a\n", "unknown field"),
            ("basic_auth_users:\n  bob: plaintext\n", "not a bcrypt hash"),
            (
                "http_server_config:\n  headers:\n    X-Powered-By: x\n",
                "cannot be configured",
            ),
            (
                "http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
                "must be one of",
            ),
            ("tls_server_config:\n  cert_file: a\n", "missing one of key"),
            ("tls_server_config:\n  key_file: a\n", "missing one of cert"),
            (
                "tls_server_config:\n  cert: a\n  cert_file: b\n  key_file: c\n",
                "both set",
            ),
            (
                "tls_server_config:\n  client_auth_type: Sometimes\n",
                "unknown variant",
            ),
            ("- a list\n", "invalid type"),
        ] {
            let err = parse(text).expect_err(text);
            assert!(err.contains(says), "{text:?}: {err}");
        }
    }
}
