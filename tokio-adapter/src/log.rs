//! Log events a peer can cause, rate-limited per call site (see
//! [`microsocket_host::LogLimit`]), with how many were left out.

use std::sync::OnceLock;
use std::time::Instant;

/// Seconds since the first event this process logged through [`limited!`].
pub(crate) fn now_secs() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs()
}

/// Logs at `$level` (`info`, `warn`) at most
/// [`LOGGED_PER_SECOND`](microsocket_host::LOGGED_PER_SECOND) times a second
/// from this call site; each event logged carries `suppressed`, how many were
/// left out since the last one.
macro_rules! limited {
    ($level:ident, $($arg:tt)+) => {{
        static LIMIT: microsocket_host::LogLimit = microsocket_host::LogLimit::new();
        if let Some(suppressed) = LIMIT.allow($crate::log::now_secs()) {
            tracing::$level!(suppressed, $($arg)+);
        }
    }};
}

pub(crate) use limited;
