//! Client and server in different processes, each with the other adapter: this
//! test binary runs itself again as the server (the `server_process` test, which
//! does nothing unless the parent sets [`ROLE`]). The std client talks to a Tokio
//! server process and the Tokio client to a std server process; killing the
//! server process ends every waiter with an error.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Which server the re-executed binary runs: `std` or `tokio`.
const ROLE: &str = "MICROSOCKET_INTEROP_SERVER";
/// Where it listens.
const SOCKET: &str = "MICROSOCKET_INTEROP_SOCKET";

const NONE: [&[u8]; 0] = [];

/// Not a test of its own: the server process, serving until killed (60 s at
/// most, should the parent vanish).
#[test]
fn server_process() {
    let (Ok(role), Ok(path)) = (std::env::var(ROLE), std::env::var(SOCKET)) else {
        return;
    };
    let path = Path::new(&path);
    match role.as_str() {
        "std" => {
            let _server = StdServer::start_at(path, std_config());
            std::thread::sleep(Duration::from_secs(60));
        }
        "tokio" => {
            let _server = TokioServer::start_at(path, tokio_config());
            std::thread::sleep(Duration::from_secs(60));
        }
        other => panic!("unknown role {other}"),
    }
}

struct ServerProcess(Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl ServerProcess {
    /// Starts this binary as a `role` server at `path`; returns once it accepts.
    fn spawn(role: &str, path: &Path) -> Self {
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "server_process", "--nocapture", "--test-threads=1"])
            .env(ROLE, role)
            .env(SOCKET, path)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let process = Self(child);
        let deadline = Instant::now() + STEP;
        while std::os::unix::net::UnixStream::connect(path).is_err() {
            assert!(Instant::now() < deadline, "server process did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        process
    }

    fn kill(&mut self) {
        self.0.kill().unwrap();
        let _ = self.0.wait();
    }
}

/// This process's user id: the owner of a directory it just created.
fn my_uid(dir: &Path) -> String {
    std::fs::metadata(dir).unwrap().uid().to_string()
}

#[test]
fn std_client_against_tokio_server_process() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("xproc.sock");
    let uid = my_uid(dir.path());
    let mut server = ServerProcess::spawn("tokio", &path);
    bounded(LIMIT, move || {
        let client = microsocket_std::Client::connect_unix(&path).unwrap();
        assert_eq!(client.request("PID", NONE).unwrap(), [server.0.id().to_string()]);
        // The server saw this process as its peer.
        assert_eq!(
            client.request("WHO", NONE).unwrap(),
            [std::process::id().to_string(), uid]
        );
        let args = assorted_args(200);
        assert_eq!(client.request("ECHO", &args).unwrap(), args);
        let mut sub = client.subscribe_pattern("x.>").unwrap();
        let other = microsocket_std::Client::connect_unix(&path).unwrap();
        assert_eq!(other.request("PUBLISH", ["x.y", "across"]).unwrap(), ["1"]);
        assert_eq!(sub.recv_timeout(STEP).unwrap().values(), ["across"]);

        let holders: Vec<_> = (0..4)
            .map(|i| {
                let client = client.clone();
                std::thread::spawn(move || client.request("HOLD", [i.to_string()]))
            })
            .collect();
        let receiver = std::thread::spawn(move || sub.recv());
        std::thread::sleep(Duration::from_millis(100));
        let killed = Instant::now();
        server.kill();
        for h in holders {
            assert!(matches!(h.join().unwrap(), Err(microsocket_std::Error::Closed)));
        }
        assert!(matches!(receiver.join().unwrap(), Err(microsocket_std::Error::Closed)));
        assert!(killed.elapsed() < STEP, "waiters woke promptly");
        assert!(matches!(
            client.request("PING", NONE),
            Err(microsocket_std::Error::Closed)
        ));
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_client_against_std_server_process() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("xproc.sock");
    let uid = my_uid(dir.path());
    let mut server = ServerProcess::spawn("std", &path);
    within(LIMIT, "test", async {
        let client = microsocket_tokio::Client::connect_unix(&path).await.unwrap();
        assert_eq!(client.request("PID", NONE).await.unwrap(), [server.0.id().to_string()]);
        assert_eq!(
            client.request("WHO", NONE).await.unwrap(),
            [std::process::id().to_string(), uid]
        );
        let args = assorted_args(200);
        assert_eq!(client.request("ECHO", &args).await.unwrap().to_vec(), args);
        let mut sub = client.subscribe_pattern("x.>").await.unwrap();
        let other = microsocket_tokio::Client::connect_unix(&path).await.unwrap();
        assert_eq!(other.request("PUBLISH", ["x.y", "across"]).await.unwrap(), ["1"]);
        let p = within(STEP, "publication", sub.next()).await.unwrap().unwrap();
        assert_eq!(*p.values(), ["across"]);

        let holds: Vec<_> = (0..4).map(|i| client.request("HOLD", [i.to_string()])).collect();
        client.request("PING", NONE).await.unwrap(); // the holds are parked by now
        server.kill();
        for h in holds {
            let r = within(STEP, "held request", h).await;
            assert!(matches!(r, Err(microsocket_tokio::Error::Closed)), "{r:?}");
        }
        let item = within(STEP, "subscription end", sub.next()).await;
        assert!(matches!(item, Some(Err(microsocket_tokio::Error::Closed))), "{item:?}");
        assert!(matches!(
            client.request("PING", NONE).await,
            Err(microsocket_tokio::Error::Closed)
        ));
    })
    .await;
}
