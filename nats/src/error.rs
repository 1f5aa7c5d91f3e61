//! Why a bridge could not start.

/// Why a bridge could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeError {
    /// A setting is not valid.
    #[error("bridge configuration: {0}")]
    Config(String),
    /// NATS refused something.
    #[error("NATS: {0}")]
    Nats(String),
    /// The local bus refused something.
    #[error("local bus: {0}")]
    Bus(#[from] microsocket_tokio::Error),
}
