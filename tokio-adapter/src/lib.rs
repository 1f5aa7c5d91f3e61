//! Async Tokio client and server for microsocket.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod client;
mod conn;
mod error;
mod handler;
mod server;
mod values;

pub use client::{
    Client, ClientBuilder, ReconnectPolicy, ResponseFuture, Subscription, DEFAULT_MAX_FRAME, DEFAULT_TIMEOUT,
    MAX_IN_FLIGHT, MAX_SUBSCRIPTIONS, MAX_SUBSCRIPTION_BYTES,
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
