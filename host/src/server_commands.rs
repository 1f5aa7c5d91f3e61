//! Commands the server answers itself: requests whose command starts with
//! `$` (`docs/PROTOCOL.md`, "Server commands"). They never reach the handler
//! and are not counted as its requests.
//!
//! ```
//! use microsocket_host::{server_command, ServerCommands, Stats};
//!
//! let stats = Stats::default();
//! // The server's own user may ask; `$STATS` answers name, value pairs.
//! let values = server_command(b"$STATS", Some(1000), 1000, ServerCommands::OwnUser, || stats).unwrap();
//! assert_eq!(values[0], b"connections");
//! // Another user may not.
//! let refused = server_command(b"$STATS", Some(1001), 1000, ServerCommands::OwnUser, || stats);
//! assert_eq!(refused.unwrap_err(), microsocket_host::NOT_PERMITTED);
//! ```

use crate::stats::Stats;

/// The first byte of a command the server answers itself.
pub const SERVER_COMMAND_PREFIX: u8 = b'$';

/// The failure for a server command the peer may not use.
pub const NOT_PERMITTED: &[u8] = b"not permitted";

/// The failure for a `$` command the server does not have.
pub const NO_SUCH_SERVER_COMMAND: &[u8] = b"no such server command";

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

/// The server's answer to the server command `command` from a peer of user
/// `peer_uid` (where the socket tells it), for a server running as
/// `server_uid`: the values to answer with, or the failure message.
///
/// `$STATS` answers the server's counters ([`Stats`]) as name, value pairs,
/// in the order of the struct's fields.
///
/// # Errors
/// [`NOT_PERMITTED`] or [`NO_SUCH_SERVER_COMMAND`].
pub fn server_command(
    command: &[u8],
    peer_uid: Option<u32>,
    server_uid: u32,
    access: ServerCommands,
    stats: impl FnOnce() -> Stats,
) -> Result<Vec<Vec<u8>>, &'static [u8]> {
    let permitted = match access {
        ServerCommands::Anyone => true,
        ServerCommands::OwnUser => peer_uid == Some(server_uid),
        ServerCommands::Off => false,
    };
    if !permitted {
        return Err(NOT_PERMITTED);
    }
    match command {
        b"$STATS" => Ok(stats_values(&stats())),
        _ => Err(NO_SUCH_SERVER_COMMAND),
    }
}

/// [`Stats`] as name, value pairs.
fn stats_values(s: &Stats) -> Vec<Vec<u8>> {
    let fields: [(&str, u64); 17] = [
        ("connections", s.connections),
        ("connections_accepted", s.connections_accepted),
        ("connections_refused", s.connections_refused),
        ("requests", s.requests),
        ("handler_panics", s.handler_panics),
        ("publications", s.publications),
        ("deliveries", s.deliveries),
        ("publications_dropped", s.publications_dropped),
        ("slow_consumers_disconnected", s.slow_consumers_disconnected),
        ("subscriptions_refused", s.subscriptions_refused),
        ("queued_bytes", s.queued_bytes),
        ("buffered_topics", s.buffered_topics),
        ("buffered_bytes", s.buffered_bytes),
        ("buffered_evicted", s.buffered_evicted),
        ("memory_used", s.memory_used),
        ("memory_limit", s.memory_limit),
        ("memory_shed", s.memory_shed),
    ];
    fields
        .iter()
        .flat_map(|(name, value)| [name.as_bytes().to_vec(), value.to_string().into_bytes()])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_and_unknown_commands() {
        let stats = Stats {
            requests: 7,
            ..Stats::default()
        };
        assert!(is_server_command(b"$STATS") && !is_server_command(b"STATS") && !is_server_command(b""));
        let v = server_command(b"$STATS", None, 0, ServerCommands::Anyone, || stats).unwrap();
        let requests = v.chunks(2).find(|p| p[0] == b"requests").unwrap();
        assert_eq!(requests[1], b"7");
        assert_eq!(v.len() % 2, 0);
        for (peer, access) in [
            (None, ServerCommands::OwnUser),
            (Some(5), ServerCommands::OwnUser),
            (Some(0), ServerCommands::Off),
        ] {
            assert_eq!(server_command(b"$STATS", peer, 0, access, || stats), Err(NOT_PERMITTED));
        }
        assert_eq!(
            server_command(b"$NOPE", Some(0), 0, ServerCommands::OwnUser, || stats),
            Err(NO_SUCH_SERVER_COMMAND)
        );
    }
}
