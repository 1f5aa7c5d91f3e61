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
//! assert_eq!(*publication.values(), ["it works"]);
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
//!   `microsocket_socket`, through `bind_unix_with`),
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
//!   matching subscription, found through the host layer's registry: the cost grows with
//!   the matching subscriptions, not the connections. [`Server::set_buffer`] keeps
//!   the last N publications of a topic (or pattern of topics) and replays them to
//!   new subscribers, atomically with live publishing.
//! - [`Server::tap`]: code in the server's process follows topics without a
//!   connection, a [`Tap`] stream of the publications matching some patterns,
//!   taken from the server's queue as they are published (catch-up included),
//!   with a bound of its own past which it drops and says so.
//! - Backpressure: each connection's unsent bytes are bounded
//!   ([`ServerConfig::max_queued_bytes`]). Publications past the bound are dropped
//!   and counted, or the connection is closed ([`SlowConsumer`]); other connections
//!   never wait. Answers are never dropped: a connection over its bound is not read
//!   until it drains. Publications made while a request was handled are written
//!   before its answer.
//! - Limits ([`ServerConfig`]): largest frame (16 MiB), requests in flight per
//!   connection (256), subscriptions per connection (64, at most
//!   [`SERVER_MAX_SUBSCRIPTION_BYTES`] bytes of strings), connections (4,096),
//!   queued bytes per connection (4 MiB). Bad input is handled as the protocol
//!   says; the connection stays open.
//! - [`Server::shutdown`] stops accepting and reading, lets requests in flight
//!   finish within [`ServerConfig::shutdown_timeout`], flushes, closes and removes
//!   the socket files. [`Server::stats`] reads the counters; `tracing` spans and
//!   events cover connections, requests, refusals, drops and errors.
//!
//! Tokio features used: `net`, `rt`, `time`.
//!
//! # Serial lines and TLS
//!
//! [`SerialStream`] opens a UART, USB CDC device or pseudo-terminal in raw
//! mode, to attach to a server ([`Server::serve_stream`]) or to connect a
//! client over ([`ClientBuilder::connect_stream`]). With the feature `tls`,
//! the `tls` module serves and connects over TCP with TLS (rustls), and a
//! client's verified certificate reaches handlers in [`RequestContext::tls`].
//!
//! # Speed and memory
//!
//! `cargo bench -p microsocket-tokio --bench tokio_adapter -- <scenario>` (a
//! custom harness; release build) runs each scenario beside a hand-written floor
//! in the same layout and the same process run. One run of every scenario on a
//! shared 2-vCPU VM (load average 1–2):
//!
//! | scenario | floor | microsocket | target |
//! |---|---|---|---|
//! | `rtt`: one request in flight, client and server in one current-thread runtime, `taskset -c 0`, p50, median of 5 | 6.7–7.5 µs | 8.3–9.0 µs: **1.23x** (runs 1.12–1.33x; 1.24x and 1.25x in the two runs before) | ≤ 1.3x |
//! | `pipelined1`: one connection, 256 requests in flight from 256 tasks, current-thread runtime, median of 5 runs of 1 s | 27.4 M/s | **2.96 M requests/s** | ≥ 2 M/s |
//! | `pipelined2`: the same on a 2-worker runtime | 4.5 M/s | **2.60 M requests/s** (runs 2.57–2.61); bimodal, though: across other runs of five, about a third of the 1 s runs settle near 0.95–1.0 M/s for seconds at a time, with any spin settings (see below) | ≥ 2 M/s |
//! | `pipelined-split`: one connection, 256 tasks, client and server each on a current-thread runtime of its own thread; median of 9 runs of 400,000 | 8.6 M/s | **4.26 M/s** with the default server; 3.22 M/s with [`ServerConfig::spin_before_sleep`] zero | ≥ 2 M/s |
//! | `fanout-raw`: 64-byte publications to 100 subscribed sockets that only read, 3 runs | 41–43 M/s | **13.8–15.2 M deliveries/s** (32.8 M/s run alone) | ≥ 10 M/s |
//! | `fanout`: the same to 100 microsocket client subscriptions in the same process (each publication decoded into a stream item), 3 runs | 40–43 M/s (readers that walk each frame) | **9.8–10.9 M deliveries/s** (median 10.05; 10.1–11.9 in the run before) | ≥ 10 M/s |
//! | `idle`: server memory per idle connection, 10,000 connections opened by another process | | **2.03 KiB** (a connection's subscription table exists only while it has subscriptions) | < 6 KiB |
//!
//! Spinning: a runtime thread that runs out of work sleeps in `epoll_wait`, and
//! waking it again is a cross-CPU wake-up and a context switch, several
//! microseconds on a VM, once per turn of a pipelined exchange. A client's driver
//! therefore keeps polling, yielding to other tasks, for up to 50 µs while
//! requests are in flight ([`ClientBuilder::spin_before_sleep`]; it yields the
//! CPU too from its third turn on, so a server on the same CPU is not kept
//! waiting). A server connection does the same for 50 µs
//! ([`ServerConfig::spin_before_sleep`]) after it reads or answers requests,
//! while one of its last 8 reads brought more than one frame, so clients that
//! send batches find it awake, while idle, subscribed and
//! one-request-at-a-time connections cost no CPU for it
//! (`pipelined-split` above: 4.26 against 3.22 M/s). Unpinned round trips in
//! the comparison harness fell from 40–46 µs (the floor's, and this crate's
//! before spinning) to 20–22 µs.
//!
//! The slow mode of `pipelined2` is the runtime's placement of the 256
//! request tasks: once both workers run them, they contend for the
//! connection's state (lock, tag table, write buffer) and each request's cache
//! lines move between the CPUs; `perf` then shows a third of the time on that
//! lock and the waiters' reference counts. Neither another mutex
//! (`parking_lot`) nor waiters allocated outside the lock changed it. With the
//! client and the server in processes (or runtimes) of their own, as
//! `pipelined-split` and the comparison harness run them, throughput stays at
//! 3.4–4.3 M/s.
//!
//! The client's driver writes whatever requests are queued as soon as it runs:
//! requests made while a write is under way gather for the next one, and the
//! server starts on the first batch meanwhile. (Letting the other runnable
//! tasks queue theirs first, for fewer and larger writes, serialised the two
//! sides: 1.9 M/s on `pipelined2` and 2.1 M/s on `pipelined-split`.)
//!
//! What is left of a request's cost is the task per request the benchmark asks
//! for: the floor writes 256 requests from one task and reads their answers in
//! another, where here each of 256 tasks is woken, polled, registers a waiter
//! and encodes its request, and the answer is matched and handed back. In the
//! fan-out, each publication is decoded, matched against the subscriptions,
//! cut from the read buffer as shared bytes and queued by the connection's
//! driver, then taken by the stream's reader task: about twice the server's
//! CPU per delivery (`perf record`).
//!
//! The comparison harness (`cargo run --release -p microsocket-bench --features
//! zmq -- run`, BENCHMARKS.md) puts client and server on threads of their own
//! with default settings and times whole runs including task start-up. Its
//! latest full run gave `rtt-16B-pinned` 17.1 µs against 14.1 µs for its floor
//! (1.21x), `rtt-16B-unpinned` 23.4 µs against 42.3 µs, `pipelined-1x256`
//! 3.47 M/s against 2.79 M/s (1.25x the floor), and `fanout-100` 8.25 M/s
//! against 10.02 M/s for its floor (0.82x). There all 100 subscribers, their
//! drivers and their readers share one thread, which is the bottleneck: about
//! 100 ns of that thread per delivery (decode, topic match, queue, hand-off,
//! the reader's checks, the kernel's copy), where the floor's readers only walk
//! the frames.
//!
//! Commands:
//!
//! ```text
//! taskset -c 0 cargo bench -p microsocket-tokio --bench tokio_adapter -- rtt
//! cargo bench -p microsocket-tokio --bench tokio_adapter -- pipelined1 pipelined2 pipelined-split fanout-raw fanout idle
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod client;
mod conn;
mod handler;
mod hub;
mod log;
mod serial;
mod server;
mod sink;
mod spin;
mod tap;
#[cfg(feature = "tls")]
pub mod tls;

pub use microsocket_socket as socket;

pub use client::{
    Client, ClientBuilder, ResponseFuture, Subscriber, Subscription, MAX_IN_FLIGHT,
    MAX_SUBSCRIPTIONS as CLIENT_MAX_SUBSCRIPTIONS, MAX_SUBSCRIPTION_BYTES as CLIENT_MAX_SUBSCRIPTION_BYTES,
};
pub use handler::{
    handler_fn, Failure, FnHandler, Handler, PeerCredentials, Reply, Request, RequestContext, TlsIdentity,
};
pub use microsocket_host::shared::*;
pub use microsocket_socket::{Address, SocketOptions};
pub use serial::SerialStream;
pub use server::{Publisher, Server};
pub use tap::{Tap, TapError};
