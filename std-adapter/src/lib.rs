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
//! average 4-16), so noisy; "before" is the previous version's bench binary run
//! alternately with this one in the same minutes:
//!
//! | measure | floor | before | now | target |
//! |---|---|---|---|---|
//! | round trip p50 (pinned, median of 5 runs) | 8.39-9.10 us | 10.30 us (1.13x) | 9.57 us (1.14x) | <= 1.15x |
//! | 8 threads sharing one client (see below) | 135k-143k requests/s | 101k-108k requests/s | 115k-121k requests/s | >= 300k |
//! | publish 64-byte messages to 100 subscribers (each received and checked) | | 2.1-2.7 M deliveries/s | 5.4-6.7 M deliveries/s | >= 5 M |
//!
//! The comparison harness (`cargo run --release -p microsocket-bench -- run
//! --only fanout-100`, resp. `--only pipelined-1x8` and `--only
//! pipelined-8x64`; three interleaved runs each, with its blocking floor in the
//! same run) gave `fanout-100` 4.67-6.23 M deliveries/s (floor 8.72-11.29 M/s;
//! with `--quick`, whose 2,000 messages are mostly start-up, 3.6-3.7 M/s
//! against 8.6-10.6 M/s), `pipelined-1x8` (8 threads, one client) 95k-112k
//! requests/s (floor 337k-793k/s) and `pipelined-8x64` (8 connections, 64 in
//! flight each) 282k-301k requests/s (floor 5.5-6.5 M/s).
//!
//! What made the fan-out faster: the client cuts publications out of one
//! shared copy of each read (one allocation per read instead of three or more
//! per publication); writers send without holding the connection's lock; the
//! internal maps use a cheap integer hash and the server finds a subscriber's
//! connection by slot; and a subscribed connection's server-side reader waits
//! in `poll`, because a thread blocked in `read` on that socket was woken by
//! every read its subscriber made (send-space wake-ups share the socket's wait
//! queue), which had cost about a tenth of the machine. What remains is spread
//! out: the subscriber side (decode, topic match, queue hand-off between
//! threads) is about a third of the CPU, the publisher's per-subscriber lock
//! and copy about a tenth (the lock's cache line moves between cores each
//! time), and wake-ups and copies in the kernel most of the rest. Handing
//! publications to the flusher in one log instead (so the publisher touched no
//! connection) was tried and halved the rate: it made the writes smaller and the
//! wake-ups more frequent.
//!
//! The 8-thread row misses its target, and so does its floor. The bench runs,
//! beside this crate, a hand-written client shared by eight threads (a mutex
//! around writes, a dedicated reader thread, one condition variable per
//! thread) against a server thread answering each read with one write: the
//! least such a client needs, one write per request and one wake-up per answer.
//! In one run (`--only threads`, medians of 5 runs of 8 x 20,000 requests,
//! three alternating runs of each build) that floor did 135k-143k requests/s.
//! This crate did 101k-108k with waiters sleeping at once, and 115k-121k (0.84x
//! of the floor) now that a waiter yields the CPU up to 64 times before it
//! sleeps. Almost all of the time is the kernel's: context switches and futex
//! wake-ups, costly across CPUs on this VM (a same-CPU switch here costs about
//! as much as the whole 9 us ping-pong's syscalls). 300k requests/s would need
//! about a third of the wake-up cost per request that even the floor pays.
//! Waiting for answers in `poll` rather than `read` brought nothing measurable
//! there and cost 5% on the round trip, so it was left out.

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
