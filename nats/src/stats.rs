//! A bridge's counters and its connection state.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};

/// What a bridge has done, as counted since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BridgeStats {
    /// Whether the NATS connection is up.
    pub connected: bool,
    /// Times the NATS connection was lost.
    pub disconnections: u64,
    /// Local publications published to NATS.
    pub exported: u64,
    /// NATS messages published on the local bus.
    pub imported: u64,
    /// Publications lost on the way out: dropped because more was held
    /// while NATS was away than the bridge keeps, or dropped by the bus
    /// because the bridge's connection fell behind.
    pub dropped: u64,
    /// Bytes of exported publications waiting for NATS now.
    pub held_bytes: usize,
    /// Topics, subjects and commands refused because they have no faithful
    /// form on the other side (see `mapping::subject_tail`), and NATS
    /// messages whose body could not be read.
    pub refused: u64,
    /// Publications not sent back where they came from (the bridge's own
    /// imports seen again on the bus, its own exports seen again on NATS).
    pub loops_stopped: u64,
    /// NATS requests answered by the bus.
    pub requests_served: u64,
    /// Local requests sent to NATS.
    pub requests_forwarded: u64,
    /// Requests either way that failed for the bridge's own reasons (timed
    /// out, no responders, NATS away, too many in flight).
    pub requests_failed: u64,
}

/// A handle to a bridge's counters, to read them from elsewhere (a metrics
/// exporter, say); cheap to clone.
#[derive(Debug, Clone)]
pub struct StatsHandle(pub(crate) std::sync::Arc<Counters>);

impl StatsHandle {
    /// What the bridge has done so far.
    #[must_use]
    pub fn get(&self) -> BridgeStats {
        self.0.snapshot()
    }
}

/// The live counters behind [`BridgeStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) connected: AtomicBool,
    pub(crate) disconnections: AtomicU64,
    pub(crate) exported: AtomicU64,
    pub(crate) imported: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) held_bytes: AtomicUsize,
    pub(crate) refused: AtomicU64,
    pub(crate) loops_stopped: AtomicU64,
    pub(crate) requests_served: AtomicU64,
    pub(crate) requests_forwarded: AtomicU64,
    pub(crate) requests_failed: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> BridgeStats {
        BridgeStats {
            connected: self.connected.load(Relaxed),
            disconnections: self.disconnections.load(Relaxed),
            exported: self.exported.load(Relaxed),
            imported: self.imported.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            held_bytes: self.held_bytes.load(Relaxed),
            refused: self.refused.load(Relaxed),
            loops_stopped: self.loops_stopped.load(Relaxed),
            requests_served: self.requests_served.load(Relaxed),
            requests_forwarded: self.requests_forwarded.load(Relaxed),
            requests_failed: self.requests_failed.load(Relaxed),
        }
    }
}

impl BridgeStats {
    /// The values of a state report on the local bus: `connected` or
    /// `disconnected`, then `name=value` pairs.
    #[must_use]
    pub fn report(&self) -> Vec<String> {
        let state = if self.connected { "connected" } else { "disconnected" };
        let mut values = vec![state.to_owned()];
        values.extend(self.fields().iter().map(|(name, value)| format!("{name}={value}")));
        values
    }

    /// The counters by name (`held_bytes` is a gauge, the others only
    /// grow).
    #[must_use]
    pub fn fields(&self) -> [(&'static str, u64); 10] {
        [
            ("disconnections", self.disconnections),
            ("exported", self.exported),
            ("imported", self.imported),
            ("dropped", self.dropped),
            ("held_bytes", self.held_bytes as u64),
            ("refused", self.refused),
            ("loops_stopped", self.loops_stopped),
            ("requests_served", self.requests_served),
            ("requests_forwarded", self.requests_forwarded),
            ("requests_failed", self.requests_failed),
        ]
    }
}
