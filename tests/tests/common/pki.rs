//! Certificates made for the TLS tests (rcgen), written as PEM files: shared
//! by `tests/tests/tls.rs`, `tokio-adapter/tests/tls.rs` and `cli/tests/tls.rs`.

#![allow(dead_code)]

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};

/// A CA with server certificates for `bus.test` (one current, one expired)
/// and a client certificate for `alice`; another CA nobody trusts.
pub(crate) struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["bus.test".to_owned()])
            .unwrap()
            .signed_by(&server_key, &ca, &ca_key)
            .unwrap();
        let mut expired_params = CertificateParams::new(vec!["bus.test".to_owned()]).unwrap();
        expired_params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        expired_params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        let expired = expired_params.signed_by(&server_key, &ca, &ca_key).unwrap();
        let alice_key = KeyPair::generate().unwrap();
        let mut alice_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        alice_params.distinguished_name.push(DnType::CommonName, "alice");
        alice_params
            .subject_alt_names
            .push(SanType::Rfc822Name("alice@example.com".try_into().unwrap()));
        let alice = alice_params.signed_by(&alice_key, &ca, &ca_key).unwrap();
        let other_key = KeyPair::generate().unwrap();
        let mut other_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        other_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let other = other_params.self_signed(&other_key).unwrap();
        for (name, text) in [
            ("ca.pem", ca.pem()),
            ("server.pem", server.pem()),
            ("expired.pem", expired.pem()),
            ("server.key", server_key.serialize_pem()),
            ("alice.pem", alice.pem()),
            ("alice.key", alice_key.serialize_pem()),
            ("other-ca.pem", other.pem()),
        ] {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        Pki { dir }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}
