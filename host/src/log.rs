//! Log events no peer can flood: peer-supplied bytes cut short, so that long
//! topics or commands do not make long lines, and events of one kind
//! rate-limited, so that repeating what causes them does not make many.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// How many bytes of a peer-supplied value a log event shows.
pub const LOGGED_BYTES: usize = 64;

/// Shows at most [`LOGGED_BYTES`] of `bytes` as text (invalid UTF-8
/// replaced), then how many bytes were left out.
///
/// ```
/// use microsocket_host::Logged;
///
/// assert_eq!(Logged(b"sensor.kitchen").to_string(), "sensor.kitchen");
/// let long = vec![b'x'; 1000];
/// assert_eq!(Logged(&long).to_string(), format!("{}... (1000 bytes)", "x".repeat(64)));
/// ```
#[derive(Clone, Copy)]
pub struct Logged<'a>(pub &'a [u8]);

impl fmt::Display for Logged<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = &self.0[..self.0.len().min(LOGGED_BYTES)];
        f.write_str(&String::from_utf8_lossy(shown))?;
        if self.0.len() > LOGGED_BYTES {
            write!(f, "... ({} bytes)", self.0.len())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Logged<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

/// Log events of one kind a peer can cause allowed per second, at most; the
/// rest are counted and reported with the next one allowed.
pub const LOGGED_PER_SECOND: u32 = 10;

/// Rate-limits one kind of log event (one call site), so that no peer can
/// flood a log by repeating what causes it. Plain data: the caller says what
/// second it is (any monotonic count of seconds).
///
/// ```
/// use microsocket_host::LogLimit;
///
/// static REFUSED: LogLimit = LogLimit::new();
/// let allowed = (0..100).filter(|_| REFUSED.allow(7).is_some()).count();
/// assert_eq!(allowed, 10);
/// // The next second's first event reports the 90 left out.
/// assert_eq!(REFUSED.allow(8), Some(90));
/// ```
#[derive(Debug, Default)]
pub struct LogLimit {
    /// The second being counted, plus one (0: none yet).
    second: AtomicU64,
    /// Events allowed in it.
    allowed: AtomicU32,
    /// Events left out since the last one allowed.
    suppressed: AtomicU64,
}

impl LogLimit {
    /// A limit with nothing counted yet.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            second: AtomicU64::new(0),
            allowed: AtomicU32::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Whether to log an event happening in second `now`: `Some(left out)`
    /// with how many were left out since the last one logged, or `None` to
    /// leave this one out (it is counted).
    pub fn allow(&self, now: u64) -> Option<u64> {
        let tag = now.wrapping_add(1);
        if self.second.swap(tag, Ordering::Relaxed) != tag {
            self.allowed.store(0, Ordering::Relaxed);
        }
        if self.allowed.fetch_add(1, Ordering::Relaxed) < LOGGED_PER_SECOND {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}
