//! The protocol core of microsocket: `no_std`, no allocator, sans-IO.
//!
//! microsocket carries request/response and publish/subscribe over one byte stream,
//! speaking the wire protocol of the Perl module IPC::MicroSocket byte for byte (see
//! [`frame`] and `docs/PROTOCOL.md`). This crate holds all of the protocol: framing,
//! tag correlation, subscription tables and topic patterns. It never touches a
//! socket, a clock or a thread: a driver feeds it bytes and takes out bytes to send
//! and events.
//!
//! # The machines
//!
//! - [`Client`] and [`ServerConnection`] own fixed buffers (sizes are const
//!   generics) and need no allocator: for firmware and custom loops.
//! - [`ClientProtocol`] and [`ServerProtocol`] are the same logic without buffers,
//!   for drivers that own theirs (the Tokio and std adapters): decode with
//!   [`frame::Decoder`] over any buffer, hand frames in, encode into any
//!   [`frame::FrameSink`]. No argument byte is copied to please the core.
//!   A [`ServerProtocol`] keeps its subscriptions in any [`SubscriptionTable`]:
//!   a fixed [`SubscriptionSet`] by default, or storage its host provides.
//!
//! Their methods come in four kinds: getters (`&self`), inputs (`handle_*`,
//! `commit_rx`), commands that only queue bytes (`request`, `cancel`, `subscribe`,
//! `unsubscribe`, `respond`, `fail`, `publish`), and outputs (`poll_event`,
//! `poll_transmit`).
//!
//! # The contract
//!
//! After each input or command, call `poll_event` until it returns `None`, then write
//! everything `poll_transmit` holds (reporting each write with `advance_transmit`).
//! Events borrow the receive buffer, so the borrow checker makes you finish with an
//! event before the next input. Nothing a peer sends is an error: every byte
//! sequence is frames; oversized frames are skipped as they arrive; malformed
//! messages are answered or ignored as the protocol says.
//!
//! # Example: the whole loop by hand
//!
//! A client and a server connection over a UNIX socket pair, in one thread:
//!
//! ```
//! # // Not under Miri, which has no send or recv on UNIX sockets.
//! # #[cfg(all(unix, not(miri)))] {
//! use std::io::{Read, Write};
//! use std::os::unix::net::UnixStream;
//! use microsocket_core::{Client, ClientEvent, ServerConnection, ServerEvent};
//!
//! let (mut client_end, mut server_end) = UnixStream::pair().unwrap();
//! let mut client: Client = Client::new();
//! let mut server: ServerConnection = ServerConnection::default();
//!
//! let id = client.request(b"ECHO", [&b"hello"[..]]).unwrap();
//! // Write what the client queued.
//! while let Some(bytes) = client.poll_transmit() {
//!     let n = client_end.write(bytes).unwrap();
//!     client.advance_transmit(n);
//! }
//! // The server reads, handles events until none are left, and writes.
//! let n = server_end.read(server.rx_buf()).unwrap();
//! server.commit_rx(n);
//! while let Some(mut polled) = server.poll_event() {
//!     if let ServerEvent::Request { tag, command, args } = polled.event {
//!         assert_eq!(command, b"ECHO");
//!         polled.outbox.respond(tag, args).unwrap();
//!     }
//! }
//! while let Some(bytes) = server.poll_transmit() {
//!     let n = server_end.write(bytes).unwrap();
//!     server.advance_transmit(n);
//! }
//! // The client reads the response.
//! let n = client_end.read(client.rx_buf()).unwrap();
//! client.commit_rx(n);
//! match client.poll_event() {
//!     Some(ClientEvent::Response { id: got, mut values }) => {
//!         assert_eq!(got, id);
//!         assert_eq!(values.next(), Some(&b"hello"[..]));
//!     }
//!     other => panic!("unexpected {other:?}"),
//! }
//! # }
//! ```
//!
//! # Features
//!
//! - `embedded-io`: the `embedded` module, blocking client and server-connection
//!   drivers over any `embedded_io::Read + Write`, and `frame::encode_to_writer`.
//! - `embedded-io-async`: their async twins in the `embedded` module,
//!   `AsyncClient` and `AsyncServer`, over any `embedded_io_async::Read + Write`.
//! - `alloc`: [`frame::FrameSink`] for `Vec<u8>`.
//! - `defmt`: `defmt::Format` on errors, ids and small enums.
//! - `arbitrary`: `arbitrary::Arbitrary` on `Sigil` and `SubscriptionKind`,
//!   and `arbitrary::MessageSpec` / `arbitrary::FrameSpec`: messages and
//!   frames made from random bytes, for property tests and fuzzing (hosted:
//!   the `arbitrary` crate needs std).
//!
//! # Panics
//!
//! A panic is a bug: no input from a peer can cause one (the fuzz targets in `fuzz/`
//! check this), and commands report misuse as typed errors.
//!
//! # Speed
//!
//! Criterion medians from one run of
//! `cargo bench -p microsocket-core --bench codec -- --warm-up-time 1 --measurement-time 3`
//! on a shared 2-vCPU machine under load from other builds (so upper bounds):
//!
//! | benchmark | median |
//! |---|---|
//! | decode a small request (`PING`, one-byte tag) | 30 ns |
//! | decode a frame with a 1 KiB argument | 31 ns (31 GiB/s) |
//! | decode a frame with a 64 KiB argument | 30 ns (2,000 GiB/s: the argument is not copied) |
//! | decode a 16-argument frame and walk its arguments | 96 ns |
//! | encode a small request | 19 ns |
//! | encode a frame with a 1 KiB / 64 KiB argument | 41 ns / 43 µs (a `memcpy`) |
//! | encode a 16-argument frame | 128 ns |
//! | client round, [`ClientProtocol`]: encode a request into a reused buffer, decode the response, handle it, get the event | 71 ns |
//! | client round, buffer-owning [`Client`] | 65 ns |
//!
//! Decoding does not depend on argument size: a frame is walked by its length
//! prefixes and handed out as slices of the receive buffer.

#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(clippy::std_instead_of_core)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

#[cfg(feature = "alloc")]
extern crate alloc;
// The `arbitrary` crate, and its derive, need the standard library.
#[cfg(any(test, feature = "arbitrary"))]
extern crate std;

#[cfg(feature = "arbitrary")]
pub mod arbitrary;
mod buffers;
mod bytestr;
mod client;
#[cfg(feature = "embedded-io")]
pub mod embedded;
mod error;
pub mod frame;
mod message;
mod pattern;
mod requests;
mod server;
mod subscriptions;

pub use client::{Client, ClientEvent, ClientProtocol};
pub use error::{EncodeError, PatternError, RequestError, SubscribeError, UnsubscribeError};
pub use frame::{Args, Frame, Sigil};
pub use message::Message;
pub use pattern::Pattern;
pub use requests::{RequestId, Tag};
pub use server::{
    encode_publication, IgnoreReason, Outbox, Polled, ServerConnection, ServerEvent, ServerLimits, ServerProtocol,
    DROPPED_UNANSWERED, FRAME_TOO_LARGE, HANDLER_PANICKED, NO_COMMAND, REFUSED_NOT_PERMITTED, REFUSED_TOO_MANY,
    SERVER_BUSY, SUBSCRIPTION_REFUSED, TOO_MANY_IN_FLIGHT, UNENCODABLE_RESPONSE,
};
pub use subscriptions::{Inserted, Matches, SubscriptionId, SubscriptionKind, SubscriptionSet, SubscriptionTable};
