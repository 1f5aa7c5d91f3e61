//! The failure messages the bridge itself answers requests with.

/// A local `@SUBJECT` request while the NATS connection is down.
pub const NOT_CONNECTED: &str = "NATS is not connected";
/// Nobody subscribes to the request's subject.
pub const NO_RESPONDERS: &str = "no responders";
/// No reply within the bridge's request timeout.
pub const TIMED_OUT: &str = "timed out across NATS";
/// `@SUBJECT` names no valid NATS subject.
pub const NOT_A_SUBJECT: &str = "not a NATS subject";
/// A NATS request for a server command (`$...`) or for another bus
/// (`@...`), or a local `@SUBJECT` request for a NATS system subject (`$...`,
/// `_INBOX...`): not carried across the bridge.
pub const NOT_ACROSS: &str = "not permitted across the bridge";
/// More NATS requests in flight than the bridge hands to the bus.
pub const BUSY: &str = "bridge busy";
/// A request or answer larger than the NATS server's `max_payload`.
pub const TOO_LARGE: &str = "too large for NATS";
/// A message whose body does not follow the value mapping.
pub const UNREADABLE: &str = "unreadable message";
/// The bus did not answer (closed, timed out, full).
pub const BUS_UNAVAILABLE: &str = "the bus did not answer";

/// Whether `message` is one of the bridge's own failures (rather than an
/// application's).
#[must_use]
pub fn is_bridge_failure(message: &[u8]) -> bool {
    [
        NOT_CONNECTED,
        NO_RESPONDERS,
        TIMED_OUT,
        NOT_A_SUBJECT,
        NOT_ACROSS,
        BUSY,
        UNREADABLE,
    ]
    .iter()
    .any(|m| m.as_bytes() == message)
}
