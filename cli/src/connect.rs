//! Turning a SOCKET argument into a connected client.

use std::time::Duration;

use anyhow::{Context, Result};
use microsocket_socket::{Address, SerialLine};
use microsocket_tokio::Client;

/// What a client command talks to: a server's socket, or a device on a
/// serial line that speaks microsocket itself.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Socket(Address),
    Serial(SerialLine),
    /// `host:port`, over TLS.
    Tls(String),
}

/// The environment variables a `tls://` client reads: the CA that signed the
/// server's certificate (required), the client's certificate and key for
/// mutual TLS, and the name to verify the server's certificate for (default:
/// the host of the address).
pub(crate) const TLS_CA: &str = "MICROSOCKET_TLS_CA";
pub(crate) const TLS_CERT: &str = "MICROSOCKET_TLS_CERT";
pub(crate) const TLS_KEY: &str = "MICROSOCKET_TLS_KEY";
pub(crate) const TLS_NAME: &str = "MICROSOCKET_TLS_NAME";

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Socket(address) => address.fmt(f),
            Self::Tls(hostport) => write!(f, "tls://{hostport}"),
            Self::Serial(line) => match line.baud {
                Some(baud) => write!(f, "serial:{}@{baud}", line.device.display()),
                None => write!(f, "serial:{}", line.device.display()),
            },
        }
    }
}

/// Parses a SOCKET argument: a path, `@name` (Linux abstract),
/// `tcp://host:port`, `tls://host:port`, or `serial:DEVICE[@BAUD]`.
pub(crate) fn parse_address(s: &str) -> Result<Target> {
    if let Some(hostport) = s.strip_prefix("tls://") {
        anyhow::ensure!(
            hostport.rsplit_once(':').is_some(),
            "invalid address {s:?}: expected tls://host:port"
        );
        return Ok(Target::Tls(hostport.to_owned()));
    }
    match s.strip_prefix("serial:") {
        Some(line) => Ok(Target::Serial(
            line.parse().with_context(|| format!("invalid serial line {s:?}"))?,
        )),
        None => Ok(Target::Socket(parse_socket(s)?)),
    }
}

/// Parses a socket address: a path, `@name` or `tcp://host:port`.
pub(crate) fn parse_socket(s: &str) -> Result<Address> {
    s.parse::<Address>().with_context(|| format!("invalid address {s:?}"))
}

/// Connects a client to `target`, with a request deadline (`None`: none).
pub(crate) async fn connect(target: &Target, timeout: Option<Duration>) -> Result<Client> {
    connect_with(Client::builder().request_timeout(timeout), target).await
}

/// Connects a client made by `builder` to `target`.
pub(crate) async fn connect_with(builder: microsocket_tokio::ClientBuilder, target: &Target) -> Result<Client> {
    let client = match target {
        Target::Socket(Address::Unix(path)) => builder.connect_unix(path).await,
        #[cfg(any(target_os = "linux", target_os = "android"))]
        Target::Socket(Address::Abstract(name)) => builder.connect_abstract(name).await,
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        Target::Socket(Address::Abstract(_)) => anyhow::bail!("abstract socket names (@name) exist on Linux only"),
        Target::Socket(Address::Tcp(hostport)) => builder.connect_tcp(hostport.clone()).await,
        Target::Tls(hostport) => {
            let env = |name: &str| std::env::var_os(name).map(std::path::PathBuf::from);
            let ca = env(TLS_CA).with_context(|| {
                format!("{target}: set {TLS_CA} to the CA that signed the server's certificate (PEM)")
            })?;
            let (cert, key) = (env(TLS_CERT), env(TLS_KEY));
            let identity = match (&cert, &key) {
                (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
                (None, None) => None,
                _ => anyhow::bail!("{target}: set both {TLS_CERT} and {TLS_KEY}, or neither"),
            };
            let config = microsocket_tokio::tls::client_config(ca, identity)?;
            let host = hostport.rsplit_once(':').map_or(hostport.as_str(), |(host, _)| host);
            let name = std::env::var(TLS_NAME)
                .unwrap_or_else(|_| host.trim_start_matches('[').trim_end_matches(']').to_owned());
            builder.connect_tls(hostport.clone(), &name, config).await
        }
        Target::Serial(line) => {
            let stream = microsocket_tokio::SerialStream::open(line)
                .with_context(|| format!("cannot open {}", line.device.display()))?;
            Ok(builder.connect_stream(stream))
        }
    };
    client.with_context(|| format!("cannot connect to {target}"))
}
