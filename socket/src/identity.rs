//! Who a TLS peer is, by its verified certificate.

/// The verified certificate a TLS client presented.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsIdentity {
    /// The common names (CN) of its subject.
    pub common_names: Vec<String>,
    /// Its subject alternative names: DNS names, e-mail addresses and URIs.
    pub alt_names: Vec<String>,
}
