//! Async [Tokio](https://tokio.rs) client and server for microsocket, the local IPC
//! protocol that speaks IPC::MicroSocket's wire format byte for byte
//! (`docs/PROTOCOL.md`): pipelined request/response and publish/subscribe over a
//! UNIX socket, an abstract socket name, TCP, or any byte stream.
//!
//! ```
//! use microsocket_tokio::{Client, Failure, Handler, Reply, Request, Server};
//!
//! struct Greeter;
//!
//! impl Handler for Greeter {
//!     async fn call(&self, request: Request) -> Result<Reply, Failure> {
//!         match &request.command[..] {
//!             b"HELLO" => {
//!                 let name = request.args.first().unwrap_or_default();
//!                 Ok(Reply::one(format!("hello, {}", String::from_utf8_lossy(&name))))
//!             }
//!             _ => Err(Failure::new("no such command")),
//!         }
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("app.sock");
//!
//! // The server: socket file with mode 0600, removed again on shutdown.
//! let server = Server::new(Greeter);
//! server.listen_unix(&path)?;
//!
//! // A client: clone it freely, call it from any number of tasks at once.
//! let client = Client::connect_unix(&path).await?;
//! let answer = client.request("HELLO", ["world"]).await?;
//! assert_eq!(answer.first().unwrap(), "hello, world");
//!
//! // Publish/subscribe: `subscribe` returns once the server has the subscription.
//! let mut news = client.subscribe("news").await?;
//! assert_eq!(server.publish("news", ["it works"])?, 1);
//! let publication = news.next().await.unwrap()?;
//! assert_eq!(publication.values, ["it works"]);
//!
//! server.shutdown().await;
//! assert!(!path.exists());
//! # Ok(()) }
//! ```
//!
//! # Client
//!
//! [`Client`] is a cheap handle to one connection, whose reads and writes belong to
//! one driver task. [`Client::request`] encodes its frame straight into the
//! connection's write buffer; frames queued while a write is in progress leave
//! together in the next one, and while other requests are in flight the driver
//! lets the tasks that are ready run first, so many tasks calling it at once share
//! few system calls. Answers are matched by tag and delivered as they arrive, in
//! any order, as [`Values`]: frozen slices of the read buffer, handed out as
//! [`bytes::Bytes`] without copying. Each answer waits in a slot of its own, so
//! tasks awaiting answers do not contend for the connection's state.
//!
//! - Errors are typed ([`Error`]): the server's failure (`#`) with message and
//!   details, closed connection, timeout (25 s by default, see
//!   [`ClientBuilder::request_timeout`]), too many in flight, response too large,
//!   I/O. Dropping a request's future abandons it; its late answer is discarded.
//! - [`Client::subscribe`] and [`Client::subscribe_pattern`] return a
//!   [`Subscription`], a `futures_core::Stream` of [`Publication`]s, once the server
//!   has the subscription in place (they send an empty-command request after the
//!   `+`/`*` and wait for its answer), so no publication made after they return is
//!   missed. Subscriptions to the same topic share one wire subscription; dropping
//!   the last sends `-`. A stream that is read too slowly yields
//!   [`Error::Lagged`] with the number of publications it missed, never silence.
//! - When the connection dies, every pending request fails with [`Error::Closed`]
//!   and every subscription stream ends with it. With
//!   [`ClientBuilder::reconnect`] the client connects again and subscribes again;
//!   streams yield [`Error::Reconnecting`] once and carry on.
//! - Against an IPC::MicroSocket 0.03 server: one-byte tags (up to 256 requests in
//!   flight, the default limit), no `-`/`*` needed for exact subscriptions, and a
//!   failed empty-command barrier still counts as proof of subscription.
//! - In-process: [`Server::connect_in_process`], or [`Server::serve_stream`] with
//!   one end of `tokio::io::duplex` and [`Client::new`] with the other.
//!
//! # Server
//!
//! [`Server`] runs a [`Handler`] (a trait with an async method, or closures via
//! [`handler_fn`]) for every request. Each connection is one task: it reads frames
//! in order, polls each request's future as soon as it is decoded, runs the
//! unfinished ones side by side (a `FuturesUnordered`, no task per request), and
//! writes answers in completion order together with publications, in vectored
//! batches.
//!
//! - Listeners: [`Server::listen_unix`] (refuses a path a live server listens on,
//!   replaces only a stale socket file, creates the file never more open than
//!   [`ServerConfig::socket_mode`], 0600 by default, with
//!   [`ServerConfig::socket_owner`] and [`ServerConfig::socket_group`] if set,
//!   removes it on shutdown if it is still the server's; the rules of
//!   `microsocket_std::socket`, through `bind_unix_with`),
//!   [`Server::listen_abstract`], [`Server::listen_tcp`], or a listener you opened
//!   ([`Server::serve_unix_listener`], [`Server::serve_tcp_listener`]: systemd
//!   socket activation).
//! - Every request carries a [`RequestContext`]: the connection's id and, on UNIX
//!   sockets, the peer's pid, uid and gid as the kernel recorded them at
//!   `connect` (`SO_PEERCRED`; the peer cannot choose them).
//!   [`Handler::authorize_subscription`] accepts or refuses each subscription;
//!   [`Handler::subscription_changed`] observes them. The `uid_gate` example
//!   allows a command and a topic tree to one user id only.
//! - [`Publisher::publish`] (from [`Server::publisher`], cloneable, usable
//!   anywhere) encodes a publication once and queues it to every connection with a
//!   matching subscription, found through the core's registry: the cost grows with
//!   the matching subscriptions, not the connections. [`Server::set_buffer`] keeps
//!   the last N publications of a topic (or pattern of topics) and replays them to
//!   new subscribers, atomically with live publishing.
//! - Backpressure: each connection's unsent bytes are bounded
//!   ([`ServerConfig::max_queued_bytes`]). Publications past the bound are dropped
//!   and counted, or the connection is closed ([`SlowConsumer`]); other connections
//!   never wait. Answers are never dropped: a connection over its bound is not read
//!   until it drains. Publications made while a request was handled are written
//!   before its answer.
//! - Limits ([`ServerConfig`]): largest frame (16 MiB), requests in flight per
//!   connection (256), subscriptions per connection (64, at most
//!   [`SERVER_MAX_SUBSCRIPTION_BYTES`] bytes of strings), connections (16,384),
//!   queued bytes per connection (1 MiB). Bad input is handled as the protocol
//!   says; the connection stays open.
//! - [`Server::shutdown`] stops accepting and reading, lets requests in flight
//!   finish within [`ServerConfig::shutdown_timeout`], flushes, closes and removes
//!   the socket files. [`Server::stats`] reads the counters; `tracing` spans and
//!   events cover connections, requests, refusals, drops and errors.
//!
//! Tokio features used: `net`, `rt`, `time`.
//!
//! # Speed and memory
//!
//! `cargo bench -p microsocket-tokio --bench tokio_adapter -- <scenario>` (a
//! custom harness; release build). Measured on a shared 2-vCPU machine while other
//! builds and fuzzers were running (load average 2 to 12), so figures are ranges
//! over several runs:
//!
//! | scenario | measured | target |
//! |---|---|---|
//! | `rtt`: round trip with one request in flight, p50, client and server in one current-thread runtime, `taskset -c 0`, median of 5 runs | 8.7 µs against 6.9 µs for the floor: **1.19–1.38x** (single runs 1.16–1.43x; the load decides which end) | ≤ 1.3x floor |
//! | `pipelined1`: one connection, 256 requests in flight from 256 tasks, current-thread runtime | **2.5–2.7 M requests/s** | ≥ 2 M/s |
//! | `pipelined2`: the same on a 2-worker multi-thread runtime | **1.9–2.2 M requests/s** on a quiet machine, 1.0–1.6 M/s under load (about 90 requests per write) | ≥ 2 M/s |
//! | `pipelined-split`: one connection, 256 tasks looping over one-byte `ECHO` requests, client and server each on a current-thread runtime on a thread of its own (the comparison harness's layout), median of 9 runs of 400,000 | **2.0–2.4 M requests/s** in single runs when the machine leaves both threads a core; medians 0.9–1.6 M/s at load average 7–12 | ≥ 2 M/s |
//! | `fanout-raw`: 64-byte publications to 100 subscribed sockets that only read (what the server delivers) | **11–33 M deliveries/s** on a quiet machine, 7–8 M/s under load (the single publishing task is the limit: taking each connection's queue lock, a cache line the connection's task last held, is most of the cost) | ≥ 10 M/s |
//! | `fanout`: the same, then to 100 microsocket client subscriptions in the same process | 9.5–11.2 M deliveries/s received at load average 2–3 (medians about 10.2 M/s), 5 M/s when the load takes a core | |
//! | `idle`: server memory per idle connection, 10,000 connections opened by another process | **11.9–12.7 KiB** | < 16 KiB |
//!
//! The comparison harness (`cargo run --release -p microsocket-bench --features
//! zmq -- run --repeats 3 --only <workload>`) runs its floors in the same run:
//! its `pipelined-1x256` (one `ECHO` with a value per request, timed from
//! spawning the tasks) gave medians of 2.2–2.3 M requests/s in some runs, but
//! 1.45–1.71 M/s in most, and 1.59 M/s against 2.99 M/s for its Tokio floor in
//! the full run behind BENCHMARKS.md (load average about 2). The floor writes
//! all its requests from one task. A request costs the two threads
//! about 0.45 µs of CPU together (`perf stat` over `pipelined-split`), which
//! matches that rate: with 256 in flight the client and the server mostly take
//! turns, each handling a whole batch while the other waits. Its `fanout-100`
//! (the server on one current-thread runtime, the 100 subscriber clients and
//! their reader tasks on another) gives medians of 6.1–6.3 M deliveries/s
//! against 8.9–10.5 M/s for its Tokio floor at load average 2–5 (0.6–0.7x);
//! the subscribers' thread is the limit: each publication is decoded, matched,
//! cut from the read buffer and queued by the connection's driver task, then
//! taken and checked by the reader task, about twice the server's CPU per
//! delivery (`perf record`). A driver reads once (up to 64 KiB) per turn when
//! publications arrive and lets their readers run before reading more, so the
//! queued publications are still in cache when taken; the full run gave
//! 6.28 M/s against 10.26 M/s. Its `rtt-16B-pinned` gave p50 16.3 µs against
//! 13.9 µs for the floor (1.17x): a request still passes from the calling task
//! to the connection's driver task, and the answer back.
//!
//! The floor for the round trip is a minimal hand-written Tokio ping-pong over a
//! UNIX socket exchanging the same frames, run in the same process just before each
//! microsocket run. Commands:
//!
//! ```text
//! taskset -c 0 cargo bench -p microsocket-tokio --bench tokio_adapter -- rtt
//! cargo bench -p microsocket-tokio --bench tokio_adapter -- pipelined1 pipelined2 pipelined-split fanout-raw fanout idle
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod client;
mod conn;
mod error;
mod handler;
mod server;
mod spin;
mod values;

pub use client::{
    Client, ClientBuilder, ReconnectPolicy, ResponseFuture, Subscription, DEFAULT_CLIENT_SPIN, DEFAULT_MAX_FRAME,
    DEFAULT_TIMEOUT, MAX_IN_FLIGHT, MAX_SUBSCRIPTIONS, MAX_SUBSCRIPTION_BYTES,
};
pub use error::Error;
pub use handler::{
    handler_fn, ConnectionId, Failure, FnHandler, Handler, PeerCredentials, Reply, Request, RequestContext,
    SubscriptionChange,
};
pub use microsocket_core::SubscriptionKind;
pub use server::{
    Publisher, Server, ServerConfig, SlowConsumer, Stats, SERVER_MAX_SUBSCRIPTIONS, SERVER_MAX_SUBSCRIPTION_BYTES,
};
pub use values::{Iter, Publication, Values};
