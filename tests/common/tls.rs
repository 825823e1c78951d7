//! Certificates for the tests of TLS peers (https:// origins, an RTMPS tunnel).

use super::peers::TempDir;

/// A test CA's certificate, and a certificate it signed for `localhost` with its key (PEM
/// files in `dir`); a self-signed certificate for `localhost` that no one trusts, with its
/// key. Paths: (CA, good certificate, good key, untrusted certificate, untrusted key).
pub fn test_certificates(dir: &TempDir) -> [std::path::PathBuf; 5] {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name
        .push(DnType::CommonName, "corecast test CA");
    let ca = ca.self_signed(&ca_key).expect("CA");
    let key = KeyPair::generate().expect("key");
    let signed = CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .signed_by(&key, &ca, &ca_key)
        .expect("certificate");
    let stranger_key = KeyPair::generate().expect("key");
    let stranger = CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .self_signed(&stranger_key)
        .expect("certificate");
    let files = [
        ("ca.pem", ca.pem()),
        ("origin.pem", signed.pem()),
        ("origin.key", key.serialize_pem()),
        ("stranger.pem", stranger.pem()),
        ("stranger.key", stranger_key.serialize_pem()),
    ];
    files.map(|(name, text)| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    })
}
