//! What TLS costs: round trip and pipelined throughput of both adapters over
//! a UNIX socket, plaintext TCP on loopback and TLS on loopback, side by side
//! in one run.
//!
//! ```text
//! cargo bench -p microsocket-tests --bench transports
//! ```
//!
//! - round trip: one `PING` at a time for 2 s after a warm-up; p50 and p99.
//! - pipelined: 256 requests in flight on one connection (std: one thread with
//!   tickets; Tokio: 256 tasks), requests per second over 2 s.
//!
//! Each figure is the median of three runs; the columns are ratios to the UNIX
//! socket of the same adapter in the same run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use microsocket_std::tls::rustls;
use microsocket_std::{Request as StdRequest, Responder, ServerConfig};
use rcgen::{CertificateParams, KeyPair};

const RUN: Duration = Duration::from_secs(2);
const IN_FLIGHT: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Transport {
    Unix,
    Tcp,
    Tls,
}

struct Certs {
    _dir: tempfile::TempDir,
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

fn certs() -> Certs {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["bus.test".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let path = |name: &str| -> PathBuf { dir.path().join(name) };
    std::fs::write(path("cert.pem"), cert.pem()).unwrap();
    std::fs::write(path("key.pem"), key.serialize_pem()).unwrap();
    let server = microsocket_std::tls::server_config(path("cert.pem"), path("key.pem"), None).unwrap();
    let client = microsocket_std::tls::client_config(path("cert.pem"), None).unwrap();
    Certs {
        _dir: dir,
        server,
        client,
    }
}

/// Where a client connects.
enum Target {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p) as usize]
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn std_server(transport: Transport, dir: &Path, certs: &Certs) -> (microsocket_std::server::RunningServer, Target) {
    let handler = |_: StdRequest<'_>, responder: Responder| {
        let _ = responder.respond(["PONG"]);
    };
    let config = ServerConfig::default();
    let server = match transport {
        Transport::Unix => microsocket_std::Server::bind_unix(dir.join("std.sock"), handler, config),
        Transport::Tcp => microsocket_std::Server::bind_tcp("127.0.0.1:0", handler, config),
        Transport::Tls => microsocket_std::Server::bind_tls("127.0.0.1:0", handler, config, certs.server.clone()),
    }
    .unwrap();
    let target = match server.local_address() {
        Some(microsocket_std::Address::Tcp(addr)) => Target::Tcp(addr.parse().unwrap()),
        _ => Target::Unix(dir.join("std.sock")),
    };
    (server.spawn().unwrap(), target)
}

fn std_client(transport: Transport, target: &Target, certs: &Certs) -> microsocket_std::Client {
    let config = microsocket_std::ClientConfig::default();
    match (transport, target) {
        (Transport::Tls, Target::Tcp(addr)) => {
            microsocket_std::Client::connect_tls(*addr, "bus.test", certs.client.clone(), config).unwrap()
        }
        (_, Target::Tcp(addr)) => microsocket_std::Client::connect_tcp(*addr).unwrap(),
        (_, Target::Unix(path)) => microsocket_std::Client::connect_unix(path).unwrap(),
    }
}

/// (p50 µs, p99 µs, requests/s) for the std adapter.
fn run_std(transport: Transport, certs: &Certs) -> (f64, f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let (server, target) = std_server(transport, dir.path(), certs);
    let client = std_client(transport, &target, certs);
    let mut times = Vec::new();
    let start = Instant::now();
    while start.elapsed() < RUN {
        let t = Instant::now();
        client.request("PING", microsocket_std::NO_ARGS).unwrap();
        times.push(t.elapsed());
    }
    times.sort();
    let mut done = 0usize;
    let start = Instant::now();
    while start.elapsed() < RUN {
        let mut batch = client.batch();
        for _ in 0..IN_FLIGHT {
            batch.request("PING", microsocket_std::NO_ARGS).unwrap();
        }
        let tickets = batch.send().unwrap();
        for answer in client.wait_all(tickets) {
            answer.unwrap();
            done += 1;
        }
    }
    let rate = done as f64 / start.elapsed().as_secs_f64();
    drop(client);
    server.stop().unwrap();
    (
        percentile(&times, 0.5).as_secs_f64() * 1e6,
        percentile(&times, 0.99).as_secs_f64() * 1e6,
        rate,
    )
}

/// (p50 µs, p99 µs, requests/s) for the Tokio adapter.
fn run_tokio(transport: Transport, certs: &Certs) -> (f64, f64, f64) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let server =
            microsocket_tokio::Server::new(microsocket_tokio::handler_fn(|_: microsocket_tokio::Request| async {
                Ok(microsocket_tokio::Reply::one("PONG"))
            }));
        let builder = microsocket_tokio::Client::builder();
        let client = match transport {
            Transport::Unix => {
                server.listen_unix(dir.path().join("tokio.sock")).unwrap();
                builder.connect_unix(dir.path().join("tokio.sock")).await.unwrap()
            }
            Transport::Tcp => {
                let addr = server.listen_tcp("127.0.0.1:0").await.unwrap();
                builder.connect_tcp(addr).await.unwrap()
            }
            Transport::Tls => {
                let addr = server.listen_tls("127.0.0.1:0", certs.server.clone()).await.unwrap();
                builder
                    .connect_tls(addr, "bus.test", certs.client.clone())
                    .await
                    .unwrap()
            }
        };
        let mut times = Vec::new();
        let start = Instant::now();
        while start.elapsed() < RUN {
            let t = Instant::now();
            client.request("PING", microsocket_tokio::NO_ARGS).await.unwrap();
            times.push(t.elapsed());
        }
        times.sort();
        let start = Instant::now();
        let tasks: Vec<_> = (0..IN_FLIGHT)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move {
                    let mut done = 0usize;
                    while start.elapsed() < RUN {
                        client.request("PING", microsocket_tokio::NO_ARGS).await.unwrap();
                        done += 1;
                    }
                    done
                })
            })
            .collect();
        let mut done = 0;
        for task in tasks {
            done += task.await.unwrap();
        }
        let rate = done as f64 / start.elapsed().as_secs_f64();
        server.shutdown().await;
        (
            percentile(&times, 0.5).as_secs_f64() * 1e6,
            percentile(&times, 0.99).as_secs_f64() * 1e6,
            rate,
        )
    })
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let certs = certs();
    println!("| adapter | transport | round trip p50 | p99 | p50 vs UNIX | 256 in flight | vs UNIX |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for (name, run) in [
        ("std", run_std as fn(Transport, &Certs) -> (f64, f64, f64)),
        ("tokio", run_tokio),
    ] {
        let mut unix = (0.0, 0.0);
        for transport in [Transport::Unix, Transport::Tcp, Transport::Tls] {
            let runs: Vec<_> = (0..3).map(|_| run(transport, &certs)).collect();
            let p50 = median(runs.iter().map(|r| r.0).collect());
            let p99 = median(runs.iter().map(|r| r.1).collect());
            let rate = median(runs.iter().map(|r| r.2).collect());
            if transport == Transport::Unix {
                unix = (p50, rate);
            }
            println!(
                "| {name} | {transport:?} | {p50:.1} µs | {p99:.1} µs | {:.2}x | {:.0} k/s | {:.2}x |",
                p50 / unix.0,
                rate / 1e3,
                rate / unix.1
            );
        }
    }
}
