//! TLS over TCP on both adapters, each server against each client, with
//! certificates made for the test (rcgen): a verified client's identity
//! reaches the handler; an unknown CA, a wrong name, an expired certificate,
//! a missing client certificate and a plaintext peer are refused, and
//! disturb no other connection.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use microsocket_std::{tls as std_tls, ClientConfig, Request as StdRequest, Responder, ServerConfig};
use microsocket_tokio::tls as tokio_tls;

#[path = "common/pki.rs"]
mod pki;

use pki::Pki;

impl Pki {
    fn server(&self, cert: &str) -> Arc<std_tls::rustls::ServerConfig> {
        std_tls::server_config(self.path(cert), self.path("server.key"), Some(&self.path("ca.pem"))).unwrap()
    }

    fn client(&self, ca: &str, alice: bool) -> Arc<std_tls::rustls::ClientConfig> {
        let (cert, key) = (self.path("alice.pem"), self.path("alice.key"));
        std_tls::client_config(self.path(ca), alice.then_some((cert.as_path(), key.as_path()))).unwrap()
    }
}

#[derive(Clone, Copy, Debug)]
enum Side {
    Std,
    Tokio,
}

/// A server of either adapter answering `WHOAMI` with the client's verified
/// names; dropped, it stops.
enum Running {
    Std(Option<microsocket_std::server::RunningServer>),
    Tokio {
        _server: microsocket_tokio::Server<microsocket_tokio::FnHandler<WhoAmI>>,
        _runtime: tokio::runtime::Runtime,
    },
}

type WhoAmI =
    fn(microsocket_tokio::Request) -> std::future::Ready<Result<microsocket_tokio::Reply, microsocket_tokio::Failure>>;

fn tokio_whoami(
    request: microsocket_tokio::Request,
) -> std::future::Ready<Result<microsocket_tokio::Reply, microsocket_tokio::Failure>> {
    let id = request.context.tls.as_deref().cloned().unwrap_or_default();
    std::future::ready(Ok(microsocket_tokio::Reply::values(
        id.common_names.into_iter().chain(id.alt_names),
    )))
}

fn serve(side: Side, config: Arc<std_tls::rustls::ServerConfig>) -> (Running, SocketAddr) {
    match side {
        Side::Std => {
            let handler = |request: StdRequest<'_>, responder: Responder| {
                let id = request.context.tls.as_deref().cloned().unwrap_or_default();
                let _ = responder.respond(id.common_names.into_iter().chain(id.alt_names));
            };
            let server =
                microsocket_std::Server::bind_tls("127.0.0.1:0", handler, ServerConfig::default(), config).unwrap();
            let Some(microsocket_std::Address::Tcp(address)) = server.local_address() else {
                panic!()
            };
            let address = address.parse().unwrap();
            (Running::Std(Some(server.spawn().unwrap())), address)
        }
        Side::Tokio => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let server = runtime.block_on(async {
                microsocket_tokio::Server::new(microsocket_tokio::handler_fn(tokio_whoami as WhoAmI))
            });
            let address = runtime.block_on(server.listen_tls("127.0.0.1:0", config)).unwrap();
            (
                Running::Tokio {
                    _server: server,
                    _runtime: runtime,
                },
                address,
            )
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Running::Std(server) = self {
            if let Some(server) = server.take() {
                let _ = server.stop();
            }
        }
    }
}

/// Connects with a client of either adapter and asks `WHOAMI`; the names, or
/// the error as text.
fn whoami(
    side: Side,
    address: SocketAddr,
    name: &str,
    config: Arc<std_tls::rustls::ClientConfig>,
) -> Result<Vec<String>, String> {
    let text = |values: Vec<bytes::Bytes>| values.iter().map(|v| String::from_utf8_lossy(v).into_owned()).collect();
    match side {
        Side::Std => {
            let config_ = ClientConfig::default().request_timeout(Some(Duration::from_secs(10)));
            let client =
                microsocket_std::Client::connect_tls(address, name, config, config_).map_err(|e| e.to_string())?;
            client
                .request("WHOAMI", microsocket_std::NO_ARGS)
                .map(|v| text(v.to_vec()))
                .map_err(|e| e.to_string())
        }
        Side::Tokio => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let client = microsocket_tokio::Client::builder()
                    .request_timeout(Some(Duration::from_secs(10)))
                    .connect_tls(address, name, config)
                    .await
                    .map_err(|e| e.to_string())?;
                client
                    .request("WHOAMI", microsocket_tokio::NO_ARGS)
                    .await
                    .map(|v| text(v.to_vec()))
                    .map_err(|e| e.to_string())
            })
        }
    }
}

/// The tests of this file one at a time: one of them measures the CPU time
/// of the whole process while it should be idle.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

const PAIRS: [(Side, Side); 4] = [
    (Side::Std, Side::Std),
    (Side::Std, Side::Tokio),
    (Side::Tokio, Side::Std),
    (Side::Tokio, Side::Tokio),
];

#[test]
fn a_verified_client_is_known_to_the_handler_on_both_adapters() {
    let _one = one_at_a_time();
    let pki = Pki::new();
    for (server_side, client_side) in PAIRS {
        let (_server, address) = serve(server_side, pki.server("server.pem"));
        let names = whoami(client_side, address, "bus.test", pki.client("ca.pem", true));
        assert_eq!(
            names.unwrap(),
            ["alice", "alice@example.com"],
            "{server_side:?} server, {client_side:?} client"
        );
    }
}

#[test]
fn bad_trust_names_expiry_and_missing_certificates_are_refused_on_both_adapters() {
    let _one = one_at_a_time();
    let pki = Pki::new();
    for (server_side, client_side) in PAIRS {
        let case = format!("{server_side:?} server, {client_side:?} client");
        let (_server, address) = serve(server_side, pki.server("server.pem"));
        let unknown_ca = whoami(client_side, address, "bus.test", pki.client("other-ca.pem", true));
        assert!(unknown_ca.is_err(), "{case}: unknown CA accepted");
        let wrong_name = whoami(client_side, address, "elsewhere.test", pki.client("ca.pem", true));
        assert!(wrong_name.is_err(), "{case}: wrong name accepted");
        let anonymous = whoami(client_side, address, "bus.test", pki.client("ca.pem", false));
        assert!(anonymous.is_err(), "{case}: a client without a certificate accepted");
        // The server is unharmed.
        assert!(
            whoami(client_side, address, "bus.test", pki.client("ca.pem", true)).is_ok(),
            "{case}"
        );

        let (_expired, address) = serve(server_side, pki.server("expired.pem"));
        let expired = whoami(client_side, address, "bus.test", pki.client("ca.pem", true));
        let e = expired.expect_err("an expired certificate accepted");
        assert!(e.to_lowercase().contains("expired"), "{case}: {e}");
    }
}

#[test]
fn plaintext_and_silent_peers_on_a_tls_port_disturb_no_one() {
    let _one = one_at_a_time();
    use std::io::{Read, Write};
    let pki = Pki::new();
    for side in [Side::Std, Side::Tokio] {
        let (_server, address) = serve(side, pki.server("server.pem"));
        let silent: Vec<_> = (0..20)
            .map(|_| std::net::TcpStream::connect(address).unwrap())
            .collect();
        // A plaintext microsocket request: `(` PING with tag 1.
        let mut plain = std::net::TcpStream::connect(address).unwrap();
        plain.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        plain
            .write_all(b"(\x02\x00\x00\x00\x01\x01\x00\x00\x00\x04PING")
            .unwrap();
        let mut answer = Vec::new();
        let _ = plain.read_to_end(&mut answer);
        assert!(!answer.starts_with(b")"), "{side:?}: a plaintext request was answered");
        let names = whoami(side, address, "bus.test", pki.client("ca.pem", true));
        assert_eq!(names.unwrap(), ["alice", "alice@example.com"], "{side:?}");
        drop(silent);
    }
}

#[test]
fn tls_settings_need_a_tcp_listener_and_readable_files() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let server = microsocket_std::Server::bind_unix(
        dir.path().join("s.sock"),
        |_: StdRequest<'_>, _: Responder| {},
        ServerConfig::default(),
    )
    .unwrap();
    let Err(e) = server.with_tls(pki.server("server.pem")) else {
        panic!("TLS on a UNIX listener")
    };
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    let missing: &Path = "/nonexistent/ca.pem".as_ref();
    let e = tokio_tls::client_config(missing, None).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
}

/// CPU time this process has used so far (user and system), from
/// `/proc/self/stat` (in clock ticks of 10 ms).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

#[test]
fn a_blocking_tls_server_shuts_down_gracefully_and_its_relays_rest() {
    let _one = one_at_a_time();
    let pki = Pki::new();
    let handler = |request: StdRequest<'_>, responder: Responder| {
        if request.command == b"SLOW" {
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(400));
                let _ = responder.respond(["done"]);
            });
        } else {
            let _ = responder.respond(["ok"]);
        }
    };
    let server = microsocket_std::Server::bind_tls(
        "127.0.0.1:0",
        handler,
        ServerConfig::default(),
        pki.server("server.pem"),
    )
    .unwrap();
    let Some(microsocket_std::Address::Tcp(address)) = server.local_address() else {
        panic!()
    };
    let address: SocketAddr = address.parse().unwrap();
    let running = server.spawn().unwrap();
    let client = microsocket_std::Client::connect_tls(
        address,
        "bus.test",
        pki.client("ca.pem", true),
        ClientConfig::default().request_timeout(Some(Duration::from_secs(10))),
    )
    .unwrap();
    assert_eq!(
        client.request("FAST", microsocket_std::NO_ARGS).unwrap().to_vec(),
        ["ok"]
    );
    let slow = {
        let client = client.clone();
        std::thread::spawn(move || client.request("SLOW", microsocket_std::NO_ARGS).map(|v| v.to_vec()))
    };
    std::thread::sleep(Duration::from_millis(100));
    let stopping = std::thread::spawn(move || running.stop());
    std::thread::sleep(Duration::from_millis(100));
    // A request sent while the server shuts down is not served, and does
    // not cost the answer still in flight.
    let late = {
        let client = client.clone();
        std::thread::spawn(move || {
            client.request_timeout("FAST", microsocket_std::NO_ARGS, Some(Duration::from_secs(2)))
        })
    };
    assert_eq!(slow.join().unwrap().unwrap(), ["done"], "the answer in flight arrived");
    stopping.join().unwrap().unwrap();
    let _ = late.join();
    // The connection is over but the client is still held: no relay spins.
    std::thread::sleep(Duration::from_millis(200));
    let before = cpu_time();
    std::thread::sleep(Duration::from_millis(600));
    let used = cpu_time() - before;
    assert!(
        used < Duration::from_millis(200),
        "{used:?} of CPU in 600 ms while idle"
    );
    drop(client);
}
