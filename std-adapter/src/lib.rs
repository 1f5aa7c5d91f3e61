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
//! assert_eq!(publication.topic_str(), Some("news.today"));
//! assert_eq!(*publication.values(), ["extra!"]);
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
//! [`SERVER_MAX_SUBSCRIPTIONS`] subscriptions of at most [`SERVER_MAX_SUBSCRIPTION_BYTES`] bytes,
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
//! One run of each part on a shared 2-vCPU VM (load average 1–2), the floor
//! beside this crate in the same process run:
//!
//! | measure | floor | microsocket | target |
//! |---|---|---|---|
//! | round trip p50 (pinned, median of 5 runs) | 9.16 us | 10.30 us: **1.12x** (earlier runs 1.13–1.14x) | <= 1.15x |
//! | 8 threads sharing one client (median of 5 runs of 8 x 20,000; see below) | 123k requests/s | **340k requests/s** with default settings (runs 263k–371k; 353k in the run before); 122k with both sides' `spin_before_sleep` zero | >= 300k |
//! | publish 64-byte messages to 100 subscribers (each received and checked) | | **6.33 M deliveries/s** (6.22 M and 6.45 M in earlier runs) | >= 5 M |
//!
//! The comparison harness (`cargo run --release -p microsocket-bench --features
//! zmq -- run`, BENCHMARKS.md; default settings) gave in its latest full run
//! a pinned round trip of 9.9 µs against 8.8 µs for its floor (1.13x), a
//! pinned 64 KiB round trip of 29.1 µs against 31.4 µs (0.93x: a large answer
//! is written from the handler's values, not copied), `fanout-100` 8.82 M
//! deliveries/s (floor 11.41 M/s), `fanout-1` 6.31 M/s, `pipelined-1x8` (8
//! threads, one client) 338k requests/s, `pipelined-1x256` (one thread,
//! tickets) 5.18 M/s and `pipelined-8x64` 3.35 M/s, against ZeroMQ's 76k,
//! 507k and 732k.
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
//! The 8-thread row is bound by wake-ups, which the bench's floor shows: a
//! hand-written client shared by eight threads (a mutex around writes, a
//! dedicated reader thread, one condition variable per thread) against a server
//! thread answering each read with one write, the least such a client needs,
//! does 135k–143k requests/s here. Almost all of its time, and of this crate's
//! with default settings, is the kernel's: futex wake-ups and context switches,
//! costly across CPUs on this VM. Three things cut them:
//!
//! - a client thread whose answer another thread is reading yields the CPU up
//!   to 64 times before it sleeps, which usually finds its answer in or the
//!   leader role free (101k–108k became 115k–121k requests/s, measured with
//!   alternating builds in other runs);
//! - the thread reading for the others polls the socket for up to
//!   [`ClientConfig::spin_before_sleep`] (50 us) before it blocks, but only
//!   while other threads await answers too, so a lone requester's round trip
//!   is the plain blocking one;
//! - a server connection whose client sent a batch (a read that brought more
//!   than one frame) polls for [`ServerConfig::spin_before_sleep`] (50 us)
//!   after that read and each of the next 7 before it blocks, so it is awake
//!   when the next batch arrives; one-request-at-a-time and idle connections
//!   never start it. Together: 2.8x the floor, 340k requests/s in the run above.
//!
//! Waiting for answers in `poll` rather than `read` brought nothing measurable
//! there and cost 5% on the round trip, so it was left out.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod client;

mod rx;
pub mod server;
#[cfg(feature = "tls")]
pub mod tls;
pub use microsocket_socket as socket;

pub use bytes::Bytes;
pub use client::{
    Batch, Client, Subscriber, Subscription, SubscriptionIter, Ticket, MAX_IN_FLIGHT,
    MAX_SUBSCRIPTIONS as CLIENT_MAX_SUBSCRIPTIONS, MAX_SUBSCRIPTION_BYTES as CLIENT_MAX_SUBSCRIPTION_BYTES,
};
pub use microsocket_host::shared::*;
pub use microsocket_host::Result;
pub use microsocket_socket::{Address, PeerCredentials, SocketOptions, TlsIdentity};
pub use server::{Handler, Publisher, Request, RequestContext, Responder, RunningServer, Server, ShutdownHandle};
