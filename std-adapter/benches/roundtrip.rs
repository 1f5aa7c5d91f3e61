//! Speed of the std adapter beside a floor, in one run.
//!
//! ```text
//! taskset -c 0 cargo bench -p microsocket-std --bench roundtrip
//! ```
//!
//! - `floor`: a minimal hand-written blocking ping-pong over a std `UnixStream`
//!   pair of threads exchanging the same frames (`(` tag "PING" / `)` tag "PONG");
//! - `microsocket`: `Client::request("PING")` against a `Server` whose handler
//!   answers inline, over a UNIX socket file;
//! - `8 threads`: eight threads sharing one `Client`, requests per second, beside
//!   its floor: eight threads sharing one hand-written `UnixStream` client (a
//!   mutex around writes, a dedicated reader thread waking each requester through
//!   its own condition variable) against a thread answering each read's requests
//!   with one write;
//! - `fan-out`: one publisher, 100 subscribed client connections, deliveries per
//!   second received (and checked) by the subscribers, 64-byte messages.
//!
//! `-- --only rtt|threads|fanout` runs one part.
//!
//! Round trips: p50 of each run, median of several runs, alternating floor and
//! microsocket so both see the same machine state.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use microsocket_core::frame::{encode, Sigil};
use microsocket_std::{Client, ClientConfig, Error, Request, Responder, Server, ServerConfig};

const ROUND_TRIPS: usize = 20_000;
const RUNS: usize = 5;
/// The fan-out message: 64 bytes.
const PAYLOAD: &[u8; 64] = b"payload-64-bytes-payload-64-bytes-payload-64-bytes-payload-64-b.";

fn frame(sigil: Sigil, args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    encode(sigil, args, &mut out).unwrap();
    out
}

fn p50(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

fn floor_run() -> Duration {
    let (mut client, mut server) = UnixStream::pair().unwrap();
    let request = frame(Sigil::Request, &[b"\x01", b"PING"]);
    let response = frame(Sigil::Response, &[b"\x01", b"PONG"]);
    let (req_len, resp_len) = (request.len(), response.len());
    let echo = std::thread::spawn(move || {
        let mut buf = vec![0u8; req_len];
        while server.read_exact(&mut buf).is_ok() {
            if server.write_all(&response).is_err() {
                break;
            }
        }
    });
    let mut buf = vec![0u8; resp_len];
    let mut samples = Vec::with_capacity(ROUND_TRIPS);
    for _ in 0..ROUND_TRIPS {
        let t = Instant::now();
        client.write_all(&request).unwrap();
        client.read_exact(&mut buf).unwrap();
        samples.push(t.elapsed());
    }
    drop(client);
    echo.join().unwrap();
    p50(samples)
}

fn ping(request: Request<'_>, responder: Responder) {
    let _ = match request.command {
        b"PING" => responder.respond([b"PONG"]),
        _ => responder.fail("no such command", [b""; 0]),
    };
}

fn microsocket_run(path: &std::path::Path) -> Duration {
    let client = Client::connect_unix(path).unwrap();
    let mut samples = Vec::with_capacity(ROUND_TRIPS);
    for _ in 0..ROUND_TRIPS {
        let t = Instant::now();
        let v = client.request("PING", [b""; 0]).unwrap();
        samples.push(t.elapsed());
        debug_assert_eq!(v, ["PONG"]);
    }
    p50(samples)
}

fn threads_run(path: &std::path::Path, config: ClientConfig, threads: usize, each: usize) -> f64 {
    let client = Client::new(UnixStream::connect(path).unwrap(), config).unwrap();
    let t = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let client = client.clone();
            std::thread::spawn(move || {
                for _ in 0..each {
                    client.request("PING", [b""; 0]).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    (threads * each) as f64 / t.elapsed().as_secs_f64()
}

/// Reads `stream` until it ends, handing each read's whole `len`-byte frames to
/// `batch` in one slice (a partial frame waits for the next read); stops early
/// when `batch` returns false.
fn read_frames(mut stream: UnixStream, len: usize, mut batch: impl FnMut(&[u8]) -> bool) {
    let mut buf = vec![0u8; 64 << 10];
    let mut have = 0;
    loop {
        let n = match stream.read(&mut buf[have..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        have += n;
        let whole = have / len * len;
        if !batch(&buf[..whole]) {
            return;
        }
        buf.copy_within(whole..have, 0);
        have -= whole;
    }
}

/// The 8-thread floor: the least a blocking client shared by threads needs (one
/// write per request, one wake-up per answer), with the same frames.
fn threads_floor_run(threads: usize, each: usize) -> f64 {
    let (client, server) = UnixStream::pair().unwrap();
    let request_len = frame(Sigil::Request, &[b"\x01", b"PING"]).len();
    let response = frame(Sigil::Response, &[b"\x01", b"PONG"]);
    // The one-byte tag is the first argument: after the sigil, the count and
    // its length.
    const TAG: usize = 6;
    let echo = std::thread::spawn(move || {
        let mut writer = server.try_clone().unwrap();
        let mut out = Vec::new();
        read_frames(server, request_len, |requests| {
            out.clear();
            for request in requests.chunks(request_len) {
                out.extend_from_slice(&response);
                let at = out.len() - response.len() + TAG;
                out[at] = request[TAG];
            }
            writer.write_all(&out).is_ok()
        });
    });
    let response_len = frame(Sigil::Response, &[b"\x01", b"PONG"]).len();
    let answered: Arc<Vec<(std::sync::Mutex<bool>, std::sync::Condvar)>> =
        Arc::new((0..threads).map(|_| Default::default()).collect());
    let writer = Arc::new(std::sync::Mutex::new(client.try_clone().unwrap()));
    let reader = {
        let answered = answered.clone();
        std::thread::spawn(move || {
            read_frames(client, response_len, |responses| {
                for response in responses.chunks(response_len) {
                    let (done, cv) = &answered[usize::from(response[TAG])];
                    *done.lock().unwrap() = true;
                    cv.notify_one();
                }
                true
            });
        })
    };
    let t = Instant::now();
    let requesters: Vec<_> = (0..threads)
        .map(|i| {
            let (answered, writer) = (answered.clone(), writer.clone());
            std::thread::spawn(move || {
                let request = frame(Sigil::Request, &[&[i as u8], b"PING"]);
                for _ in 0..each {
                    writer.lock().unwrap().write_all(&request).unwrap();
                    let (done, cv) = &answered[i];
                    let mut done = cv.wait_while(done.lock().unwrap(), |d| !*d).unwrap();
                    *done = false;
                }
            })
        })
        .collect();
    for r in requesters {
        r.join().unwrap();
    }
    let rate = (threads * each) as f64 / t.elapsed().as_secs_f64();
    writer.lock().unwrap().shutdown(std::net::Shutdown::Both).unwrap();
    reader.join().unwrap();
    echo.join().unwrap();
    rate
}

fn fanout_run(path: &std::path::Path, server: &microsocket_std::Publisher, subscribers: usize) -> (f64, f64, u64) {
    let received = Arc::new(AtomicU64::new(0));
    let missed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..subscribers {
        let client = Client::new(UnixStream::connect(path).unwrap(), {
            let mut config = ClientConfig::default();
            config.subscription_capacity = 1 << 16;
            config.subscription_max_bytes = usize::MAX;
            config
        })
        .unwrap();
        let mut sub = client.subscribe("bench.topic").unwrap();
        let (received, missed, stop) = (received.clone(), missed.clone(), stop.clone());
        readers.push(std::thread::spawn(move || {
            let _client = client;
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                match sub.recv_timeout(Duration::from_millis(100)) {
                    Ok(p) => {
                        assert!(p.topic() == b"bench.topic" && p.values().len() == 1 && p.values()[0] == PAYLOAD[..]);
                        n += 1;
                    }
                    Err(Error::Lagged { missed: m }) => {
                        missed.fetch_add(m, Ordering::Relaxed);
                    }
                    Err(_) => {}
                }
                if n % 1024 == 0 {
                    received.fetch_add(n, Ordering::Relaxed);
                    n = 0;
                }
            }
            received.fetch_add(n, Ordering::Relaxed);
        }));
    }
    let dropped_before = server.stats().publications_dropped;
    let queued_before = server.stats().deliveries;
    let window = Duration::from_secs(2);
    let t = Instant::now();
    let mut published = 0u64;
    while t.elapsed() < window {
        for _ in 0..64 {
            server.publish("bench.topic", [PAYLOAD]).unwrap();
            published += 1;
        }
        // Keep the publisher from outrunning delivery forever: wait while far ahead.
        while server.stats().deliveries - queued_before > received.load(Ordering::Relaxed) + 200_000
            && t.elapsed() < window
        {
            std::thread::yield_now();
        }
    }
    let elapsed = t.elapsed().as_secs_f64();
    let got = received.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    let dropped = server.stats().publications_dropped - dropped_before + missed.load(Ordering::Relaxed);
    let _ = published;
    (
        got as f64 / elapsed,
        (server.stats().deliveries - queued_before) as f64 / elapsed,
        dropped,
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("roundtrip: benchmark");
        return;
    }
    let quick = std::env::args().any(|a| a == "--test");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.sock");
    let server = Server::bind_unix(&path, ping, ServerConfig::default())
        .unwrap()
        .spawn()
        .unwrap();
    if quick {
        // `cargo test --benches`: one short pass to prove the bench runs.
        let client = Client::connect_unix(&path).unwrap();
        assert_eq!(client.request("PING", [b""; 0]).unwrap(), ["PONG"]);
        return;
    }

    // `--only rtt|threads|fanout` runs one part (for profiling).
    let only = std::env::args()
        .skip_while(|a| a != "--only")
        .nth(1)
        .unwrap_or_default();
    let part = |name: &str| only.is_empty() || only == name;

    if part("rtt") {
        round_trips(&path);
    }
    if part("threads") {
        // The same handler and client with polling before sleep off on both
        // sides, to show what it is worth.
        let blocking_path = dir.path().join("blocking.sock");
        let blocking = {
            let mut config = ServerConfig::default();
            config.spin_before_sleep = Duration::ZERO;
            config
        };
        let blocking_client = {
            let mut config = ClientConfig::default();
            config.spin_before_sleep = Duration::ZERO;
            config
        };
        let blocking_server = Server::bind_unix(&blocking_path, ping, blocking)
            .unwrap()
            .spawn()
            .unwrap();
        let (mut floors, mut ours, mut blocked) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..RUNS {
            floors.push(threads_floor_run(8, 20_000));
            ours.push(threads_run(&path, ClientConfig::default(), 8, 20_000));
            blocked.push(threads_run(&blocking_path, blocking_client.clone(), 8, 20_000));
        }
        drop(blocking_server);
        let (floor, mine, without) = (median(floors.clone()), median(ours.clone()), median(blocked.clone()));
        println!("8 threads sharing one client (median of {RUNS} runs of 8 x 20000; target >= 300000/s):");
        println!("  floor (hand-written shared client)  {floor:8.0} requests/s   runs {floors:.0?}");
        println!("  microsocket Client/Server           {mine:8.0} requests/s   runs {ours:.0?}");
        println!("  same, spin_before_sleep zero        {without:8.0} requests/s   runs {blocked:.0?}");
        println!(
            "  ratios to the floor                 {:8.3}x, {:.3}x without polling before sleep",
            mine / floor,
            without / floor
        );
    }
    if part("fanout") {
        let publisher = server.publisher();
        let (received, queued, dropped) = fanout_run(&path, &publisher, 100);
        println!(
            "publish to 100 subscribers:          {received:8.0} deliveries/s received ({queued:.0}/s queued, {dropped} dropped; target >= 5000000)"
        );
    }
    drop(server);
}

fn round_trips(path: &std::path::Path) {
    let mut floors = Vec::new();
    let mut ours = Vec::new();
    for _ in 0..RUNS {
        floors.push(floor_run().as_secs_f64() * 1e6);
        ours.push(microsocket_run(path).as_secs_f64() * 1e6);
    }
    let (floor, mine) = (median(floors.clone()), median(ours.clone()));
    println!("round trip p50 (median of {RUNS} runs of {ROUND_TRIPS}):");
    println!("  floor (std UnixStream ping-pong)   {floor:8.2} us   runs {floors:.2?}");
    println!("  microsocket Client/Server          {mine:8.2} us   runs {ours:.2?}");
    println!(
        "  ratio                              {:8.3}x  (target <= 1.15x)",
        mine / floor
    );
}
