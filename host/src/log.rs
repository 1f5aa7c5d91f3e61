//! Peer-supplied bytes in log events, cut short so that no peer can flood a
//! log by sending long topics or commands.

use std::fmt;

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
