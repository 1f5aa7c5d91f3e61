//! A bridge between a microsocket bus and [NATS](https://nats.io): buses on
//! several hosts share publications and answer each other's requests through
//! a NATS server or cluster.
//!
//! - **Export**: local publications on topics matching the export patterns go
//!   to NATS as `PREFIX.TOPIC` (the prefix names this bus, the host name say).
//! - **Import**: NATS subjects matching an import rule `[REMOTE_PREFIX:]PATTERN`
//!   are published on the local bus, the remote prefix taken off.
//! - **Requests**: a NATS request on `PREFIX.COMMAND` is a local request to the
//!   bus's handler, answered back; a local request whose command is
//!   `@SUBJECT` (`@attic.PING`) goes to NATS ([`Forwarding`], [`Remote`]).
//! - **No loops**: what the bridge imported is not exported again, NATS does
//!   not echo the bridge's own publications back, and each export carries the
//!   bridge's origin, which the bridge skips on import.
//! - **Faults**: the NATS connection is retried on its own; meanwhile the
//!   local bus keeps working, exports are held up to a bound and the excess is
//!   dropped and counted ([`BridgeStats`]); the state is published on a local
//!   topic ([`DEFAULT_STATE_TOPIC`]).
//!
//! Values travel as `docs/PROTOCOL.md` ("Across NATS") says: one value is the
//! raw payload, so plain NATS clients interoperate; anything else carries a
//! count header ([`mapping`]).
//!
//! ```
//! use std::time::Duration;
//! use microsocket_nats::{Bridge, BridgeConfig, Forwarding, NatsOptions};
//! use microsocket_tokio::{handler_fn, Failure, Reply, Request, Server};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = BridgeConfig::new("kitchen").export("sensor.>").import("attic:sensor.>");
//! // Returns at once, even while NATS is away: it keeps trying.
//! let mut bridge = Bridge::connect(&NatsOptions::new("nats://127.0.0.1:1"), config).await?;
//!
//! let app = handler_fn(|request: Request| async move {
//!     match &request.command[..] {
//!         b"PING" => Ok(Reply::one("PONG")),
//!         _ => Err(Failure::new("no such command")),
//!     }
//! });
//! // `@attic.PING` goes to the bus whose prefix is `attic`; the rest to `app`.
//! let server = Server::new(Forwarding::new(bridge.remote(), app));
//! bridge.attach_server(&server).await?;
//!
//! // The local bus works whether or not NATS is there.
//! let client = server.connect_in_process()?;
//! assert_eq!(client.request("PING", [""; 0]).await?.first().unwrap(), "PONG");
//! let err = client.request("@attic.PING", [""; 0]).await.unwrap_err();
//! assert!(err.to_string().contains("request failed"));
//! assert!(!bridge.wait_connected(Duration::from_millis(10)).await);
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod bridge;
mod config;
mod error;
pub mod failures;
mod loops;
pub mod mapping;
mod remote;
mod stats;

pub use bridge::{Bridge, LocalPublish};
pub use config::{redacted_url, BridgeConfig, Credentials, Import, NatsOptions, DEFAULT_STATE_TOPIC};
pub use error::BridgeError;
pub use remote::{Forwarding, Remote, REMOTE_MARKER};
pub use stats::{BridgeStats, StatsHandle};
