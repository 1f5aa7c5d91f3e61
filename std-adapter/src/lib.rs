//! Blocking client and server for microsocket over std sockets: UNIX socket
//! files, Linux abstract names and TCP. It speaks the wire protocol of the Perl
//! module IPC::MicroSocket byte for byte (see `docs/PROTOCOL.md`); all protocol
//! logic is `microsocket-core`'s, this crate only drives sockets and threads.
//!
//! ```
//! use microsocket_std::{Client, Request, Responder, Server, ServerConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("app.sock");
//!
//! // A server whose handler echoes its arguments, running on its own thread.
//! let echo = |request: Request<'_>, responder: Responder| {
//!     let _ = match request.command {
//!         b"ECHO" => responder.respond(request.args),
//!         _ => responder.fail("no such command", [b""; 0]),
//!     };
//! };
//! let server = Server::bind_unix(&path, echo, ServerConfig::default())?.spawn()?;
//! let publisher = server.publisher();
//!
//! // A client; clone it to share the connection between threads.
//! let client = Client::connect_unix(&path)?;
//! let values = client.request("ECHO", ["hello", "world"])?;
//! assert_eq!(values, ["hello", "world"]);
//! assert!(client.request("NOPE", [b""; 0]).is_err());
//!
//! // Publish/subscribe, by exact topic or pattern.
//! let mut news = client.subscribe_pattern("news.>")?;
//! publisher.publish("news.today", ["extra!"])?;
//! let publication = news.recv()?;
//! assert_eq!(publication.topic, "news.today");
//! assert_eq!(publication.values, ["extra!"]);
//!
//! server.stop()?; // graceful: answers what is in flight, removes app.sock
//! assert!(!path.exists());
//! # Ok(()) }
//! ```
//!
//! # Pieces
//!
//! - [`Client`]: requests from any number of threads over one connection,
//!   answered in any order, with timeouts; [`Subscription`]s with bounded queues.
//!   Thread model: whichever thread waits reads for the others (see [`client`]).
//! - [`Server`]: a [`Handler`] per server, a [`Responder`] per request (movable to
//!   other threads), a [`Publisher`] usable from anywhere, a [`ShutdownHandle`];
//!   one reader thread per connection plus an acceptor and a flusher (see
//!   [`server`]).
//! - [`socket`]: socket-file rules, abstract names, peer credentials and
//!   [`Address`], shared with the Tokio adapter and the CLI.
//!
//! # Limits
//!
//! Client: [`MAX_IN_FLIGHT`] requests in flight, [`CLIENT_MAX_SUBSCRIPTIONS`] wire
//! subscriptions of at most [`CLIENT_MAX_SUBSCRIPTION_BYTES`] bytes in all, frames
//! up to [`ClientConfig::max_frame`]. Server: per connection
//! [`MAX_SUBSCRIPTIONS`] subscriptions of at most [`MAX_SUBSCRIPTION_BYTES`] bytes,
//! and the limits of [`ServerConfig`].
//!
//! # Speed
//!
//! The `roundtrip` bench runs a floor (hand-written blocking ping-pong over a std
//! `UnixStream` pair exchanging the same frames) beside this crate in one process;
//! `-- --only rtt|threads|fanout` runs one part:
//!
//! ```text
//! taskset -c 0 cargo bench -p microsocket-std --bench roundtrip -- --only rtt
//! cargo bench -p microsocket-std --bench roundtrip -- --only threads
//! cargo bench -p microsocket-std --bench roundtrip -- --only fanout
//! ```
//!
//! Figures from a shared 2-vCPU machine under load from other builds (load
//! average 4-6), so noisy; "before" is the previous version's bench binary run in
//! the same minutes:
//!
//! | measure | floor | before | now | target |
//! |---|---|---|---|---|
//! | round trip p50 (pinned, median of 5 runs) | 8.44-9.15 us | 10.04 us (1.19x) | 10.25 us (1.12x; 1.12x-1.13x over three runs) | <= 1.15x |
//! | 8 threads sharing one client | | 55k-68k requests/s | 113k-165k requests/s | >= 300k |
//! | publish 64-byte messages to 100 subscribers (each received and checked) | | 0.26-1.3 M deliveries/s | 1.4-1.8 M deliveries/s | >= 5 M |
//!
//! The comparison harness (`cargo run --release -p microsocket-bench -- run
//! --quick --only pipelined`, resp. `--only fanout-100`) gave, in one run with
//! its blocking floor: `pipelined-1x256` 133k/s (was 50k/s), `pipelined-8x64`
//! 213k/s (was 41k/s), `fanout-100` 1.74 M/s (blocking floor 5.7 M/s).
//!
//! The last two rows miss their targets on this machine. What is left is mostly
//! the kernel's: each answer to a sleeping thread costs a futex wake-up and a
//! context switch (cross-CPU wake-ups are costly on this VM), and in the fan-out
//! the 100 subscriber threads, their server-side readers and the flusher share two
//! contended cores, each `sendmsg` waking a subscriber. Still in the way, in
//! user space: the flusher holds a connection's lock during its `sendmsg`, so a
//! publisher can wait for it, and the client allocates per publication (topic,
//! values) and looks subscriptions up in hash maps. Spinning before sleeping
//! was tried and made 8 threads slower on two cores.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod client;
mod error;
mod hash;
mod rx;
pub mod server;
pub mod socket;

pub use bytes::Bytes;
pub use client::{
    Client, ClientConfig, Iter, Publication, Subscription, MAX_IN_FLIGHT,
    MAX_SUBSCRIPTIONS as CLIENT_MAX_SUBSCRIPTIONS, MAX_SUBSCRIPTION_BYTES as CLIENT_MAX_SUBSCRIPTION_BYTES,
};
pub use error::{Error, Result};
pub use server::{
    Context, Handler, PatternError, Publisher, Request, Responder, RunningServer, Server, ServerConfig, ShutdownHandle,
    SlowConsumerPolicy, Stats, SubscriptionKind, DROPPED_UNANSWERED, MAX_SUBSCRIPTIONS, MAX_SUBSCRIPTION_BYTES,
    UNENCODABLE_RESPONSE,
};
pub use socket::{Address, PeerCredentials};
