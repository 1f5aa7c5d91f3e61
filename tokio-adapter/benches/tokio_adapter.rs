//! Speed and memory of the Tokio adapter, side by side with a floor.
//!
//! ```text
//! cargo bench -p microsocket-tokio --bench tokio_adapter                 # everything
//! taskset -c 0 cargo bench -p microsocket-tokio --bench tokio_adapter -- rtt
//! cargo bench -p microsocket-tokio --bench tokio_adapter -- pipelined1 pipelined2 pipelined-split fanout-raw fanout-clients fanout idle
//! ```
//!
//! (`pipelined` runs both runtimes, `fanout` both fan-out variants beside their floors.)
//!
//! - `rtt`: round trip with one request in flight, p50 and p99, against the floor:
//!   a minimal hand-written Tokio UNIX-socket ping-pong exchanging the same frames.
//!   Both run client and server in one current-thread runtime.
//! - `pipelined1` / `pipelined2`: one connection, 256 requests in flight from
//!   256 tasks, on a current-thread or a 2-worker runtime.
//! - `pipelined-split`: one connection, 256 tasks each looping over one-byte
//!   ECHO requests, client and server each on a current-thread runtime on a
//!   thread of its own (the comparison harness's layout).
//!
//!   Each pipelined scenario first runs its floor in the same layout: one task
//!   writing whatever keeps 256 requests outstanding in one write, one task
//!   reading the answers, and an echo task answering each read with one write.
//! - `fanout-raw`: 64-byte publications to 100 subscribed sockets that only read;
//!   `fanout-clients` the same to 100 microsocket client subscriptions. `fanout`
//!   runs, three times in turn, two floors (a hand-written publisher writing
//!   batches of 256 pre-built frames to each socket in turn, to readers that
//!   count bytes or that walk and check every frame) and then both.
//! - `idle`: server memory per idle connection, 10,000 connections opened from
//!   another process (this binary run again).

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use microsocket_tokio::{handler_fn, Client, Failure, Reply, Request, Server, ServerConfig, DEFAULT_SERVER_SPIN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

const PING: &[u8] = b"\x28\x02\x00\x00\x00\x01\x07\x00\x00\x00\x04PING";
const PONG: &[u8] = b"\x29\x02\x00\x00\x00\x01\x07\x00\x00\x00\x04PONG";
const CHILD_VAR: &str = "MICROSOCKET_BENCH_IDLE_CHILD";

fn ping_server() -> Server<impl microsocket_tokio::Handler> {
    let handler = handler_fn(|request: Request| async move {
        if &request.command[..] == b"PING" {
            Ok(Reply::one(&b"PONG"[..]))
        } else {
            Err(Failure::new("no such command"))
        }
    });
    Server::with_config(handler, ServerConfig::default().max_connections(20_000))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p) as usize]
}

fn report_latency(name: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    let p50 = percentile(&samples, 0.5);
    println!(
        "{name:<28} p50 {:>7.2} µs   p99 {:>7.2} µs   ({} round trips)",
        p50.as_secs_f64() * 1e6,
        percentile(&samples, 0.99).as_secs_f64() * 1e6,
        samples.len()
    );
    p50
}

const RTT_ROUNDS: usize = 20_000;

/// The floor: a hand-written server that answers each PING frame with a PONG
/// frame, and a client that sends one and reads one, over a UNIX socket.
async fn floor_rtt(path: &Path) -> Duration {
    let listener = UnixListener::bind(path).unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; PING.len()];
        while s.read_exact(&mut buf).await.is_ok() {
            if s.write_all(PONG).await.is_err() {
                break;
            }
        }
    });
    let mut c = UnixStream::connect(path).await.unwrap();
    let mut buf = [0u8; PONG.len()];
    let mut samples = Vec::with_capacity(RTT_ROUNDS);
    for i in 0..RTT_ROUNDS + 1000 {
        let t = Instant::now();
        c.write_all(PING).await.unwrap();
        c.read_exact(&mut buf).await.unwrap();
        if i >= 1000 {
            samples.push(t.elapsed());
        }
    }
    drop(c);
    server.await.unwrap();
    report_latency("floor (hand-written tokio)", samples)
}

async fn microsocket_rtt(path: &Path) -> Duration {
    let server = ping_server();
    server.listen_unix(path).unwrap();
    let client = Client::connect_unix(path).await.unwrap();
    let mut samples = Vec::with_capacity(RTT_ROUNDS);
    for i in 0..RTT_ROUNDS + 1000 {
        let t = Instant::now();
        let v = client.request(&b"PING"[..], [b""; 0]).await.unwrap();
        if i >= 1000 {
            samples.push(t.elapsed());
        }
        debug_assert_eq!(v, [b"PONG"]);
    }
    drop(client);
    server.shutdown().await;
    report_latency("microsocket-tokio", samples)
}

fn rtt() {
    println!("== rtt: one request in flight, client and server in one current-thread runtime");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut ratios = Vec::new();
    for run in 0..5 {
        let (floor, ours) = rt.block_on(async {
            let floor = floor_rtt(&dir.path().join(format!("floor{run}.sock"))).await;
            let ours = microsocket_rtt(&dir.path().join(format!("ms{run}.sock"))).await;
            (floor, ours)
        });
        ratios.push(ours.as_secs_f64() / floor.as_secs_f64());
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "ratio p50 microsocket / floor: median of 5 runs {:.2}x (runs {:?})",
        ratios[2],
        ratios.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>()
    );
}

/// One connection, 256 tasks each looping over ECHO requests of one byte,
/// client and server each on a current-thread runtime on a thread of its own, as
/// two processes would be (the layout of the comparison harness).
fn pipelined_split() {
    const REQUESTS: usize = 400_000;
    const TASKS: usize = 256;
    const RUNS: usize = 9;
    println!("== pipelined-split: one connection, {TASKS} tasks, client and server on a runtime thread each");
    let mut floors = Vec::new();
    for _ in 0..RUNS {
        let (client, server) = std::os::unix::net::UnixStream::pair().unwrap();
        let echo = std::thread::spawn(move || {
            runtime(1).block_on(async move {
                server.set_nonblocking(true).unwrap();
                floor_echo(UnixStream::from_std(server).unwrap()).await;
            });
        });
        floors.push(runtime(1).block_on(async move {
            client.set_nonblocking(true).unwrap();
            floor_pipelined_client(UnixStream::from_std(client).unwrap(), REQUESTS as u64).await / 1e6
        }));
        echo.join().unwrap();
    }
    report_runs("floor (hand-written)", floors, REQUESTS);
    for (name, server_spin) in [
        ("microsocket-tokio (default server)", DEFAULT_SERVER_SPIN),
        ("microsocket-tokio, server spin 0 µs", Duration::ZERO),
    ] {
        let rates = pipelined_split_runs(server_spin, REQUESTS, TASKS, RUNS);
        report_runs(name, rates, REQUESTS);
    }
}

/// Prints the median of `rates` (millions per second) and every run, each
/// run being `runs_of` (a request count or a length of time).
fn report_runs(name: &str, mut rates: Vec<f64>, runs_of: impl std::fmt::Display) {
    let shown: Vec<_> = rates.iter().map(|r| format!("{r:.2}")).collect();
    rates.sort_by(f64::total_cmp);
    println!(
        "{name:<36} {:>6.2} M requests/s (median of {} runs of {runs_of}: {})",
        rates[rates.len() / 2],
        rates.len(),
        shown.join(" ")
    );
}

/// `runs` runs of `requests` one-byte ECHO requests from `tasks` tasks, the
/// client on this thread's runtime and the server (spinning `server_spin`
/// before sleep) on another thread's.
fn pipelined_split_runs(server_spin: Duration, requests: usize, tasks: usize, runs: usize) -> Vec<f64> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_path = path.clone();
    let server = std::thread::spawn(move || {
        runtime(1).block_on(async move {
            let handler =
                handler_fn(|request: Request| std::future::ready(Ok::<_, Failure>(Reply::from(request.args))));
            let server = Server::with_config(handler, ServerConfig::default().spin_before_sleep(server_spin));
            server.listen_unix(&server_path).unwrap();
            ready_tx.send(()).unwrap();
            let _ = stop_rx.await;
            server.shutdown().await;
        });
    });
    ready_rx.recv().unwrap();
    let mut rates = Vec::new();
    runtime(1).block_on(async {
        let client = Client::builder().max_in_flight(1024).connect_unix(&path).await.unwrap();
        for _ in 0..runs {
            let started = Instant::now();
            let spawned: Vec<_> = (0..tasks)
                .map(|_| {
                    let client = client.clone();
                    tokio::spawn(async move {
                        for i in 0..requests / tasks {
                            let arg = [(i % 251) as u8];
                            let values = client.request("ECHO", [&arg]).await.unwrap();
                            assert_eq!(values.first().as_deref(), Some(&arg[..]));
                        }
                    })
                })
                .collect();
            for t in spawned {
                t.await.unwrap();
            }
            rates.push((requests / tasks * tasks) as f64 / started.elapsed().as_secs_f64() / 1e6);
        }
    });
    let _ = stop_tx.send(());
    server.join().unwrap();
    rates
}

/// The pipelined floor's server: answers each read's whole PING frames with as
/// many PONGs in one write.
async fn floor_echo(mut stream: UnixStream) {
    let mut buf = vec![0u8; 64 << 10];
    let mut out = Vec::new();
    let mut have = 0;
    loop {
        let n = match stream.read(&mut buf[have..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        have += n;
        let whole = have / PING.len();
        out.clear();
        for _ in 0..whole {
            out.extend_from_slice(PONG);
        }
        if stream.write_all(&out).await.is_err() {
            return;
        }
        buf.copy_within(whole * PING.len()..have, 0);
        have -= whole * PING.len();
    }
}

/// The pipelined floor's client: one task writes whatever keeps `IN_FLIGHT`
/// requests outstanding in one write, another reads and counts the answers.
/// Returns requests per second.
async fn floor_pipelined_client(stream: UnixStream, requests: u64) -> f64 {
    const IN_FLIGHT: u64 = 256;
    let (mut rd, mut wr) = stream.into_split();
    let answered = Arc::new(AtomicU64::new(0));
    let more = Arc::new(tokio::sync::Notify::new());
    let started = Instant::now();
    let reader = {
        let (answered, more) = (answered.clone(), more.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 << 10];
            let mut bytes = 0u64;
            while bytes < requests * PONG.len() as u64 {
                let n = rd.read(&mut buf).await.unwrap();
                assert!(n > 0);
                bytes += n as u64;
                answered.store(bytes / PONG.len() as u64, Ordering::Release);
                more.notify_one();
            }
        })
    };
    let mut out = Vec::new();
    let mut sent = 0;
    while sent < requests {
        let outstanding = sent - answered.load(Ordering::Acquire);
        let n = (IN_FLIGHT - outstanding).min(requests - sent);
        if n == 0 {
            more.notified().await;
            continue;
        }
        out.clear();
        for _ in 0..n {
            out.extend_from_slice(PING);
        }
        wr.write_all(&out).await.unwrap();
        sent += n;
    }
    reader.await.unwrap();
    requests as f64 / started.elapsed().as_secs_f64()
}

/// The pipelined floor on the current runtime: client and echo server as tasks.
async fn floor_pipelined(requests: u64) -> f64 {
    let (client, server) = UnixStream::pair().unwrap();
    let echo = tokio::spawn(floor_echo(server));
    let rate = floor_pipelined_client(client, requests).await;
    echo.abort();
    rate
}

fn runtime(threads: usize) -> tokio::runtime::Runtime {
    if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
            .unwrap()
    }
}

fn pipelined() {
    for threads in [1, 2] {
        pipelined_on(threads);
    }
}

/// Timed runs of the `pipelined` scenario on each runtime.
const PIPELINED_RUNS: usize = 5;

/// 256 tasks each sending PING requests in a loop on `client` until `length`
/// has passed; returns how many were answered and the seconds it took.
async fn pipelined_for(client: &Client, length: Duration) -> (u64, f64) {
    let count = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + length;
    let started = Instant::now();
    let tasks: Vec<_> = (0..256)
        .map(|_| {
            let client = client.clone();
            let count = count.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < stop {
                    for _ in 0..64 {
                        client.request(&b"PING"[..], [b""; 0]).await.unwrap();
                        n += 1;
                    }
                }
                count.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (count.load(Ordering::Relaxed), started.elapsed().as_secs_f64())
}

fn pipelined_on(threads: usize) {
    println!("== pipelined: one connection, 256 requests in flight from 256 tasks, {threads} runtime thread(s)");
    let rt = runtime(threads);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.sock");
    rt.block_on(async {
        let server = ping_server();
        server.listen_unix(&path).unwrap();
        let client = Client::connect_unix(&path).await.unwrap();
        let floor = floor_pipelined(2_000_000).await;
        println!(
            "floor (hand-written)         {:>6.2} M requests/s (one writer, one reader, an echo task)",
            floor / 1e6
        );
        // A warm-up second, then timed runs of one second each.
        let mut rates = Vec::new();
        for run in 0..=PIPELINED_RUNS {
            let (n, elapsed) = pipelined_for(&client, Duration::from_secs(1)).await;
            if run > 0 {
                rates.push(n as f64 / elapsed / 1e6);
            }
        }
        report_runs("microsocket-tokio", rates, "1 s");
        server.shutdown().await;
    });
}

const SUBSCRIBERS: usize = 100;
const MESSAGES: u64 = 200_000;

fn fanout() {
    fanout_raw();
    fanout_clients();
}

/// Both fan-out floors, then both microsocket fan-outs, `RUNS` times in turn.
fn fanout_side_by_side() {
    const RUNS: usize = 3;
    for run in 1..=RUNS {
        println!("== fan-out, run {run} of {RUNS}: floors, then microsocket");
        println!(
            "floor, readers count bytes   {:>6.2} M deliveries/s",
            fanout_floor(false) / 1e6
        );
        println!(
            "floor, readers decode frames {:>6.2} M deliveries/s",
            fanout_floor(true) / 1e6
        );
        fanout();
    }
}

/// Publishes `MESSAGES` 64-byte publications as fast as the hub takes them.
async fn publish_all(server: &Server<impl microsocket_tokio::Handler>) -> f64 {
    let payload = [0x5au8; 64];
    let publisher = server.publisher();
    let started = Instant::now();
    tokio::spawn(async move {
        for i in 0..MESSAGES {
            publisher.publish("bench.topic", [&payload]).unwrap();
            if i % 256 == 255 {
                tokio::task::yield_now().await;
            }
        }
    })
    .await
    .unwrap();
    started.elapsed().as_secs_f64()
}

/// The fan-out floor: a hand-written publisher writes pre-built batches of 256
/// publication frames to each subscriber socket in turn; each subscriber only
/// counts bytes or, with `decode`, walks every frame and checks its topic and
/// payload (what a client subscription does at the least). Returns deliveries
/// per second.
fn fanout_floor(decode: bool) -> f64 {
    const BATCH: u64 = 256;
    let rt = runtime(2);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("floor.sock");
    rt.block_on(async {
        let listener = UnixListener::bind(&path).unwrap();
        let mut frame = vec![b'!', 2];
        for arg in [&b"bench.topic"[..], &[0x5a; 64]] {
            frame.extend_from_slice(&(arg.len() as u32).to_be_bytes());
            frame.extend_from_slice(arg);
        }
        let total = MESSAGES * frame.len() as u64;
        let mut readers = Vec::new();
        let mut sockets = Vec::new();
        for _ in 0..SUBSCRIBERS {
            let mut s = UnixStream::connect(&path).await.unwrap();
            sockets.push(listener.accept().await.unwrap().0);
            readers.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 256 * 1024];
                let (mut have, mut bytes, mut frames) = (0, 0u64, 0u64);
                while bytes < total {
                    let n = s.read(&mut buf[have..]).await.unwrap();
                    assert!(n > 0);
                    bytes += n as u64;
                    have += n;
                    if !decode {
                        have = 0;
                        continue;
                    }
                    let mut at = 0;
                    while let Some((topic, values, end)) = floor_publication(&buf[at..have]) {
                        assert!(topic == b"bench.topic" && values.len() == 64);
                        frames += 1;
                        at += end;
                    }
                    buf.copy_within(at..have, 0);
                    have -= at;
                }
                assert!(!decode || frames == MESSAGES);
            }));
        }
        let batch = frame.repeat(BATCH as usize);
        let started = Instant::now();
        tokio::spawn(async move {
            let mut sent = 0;
            while sent < MESSAGES {
                let n = BATCH.min(MESSAGES - sent);
                for s in &mut sockets {
                    s.write_all(&batch[..n as usize * frame.len()]).await.unwrap();
                }
                sent += n;
            }
        })
        .await
        .unwrap();
        for r in readers {
            r.await.unwrap();
        }
        (MESSAGES * SUBSCRIBERS as u64) as f64 / started.elapsed().as_secs_f64()
    })
}

/// The topic and the one value of the two-argument publication frame at the
/// start of `data`, and its length, if it is whole.
fn floor_publication(data: &[u8]) -> Option<(&[u8], &[u8], usize)> {
    let arg = |at: usize| -> Option<(&[u8], usize)> {
        let len = u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?) as usize;
        Some((data.get(at + 4..at + 4 + len)?, at + 4 + len))
    };
    assert!(data.len() < 2 || data[..2] == [b'!', 2]);
    let (topic, at) = arg(2)?;
    let (value, end) = arg(at)?;
    Some((topic, value, end))
}

fn fanout_server(path: &Path) -> Server<impl microsocket_tokio::Handler> {
    let server = Server::with_config(
        handler_fn(|_: Request| async { Ok(Reply::empty()) }),
        ServerConfig::default().max_queued_bytes(64 << 20),
    );
    server.listen_unix(path).unwrap();
    server
}

/// Server fan-out: subscribers are plain sockets that read and count bytes (the
/// floor of receiving), so the figure is what the server delivers.
fn fanout_raw() {
    println!("== fanout: 64-byte publications to {SUBSCRIBERS} subscriber sockets that only read");
    let rt = runtime(2);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.sock");
    rt.block_on(async {
        let server = fanout_server(&path);
        let frame_len = 2 + 4 + b"bench.topic".len() + 4 + 64;
        let mut readers = Vec::new();
        for _ in 0..SUBSCRIBERS {
            let mut s = UnixStream::connect(&path).await.unwrap();
            s.write_all(b"\x2b\x01\x00\x00\x00\x0bbench.topic").await.unwrap();
            s.write_all(PING).await.unwrap();
            // The answer to PING here: `)` with the tag and no values.
            let mut pong = [0u8; 7];
            s.read_exact(&mut pong).await.unwrap();
            readers.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 256 * 1024];
                let mut total = 0usize;
                while total < MESSAGES as usize * frame_len {
                    let n = s.read(&mut buf).await.unwrap();
                    assert!(n > 0);
                    total += n;
                }
            }));
        }
        let started = Instant::now();
        let published_in = publish_all(&server).await;
        for r in readers {
            r.await.unwrap();
        }
        let elapsed = started.elapsed().as_secs_f64();
        let deliveries = MESSAGES * SUBSCRIBERS as u64;
        let stats = server.stats();
        assert_eq!(stats.publications_dropped, 0);
        println!(
            "microsocket-tokio            {:>6.2} M deliveries/s ({deliveries} in {elapsed:.2} s; publish calls took {published_in:.2} s)",
            deliveries as f64 / elapsed / 1e6,
        );
        server.shutdown().await;
    });
}

/// End to end: every subscriber is a microsocket client with a subscription
/// stream, all in this process.
fn fanout_clients() {
    println!("== fanout: 64-byte publications to {SUBSCRIBERS} microsocket client subscriptions (same process)");
    let rt = runtime(2);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.sock");
    rt.block_on(async {
        let server = fanout_server(&path);
        let mut readers = Vec::new();
        let received = Arc::new(AtomicU64::new(0));
        for _ in 0..SUBSCRIBERS {
            let client = Client::builder()
                .subscription_capacity(1 << 20)
                .subscription_max_bytes(usize::MAX)
                .connect_unix(&path)
                .await
                .unwrap();
            let mut sub = client.subscribe("bench.topic").await.unwrap();
            let received = received.clone();
            readers.push(tokio::spawn(async move {
                let mut n = 0u64;
                let mut lagged = 0u64;
                while n + lagged < MESSAGES {
                    match sub.next().await {
                        Some(Ok(_)) => n += 1,
                        Some(Err(microsocket_tokio::Error::Lagged { missed: k })) => lagged += k,
                        other => panic!("{other:?}"),
                    }
                }
                received.fetch_add(n, Ordering::Relaxed);
                lagged
            }));
        }
        let started = Instant::now();
        let published_in = publish_all(&server).await;
        let mut lagged = 0;
        for r in readers {
            lagged += r.await.unwrap();
        }
        let elapsed = started.elapsed().as_secs_f64();
        let received = received.load(Ordering::Relaxed);
        println!(
            "microsocket-tokio            {:>6.2} M deliveries/s received by clients ({received} in {elapsed:.2} s; \
             publish calls took {published_in:.2} s; dropped by server {}, lagged in clients {lagged})",
            received as f64 / elapsed / 1e6,
            server.stats().publications_dropped,
        );
        server.shutdown().await;
    });
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The other process: opens `n` connections, says so, waits for stdin to close.
fn idle_child(path: &str) {
    let n: usize = std::env::var("MICROSOCKET_BENCH_IDLE_N").unwrap().parse().unwrap();
    let conns: Vec<_> = (0..n)
        .map(|_| std::os::unix::net::UnixStream::connect(path).unwrap())
        .collect();
    println!("ready {}", conns.len());
    std::io::stdout().flush().unwrap();
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
}

fn idle() {
    const N: usize = 10_000;
    println!("== idle: server memory per idle connection ({N} connections from another process)");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("i.sock");
    rt.block_on(async {
        let server = ping_server();
        server.listen_unix(&path).unwrap();
        // Warm up: one connection and a request, so lazily made runtime state
        // is not charged to the idle connections.
        let warm = Client::connect_unix(&path).await.unwrap();
        warm.request(&b"PING"[..], [b""; 0]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = rss_kib();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(CHILD_VAR, &path)
            .env("MICROSOCKET_BENCH_IDLE_N", N.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        {
            let mut out = child.stdout.take().unwrap();
            let mut byte = [0u8; 1];
            while out.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
                line.push(char::from(byte[0]));
            }
        }
        assert_eq!(line, format!("ready {N}"));
        let deadline = Instant::now() + Duration::from_secs(60);
        while server.stats().connections < N as u64 + 1 {
            assert!(Instant::now() < deadline, "connections not accepted");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = rss_kib();
        let per = (after.saturating_sub(before)) as f64 * 1024.0 / N as f64;
        println!(
            "microsocket-tokio            {:>6.2} KiB resident per idle connection (RSS {before} -> {after} KiB)",
            per / 1024.0
        );
        drop(child.stdin.take());
        let _ = child.wait();
        drop(warm);
        server.shutdown().await;
    });
}

fn main() {
    if let Ok(path) = std::env::var(CHILD_VAR) {
        idle_child(&path);
        return;
    }
    let _ = rlimit_nofile(20_000);
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let all = args.is_empty();
    let want = |name: &str| all || args.iter().any(|a| a == name);
    if want("rtt") {
        rtt();
    }
    if want("pipelined") {
        pipelined();
    }
    if want("fanout") {
        fanout_side_by_side();
    }
    if want("pipelined1") {
        pipelined_on(1);
    }
    if want("pipelined2") {
        pipelined_on(2);
    }
    if want("pipelined-split") {
        pipelined_split();
    }
    if want("fanout-raw") {
        fanout_raw();
    }
    if want("fanout-clients") {
        fanout_clients();
    }
    if want("idle") {
        idle();
    }
}

/// Raises the open-file limit towards `n` (the idle benchmark holds 10,000
/// connections).
fn rlimit_nofile(n: u64) -> std::io::Result<()> {
    let (soft, hard) = rlimit::Resource::NOFILE.get()?;
    if soft < n {
        rlimit::Resource::NOFILE.set(n.min(hard), hard)?;
    }
    Ok(())
}
