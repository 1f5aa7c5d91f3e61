//! What a hosted microsocket server and client need beyond one connection's
//! protocol, written once for every adapter: plain data, like
//! `microsocket-core` beneath it, with no threads, no runtime, no clock and no
//! sockets. The blocking (`microsocket-std`) and Tokio (`microsocket-tokio`)
//! adapters keep only what is theirs: how bytes move and how a waiting thread
//! or task is woken.
//!
//! - [`Hub`]: a server's connection slots and the [`Registry`] of their
//!   subscriptions: publish (whom to queue to), subscribe with catch-up on
//!   buffered topics, unsubscribe of both kinds, disconnect cleanup.
//! - [`ConnectionProtocol`]: one server connection's protocol state, its
//!   subscriptions in a [`ConnectionSubscriptions`] table that exists only
//!   while the connection has subscriptions.
//! - [`QueueBound`]: the byte bound on a connection's unsent output and the
//!   [`SlowConsumer`] policy past it.
//! - [`ServerConfig`] and [`ClientConfig`]: every setting, one name and one
//!   default each.
//! - [`Counters`] and [`Stats`]: what a server counts, one meaning each.
//! - [`SubscriptionQueue`]: a client's bounded queue per local subscription,
//!   with lag counted where publications were lost.
//! - [`Error`]: what can go wrong with a request, a subscription or a
//!   connection.
//!
//! ```
//! use microsocket_core::SubscriptionKind;
//! use microsocket_host::{Admission, Counters, Hub, QueueBound, ServerConfig};
//!
//! // A server with one connection, whose output queue is a Vec of frames.
//! let config = ServerConfig::default();
//! let bound = QueueBound::new(&config);
//! let counters = Counters::default();
//! let mut hub: Hub<Vec<Vec<u8>>, Vec<u8>> = Hub::new();
//! let conn = hub.insert_with(|_slot| Vec::new());
//! counters.connection_opened();
//! hub.subscribe(conn, SubscriptionKind::Pattern, b"sensor.>").unwrap();
//!
//! // Publishing finds the subscribers; the adapter queues (here: counts).
//! let frame = b"!\x0c\x00\x00\x00sensor.k.t\x00".to_vec();
//! let reached = hub.publish(b"sensor.k.t", &frame, |queue| {
//!     bound.admit(queue.len(), frame.len()) == Admission::Queue
//! });
//! counters.published(reached as u64);
//! let memory = microsocket_host::MemoryBudget::new(config.memory);
//! assert_eq!(counters.snapshot(0, hub.buffer_stats(), memory.stats()).deliveries, 1);
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod bound;
mod budget;
mod buffers;
mod client_config;
mod config;
mod delivery;
mod error;
mod frames;
mod hub;
mod log;
mod members;
mod monitor;
mod receive;
pub mod registry;
mod server_commands;
pub mod shared;
mod stats;
mod subscribing;
mod table;
mod trie;
mod values;

pub use bound::{Admission, QueueBound};
pub use budget::{Account, MemoryBudget, MemoryLimits, MemoryStats, Refused, CONNECTION_COST, PAUSE_ABOVE, SHORT_READ};
pub use buffers::{BufferLimits, BufferStats};
pub use client_config::{
    ClientConfig, ReconnectPolicy, DEFAULT_CLIENT_MAX_IN_FLIGHT, DEFAULT_CLIENT_MAX_QUEUED_BYTES, DEFAULT_CLIENT_SPIN,
    DEFAULT_MAX_FRAME, DEFAULT_REQUEST_TIMEOUT, DEFAULT_SUBSCRIPTION_CAPACITY, DEFAULT_SUBSCRIPTION_MAX_BYTES,
};
pub use config::{
    ServerConfig, SlowConsumer, DEFAULT_SERVER_SPIN, DEFAULT_SOCKET_MODE, MAX_SUBSCRIPTIONS, MAX_SUBSCRIPTION_BYTES,
};
pub use delivery::{ByteBudget, Delivery, SubscriptionQueue, Taken, Weigh};
pub use error::{check_in_flight, subscription_confirmed, Error, Result};
pub use frames::{publication_frame, publication_frames};
pub use hub::Hub;
pub use log::{LogLimit, Logged, LOGGED_BYTES, LOGGED_PER_SECOND};
pub use members::{Member, Members};
pub use monitor::{MonitorEvent, Monitors, OfferEvent, MONITOR_PENDING, MONITOR_TOPIC};
pub use receive::{LargeFrames, KEEP_AT_MOST, SHRINK_AFTER_READS};
pub use registry::Registry;
pub use server_commands::{
    is_server_command, server_command, Caller, ConnectionInfo, ServerCommands, ServerView, BAD_MONITOR_FILTER,
    NOT_PERMITTED, NO_SUCH_SERVER_COMMAND, SERVER_COMMAND_PREFIX,
};
pub use stats::{ConnectionId, Counters, StatKind, Stats};
pub use subscribing::{refusal, SubscriptionChange};
pub use table::{connection_protocol, ConnectionProtocol, ConnectionSubscriptions};
pub use values::{copy_out, cut_frame, Iter, Publication, Values};
