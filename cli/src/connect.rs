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
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Socket(address) => address.fmt(f),
            Self::Serial(line) => match line.baud {
                Some(baud) => write!(f, "serial:{}@{baud}", line.device.display()),
                None => write!(f, "serial:{}", line.device.display()),
            },
        }
    }
}

/// Parses a SOCKET argument: a path, `@name` (Linux abstract),
/// `tcp://host:port`, or `serial:DEVICE[@BAUD]`.
pub(crate) fn parse_address(s: &str) -> Result<Target> {
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
    let builder = Client::builder().request_timeout(timeout);
    let client = match target {
        Target::Socket(Address::Unix(path)) => builder.connect_unix(path).await,
        #[cfg(any(target_os = "linux", target_os = "android"))]
        Target::Socket(Address::Abstract(name)) => builder.connect_abstract(name).await,
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        Target::Socket(Address::Abstract(_)) => anyhow::bail!("abstract socket names (@name) exist on Linux only"),
        Target::Socket(Address::Tcp(hostport)) => builder.connect_tcp(hostport.clone()).await,
        Target::Serial(line) => {
            let stream = microsocket_tokio::SerialStream::open(line)
                .with_context(|| format!("cannot open {}", line.device.display()))?;
            Ok(builder.connect_stream(stream))
        }
    };
    client.with_context(|| format!("cannot connect to {target}"))
}
