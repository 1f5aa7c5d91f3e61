//! Client and server in different processes: this test binary runs itself again
//! as the server (the `child_server` test, active only with an environment
//! variable set).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use microsocket_tokio::{Client, Error, ServerConfig};

const SOCKET_VAR: &str = "MICROSOCKET_TOKIO_CHILD_SOCKET";

/// The server side: runs only when the parent test starts this binary with the
/// socket path in the environment; serves until killed (or 60 s at most).
#[test]
fn child_server() {
    let Ok(path) = std::env::var(SOCKET_VAR) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let server = app_server(ServerConfig::default());
        server.listen_unix(&path).unwrap();
        tokio::time::sleep(Duration::from_secs(60)).await;
        server.shutdown().await;
    });
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_server(path: &Path) -> KillOnDrop {
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_server", "--test-threads", "1", "--nocapture"])
        .env(SOCKET_VAR, path)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    KillOnDrop(child)
}

async fn connect_when_ready(path: &Path) -> Client {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Ok(c) = Client::connect_unix(path).await {
            return c;
        }
        assert!(Instant::now() < deadline, "child server never came up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn client_and_server_in_separate_processes() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.sock");
        let mut child = spawn_server(&path);
        let client = connect_when_ready(&path).await;
        assert_eq!(client.request("PING", [b""; 0]).await.unwrap(), [b"PONG"]);
        // The server sees this process's credentials.
        let who = strings(&client.request("WHO", [b""; 0]).await.unwrap());
        assert_eq!(who[1], std::process::id().to_string().into_bytes());
        // Publications across processes.
        let mut sub = client.subscribe_pattern("x.>").await.unwrap();
        let other = Client::connect_unix(&path).await.unwrap();
        assert_eq!(other.request("PUB", ["x.y", "1", "2"]).await.unwrap(), [b"1"]);
        let p = sub.next().await.unwrap().unwrap();
        assert_eq!(p.topic(), b"x.y");
        assert_eq!(*p.values(), [b"1", b"2"]);
        // The server process dies with a request in flight.
        let hung = client.request("HANG", [b""; 0]);
        client.request("PING", [b""; 0]).await.unwrap();
        child.0.kill().unwrap();
        let started = Instant::now();
        assert!(matches!(hung.await, Err(Error::Closed)));
        assert!(matches!(sub.next().await, Some(Err(Error::Closed))));
        assert!(sub.next().await.is_none());
        assert!(started.elapsed() < Duration::from_secs(2));
    })
    .await;
}
