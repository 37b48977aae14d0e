//! `tls_server_config` as a rustls server configuration. Everything cryptographic is rustls' (and
//! its webpki verifier's); this file only maps the toolkit's Go names onto rustls' choices and
//! refuses, with the reason, what rustls does not offer (TLS 1.0/1.1, CBC suites, P-521).
use std::sync::Arc;

use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
    SupportedProtocolVersion,
    client::danger::HandshakeSignatureValid,
    crypto::{CryptoProvider, WebPkiSupportedAlgorithms, ring},
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject},
    server::{
        WebPkiClientVerifier,
        danger::{ClientCertVerified, ClientCertVerifier},
    },
};

use super::web_config::{ClientAuth, TlsServerConfig};

/// The PEM texts a configuration names, read by the caller (from files or inline).
pub struct Pems {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    pub client_ca: Option<Vec<u8>>,
}

pub fn server_config(t: &TlsServerConfig, pems: &Pems) -> Result<ServerConfig, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pems.cert)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("certificate: not PEM ({e})"))?;
    if chain.is_empty() {
        return Err("certificate: no CERTIFICATE block in it".into());
    }
    let key = PrivateKeyDer::from_pem_slice(&pems.key)
        .map_err(|e| format!("key: no usable private key in it ({e})"))?;

    let provider = Arc::new(provider(t)?);
    let versions = versions(t)?;
    let verifier = client_verifier(t, pems.client_ca.as_deref(), &provider)?;
    let mut config = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| format!("certificate and key: {e}"))?;
    // Go's default and the toolkit's: the server's order of cipher suites wins.
    config.ignore_client_order = t.prefer_server_cipher_suites.unwrap_or(true);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn version(name: &str) -> Result<&'static SupportedProtocolVersion, String> {
    match name {
        "TLS13" => Ok(&rustls::version::TLS13),
        "TLS12" => Ok(&rustls::version::TLS12),
        "TLS11" | "TLS10" => Err(format!(
            "{name} is not offered (rustls speaks TLS12 and TLS13 only)"
        )),
        other => Err(format!("unknown TLS version {other:?}")),
    }
}

fn versions(t: &TlsServerConfig) -> Result<Vec<&'static SupportedProtocolVersion>, String> {
    let rank = |v: &SupportedProtocolVersion| u16::from(v.version);
    let min = version(t.min_version.as_deref().unwrap_or("TLS12"))
        .map_err(|e| format!("min_version: {e}"))?;
    let max = version(t.max_version.as_deref().unwrap_or("TLS13"))
        .map_err(|e| format!("max_version: {e}"))?;
    let chosen: Vec<_> = [&rustls::version::TLS13, &rustls::version::TLS12]
        .into_iter()
        .filter(|v| rank(v) >= rank(min) && rank(v) <= rank(max))
        .collect();
    if chosen.is_empty() {
        return Err("min_version is above max_version".into());
    }
    Ok(chosen)
}

/// ring's provider narrowed to the configured TLS 1.2 cipher suites and curves. TLS 1.3 suites
/// are not configurable (nor in Go).
fn provider(t: &TlsServerConfig) -> Result<CryptoProvider, String> {
    let mut p = ring::default_provider();
    if !t.cipher_suites.is_empty() {
        let tls13: Vec<_> = p
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS13)
            .copied()
            .collect();
        let mut chosen = tls13;
        for name in &t.cipher_suites {
            let suite = p
                .cipher_suites
                .iter()
                .find(|s| {
                    s.version() == &rustls::version::TLS12 && s.suite().as_str() == Some(name)
                })
                .ok_or_else(|| {
                    format!(
                        "cipher_suites: {name:?} is not offered (TLS 1.2 suites here: {})",
                        tls12_names(&p).join(", ")
                    )
                })?;
            chosen.push(*suite);
        }
        p.cipher_suites = chosen;
    }
    if !t.curve_preferences.is_empty() {
        let mut groups = Vec::new();
        for name in &t.curve_preferences {
            groups.push(match name.as_str() {
                "X25519" => ring::kx_group::X25519,
                "CurveP256" => ring::kx_group::SECP256R1,
                "CurveP384" => ring::kx_group::SECP384R1,
                other => {
                    return Err(format!(
                        "curve_preferences: {other:?} is not offered (X25519, CurveP256, CurveP384)"
                    ));
                }
            });
        }
        p.kx_groups = groups;
    }
    Ok(p)
}

fn tls12_names(p: &CryptoProvider) -> Vec<&'static str> {
    p.cipher_suites
        .iter()
        .filter(|s| s.version() == &rustls::version::TLS12)
        .filter_map(|s| s.suite().as_str())
        .collect()
}

fn client_verifier(
    t: &TlsServerConfig,
    ca: Option<&[u8]>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let roots = match ca {
        Some(pem) => {
            let mut roots = RootCertStore::empty();
            for der in CertificateDer::pem_slice_iter(pem) {
                let der = der.map_err(|e| format!("client CA: not PEM ({e})"))?;
                roots
                    .add(der)
                    .map_err(|e| format!("client CA: unusable certificate ({e})"))?;
            }
            if roots.is_empty() {
                return Err("client CA: no CERTIFICATE block in it".into());
            }
            Some(Arc::new(roots))
        }
        None => None,
    };
    let verified = |roots: Arc<RootCertStore>, optional: bool| {
        let b = WebPkiClientVerifier::builder_with_provider(roots, Arc::clone(provider));
        let b = if optional {
            b.allow_unauthenticated()
        } else {
            b
        };
        b.build()
            .map_err(|e| format!("client_ca: {e}"))
            .map(|v| v as Arc<dyn ClientCertVerifier>)
    };
    let need_roots = |roots: Option<Arc<RootCertStore>>| {
        roots.ok_or_else(|| {
            format!(
                "client_auth_type {:?} needs client_ca_file or client_ca",
                t.client_auth_type
            )
        })
    };
    let inner: Arc<dyn ClientCertVerifier> = match t.client_auth_type {
        ClientAuth::NoClientCert => {
            if roots.is_some() {
                return Err(
                    "client CAs are configured without a client_auth_type that uses them".into(),
                );
            }
            WebPkiClientVerifier::no_client_auth()
        }
        ClientAuth::RequireAndVerifyClientCert => verified(need_roots(roots)?, false)?,
        ClientAuth::VerifyClientCertIfGiven => verified(need_roots(roots)?, true)?,
        // As in Go: a certificate is asked for (or required) but its chain is not checked; the
        // handshake still proves the client holds its key. The toolkit warns these are insecure.
        ClientAuth::RequestClientCert | ClientAuth::RequireAnyClientCert => Arc::new(AnyCert {
            mandatory: t.client_auth_type == ClientAuth::RequireAnyClientCert,
            algorithms: provider.signature_verification_algorithms,
        }),
    };
    Ok(match &t.client_allowed_sans {
        Some(sans) if !sans.is_empty() => Arc::new(AllowedSans::new(inner, sans)?),
        _ => inner,
    })
}

/// Accepts any client certificate (Go's RequestClientCert / RequireAnyClientCert).
#[derive(Debug)]
struct AnyCert {
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `client_allowed_sans`: after the inner verifier, the certificate must carry one of these
/// names. DNS names and IP addresses are checked (by webpki's own name matching); e-mail and
/// URI names are refused at load rather than silently never matching.
#[derive(Debug)]
struct AllowedSans {
    inner: Arc<dyn ClientCertVerifier>,
    names: Vec<ServerName<'static>>,
}

impl AllowedSans {
    fn new(inner: Arc<dyn ClientCertVerifier>, sans: &[String]) -> Result<Self, String> {
        let names = sans
            .iter()
            .map(|s| {
                ServerName::try_from(s.clone()).map_err(|_| {
                    format!(
                        "client_allowed_sans: {s:?} is not a DNS name or IP address (the only \
                         kinds nodetel matches)"
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(AllowedSans { inner, names })
    }
}

impl ClientCertVerifier for AllowedSans {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let ok = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|e| rustls::Error::General(format!("client certificate: {e}")))?;
        if self
            .names
            .iter()
            .any(|n| cert.verify_is_valid_for_subject_name(n).is_ok())
        {
            Ok(ok)
        } else {
            Err(rustls::Error::General(
                "client certificate has none of client_allowed_sans".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
