//! What the bridge costs: publications bus → NATS → bus against plain
//! `async-nats` publish → subscribe through the same `nats-server`, side by
//! side in one run (needs `nats-server` on the PATH).
//!
//! ```text
//! cargo bench -p microsocket-nats --bench bridge
//! ```
//!
//! - latency: one 64-byte publication at a time for 2 s, from publishing to
//!   the subscriber holding it; p50 and p99.
//! - throughput: 100,000 publications of 64 bytes as fast as the publisher
//!   goes, until the subscriber has them all (or 10 s pass); per second.
//! - each half of the bridged path alone, for its throughput: the exporting
//!   bridge to a plain subscriber, and a plain publisher (with the header) to
//!   the importing bridge; the slower half bounds the whole.
//! - plain async-nats runs twice: as is, and with a header like the
//!   bridge's `Microsocket-Origin` on every message (NATS messages with
//!   headers cost more to send and to parse); the bridge runs with its
//!   origin header (the default) and without it.
//!
//! - lost: publications that never arrived (a latency probe waits 1 s for
//!   its own, then the next goes out): NATS delivers at most once, and a
//!   `nats-server` that finds a subscriber slow drops for it.
//!
//! Each figure is the median of five runs, the paths taking turns (the
//! machine's speed drifts). `-- --only TEXT` runs only the
//! paths whose name contains `TEXT` (`-- --only bridge`, to profile it).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use microsocket_nats::{Bridge, BridgeConfig, NatsOptions};
use microsocket_tokio::{handler_fn, Failure, Reply, Request, Server};

const RUN: Duration = Duration::from_secs(2);
const BURST: usize = 100_000;
const PAYLOAD: [u8; 64] = [b'x'; 64];
/// How long a publication may take before it counts as lost (NATS
/// delivers at most once: a path that loses one carries on, and the loss is
/// reported).
const LOSS_WAIT: Duration = Duration::from_secs(1);
/// One run of a path: p50 and p99 latency (µs), publications per second,
/// and publications lost.
type Run = (f64, f64, f64, usize);
/// Runs of each path; each figure is their median.
const RUNS: usize = 5;
/// The longest one path's run may take.
const RUN_LIMIT: Duration = Duration::from_secs(60);

struct NatsServer(Child, u16);

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nats_server() -> Option<NatsServer> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(NatsServer(child, port))
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1e6
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// A plain async-nats client to subscribe with, whose subscriptions hold a
/// whole burst (as the bridged path's local queues do): the figure is the
/// path's capacity, not what a bounded queue drops.
async fn plain_subscriber(url: &str) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .subscription_capacity(2 * BURST)
        .connect(url)
        .await
        .unwrap()
}

/// Publishes one payload on `subject`, with the bridge's origin header if
/// `origin` (so the plain client pays for a header as the bridge does).
async fn publish_plain(publisher: &async_nats::Client, subject: &'static str, origin: bool) {
    if origin {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Microsocket-Origin", "alpha.12345.6789012345678");
        publisher
            .publish_with_headers(subject, headers, PAYLOAD[..].into())
            .await
            .unwrap();
    } else {
        publisher.publish(subject, PAYLOAD[..].into()).await.unwrap();
    }
}

/// (p50 µs, p99 µs, publications/s) through plain async-nats; with
/// `origin`, each message carries a header like the bridge's
/// `Microsocket-Origin`.
async fn plain(url: &str, origin: bool) -> Run {
    let publisher = async_nats::connect(url).await.unwrap();
    let subscriber = plain_subscriber(url).await;
    let mut sub = subscriber.subscribe("bench.plain").await.unwrap();
    subscriber.flush().await.unwrap();
    let mut times = Vec::new();
    let mut lost = 0;
    let start = Instant::now();
    while start.elapsed() < RUN {
        let t = Instant::now();
        publish_plain(&publisher, "bench.plain", origin).await;
        publisher.flush().await.unwrap();
        match tokio::time::timeout(LOSS_WAIT, sub.next()).await {
            Ok(next) => drop(next.unwrap()),
            Err(_) => lost += 1,
        }
        times.push(t.elapsed());
    }
    times.sort();
    let start = Instant::now();
    let receiving = receive_burst(sub);
    for _ in 0..BURST {
        publish_plain(&publisher, "bench.plain", origin).await;
    }
    publisher.flush().await.unwrap();
    let got = receiving.await.unwrap();
    (
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        got as f64 / start.elapsed().as_secs_f64(),
        lost + BURST - got,
    )
}

async fn bus(url: &str, config: BridgeConfig) -> (Server<impl microsocket_tokio::Handler>, Bridge) {
    let mut bridge = Bridge::connect(
        &NatsOptions::new(url),
        config.state_topic(None).max_held_bytes(256 << 20),
    )
    .await
    .unwrap();
    assert!(bridge.wait_connected(Duration::from_secs(10)).await);
    // Queues that hold a whole burst: the figure is the pipeline's capacity,
    // not how much a bounded queue drops.
    let config = microsocket_tokio::ServerConfig::default().max_queued_bytes(512 << 20);
    let handler = handler_fn(|_: Request| async { Err::<Reply, _>(Failure::new("none")) });
    let server = Server::with_config(handler, config);
    bridge.attach_server(&server).await.unwrap();
    bridge.nats().flush().await.unwrap();
    (server, bridge)
}

/// A client of `server` over a UNIX socket, subscribed to `bench.bridged`,
/// with queues that hold a whole burst (and the directory of its socket).
async fn local_subscriber<H: microsocket_tokio::Handler>(
    server: &Server<H>,
) -> (
    tempfile::TempDir,
    microsocket_tokio::Client,
    microsocket_tokio::Subscription,
) {
    let dir = tempfile::tempdir().unwrap();
    server.listen_unix(dir.path().join("bus.sock")).unwrap();
    let client = microsocket_tokio::Client::builder()
        .max_queued_bytes(512 << 20)
        .subscription_max_bytes(512 << 20)
        .subscription_capacity(1 << 20)
        .connect_unix(dir.path().join("bus.sock"))
        .await
        .unwrap();
    let sub = client.subscribe("bench.bridged").await.unwrap();
    (dir, client, sub)
}

/// Counts what `sub` receives until it has a burst, or a second passes in
/// which nothing arrives (the rest was lost). One timer ticks for the whole
/// burst: a timeout per message would cost the receiver more than some
/// paths' own work.
fn receive_burst<S, T>(mut sub: S) -> tokio::task::JoinHandle<usize>
where
    S: futures_util::Stream<Item = T> + Unpin + Send + 'static,
    T: Send,
{
    tokio::spawn(async move {
        let mut got = 0;
        let mut idle = tokio::time::interval(LOSS_WAIT);
        idle.tick().await;
        let mut at_last_tick = 0;
        while got < BURST {
            tokio::select! {
                biased;
                item = sub.next() => match item {
                    Some(_) => got += 1,
                    None => break,
                },
                _ = idle.tick() => {
                    if got == at_last_tick {
                        break;
                    }
                    at_last_tick = got;
                }
            }
        }
        got
    })
}

/// Publishes a burst on `server`, letting the other tasks run every 256.
async fn publish_burst<H: microsocket_tokio::Handler>(server: &Server<H>) {
    for i in 0..BURST {
        server.publish("bench.bridged", [&PAYLOAD[..]]).unwrap();
        if i % 256 == 255 {
            tokio::task::yield_now().await;
        }
    }
}

/// (p50 µs, p99 µs, publications/s) bus → bridge → NATS → bridge → bus,
/// with or without the origin header on exports.
async fn bridged(url: &str, origin: bool) -> Run {
    let config = BridgeConfig::new("alpha").export("bench.>").origin_header(origin);
    let (alpha, _a) = bus(url, config).await;
    let (beta, _b) = bus(url, BridgeConfig::new("beta").import("alpha:bench.>")).await;
    let (_dir, _client, mut sub) = local_subscriber(&beta).await;
    let mut times = Vec::new();
    let mut lost = 0;
    let start = Instant::now();
    while start.elapsed() < RUN {
        let t = Instant::now();
        alpha.publish("bench.bridged", [&PAYLOAD[..]]).unwrap();
        match tokio::time::timeout(LOSS_WAIT, sub.next()).await {
            Ok(next) => drop(next.unwrap().unwrap()),
            Err(_) => lost += 1,
        }
        times.push(t.elapsed());
    }
    times.sort();
    let start = Instant::now();
    let receiving = receive_burst(sub);
    publish_burst(&alpha).await;
    let got = receiving.await.unwrap();
    if got < BURST || lost > 0 {
        eprintln!(
            "bridged: {lost} lost one at a time, {got} of {BURST} of the burst arrived; {:?} {:?}",
            _a.stats(),
            _b.stats()
        );
    }
    (
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        got as f64 / start.elapsed().as_secs_f64(),
        lost + BURST - got,
    )
}

/// Publications/s bus → bridge → NATS → a plain async-nats subscriber: the
/// exporting half alone.
async fn exporting_half(url: &str) -> Run {
    let (alpha, _a) = bus(url, BridgeConfig::new("alpha").export("bench.>")).await;
    let subscriber = plain_subscriber(url).await;
    let sub = subscriber.subscribe("alpha.bench.bridged").await.unwrap();
    subscriber.flush().await.unwrap();
    let start = Instant::now();
    let receiving = receive_burst(sub);
    publish_burst(&alpha).await;
    let got = receiving.await.unwrap();
    (0.0, 0.0, got as f64 / start.elapsed().as_secs_f64(), BURST - got)
}

/// Publications/s from a plain async-nats publisher (with the origin header)
/// → NATS → bridge → bus: the importing half alone.
async fn importing_half(url: &str) -> Run {
    let (beta, _b) = bus(url, BridgeConfig::new("beta").import("alpha:bench.>")).await;
    let (_dir, _client, sub) = local_subscriber(&beta).await;
    let publisher = async_nats::connect(url).await.unwrap();
    let start = Instant::now();
    let receiving = receive_burst(sub);
    for _ in 0..BURST {
        publish_plain(&publisher, "alpha.bench.bridged", true).await;
    }
    publisher.flush().await.unwrap();
    let got = receiving.await.unwrap();
    (0.0, 0.0, got as f64 / start.elapsed().as_secs_f64(), BURST - got)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let Some(server) = nats_server() else {
        eprintln!("bridge bench: nats-server is not on the PATH (Debian package nats-server); nothing measured");
        return;
    };
    let url = format!("nats://127.0.0.1:{}", server.1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // `--only TEXT` runs only the paths whose name contains it (to profile one).
    let args: Vec<String> = std::env::args().collect();
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let names = [
        "plain async-nats",
        "plain async-nats, with an origin header",
        "bus → bridge → NATS → bridge → bus",
        "the same, origin_header(false)",
        "bus → bridge → NATS → plain subscriber (throughput only)",
        "plain publisher, with the header → NATS → bridge → bus (throughput only)",
    ];
    let wanted: Vec<bool> = names
        .iter()
        .map(|n| only.as_ref().is_none_or(|o| n.contains(o.as_str())))
        .collect();
    let mut runs: [Vec<Run>; 6] = Default::default();
    for _ in 0..RUNS {
        for (path, runs) in runs.iter_mut().enumerate() {
            if !wanted[path] {
                continue;
            }
            let run = async {
                match path {
                    0 => plain(&url, false).await,
                    1 => plain(&url, true).await,
                    2 => bridged(&url, true).await,
                    3 => bridged(&url, false).await,
                    4 => exporting_half(&url).await,
                    _ => importing_half(&url).await,
                }
            };
            // A stuck connection fails the run, never hangs it.
            let run = runtime.block_on(async { tokio::time::timeout(RUN_LIMIT, run).await });
            runs.push(run.unwrap_or_else(|_| panic!("{}: not done within {RUN_LIMIT:?}", names[path])));
        }
    }
    let summary = |runs: &[Run]| {
        (
            median(runs.iter().map(|r| r.0).collect()),
            median(runs.iter().map(|r| r.1).collect()),
            median(runs.iter().map(|r| r.2).collect()),
            runs.iter().map(|r| r.3).sum::<usize>(),
        )
    };
    let rows: Vec<Option<(f64, f64, f64, usize)>> = runs.iter().map(|r| (!r.is_empty()).then(|| summary(r))).collect();
    println!("| path | latency p50 | p99 | throughput | lost in {RUNS} runs |");
    println!("|---|---:|---:|---:|---:|");
    for (name, row) in names.iter().zip(&rows) {
        if let Some((p50, p99, rate, lost)) = row {
            let latency = |us: &f64| {
                if *us > 0.0 {
                    format!("{us:.1} µs")
                } else {
                    "—".into()
                }
            };
            println!(
                "| {name} | {} | {} | {:.0} k/s | {lost} |",
                latency(p50),
                latency(p99),
                rate / 1e3
            );
        }
    }
    for (name, ours, base) in [
        ("bridged / plain", 2, 0),
        ("bridged / plain with the header", 2, 1),
        ("bridged without the header / plain", 3, 0),
    ] {
        if let (Some(ours), Some(base)) = (rows[ours], rows[base]) {
            println!(
                "| {name} | {:.2}x | {:.2}x | {:.2}x | |",
                ours.0 / base.0,
                ours.1 / base.1,
                ours.2 / base.2
            );
        }
    }
}
