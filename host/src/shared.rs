//! The vocabulary every adapter shares, re-exported whole by each
//! (`pub use microsocket_host::shared::*`), so that one name means one thing
//! in the blocking and the Tokio adapter alike: settings, counters, errors, the
//! core types that appear in their signatures, and the failure messages a
//! server sends on its own.

pub use crate::budget::{MemoryLimits, MemoryStats};
pub use crate::buffers::{BufferLimits, BufferStats};
pub use crate::client_config::{
    ClientConfig, ReconnectPolicy, DEFAULT_CLIENT_MAX_IN_FLIGHT, DEFAULT_CLIENT_MAX_QUEUED_BYTES, DEFAULT_CLIENT_SPIN,
    DEFAULT_MAX_FRAME, DEFAULT_REQUEST_TIMEOUT, DEFAULT_SUBSCRIPTION_CAPACITY, DEFAULT_SUBSCRIPTION_MAX_BYTES,
};
pub use crate::config::{
    ServerConfig, SlowConsumer, DEFAULT_SERVER_SPIN, DEFAULT_SOCKET_MODE,
    MAX_SUBSCRIPTIONS as SERVER_MAX_SUBSCRIPTIONS, MAX_SUBSCRIPTION_BYTES as SERVER_MAX_SUBSCRIPTION_BYTES,
};
pub use crate::error::Error;
pub use crate::server_commands::{ServerCommands, NOT_PERMITTED, NO_SUCH_SERVER_COMMAND, SERVER_COMMAND_PREFIX};
pub use crate::stats::{ConnectionId, StatKind, Stats};
pub use crate::subscribing::SubscriptionChange;
pub use crate::values::{Iter, Publication, Values};
pub use microsocket_core::{
    Args, EncodeError, PatternError, RequestError, SubscribeError, SubscriptionKind, UnsubscribeError,
    DROPPED_UNANSWERED, FRAME_TOO_LARGE, HANDLER_PANICKED, NO_COMMAND, REFUSED_NOT_PERMITTED, REFUSED_TOO_MANY,
    SERVER_BUSY, SUBSCRIPTION_REFUSED, TOO_MANY_IN_FLIGHT, UNENCODABLE_RESPONSE,
};

/// No arguments, for a request that takes none: `client.request("PING", NO_ARGS)`.
pub const NO_ARGS: [&[u8]; 0] = [];
