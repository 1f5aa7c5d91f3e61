//! A server's settings: one set of names and defaults for every adapter.

use std::time::Duration;

use crate::budget::MemoryLimits;
use crate::buffers::BufferLimits;

/// Distinct subscriptions (topics and patterns) one server connection can hold:
/// the size of the connection's fixed table, and the default and largest
/// [`ServerConfig::max_subscriptions`].
pub const MAX_SUBSCRIPTIONS: usize = 64;
/// Bytes of topic and pattern strings one server connection can hold.
pub const MAX_SUBSCRIPTION_BYTES: usize = 4096;
/// How long a busy connection polls for input before its thread or task may
/// sleep, unless set (see [`ServerConfig::spin_before_sleep`]).
pub const DEFAULT_SERVER_SPIN: Duration = Duration::from_micros(50);
/// Permissions given to a socket file unless configured otherwise: read and
/// write for the owner only.
pub const DEFAULT_SOCKET_MODE: u32 = 0o600;

/// What to do with a publication for a connection whose unsent bytes would
/// pass [`ServerConfig::max_queued_bytes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SlowConsumer {
    /// Drop the publication for that connection and count it
    /// ([`Stats::publications_dropped`](crate::Stats::publications_dropped)).
    /// Other connections are unaffected.
    #[default]
    DropAndCount,
    /// Close that connection
    /// ([`Stats::slow_consumers_disconnected`](crate::Stats::slow_consumers_disconnected)).
    Disconnect,
}

/// Limits and settings of a server. Every limit has a safe default; set fields
/// directly or chain the setters of the same names:
///
/// ```
/// use microsocket_host::{ServerConfig, SlowConsumer};
/// use std::time::Duration;
///
/// let config = ServerConfig::default()
///     .max_connections(100)
///     .slow_consumer(SlowConsumer::Disconnect)
///     .shutdown_timeout(Duration::from_secs(1));
/// assert_eq!(config.max_connections, 100);
/// assert_eq!(config.max_frame, 16 << 20);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerConfig {
    /// The largest frame accepted from a client (default 16 MiB). A larger
    /// request is answered with `#` "frame too large" and skipped as it
    /// arrives, without being buffered; the connection stays open.
    pub max_frame: usize,
    /// Requests of one connection handed to the handler and not yet answered
    /// (default 256); past it, requests are failed at once.
    pub max_in_flight: usize,
    /// Distinct subscriptions of one connection (default and maximum
    /// [`MAX_SUBSCRIPTIONS`]; their strings total at most
    /// [`MAX_SUBSCRIPTION_BYTES`]). Subscriptions past it are refused.
    pub max_subscriptions: usize,
    /// Connections served at once (default 4096); further ones are accepted
    /// and closed at once, and counted.
    pub max_connections: usize,
    /// Bytes queued for one connection and not yet written (default 4 MiB).
    /// Publications past it follow [`ServerConfig::slow_consumer`], except
    /// that a connection with nothing queued always takes one publication,
    /// whatever its size; answers are never dropped, but the connection's
    /// requests are not read until it drains.
    pub max_queued_bytes: usize,
    /// What happens to publications for a connection over its byte limit.
    pub slow_consumer: SlowConsumer,
    /// Buffered topics: `(topic or pattern, depth)`. A subscriber to a
    /// buffered topic first receives its last `depth` publications (see
    /// [`Registry::set_buffer`](crate::Registry::set_buffer)). Default none.
    pub buffers: Vec<(Vec<u8>, usize)>,
    /// What buffered topics may keep at most, whatever is published: bytes
    /// per topic (default 16 MiB), distinct topics (default 10,000; the
    /// least recently published goes first) and bytes in all (default
    /// 64 MiB). What the caps discard is counted in
    /// [`Stats::buffered_evicted`](crate::Stats::buffered_evicted).
    pub buffer_limits: BufferLimits,
    /// The memory budget: bytes all connections together may make the server
    /// hold (receive buffers, queued answers and publications, requests held
    /// by handlers), a user's share of it, and the connections one user may
    /// have open (default 1 GiB, 768 MiB, no cap besides `max_connections`;
    /// see [`MemoryLimits`]). Near it the server sheds
    /// load (see [`MemoryBudget`](crate::MemoryBudget)).
    pub memory: MemoryLimits,
    /// Permissions of a UNIX socket file the server binds (default
    /// [`DEFAULT_SOCKET_MODE`], owner only).
    pub socket_mode: u32,
    /// Owner (user id) given to a UNIX socket file the server binds; `None`
    /// (default) keeps this process's user.
    pub socket_owner: Option<u32>,
    /// Group (group id) given to a UNIX socket file the server binds; `None`
    /// (default) keeps the group it was created with.
    pub socket_group: Option<u32>,
    /// How long shutdown lets requests in flight finish and queues drain
    /// before connections are closed (default 5 s).
    pub shutdown_timeout: Duration,
    /// How long a connection whose client keeps several requests in flight
    /// keeps polling for input, yielding the CPU, before its thread or task
    /// may sleep (default [`DEFAULT_SERVER_SPIN`]; zero: never). The window
    /// starts after a read that brought more than one frame and follows each
    /// of the next 7 reads, so the client's next batch finds the server awake
    /// (no cross-CPU wake-up per batch). One-request-at-a-time, idle and
    /// subscribed connections never start it.
    pub spin_before_sleep: Duration,
    /// Stack size of the threads that serve connections, where an adapter
    /// runs one per connection (the blocking adapter; default 256 KiB).
    pub stack_size: usize,
    /// Who may use the commands the server answers itself (`$STATS`; see
    /// `docs/PROTOCOL.md`): by default peers of the server's own user.
    pub server_commands: crate::server_commands::ServerCommands,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_frame: 16 << 20,
            max_in_flight: 256,
            max_subscriptions: MAX_SUBSCRIPTIONS,
            max_connections: 4096,
            max_queued_bytes: 4 << 20,
            slow_consumer: SlowConsumer::DropAndCount,
            buffers: Vec::new(),
            buffer_limits: BufferLimits::default(),
            memory: MemoryLimits::default(),
            socket_mode: DEFAULT_SOCKET_MODE,
            socket_owner: None,
            socket_group: None,
            shutdown_timeout: Duration::from_secs(5),
            spin_before_sleep: DEFAULT_SERVER_SPIN,
            stack_size: 256 << 10,
            server_commands: crate::server_commands::ServerCommands::OwnUser,
        }
    }
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty;)*) => {
        impl ServerConfig {
            $(
                $(#[$doc])*
                #[must_use]
                pub fn $name(mut self, value: $ty) -> Self {
                    self.$name = value;
                    self
                }
            )*
        }
    };
}

setters! {
    /// Sets [`ServerConfig::max_frame`].
    max_frame: usize;
    /// Sets [`ServerConfig::max_in_flight`].
    max_in_flight: usize;
    /// Sets [`ServerConfig::max_connections`].
    max_connections: usize;
    /// Sets [`ServerConfig::max_queued_bytes`].
    max_queued_bytes: usize;
    /// Sets [`ServerConfig::slow_consumer`].
    slow_consumer: SlowConsumer;
    /// Sets [`ServerConfig::socket_mode`].
    socket_mode: u32;
    /// Sets [`ServerConfig::shutdown_timeout`].
    shutdown_timeout: Duration;
    /// Sets [`ServerConfig::spin_before_sleep`].
    spin_before_sleep: Duration;
    /// Sets [`ServerConfig::stack_size`].
    stack_size: usize;
    /// Sets [`ServerConfig::buffer_limits`].
    buffer_limits: BufferLimits;
    /// Sets [`ServerConfig::memory`].
    memory: MemoryLimits;
    /// Sets [`ServerConfig::server_commands`].
    server_commands: crate::server_commands::ServerCommands;
}

impl ServerConfig {
    /// Sets [`ServerConfig::max_subscriptions`], at most [`MAX_SUBSCRIPTIONS`].
    #[must_use]
    pub fn max_subscriptions(mut self, n: usize) -> Self {
        self.max_subscriptions = n.min(MAX_SUBSCRIPTIONS);
        self
    }

    /// Sets [`ServerConfig::socket_owner`].
    #[must_use]
    pub fn socket_owner(mut self, uid: u32) -> Self {
        self.socket_owner = Some(uid);
        self
    }

    /// Sets [`ServerConfig::socket_group`].
    #[must_use]
    pub fn socket_group(mut self, gid: u32) -> Self {
        self.socket_group = Some(gid);
        self
    }

    /// Adds a buffered topic or pattern (see [`ServerConfig::buffers`]).
    #[must_use]
    pub fn buffer(mut self, selector: impl Into<Vec<u8>>, depth: usize) -> Self {
        self.buffers.push((selector.into(), depth));
        self
    }
}
