//! The agent's outbound TLS (the kubelet, push receivers): rustls with ring, trusting only the
//! CA file it is given (nodes carry no CA bundle the agent should trust by default).
use std::{path::Path, sync::Arc};

use rustls::{ClientConfig, ConfigBuilder, client::WantsClientCert};

/// A client configuration trusting the certificates of `ca` (PEM), before client auth is
/// chosen; the error names the file.
pub fn trusting(ca: &Path) -> Result<ConfigBuilder<ClientConfig, WantsClientCert>, String> {
    use rustls::pki_types::{CertificateDer, pem::PemObject as _};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))? {
        let cert = cert.map_err(|e| format!("{}: {e}", ca.display()))?;
        roots.add(cert).map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots))
}
