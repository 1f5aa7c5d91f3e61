//! Real `nats-server` processes on loopback ports, one set per test.

#![allow(dead_code, unreachable_pub)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use microsocket_nats::{Bridge, BridgeConfig, NatsOptions};
use microsocket_tokio::{handler_fn, Failure, Reply, Request, Server};

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One `nats-server`, killed when dropped.
pub struct Nats {
    pub port: u16,
    pub cluster_port: u16,
    routes: Vec<u16>,
    config: Option<(tempfile::TempDir, std::path::PathBuf)>,
    child: Option<Child>,
}

impl Nats {
    /// A lone server.
    pub fn start() -> Nats {
        Nats::node(&[])
    }

    /// A server in a cluster, routed to the cluster ports given.
    pub fn node(routes: &[u16]) -> Nats {
        Nats::configured(routes, None)
    }

    /// A lone server with these lines in its configuration file.
    pub fn with_config(text: &str) -> Nats {
        Nats::configured(&[], Some(text))
    }

    fn configured(routes: &[u16], config: Option<&str>) -> Nats {
        let config = config.map(|text| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("nats.conf");
            std::fs::write(&path, text).unwrap();
            (dir, path)
        });
        let mut nats = Nats {
            port: 0,
            cluster_port: 0,
            routes: routes.to_vec(),
            config,
            child: None,
        };
        // A port found free may be taken before the server binds it (by
        // another test's server, or as the local port of a connection):
        // then the server exits, and fresh ports are tried.
        for _ in 0..5 {
            (nats.port, nats.cluster_port) = (free_port(), free_port());
            if nats.launch() {
                return nats;
            }
        }
        panic!("nats-server did not start on five pairs of free ports");
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server (as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same ports.
    pub fn restart(&mut self) {
        assert!(self.launch(), "nats-server did not start again on port {}", self.port);
    }

    /// Starts it on its ports; returns whether it listens (false if it exited
    /// or did not listen within 10 s).
    fn launch(&mut self) -> bool {
        self.kill();
        let mut command = Command::new("nats-server");
        command
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["--cluster_name", "microsocket-test"])
            .args(["--cluster", &format!("nats://127.0.0.1:{}", self.cluster_port)])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((_, path)) = &self.config {
            command.arg("-c").arg(path);
        }
        if !self.routes.is_empty() {
            let routes: Vec<String> = self.routes.iter().map(|p| format!("nats://127.0.0.1:{p}")).collect();
            command.args(["--routes", &routes.join(",")]);
        }
        let child = self
            .child
            .insert(command.spawn().expect("nats-server runs (Debian package nats-server)"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline || child.try_wait().is_ok_and(|exited| exited.is_some()) {
                self.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A bus answering `PING` and `ECHO`, bridged with `config`.
pub async fn bus(url: &str, config: BridgeConfig) -> (Server<impl microsocket_tokio::Handler>, Bridge) {
    let mut bridge = Bridge::connect(&NatsOptions::new(url), config).await.unwrap();
    assert!(
        bridge.wait_connected(Duration::from_secs(10)).await,
        "bridge connects to NATS"
    );
    let app = handler_fn(|request: Request| async move {
        match &request.command[..] {
            b"PING" => Ok(Reply::one("PONG")),
            b"ECHO" => Ok(request.args.into()),
            b"SLEEP" => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok(Reply::empty())
            }
            _ => Err(Failure::new("no such command").with_detail(request.command.clone())),
        }
    });
    let server = Server::new(microsocket_nats::Forwarding::new(bridge.remote(), app));
    bridge.attach_server(&server).await.unwrap();
    (server, bridge)
}

/// Polls `check` every 20 ms for up to 10 s.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
