//! What every contender measures. Each method runs one measurement to its end,
//! checks every answer it counts, and returns `None` where the contender has no
//! such capability.

use anyhow::Result;
use hdrhistogram::Histogram;

/// Which floor a contender is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Blocking threads.
    Blocking,
    /// Tokio tasks.
    Async,
}

/// A program measured by the harness.
pub trait Contender {
    /// Its name in tables and plots.
    fn name(&self) -> &'static str;

    /// Which floor it is compared with.
    fn family(&self) -> Family;

    /// Round trips with one request in flight; each sample in nanoseconds.
    fn round_trip(&self, _payload: usize, _iterations: usize) -> Result<Option<Histogram<u64>>> {
        Ok(None)
    }

    /// Requests per second with `connections` connections and `in_flight` requests
    /// outstanding on each, `requests` per connection.
    fn pipelined(&self, _connections: usize, _in_flight: usize, _requests: usize) -> Result<Option<f64>> {
        Ok(None)
    }

    /// Deliveries per second publishing `messages` 64-byte messages to
    /// `subscribers` subscribers, every delivery counted and checked.
    fn fan_out(&self, _subscribers: usize, _messages: usize) -> Result<Option<f64>> {
        Ok(None)
    }

    /// Deliveries per second to `fast` subscribers while one more subscriber never
    /// reads.
    fn slow_subscriber(&self, _fast: usize, _messages: usize) -> Result<Option<f64>> {
        Ok(None)
    }

    /// Server resident bytes per idle connection with `connections` open.
    fn idle_memory(&self, _connections: usize) -> Result<Option<f64>> {
        Ok(None)
    }
}

/// A histogram for nanosecond samples from 1 ns to 100 s.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("static bounds are valid")
}

/// The 64-byte payload published in fan-out workloads.
pub const FAN_OUT_PAYLOAD: [u8; 64] = [0x5a; 64];
/// The topic published in fan-out workloads.
pub const FAN_OUT_TOPIC: &[u8] = b"bench.fanout";

/// Publications per batch publish: the floor's batch of frames.
pub const PUBLISH_BATCH: usize = 64;

/// Publishes `n` fan-out publications through `publish_batch` (which
/// publishes `k` and returns how many connections they reached in all), in
/// batches of [`PUBLISH_BATCH`] as the floor writes its frames; checks each
/// batch reached every subscriber, and at most one more (a slow subscriber,
/// whose publications are dropped once its queue is full).
pub fn publish_in_batches(
    n: usize,
    subscribers: usize,
    slow: bool,
    mut publish_batch: impl FnMut(usize) -> Result<usize>,
) -> Result<()> {
    let mut left = n;
    while left > 0 {
        let k = left.min(PUBLISH_BATCH);
        let reached = publish_batch(k)?;
        if reached < subscribers * k || reached > (subscribers + usize::from(slow)) * k {
            anyhow::bail!("{k} publications reached {reached} connections");
        }
        left -= k;
    }
    Ok(())
}
