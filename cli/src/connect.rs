//! Turning a SOCKET argument into a connected client.

use std::time::Duration;

use anyhow::{Context, Result};
use microsocket_socket::Address;
use microsocket_tokio::Client;

/// Parses a SOCKET argument: a path, `@name` (Linux abstract), or `tcp://host:port`.
pub(crate) fn parse_address(s: &str) -> Result<Address> {
    s.parse::<Address>().with_context(|| format!("invalid address {s:?}"))
}

/// Connects a client to `address`, with a request deadline (`None`: none).
pub(crate) async fn connect(address: &Address, timeout: Option<Duration>) -> Result<Client> {
    let builder = Client::builder().request_timeout(timeout);
    let client = match address {
        Address::Unix(path) => builder.connect_unix(path).await,
        #[cfg(any(target_os = "linux", target_os = "android"))]
        Address::Abstract(name) => builder.connect_abstract(name).await,
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        Address::Abstract(_) => anyhow::bail!("abstract socket names (@name) exist on Linux only"),
        Address::Tcp(hostport) => builder.connect_tcp(hostport.clone()).await,
    };
    client.with_context(|| format!("cannot connect to {address}"))
}
