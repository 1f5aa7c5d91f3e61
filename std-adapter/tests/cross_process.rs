//! A server in another process (this test binary, re-executed): requests work
//! across processes, and when the server process dies every waiter wakes.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use microsocket_std::{Client, Error, ServerConfig};

const SERVER_ENV: &str = "MICROSOCKET_STD_TEST_SERVER";

/// Not a test of its own: the entry point of the re-executed server process.
#[test]
fn server_process_main() {
    let Ok(path) = std::env::var(SERVER_ENV) else {
        return;
    };
    let server = common::start_at(std::path::Path::new(&path), ServerConfig::default());
    // Serve until killed (bounded, should the parent vanish).
    std::thread::sleep(Duration::from_secs(60));
    drop(server);
}

struct ServerProcess(Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_server(path: &std::path::Path) -> ServerProcess {
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "server_process_main", "--nocapture", "--test-threads=1"])
        .env(SERVER_ENV, path)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(path).is_err() {
        assert!(Instant::now() < deadline, "server process did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    ServerProcess(child)
}

#[test]
fn requests_across_processes_and_waiters_wake_when_the_server_dies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("xproc.sock");
    let mut server = spawn_server(&path);
    common::bounded(Duration::from_secs(30), move || {
        let client = Client::connect_unix(&path).unwrap();
        let got = client.request("PID", [b""; 0]).unwrap();
        assert_eq!(
            got.str(0),
            Some(&*server.0.id().to_string()),
            "answered by another process"
        );
        // The server saw this process as its peer.
        let got = client.request("WHO", [b""; 0]).unwrap();
        assert_eq!(got.str(0), Some(&*std::process::id().to_string()));
        assert_eq!(client.request("ECHO", ["across"]).unwrap(), ["across"]);
        let mut sub = client.subscribe("t").unwrap();
        client.request("PUBLISH", ["t", "v"]).unwrap();
        assert_eq!(sub.recv_timeout(Duration::from_secs(10)).unwrap().values(), ["v"]);

        let waiters: Vec<_> = (0..8)
            .map(|_| {
                let client = client.clone();
                std::thread::spawn(move || client.request("HANG", [b""; 0]))
            })
            .collect();
        let recv = std::thread::spawn(move || sub.recv());
        std::thread::sleep(Duration::from_millis(200));
        server.0.kill().unwrap();
        let _ = server.0.wait();
        for w in waiters {
            assert!(matches!(w.join().unwrap(), Err(Error::Closed)));
        }
        assert!(matches!(recv.join().unwrap(), Err(Error::Closed)));
        assert!(matches!(client.request("ECHO", ["x"]), Err(Error::Closed)));
        // A killed server leaves a stale socket file, which the next server replaces.
        assert!(path.exists());
        let _again = spawn_server(&path);
        let client = Client::connect_unix(&path).unwrap();
        assert_eq!(client.request("ECHO", ["again"]).unwrap(), ["again"]);
    });
}
