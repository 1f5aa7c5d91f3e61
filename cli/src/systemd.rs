//! Running under systemd: listeners handed over by socket activation
//! (`LISTEN_FDS`), and the `Type=notify` protocol (`READY=1`, `STATUS=`,
//! `STOPPING=1`, and `WATCHDOG=1` when `WATCHDOG_USEC` is set). Outside
//! systemd every call here does nothing.

use std::os::unix::net::UnixListener;
use std::time::Duration;

use anyhow::{Context, Result};
use sd_notify::NotifyState;

/// Listeners systemd opened for this process (socket activation).
#[derive(Default)]
pub(crate) struct Activated {
    pub(crate) unix: Vec<UnixListener>,
    pub(crate) tcp: Vec<std::net::TcpListener>,
}

impl Activated {
    pub(crate) fn is_empty(&self) -> bool {
        self.unix.is_empty() && self.tcp.is_empty()
    }
}

/// Takes the listening sockets passed by socket activation: UNIX stream and
/// TCP listeners, in order. The socket files stay systemd's: they are not
/// removed on exit.
pub(crate) fn activated() -> Result<Activated> {
    let mut fds = listenfd::ListenFd::from_env();
    let mut found = Activated::default();
    for i in 0..fds.len() {
        if let Ok(Some(listener)) = fds.take_unix_listener(i) {
            found.unix.push(listener);
        } else if let Ok(Some(listener)) = fds.take_tcp_listener(i) {
            found.tcp.push(listener);
        } else {
            anyhow::bail!(
                "socket activation: descriptor {} is neither a UNIX stream nor a TCP listener",
                3 + i
            );
        }
    }
    Ok(found)
}

/// Whether systemd listens for this process's notifications (`NOTIFY_SOCKET`).
pub(crate) fn notifying() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// Tells systemd the bus serves, with a status line.
pub(crate) fn ready(status: &str) -> Result<()> {
    sd_notify::notify(false, &[NotifyState::Ready, NotifyState::Status(status)]).context("cannot notify systemd")
}

/// Updates the status line systemd shows.
pub(crate) fn status(status: &str) {
    let _ = sd_notify::notify(false, &[NotifyState::Status(status)]);
}

/// Tells systemd the bus is reloading its configuration (`READY=1` follows
/// when done), as `Type=notify-reload` services do.
pub(crate) fn reloading() {
    let mut states = vec![NotifyState::Reloading, NotifyState::Status("reloading")];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    let _ = sd_notify::notify(false, &states);
}

/// Tells systemd the bus is stopping.
pub(crate) fn stopping() {
    let _ = sd_notify::notify(false, &[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// How often systemd expects `WATCHDOG=1`, if it does: half its interval
/// (`WATCHDOG_USEC`), for this process (`WATCHDOG_PID` ours, or unset as
/// `sd_watchdog_enabled(3)` reads it).
pub(crate) fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    match std::env::var("WATCHDOG_PID") {
        Ok(pid) if pid.parse::<u32>().ok() != Some(std::process::id()) => None,
        _ => (usec > 0).then(|| Duration::from_micros(usec / 2)),
    }
}

/// Keeps systemd's watchdog fed.
pub(crate) fn watchdog() {
    let _ = sd_notify::notify(false, &[NotifyState::Watchdog]);
}
