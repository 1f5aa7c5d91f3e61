//! `microsocket serve --tcp ADDR --tls-cert ... --tls-key ... --tls-client-ca ...`
//! and client commands on `tls://host:port`, through the real binary, with
//! certificates made for the test.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::*;

#[path = "../../tests/tests/common/pki.rs"]
mod pki;
use pki::Pki;

/// Runs the binary with the TLS client environment.
fn run_tls(args: &[&str], env: &[(&str, PathBuf)]) -> std::process::Output {
    let mut command = Command::new(BIN);
    command.args(args).env("MICROSOCKET_TLS_NAME", "bus.test");
    for (name, value) in env {
        command.env(name, value);
    }
    let child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn serve_over_tls_with_client_certificates() {
    let pki = Pki::new();
    let path = |name: &str| pki.path(name);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tcp = format!("127.0.0.1:{port}");
    let (cert, key, ca) = (path("server.pem"), path("server.key"), path("ca.pem"));
    let server = Server::start(&[
        "--tcp",
        &tcp,
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--tls-client-ca",
        ca.to_str().unwrap(),
    ]);
    let address = format!("tls://{tcp}");
    let alice = [
        ("MICROSOCKET_TLS_CA", path("ca.pem")),
        ("MICROSOCKET_TLS_CERT", path("alice.pem")),
        ("MICROSOCKET_TLS_KEY", path("alice.key")),
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let o = loop {
        let o = run_tls(&["request", &address, "ECHO", "over", "tls"], &alice);
        if o.status.success() || std::time::Instant::now() > deadline {
            break o;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(stdout(&o), "over\ntls\n", "{}", stderr(&o));
    // Without a client certificate: refused, exit 2.
    let o = run_tls(&["request", &address, "PING"], &alice[..1]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // Without the CA: a clear message.
    let o = run_tls(&["request", &address, "PING"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("MICROSOCKET_TLS_CA"), "{}", stderr(&o));
    // Plain TCP to the TLS port is not served.
    let o = run(&["request", &format!("tcp://{tcp}"), "PING", "--timeout", "2"]);
    assert_ne!(o.status.code(), Some(0));
    // The UNIX socket is unaffected.
    assert_eq!(stdout(&run(&["request", server.sock(), "PING"])), "PONG\n");
}

#[test]
fn bad_tls_files_are_refused_at_start_with_their_names() {
    let pki = Pki::new();
    let path = |name: &str| pki.path(name);
    let missing = path("missing.pem");
    let o = run(&[
        "serve",
        "--check-config",
        "/dev/null",
        "--tcp",
        "127.0.0.1:0",
        "--tls-cert",
        missing.to_str().unwrap(),
        "--tls-key",
        path("server.key").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("missing.pem"), "{}", stderr(&o));
}

#[test]
fn plaintext_tcp_beyond_loopback_is_refused_without_insecure_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("bus.sock");
    for addr in ["0.0.0.0:0", "tcp://[::]:0"] {
        let o = run(&["serve", sock.to_str().unwrap(), "--tcp", addr]);
        assert_eq!(o.status.code(), Some(2), "{addr}: {}", stderr(&o));
        assert!(stderr(&o).contains("--insecure-plaintext"), "{}", stderr(&o));
        assert!(!sock.exists(), "nothing was served");
    }
}
