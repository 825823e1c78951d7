//! TLS to servers corecast connects to (`https://` origins): rustls on the `aws-lc-rs` provider,
//! over glommio's stream through `futures-rustls`.
//!
//! Certificates are verified against the system's roots (`rustls-native-certs`: the
//! distribution's bundle, `SSL_CERT_FILE` and `SSL_CERT_DIR`) and the PEM file of
//! `edge.ca_file` (a private CA of one's own origins). The server's name is the URL's host:
//! a DNS name, or an address that its certificate must name. There is no way to turn
//! verification off.
//!
//! Roots are read when a connection starts ([`client_config`], blocking: called on the
//! shard's blocking thread): origins are connected rarely (a pull's start, a failover), and
//! a changed system store or CA file is then followed without a restart.

use super::host::Host;
use futures_rustls::client::TlsStream;
use futures_rustls::TlsConnector;
use glommio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use std::io;
use std::path::Path;
use std::sync::Arc;

/// A CA file that cannot be used, or no root at all to verify with.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be read, or is not PEM certificates.
    #[error("CA file {path}: {why}")]
    CaFile {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// Neither the system nor the CA file gave a root certificate.
    #[error("no root certificate to verify servers with (the system store is empty or unreadable, and no edge.ca_file)")]
    NoRoots,
    /// The crypto provider does not support the protocol versions (not with `aws-lc-rs`).
    #[error("TLS: {0}")]
    Provider(#[from] rustls::Error),
}

/// Adds the certificates of the PEM file at `path` to `roots`: at least one, and every one
/// parsed (the configuration's check passes an empty store).
pub fn add_ca_file(roots: &mut RootCertStore, path: &Path) -> Result<(), TlsError> {
    let bad = |why: String| TlsError::CaFile {
        path: path.display().to_string(),
        why,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|err| bad(err.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| bad(err.to_string()))?;
    match roots.add_parsable_certificates(certs) {
        (0, _) => Err(bad("no certificate in it".into())),
        (_, 0) => Ok(()),
        (_, ignored) => Err(bad(format!(
            "{ignored} certificate(s) that cannot be parsed"
        ))),
    }
}

/// A client configuration that trusts the system's roots and those of `ca_file`, offering
/// HTTP/1.1 by ALPN. Blocking: it reads the system store and the file.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(path) = ca_file {
        add_ca_file(&mut roots, path)?;
    }
    if roots.is_empty() {
        return Err(TlsError::NoRoots);
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The name `host`'s certificate must carry.
fn server_name(host: &Host) -> io::Result<ServerName<'static>> {
    match host {
        Host::Addr(addr) => Ok(ServerName::IpAddress(addr.ip().into())),
        Host::Name { name, .. } => ServerName::try_from(name.clone())
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err)),
    }
}

/// TLS over `stream` to `host`, with `config`: the handshake done and the certificate
/// verified. The caller bounds the time.
pub async fn connect(
    config: Arc<ClientConfig>,
    host: &Host,
    stream: TcpStream,
) -> io::Result<TlsStream<TcpStream>> {
    TlsConnector::from(config)
        .connect(server_name(host)?, stream)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_holds_certificates_only() {
        let dir = std::env::temp_dir().join(format!("corecast-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        for (name, text) in [
            ("empty.pem", ""),
            ("text.pem", "not a certificate\n"),
            ("garbage.pem", garbage),
        ] {
            let err = add_ca_file(&mut RootCertStore::empty(), &write(name, text)).unwrap_err();
            assert!(
                err.to_string().contains(name),
                "{name}: the error names the file: {err}"
            );
        }
        assert!(add_ca_file(&mut RootCertStore::empty(), &dir.join("missing.pem")).is_err());
        // The system's store (Debian's ca-certificates) is one such file.
        let system = Path::new("/etc/ssl/certs/ca-certificates.crt");
        if system.exists() {
            let mut roots = RootCertStore::empty();
            add_ca_file(&mut roots, system).unwrap();
            assert!(roots.len() > 10);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
