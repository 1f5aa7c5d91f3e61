//! Pieces of the hostile-peer and soak tests: a server (std or Tokio) in a child
//! process with small limits, whose memory, descriptors, threads and counters the
//! test reads from outside; a well-behaved probe client that measures round
//! trips; raw connections; a small random generator.
//!
//! The test binary runs itself again as the server: its `server_process` test
//! calls [`serve_if_child`], which does nothing unless [`ROLE`] is set.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::{StdServer, TokioServer};

/// Which server the re-executed binary runs: `std` or `tokio`.
pub(crate) const ROLE: &str = "MICROSOCKET_ATTACK_SERVER";
/// Where it listens.
pub(crate) const SOCKET: &str = "MICROSOCKET_ATTACK_SOCKET";
/// Where it writes its counters (every 20 ms).
pub(crate) const STATS: &str = "MICROSOCKET_ATTACK_STATS";
/// Its memory budget in bytes, when not the library's default.
pub(crate) const MAX_MEMORY: &str = "MICROSOCKET_ATTACK_MAX_MEMORY";

/// The test servers' largest frame.
pub(crate) const MAX_FRAME: usize = 64 << 10;
/// The test servers' bound on bytes queued for one connection.
pub(crate) const MAX_QUEUED: usize = 256 << 10;
/// The test servers' requests in flight per connection.
pub(crate) const MAX_IN_FLIGHT: usize = 16;
/// The test servers' connection limit.
pub(crate) const MAX_CONNECTIONS: usize = 4096;
/// Bytes all buffered topics of the test servers keep (`log.>` keeps 10 of
/// each topic, at most 1,000 topics and 64 KiB per topic).
pub(crate) const BUFFERED_BYTES: usize = 4 << 20;

/// The buffered topics of the test servers and their caps.
fn buffered(config: microsocket_host::ServerConfig) -> microsocket_host::ServerConfig {
    config
        .buffer("log.>", 10)
        .buffer_limits(microsocket_host::BufferLimits {
            max_topics: 1_000,
            max_bytes: BUFFERED_BYTES,
            max_bytes_per_topic: 64 << 10,
        })
}
/// Subscriptions per server connection (both adapters' fixed table).
pub(crate) const SUBS: usize = microsocket_std::SERVER_MAX_SUBSCRIPTIONS;
/// Bytes of subscription strings per server connection.
pub(crate) const SUB_BYTES: usize = microsocket_std::SERVER_MAX_SUBSCRIPTION_BYTES;

/// The longest a child server lives, should its parent vanish.
const CHILD_LIFETIME: Duration = Duration::from_secs(900);

/// Settings of the std test server.
pub(crate) fn std_limits() -> microsocket_std::ServerConfig {
    {
        let mut config = crate::common::std_config();
        config.max_frame = MAX_FRAME;
        config.max_queued_bytes = MAX_QUEUED;
        config.max_in_flight = MAX_IN_FLIGHT;
        config.max_connections = MAX_CONNECTIONS;
        config.memory = one_user_limits();
        buffered(config)
    }
}

/// The memory limits of the test servers: every attacker runs as this test's
/// user, so that user may hold every connection and the whole budget
/// (per-user shares are tested on their own, in security.rs). The budget is
/// the library's default unless [`MAX_MEMORY`] says otherwise.
fn one_user_limits() -> microsocket_host::MemoryLimits {
    let defaults = microsocket_host::MemoryLimits::default();
    let max_memory = std::env::var(MAX_MEMORY)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(defaults.max_memory);
    microsocket_host::MemoryLimits {
        max_memory,
        max_memory_per_user: max_memory,
        max_connections_per_user: MAX_CONNECTIONS,
    }
}

/// Settings of the Tokio test server.
pub(crate) fn tokio_limits() -> microsocket_tokio::ServerConfig {
    let config = crate::common::tokio_config()
        .max_frame(MAX_FRAME)
        .max_queued_bytes(MAX_QUEUED)
        .max_in_flight(MAX_IN_FLIGHT)
        .max_connections(MAX_CONNECTIONS)
        .memory(one_user_limits());
    buffered(config)
}

/// The server side of the re-executed binary: serves until killed, writing its
/// counters to the [`STATS`] file as `connections requests dropped refused`.
pub(crate) fn serve_if_child() {
    let (Ok(role), Ok(path), Ok(stats)) = (std::env::var(ROLE), std::env::var(SOCKET), std::env::var(STATS)) else {
        return;
    };
    let path = Path::new(&path);
    let stats = PathBuf::from(stats);
    let tmp = stats.with_extension("tmp");
    let write = |line: String| {
        let _ = std::fs::write(&tmp, line);
        let _ = std::fs::rename(&tmp, &stats);
    };
    let started = Instant::now();
    match role.as_str() {
        "std" => {
            let server = StdServer::start_at(path, std_limits());
            while started.elapsed() < CHILD_LIFETIME {
                let s = server.publisher.stats();
                write(format!(
                    "{} {} {} 0\n",
                    s.connections, s.requests, s.publications_dropped
                ));
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        "tokio" => {
            let server = TokioServer::start_at(path, tokio_limits());
            while started.elapsed() < CHILD_LIFETIME {
                let s = server.server.stats();
                write(format!(
                    "{} {} {} {}\n",
                    s.connections, s.requests, s.publications_dropped, s.subscriptions_refused
                ));
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        other => panic!("unknown role {other}"),
    }
}

/// Counters the child server wrote last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ServerStats {
    pub(crate) connections: u64,
    pub(crate) requests: u64,
    pub(crate) dropped: u64,
    /// Subscriptions refused (the Tokio server counts them; the std server 0).
    pub(crate) refused: u64,
}

/// Memory figures of a process, in KiB, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Memory {
    pub(crate) rss_kib: u64,
    pub(crate) hwm_kib: u64,
    pub(crate) threads: u64,
}

/// The test runs one server at a time: attacks measure latency and memory, which
/// other tests of the same binary running alongside would disturb.
pub(crate) fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A server in a child process, killed on drop.
pub(crate) struct ServerProcess {
    child: Child,
    /// Which server: `std` or `tokio`.
    pub(crate) role: &'static str,
    /// Its socket.
    pub(crate) path: PathBuf,
    stats: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerProcess {
    /// Starts this binary as a `role` server; returns once it accepts and has
    /// written its counters.
    pub(crate) fn spawn(role: &'static str) -> Self {
        Self::spawn_with_budget(role, None)
    }

    /// [`ServerProcess::spawn`], with a memory budget of `max_memory` bytes
    /// instead of the library's default.
    pub(crate) fn spawn_with_budget(role: &'static str, max_memory: Option<usize>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("attack.sock");
        let stats = dir.path().join("stats");
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args(["--exact", "server_process", "--nocapture", "--test-threads=1"])
            .env(ROLE, role)
            .env(SOCKET, &path)
            .env(STATS, &stats)
            .stdout(Stdio::null());
        if let Some(bytes) = max_memory {
            command.env(MAX_MEMORY, bytes.to_string());
        }
        let child = command.spawn().unwrap();
        let process = Self {
            child,
            role,
            path,
            stats,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while UnixStream::connect(&process.path).is_err() || !process.stats.exists() {
            assert!(Instant::now() < deadline, "{role} server process did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        process
    }

    /// The child's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its memory now (resident, peak resident since the last
    /// [`ServerProcess::reset_peak`]) and thread count.
    pub(crate) fn memory(&self) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Memory {
            rss_kib: field("VmRSS:"),
            hwm_kib: field("VmHWM:"),
            threads: field("Threads:"),
        }
    }

    /// Resets the peak resident size to the current one (`clear_refs` 5).
    pub(crate) fn reset_peak(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5").unwrap();
    }

    /// Its open file descriptors.
    pub(crate) fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).unwrap().count()
    }

    /// Its counters, as last written (at most 20 ms old).
    pub(crate) fn stats(&self) -> ServerStats {
        let text = std::fs::read_to_string(&self.stats).unwrap_or_default();
        let n: Vec<u64> = text.split_whitespace().filter_map(|v| v.parse().ok()).collect();
        ServerStats {
            connections: n.first().copied().unwrap_or(0),
            requests: n.get(1).copied().unwrap_or(0),
            dropped: n.get(2).copied().unwrap_or(0),
            refused: n.get(3).copied().unwrap_or(0),
        }
    }

    /// Waits until the server counts `n` connections; fails after `limit`.
    pub(crate) fn wait_connections(&self, n: u64, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let now = self.stats().connections;
            if now == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} server: {now} connections, expected {n} within {limit:?}",
                self.role
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the child is still running.
    pub(crate) fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// A fresh std client answers PING (the server still serves).
    pub(crate) fn assert_serves(&mut self) {
        assert!(self.alive(), "{} server process died", self.role);
        let client = probe_client(&self.path);
        assert_eq!(client.request("PING", NONE).unwrap(), ["PONG"], "{} server", self.role);
    }
}

/// No arguments.
pub(crate) const NONE: [&[u8]; 0] = [];

/// A std client with a 10 s request timeout.
pub(crate) fn probe_client(path: &Path) -> microsocket_std::Client {
    let stream = UnixStream::connect(path).unwrap();
    microsocket_std::Client::new(stream, {
        let mut config = microsocket_std::ClientConfig::default();
        config.request_timeout = Some(Duration::from_secs(10));
        config
    })
    .unwrap()
}

/// Round-trip times, sorted.
#[derive(Debug, Clone, Default)]
pub(crate) struct Latency {
    samples: Vec<Duration>,
}

impl Latency {
    /// From unsorted samples.
    pub(crate) fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        Self { samples }
    }

    /// Number of round trips.
    pub(crate) fn count(&self) -> usize {
        self.samples.len()
    }

    /// The `p`-th percentile (0..=100).
    pub(crate) fn percentile(&self, p: usize) -> Duration {
        if self.samples.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.samples.len() - 1) * p).div_ceil(100);
        self.samples[i.min(self.samples.len() - 1)]
    }

    /// The longest.
    pub(crate) fn max(&self) -> Duration {
        self.samples.last().copied().unwrap_or_default()
    }
}

impl std::fmt::Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} round trips, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.count(),
            self.percentile(50).as_secs_f64() * 1e3,
            self.percentile(99).as_secs_f64() * 1e3,
            self.max().as_secs_f64() * 1e3
        )
    }
}

/// A well-behaved client asking PING every millisecond on its own thread until
/// stopped; every request must succeed, or (when allowed) be refused as
/// "server busy" by a server at its memory budget.
pub(crate) struct Probe {
    stop: Arc<AtomicBool>,
    busy: Arc<AtomicU64>,
    thread: Option<JoinHandle<Result<Vec<Duration>, String>>>,
}

impl Probe {
    /// Connects and starts asking.
    pub(crate) fn start(path: &Path) -> Self {
        Self::start_with(path, false)
    }

    /// Connects and starts asking; `allow_busy`: a "server busy" answer
    /// counts as a round trip (see [`Probe::busy`]) rather than a failure.
    pub(crate) fn start_with(path: &Path, allow_busy: bool) -> Self {
        let client = probe_client(path);
        client.request("PING", NONE).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let busy = Arc::new(AtomicU64::new(0));
        let thread = std::thread::spawn({
            let stop = stop.clone();
            let busy = busy.clone();
            move || {
                let mut samples = Vec::new();
                // Bounded: the parent stops it, or 120 s pass.
                let end = Instant::now() + Duration::from_secs(120);
                while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                    let t = Instant::now();
                    match client.request("PING", NONE) {
                        Ok(v) if v == ["PONG"] => samples.push(t.elapsed()),
                        Err(microsocket_std::Error::Failed { message, .. })
                            if allow_busy && message[..] == *microsocket_core::SERVER_BUSY =>
                        {
                            busy.fetch_add(1, Ordering::Relaxed);
                            samples.push(t.elapsed());
                        }
                        other => return Err(format!("probe request: {other:?}")),
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(samples)
            }
        });
        Self {
            stop,
            busy,
            thread: Some(thread),
        }
    }

    /// How many of its requests were answered "server busy" so far.
    pub(crate) fn busy(&self) -> u64 {
        self.busy.load(Ordering::Relaxed)
    }

    /// Stops it; the round trips it measured. Fails the test if a request failed.
    pub(crate) fn finish(mut self) -> Latency {
        self.stop.store(true, Ordering::Relaxed);
        let samples = self.thread.take().unwrap().join().unwrap();
        Latency::new(samples.unwrap())
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A small xorshift generator (deterministic per seed).
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// Seeded; a zero seed is replaced.
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.max(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number below `n` (n > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Fills `buf` with random bytes.
    pub(crate) fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Reads and discards everything a raw connection receives, on its own thread,
/// until the connection ends; returns the bytes read.
pub(crate) fn drain(stream: &UnixStream) -> JoinHandle<u64> {
    let mut reader = stream.try_clone().unwrap();
    let _ = reader.set_read_timeout(Some(Duration::from_secs(60)));
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        let mut total = 0u64;
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        total
    })
}

/// Writes `bytes`, giving up (without failing) at `deadline`; returns whether
/// all were written.
pub(crate) fn write_until(stream: &mut UnixStream, bytes: &[u8], deadline: Instant) -> bool {
    let mut off = 0;
    while off < bytes.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let _ = stream.set_write_timeout(Some(left.max(Duration::from_millis(1))));
        match stream.write(&bytes[off..]) {
            Ok(0) => return false,
            Ok(n) => off += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return false,
        }
    }
    true
}
