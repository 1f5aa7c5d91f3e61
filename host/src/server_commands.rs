//! Commands the server answers itself: requests whose command starts with
//! `$` (`docs/PROTOCOL.md`, "Server commands"). They never reach the handler
//! and are not counted as its requests.
//!
//! ```
//! use microsocket_core::{Args, PatternError, SubscriptionKind};
//! use microsocket_host::{server_command, Caller, ConnectionInfo, ServerCommands, ServerView, Stats};
//!
//! struct Empty;
//! impl ServerView for Empty {
//!     fn access(&self) -> (u32, ServerCommands) { (1000, ServerCommands::OwnUser) }
//!     fn stats(&self) -> Stats { Stats::default() }
//!     fn connections(&self) -> Vec<ConnectionInfo> { Vec::new() }
//!     fn subscriptions(&self) -> Vec<(SubscriptionKind, Vec<u8>, usize)> { Vec::new() }
//!     fn monitor(&self, _slot: usize, _filter: Option<&[u8]>) -> Result<(), PatternError> { Ok(()) }
//! }
//! // The server's own user may ask; `$STATS` answers name, value pairs.
//! let me = Caller { uid: Some(1000), slot: 0 };
//! let values = server_command(b"$STATS", Args::empty(), me, &Empty).unwrap();
//! assert_eq!(values[0], b"connections");
//! // Another user may not.
//! let other = Caller { uid: Some(1001), slot: 1 };
//! let refused = server_command(b"$STATS", Args::empty(), other, &Empty);
//! assert_eq!(refused.unwrap_err(), microsocket_host::NOT_PERMITTED);
//! ```

use microsocket_core::{Args, PatternError};

use crate::stats::Stats;

/// What a server shows of itself to server commands.
pub trait ServerView {
    /// The user the server runs as, and who may use server commands.
    fn access(&self) -> (u32, ServerCommands);
    /// Its counters now.
    fn stats(&self) -> Stats;
    /// Its connections now.
    fn connections(&self) -> Vec<ConnectionInfo>;
    /// Its subscription table now: each topic and pattern with how many
    /// connections subscribe to it ([`Registry::subscriptions`](crate::registry::Registry::subscriptions)).
    fn subscriptions(&self) -> Vec<(microsocket_core::SubscriptionKind, Vec<u8>, usize)>;
    /// Makes the connection in `slot` a monitor ([`Monitors::watch`](crate::monitor::Monitors::watch)).
    ///
    /// # Errors
    /// [`PatternError`] for a filter that is not a valid pattern.
    fn monitor(&self, slot: usize, filter: Option<&[u8]>) -> Result<(), PatternError>;
}

/// Who sent a server command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// The peer's user, where the socket tells it.
    pub uid: Option<u32>,
    /// The connection's slot in the server's hub.
    pub slot: usize,
}

/// One connection, as `$CONNECTIONS` describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnectionInfo {
    /// The connection's id, unique within the server.
    pub id: u64,
    /// The peer's process, user and group ids (UNIX sockets, where the
    /// platform tells them).
    pub peer: Option<(u32, u32, u32)>,
    /// Its subscriptions (topics and patterns).
    pub subscriptions: usize,
    /// Its requests the server has not answered yet.
    pub requests_in_flight: usize,
    /// Bytes queued for it and not yet written.
    pub queued_bytes: usize,
    /// Bytes charged to the memory budget for it.
    pub memory: usize,
    /// Publications and monitor events dropped for it, its queue being full.
    pub dropped: u64,
}

impl ConnectionInfo {
    /// The connection as one value: `key=value` fields separated by spaces
    /// (`id=3 pid=812 uid=1000 gid=1000 subscriptions=2 in_flight=0
    /// queued=0 memory=16384 dropped=0`; no `pid`, `uid` or `gid` where the
    /// peer is unknown).
    #[must_use]
    pub fn to_value(&self) -> Vec<u8> {
        let mut text = format!("id={}", self.id);
        if let Some((pid, uid, gid)) = self.peer {
            text.push_str(&format!(" pid={pid} uid={uid} gid={gid}"));
        }
        text.push_str(&format!(
            " subscriptions={} in_flight={} queued={} memory={} dropped={}",
            self.subscriptions, self.requests_in_flight, self.queued_bytes, self.memory, self.dropped
        ));
        text.into_bytes()
    }
}

/// The first byte of a command the server answers itself.
pub const SERVER_COMMAND_PREFIX: u8 = b'$';

/// The failure for a server command the peer may not use.
pub const NOT_PERMITTED: &[u8] = b"not permitted";

/// The failure for a `$` command the server does not have.
pub const NO_SUCH_SERVER_COMMAND: &[u8] = b"no such server command";

/// The failure for `$MONITOR` with a bad filter.
pub const BAD_MONITOR_FILTER: &[u8] = b"$MONITOR takes at most one argument, a topic or pattern to show";

/// Who may use server commands ([`ServerConfig::server_commands`](crate::config::ServerConfig::server_commands)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServerCommands {
    /// Peers running as the server's own user (by their UNIX socket
    /// credentials); not TCP peers, whose user is unknown. The default.
    #[default]
    OwnUser,
    /// Every peer.
    Anyone,
    /// Nobody: every `$` command fails with [`NOT_PERMITTED`].
    Off,
}

/// Whether the server answers `command` itself.
#[must_use]
pub fn is_server_command(command: &[u8]) -> bool {
    command.first() == Some(&SERVER_COMMAND_PREFIX)
}

/// The server's answer to the server command `command` with `args` from
/// `caller`: the values to answer with, or the failure message. Who may use
/// them is the server's [`ServerView::access`].
///
/// `$STATS` answers the server's counters ([`Stats`]) as name, value pairs,
/// in the order of the struct's fields; `$CONNECTIONS` one value per
/// connection ([`ConnectionInfo::to_value`]), in id order; `$TOPICS` three
/// values per subscribed topic or pattern: `topic` or `pattern`, the topic or
/// pattern, and how many connections subscribe to it (exact topics first,
/// each kind in byte order); `$MONITOR [FILTER]` makes the caller a monitor
/// ([`Monitors`](crate::monitor::Monitors)) and answers no values.
///
/// # Errors
/// [`NOT_PERMITTED`], [`NO_SUCH_SERVER_COMMAND`] or [`BAD_MONITOR_FILTER`].
pub fn server_command(
    command: &[u8],
    mut args: Args<'_>,
    caller: Caller,
    server: &dyn ServerView,
) -> Result<Vec<Vec<u8>>, &'static [u8]> {
    let (server_uid, access) = server.access();
    let permitted = match access {
        ServerCommands::Anyone => true,
        ServerCommands::OwnUser => caller.uid == Some(server_uid),
        ServerCommands::Off => false,
    };
    if !permitted {
        return Err(NOT_PERMITTED);
    }
    match command {
        b"$STATS" => Ok(stats_values(&server.stats())),
        b"$CONNECTIONS" => {
            let mut connections = server.connections();
            connections.sort_by_key(|c| c.id);
            Ok(connections.iter().map(ConnectionInfo::to_value).collect())
        }
        b"$TOPICS" => Ok(server
            .subscriptions()
            .into_iter()
            .flat_map(|(kind, selector, count)| {
                let kind = match kind {
                    microsocket_core::SubscriptionKind::Exact => &b"topic"[..],
                    microsocket_core::SubscriptionKind::Pattern => b"pattern",
                };
                [kind.to_vec(), selector, count.to_string().into_bytes()]
            })
            .collect()),
        b"$MONITOR" => {
            let filter = args.next();
            if args.next().is_some() {
                return Err(BAD_MONITOR_FILTER);
            }
            server.monitor(caller.slot, filter).map_err(|_| BAD_MONITOR_FILTER)?;
            Ok(Vec::new())
        }
        _ => Err(NO_SUCH_SERVER_COMMAND),
    }
}

/// [`Stats`] as name, value pairs.
fn stats_values(s: &Stats) -> Vec<Vec<u8>> {
    s.fields()
        .iter()
        .flat_map(|(name, value, _)| [name.as_bytes().to_vec(), value.to_string().into_bytes()])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct View(Stats, Vec<ConnectionInfo>);

    /// A view with `access`.
    struct Access<'a>(&'a View, ServerCommands);

    impl ServerView for Access<'_> {
        fn access(&self) -> (u32, ServerCommands) {
            (0, self.1)
        }
        fn stats(&self) -> Stats {
            self.0.stats()
        }
        fn connections(&self) -> Vec<ConnectionInfo> {
            self.0.connections()
        }
        fn subscriptions(&self) -> Vec<(microsocket_core::SubscriptionKind, Vec<u8>, usize)> {
            self.0.subscriptions()
        }
        fn monitor(&self, slot: usize, filter: Option<&[u8]>) -> Result<(), PatternError> {
            self.0.monitor(slot, filter)
        }
    }

    impl ServerView for View {
        fn access(&self) -> (u32, ServerCommands) {
            (0, ServerCommands::Anyone)
        }
        fn stats(&self) -> Stats {
            self.0
        }
        fn connections(&self) -> Vec<ConnectionInfo> {
            self.1.clone()
        }
        fn subscriptions(&self) -> Vec<(microsocket_core::SubscriptionKind, Vec<u8>, usize)> {
            vec![(microsocket_core::SubscriptionKind::Pattern, b"a.>".to_vec(), 2)]
        }
        fn monitor(&self, _slot: usize, filter: Option<&[u8]>) -> Result<(), PatternError> {
            filter.map_or(Ok(()), |f| microsocket_core::Pattern::new(f).map(drop))
        }
    }

    fn ask(
        command: &[u8],
        uid: Option<u32>,
        access: ServerCommands,
        view: &View,
    ) -> Result<Vec<Vec<u8>>, &'static [u8]> {
        server_command(command, Args::empty(), Caller { uid, slot: 0 }, &Access(view, access))
    }

    #[test]
    fn access_and_unknown_commands() {
        let stats = &View(
            Stats {
                requests: 7,
                ..Stats::default()
            },
            vec![
                ConnectionInfo {
                    id: 9,
                    ..ConnectionInfo::default()
                },
                ConnectionInfo {
                    id: 2,
                    peer: Some((10, 20, 30)),
                    subscriptions: 1,
                    ..ConnectionInfo::default()
                },
            ],
        );
        assert_eq!(
            ask(b"$CONNECTIONS", None, ServerCommands::Anyone, stats).unwrap(),
            [
                &b"id=2 pid=10 uid=20 gid=30 subscriptions=1 in_flight=0 queued=0 memory=0 dropped=0"[..],
                b"id=9 subscriptions=0 in_flight=0 queued=0 memory=0 dropped=0"
            ]
        );
        assert!(is_server_command(b"$STATS") && !is_server_command(b"STATS") && !is_server_command(b""));
        let v = ask(b"$STATS", None, ServerCommands::Anyone, stats).unwrap();
        let requests = v.chunks(2).find(|p| p[0] == b"requests").unwrap();
        assert_eq!(requests[1], b"7");
        assert_eq!(v.len() % 2, 0);
        for (peer, access) in [
            (None, ServerCommands::OwnUser),
            (Some(5), ServerCommands::OwnUser),
            (Some(0), ServerCommands::Off),
        ] {
            assert_eq!(ask(b"$STATS", peer, access, stats), Err(NOT_PERMITTED));
        }
        assert_eq!(
            ask(b"$TOPICS", None, ServerCommands::Anyone, stats).unwrap(),
            [&b"pattern"[..], b"a.>", b"2"]
        );
        assert_eq!(
            ask(b"$NOPE", Some(0), ServerCommands::OwnUser, stats),
            Err(NO_SUCH_SERVER_COMMAND)
        );
        assert_eq!(
            ask(b"$MONITOR", Some(0), ServerCommands::OwnUser, stats),
            Ok(Vec::new())
        );
        assert_eq!(
            ask(b"$MONITOR", Some(5), ServerCommands::OwnUser, stats),
            Err(NOT_PERMITTED)
        );
        let frame = |args: &[&[u8]]| {
            let mut out = Vec::new();
            microsocket_core::frame::encode_raw(b'(', args.iter(), &mut out).unwrap();
            out
        };
        for (args, answer) in [
            (&[&b"a.>"[..]][..], Ok(Vec::new())),
            (&[b"a.>x"], Err(BAD_MONITOR_FILTER)),
            (&[b"a", b"b"], Err(BAD_MONITOR_FILTER)),
        ] {
            let f = frame(args);
            let args = Args::resume(&f, 2, f[1]);
            let caller = Caller { uid: None, slot: 0 };
            assert_eq!(server_command(b"$MONITOR", args, caller, stats), answer);
        }
    }
}
