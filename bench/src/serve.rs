//! `microsocket serve`, the command, seen by the floor's own clients: the
//! server a shell script or a service in another language talks to. Its CPU
//! time counts with the harness's own: each thread's, read from
//! `/proc/PID/task/*/schedstat` just before it is stopped.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;

use crate::contender::{Contender, Family, FAN_OUT_PAYLOAD, FAN_OUT_TOPIC};
use crate::floor_std::{pipelined_clients, round_trip_client};
use crate::wire::{check, put_frame, tag, FrameReader};

/// `microsocket serve` driven by raw clients.
pub struct Serve;

/// CPU time of the `microsocket serve` children stopped since last taken, in ns.
static CHILD_CPU_NS: AtomicU64 = AtomicU64::new(0);

/// The CPU time of the `microsocket serve` children stopped since the last call.
pub fn take_child_cpu() -> Duration {
    Duration::from_nanos(CHILD_CPU_NS.swap(0, Ordering::Relaxed))
}

/// CPU time `pid`'s threads have used so far, in ns (0 where unreadable).
fn cpu_of(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// The floor's echo server to run in place of `microsocket serve`, if any
/// (`run --serve-floor`).
static FLOOR: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// Runs the floor's `flavour` echo server in place of `microsocket serve`.
pub fn use_floor(flavour: Option<String>) {
    let _ = FLOOR.set(flavour);
}

/// Publications a publisher keeps outstanding (PUBLISH requests not yet answered).
const PUBLISH_WINDOW: usize = 256;

/// A `microsocket serve` child on a socket in a fresh directory; stopped on drop.
struct Running {
    _dir: tempfile::TempDir,
    path: PathBuf,
    child: Child,
}

impl Running {
    /// Starts the command built beside this harness (`cargo build --release -p
    /// microsocket-cli`), or returns `None` when it is not there.
    /// With `--serve-floor`, starts this harness's own echo server instead.
    fn start() -> Result<Option<Self>> {
        let exe = std::env::current_exe()?;
        let floor = FLOOR.get().and_then(Option::as_ref);
        let Some(command) = (match floor {
            Some(_) => Some(exe.clone()),
            None => exe.parent().map(|dir| dir.join("microsocket")),
        }) else {
            return Ok(None);
        };
        if !command.exists() {
            eprintln!(
                "microsocket serve: {} not found; build it with `cargo build --release -p microsocket-cli`",
                command.display()
            );
            return Ok(None);
        }
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("serve.sock");
        let mut child = Command::new(&command);
        match floor {
            Some(flavour) => child.arg("echo-server").arg(flavour).arg(&path),
            None => child.arg("serve").arg(&path).args(["--log-level", "error"]),
        };
        let child = child
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", command.display()))?;
        let mut running = Self { _dir: dir, path, child };
        // Ready once it accepts: at most 10 s.
        for _ in 0..1000 {
            if UnixStream::connect(&running.path).is_ok() {
                return Ok(Some(running));
            }
            if let Some(status) = running.child.try_wait()? {
                bail!("microsocket serve exited at start: {status}");
            }
            thread::sleep(Duration::from_millis(10));
        }
        bail!("microsocket serve did not start listening within 10 s")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        CHILD_CPU_NS.fetch_add(cpu_of(self.child.id()), Ordering::Relaxed);
        // SIGTERM: a graceful stop, as an operator would.
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        for _ in 0..500 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Contender for Serve {
    fn name(&self) -> &'static str {
        "microsocket serve"
    }

    fn family(&self) -> Family {
        Family::Blocking
    }

    fn round_trip(&self, payload: usize, iterations: usize) -> Result<Option<Histogram<u64>>> {
        let Some(server) = Running::start()? else {
            return Ok(None);
        };
        round_trip_client(&server.path, payload, iterations).map(Some)
    }

    fn pipelined(&self, connections: usize, in_flight: usize, requests: usize) -> Result<Option<f64>> {
        let Some(server) = Running::start()? else {
            return Ok(None);
        };
        pipelined_clients(&server.path, connections, in_flight, requests).map(Some)
    }

    fn fan_out(&self, subscribers: usize, messages: usize) -> Result<Option<f64>> {
        let Some(server) = Running::start()? else {
            return Ok(None);
        };
        let readers = (0..subscribers)
            .map(|_| subscriber(&server.path, messages))
            .collect::<Result<Vec<_>>>()?;
        let start = Instant::now();
        publisher(&server.path, subscribers, messages)?;
        for r in readers {
            r.join().map_err(|_| anyhow::anyhow!("subscriber panicked"))??;
        }
        Ok(Some((subscribers * messages) as f64 / start.elapsed().as_secs_f64()))
    }
}

/// A raw subscriber: subscribes, waits for the barrier that proves the
/// subscription is in place, then reads and checks `messages` publications
/// on a thread of its own.
fn subscriber(path: &Path, messages: usize) -> Result<thread::JoinHandle<std::io::Result<()>>> {
    let mut stream = UnixStream::connect(path)?;
    let mut out = Vec::new();
    put_frame(&mut out, b'+', &[FAN_OUT_TOPIC]);
    put_frame(&mut out, b'(', &[b"barrier", b""]);
    stream.write_all(&out)?;
    let mut reader = FrameReader::new(stream);
    check(
        reader.next()? == Some(b')') && reader.arg(0) == b"barrier",
        "subscription barrier",
    )?;
    Ok(thread::spawn(move || {
        for _ in 0..messages {
            let sigil = reader.next()?;
            check(
                sigil == Some(b'!') && reader.arg(0) == FAN_OUT_TOPIC && reader.arg(1) == FAN_OUT_PAYLOAD,
                "publication",
            )?;
        }
        Ok(())
    }))
}

/// A raw publisher: `messages` PUBLISH requests, at most [`PUBLISH_WINDOW`]
/// outstanding and written in batches; each answer must count every subscriber.
fn publisher(path: &Path, subscribers: usize, messages: usize) -> Result<()> {
    let stream = UnixStream::connect(path)?;
    let mut reader = FrameReader::new(stream.try_clone()?);
    let answered = Arc::new(AtomicUsize::new(0));
    let done = Arc::clone(&answered);
    let reached = subscribers.to_string().into_bytes();
    let read = thread::spawn(move || -> std::io::Result<()> {
        for i in 0..messages {
            let sigil = reader.next()?;
            check(
                sigil == Some(b')') && reader.arg(0) == tag(i) && reader.arg(1) == reached,
                "PUBLISH answer",
            )?;
            done.store(i + 1, Ordering::Release);
        }
        Ok(())
    });
    let mut stream = stream;
    let mut out = Vec::new();
    let mut sent = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while sent < messages {
        let outstanding = sent - answered.load(Ordering::Acquire);
        let n = (PUBLISH_WINDOW - outstanding).min(messages - sent);
        if n < PUBLISH_WINDOW / 2 && sent + n < messages {
            if Instant::now() > deadline {
                bail!("publisher stalled");
            }
            thread::yield_now();
            continue;
        }
        out.clear();
        for i in sent..sent + n {
            put_frame(&mut out, b'(', &[&tag(i), b"PUBLISH", FAN_OUT_TOPIC, &FAN_OUT_PAYLOAD]);
        }
        stream.write_all(&out)?;
        sent += n;
    }
    read.join()
        .map_err(|_| anyhow::anyhow!("publisher reader panicked"))??;
    Ok(())
}
