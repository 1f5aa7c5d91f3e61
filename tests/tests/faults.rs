//! Faults and load, on both servers (std and Tokio) and both clients: a server
//! killed with SIGKILL in the middle of traffic, clients killed in the middle of
//! a frame or of a request, a server out of file descriptors, and shutdown
//! under load.
//!
//! Servers whose file descriptors, memory or CPU time are measured, and every
//! process that gets killed, run as child processes: this test binary runs
//! itself again (the `child_process` test, which does nothing unless the parent
//! sets [`ROLE`]). Measurements come from `/proc/<pid>` of the child.
//!
//! ```text
//! cargo test -p microsocket-tests --test faults -- --nocapture
//! ```
//!
//! prints the measured figures (`faults:` lines on stderr). The whole file
//! takes about 7 s.
//!
//! What the tests show, for each server (and each client where it applies):
//!
//! - `*_server_killed`: a server killed with SIGKILL fails every request in
//!   flight and ends every subscription with `Closed` within [`PROMPT`]; a
//!   Tokio client with a `ReconnectPolicy` says `Reconnecting` on its
//!   subscriptions, fails requests at once while no server listens, and
//!   reconnects and subscribes again when a new server comes up on the path.
//! - `*_server_frees_killed_clients`: clients killed in the middle of a frame or
//!   while their request's handler runs leave nothing behind: open connections,
//!   handlers and file descriptors return to where they were, resident memory
//!   within [`RSS_SLACK_KIB`].
//! - `*_server_out_of_descriptors`: out of descriptors, the accept loop backs
//!   off (little CPU), serves the connections it has, does not exit, and
//!   accepts the waiting connections once descriptors are freed.
//! - `*_server_shutdown_under_load`: every request accepted before shutdown
//!   began (its handler started) is answered; the others are answered or fail
//!   with `Closed`.

mod common;

use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::{bounded, cpu_time, frame, wait_until, within, LIMIT, STEP};

/// What the re-executed binary does: `std` or `tokio` (a server), `half-frame`
/// or `mid-request` (a client that waits to be killed).
const ROLE: &str = "MICROSOCKET_FAULTS_ROLE";
/// Where the server listens.
const SOCKET: &str = "MICROSOCKET_FAULTS_SOCKET";
/// A server's `RLIMIT_NOFILE`, if set.
const NOFILE: &str = "MICROSOCKET_FAULTS_NOFILE";
/// If set, a server publishes `tick` (its pid and a counter) every 2 ms.
const TICK: &str = "MICROSOCKET_FAULTS_TICK";

const NONE: [&[u8]; 0] = [];

/// How promptly every waiter must fail once its server is killed.
const PROMPT: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------
// The application, on both servers
// ---------------------------------------------------------------------------
//
//   PING           -> "PONG"
//   STATS          -> open connections (the server's counter), handlers running
//   SLEEP ms id    -> `id` after `ms` milliseconds, waiting in the handler (on
//                     the std server that is the connection's reader thread)
//   LATER ms id    -> the same, answered from another thread (std) or task

/// State the handlers of both servers share with the test (in process) or with
/// the `STATS` command (in a child process).
#[derive(Default)]
struct App {
    /// SLEEP and LATER handlers started and not finished.
    running: AtomicUsize,
    /// SLEEP and LATER handlers started in all.
    started: AtomicU64,
    /// The server's counters of open and accepted connections.
    connections: OnceLock<Box<dyn Fn() -> (u64, u64) + Send + Sync>>,
    /// Set by the test just before shutdown begins.
    begun: AtomicBool,
    /// Ids of the requests whose handler started before `begun` was set.
    accepted: Mutex<Vec<u64>>,
}

impl App {
    fn start(&self, id: &[u8]) {
        self.running.fetch_add(1, Ordering::SeqCst);
        self.started.fetch_add(1, Ordering::SeqCst);
        if !self.begun.load(Ordering::SeqCst) {
            self.accepted.lock().unwrap().push(num(id));
        }
    }

    fn stats(&self) -> [String; 4] {
        let (open, accepted) = self.connections.get().map_or((0, 0), |f| f());
        [
            open.to_string(),
            self.running.load(Ordering::SeqCst).to_string(),
            self.started.load(Ordering::SeqCst).to_string(),
            accepted.to_string(),
        ]
    }
}

fn num(arg: &[u8]) -> u64 {
    std::str::from_utf8(arg).ok().and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Counts a handler as finished when dropped (a Tokio handler's future may be
/// dropped unfinished).
struct Running(Arc<App>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

struct StdFaults(Arc<App>);

impl microsocket_std::Handler for StdFaults {
    fn handle(&self, request: microsocket_std::Request<'_>, responder: microsocket_std::Responder) {
        let mut args = request.args.clone();
        let _ = match request.command {
            b"PING" => responder.respond(["PONG"]),
            b"STATS" => responder.respond(self.0.stats()),
            command @ (b"SLEEP" | b"LATER") => {
                let ms = num(args.next().unwrap_or_default());
                let id = args.next().unwrap_or_default().to_vec();
                self.0.start(&id);
                let running = Running(self.0.clone());
                let answer = move || {
                    std::thread::sleep(Duration::from_millis(ms));
                    let r = responder.respond([id]);
                    drop(running);
                    r
                };
                if command == b"SLEEP" {
                    answer()
                } else {
                    std::thread::spawn(answer);
                    Ok(())
                }
            }
            _ => responder.fail("no such", NONE),
        };
    }
}

struct TokioFaults(Arc<App>);

impl microsocket_tokio::Handler for TokioFaults {
    async fn call(
        &self,
        request: microsocket_tokio::Request,
    ) -> Result<microsocket_tokio::Reply, microsocket_tokio::Failure> {
        use microsocket_tokio::{Failure, Reply};
        let args = request.args.to_vec();
        match &request.command[..] {
            b"PING" => Ok(Reply::one("PONG")),
            b"STATS" => Ok(Reply::values(self.0.stats())),
            b"SLEEP" | b"LATER" => {
                let ms = args.first().map_or(0, |a| num(a));
                let id = args.get(1).cloned().unwrap_or_default();
                self.0.start(&id);
                let _running = Running(self.0.clone());
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(Reply::one(id))
            }
            _ => Err(Failure::new("no such")),
        }
    }
}

fn std_server(
    path: &Path,
    app: &Arc<App>,
    config: microsocket_std::ServerConfig,
) -> microsocket_std::Server<StdFaults> {
    let server = microsocket_std::Server::bind_unix(path, StdFaults(app.clone()), config).unwrap();
    let publisher = server.publisher();
    let _ = app.connections.set(Box::new(move || {
        let stats = publisher.stats();
        (stats.connections, stats.connections_accepted)
    }));
    server
}

/// Must be called within a Tokio runtime.
fn tokio_server(
    path: &Path,
    app: &Arc<App>,
    config: microsocket_tokio::ServerConfig,
) -> microsocket_tokio::Server<TokioFaults> {
    let server = microsocket_tokio::Server::with_config(TokioFaults(app.clone()), config);
    let counted = server.clone();
    let _ = app.connections.set(Box::new(move || {
        let stats = counted.stats();
        (stats.connections, stats.connections_accepted)
    }));
    server.listen_unix(path).unwrap();
    server
}

// ---------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------

/// Not a test of its own: a server or client process, run by the tests below
/// (it lives 60 s at most, should the parent vanish).
#[test]
fn child_process() {
    let (Ok(role), Ok(path)) = (std::env::var(ROLE), std::env::var(SOCKET)) else {
        return;
    };
    let path = PathBuf::from(path);
    match role.as_str() {
        "std" | "tokio" => run_server(&role, &path),
        "half-frame" | "mid-request" => run_client(&role, &path),
        other => panic!("unknown role {other}"),
    }
}

fn run_server(kind: &str, path: &Path) {
    if let Some(n) = std::env::var(NOFILE).ok().and_then(|n| n.parse().ok()) {
        use rustix::process::{setrlimit, Resource, Rlimit};
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(n),
                maximum: Some(n),
            },
        )
        .unwrap();
    }
    let tick = std::env::var(TICK).is_ok();
    let pid = std::process::id().to_string();
    let until = Instant::now() + Duration::from_secs(60);
    let app = Arc::new(App::default());
    if kind == "std" {
        let server = std_server(path, &app, microsocket_std::ServerConfig::default());
        let publisher = server.publisher();
        let _running = server.spawn().unwrap();
        let mut n = 0u64;
        while Instant::now() < until {
            if tick {
                n += 1;
                let _ = publisher.publish("tick", [pid.clone(), n.to_string()]);
                std::thread::sleep(Duration::from_millis(2));
            } else {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    } else {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let server = tokio_server(path, &app, microsocket_tokio::ServerConfig::default());
            let mut n = 0u64;
            while Instant::now() < until {
                if tick {
                    n += 1;
                    let _ = server.publish("tick", [pid.clone(), n.to_string()]);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                } else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
    }
}

/// A client that writes half a request frame (`half-frame`) or a whole
/// `SLEEP 1000` request (`mid-request`), says `ready` on stdout and waits to be
/// killed.
fn run_client(role: &str, path: &Path) {
    let mut stream = UnixStream::connect(path).unwrap();
    let request = if role == "half-frame" {
        let whole = frame(b'(', &[b"t", b"PING", &[7u8; 1000]]);
        whole[..whole.len() / 2].to_vec()
    } else {
        frame(b'(', &[b"t", b"SLEEP", b"1000", b"1"])
    };
    stream.write_all(&request).unwrap();
    println!("ready");
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

/// A child process of this test binary, killed (SIGKILL) and reaped on drop.
struct Proc {
    child: Child,
    stdout: Option<BufReader<ChildStdout>>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn spawn(role: &str, path: &Path, env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args(["--exact", "child_process", "--nocapture", "--test-threads=1"])
            .env(ROLE, role)
            .env(SOCKET, path)
            .stdout(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().map(BufReader::new);
        Self { child, stdout }
    }

    /// Starts a `kind` server at `path`; returns once it accepts connections.
    fn server(kind: &str, path: &Path, env: &[(&str, &str)]) -> Self {
        let process = Self::spawn(kind, path, env);
        let deadline = Instant::now() + STEP;
        while UnixStream::connect(path).is_err() {
            assert!(Instant::now() < deadline, "server process did not start");
            std::thread::sleep(Duration::from_millis(5));
        }
        process
    }

    /// Waits for the line a client child prints once it has written.
    fn ready(&mut self) {
        let mut line = String::new();
        self.stdout.as_mut().unwrap().read_line(&mut line).unwrap();
        // libtest prints its own lines first.
        while !line.contains("ready") {
            line.clear();
            assert!(
                self.stdout.as_mut().unwrap().read_line(&mut line).unwrap() > 0,
                "client child ended"
            );
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, then reap.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        let _ = self.child.wait();
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

// ---------------------------------------------------------------------------
// What /proc says about a process
// ---------------------------------------------------------------------------

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The `STATS` of a server: open connections, handlers running.
fn stats(client: &microsocket_std::Client) -> (u64, u64) {
    let v = client.request("STATS", NONE).unwrap();
    (num(&v[0]), num(&v[1]))
}

/// The `STATS` of a server: handlers started and connections accepted, in all.
fn totals(client: &microsocket_std::Client) -> (u64, u64) {
    let v = client.request("STATS", NONE).unwrap();
    (num(&v[2]), num(&v[3]))
}

// ---------------------------------------------------------------------------
// 1. A server killed in the middle of traffic
// ---------------------------------------------------------------------------

/// The std client, a `kind` server process killed with SIGKILL while four
/// threads send requests back to back, four requests wait in the handler and a
/// subscription receives a publication every 2 ms: every waiter fails with
/// [`microsocket_std::Error::Closed`] within [`PROMPT`] of the kill.
fn std_client_sees_server_killed(kind: &'static str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("killed.sock");
    let mut server = Proc::server(kind, &path, &[(TICK, "1")]);
    bounded(LIMIT, move || {
        use microsocket_std::Error;
        let client = microsocket_std::Client::connect_unix(&path).unwrap();
        let mut sub = client.subscribe("tick").unwrap();
        sub.recv_timeout(STEP).unwrap();
        let busy: Vec<_> = (0..4)
            .map(|_| {
                let client = client.clone();
                std::thread::spawn(move || loop {
                    if let Err(e) = client.request("PING", NONE) {
                        return (e, Instant::now());
                    }
                })
            })
            .collect();
        let held: Vec<_> = (0..4)
            .map(|i| {
                let client = client.clone();
                std::thread::spawn(move || {
                    let r = client.request("LATER", ["30000", &i.to_string()]);
                    (r, Instant::now())
                })
            })
            .collect();
        let received = Arc::new(AtomicU64::new(0));
        let receiver = std::thread::spawn({
            let received = received.clone();
            move || loop {
                match sub.recv() {
                    Ok(_) => received.fetch_add(1, Ordering::SeqCst),
                    Err(e) => return (e, Instant::now()),
                };
            }
        });
        wait_until("handlers holding requests", || stats(&client).1 == 4);
        wait_until("publications flowing", || received.load(Ordering::SeqCst) >= 5);
        let killed = Instant::now();
        server.kill();
        let mut slowest = Duration::ZERO;
        for h in busy {
            let (e, at) = h.join().unwrap();
            assert!(matches!(e, Error::Closed), "{e:?}");
            slowest = slowest.max(at - killed);
        }
        for h in held {
            let (r, at) = h.join().unwrap();
            assert!(matches!(r, Err(Error::Closed)), "{r:?}");
            slowest = slowest.max(at - killed);
        }
        let (e, at) = receiver.join().unwrap();
        assert!(matches!(e, Error::Closed), "{e:?}");
        slowest = slowest.max(at - killed);
        assert!(slowest < PROMPT, "waiters failed {slowest:?} after the kill");
        eprintln!("faults: std client, {kind} server killed: 9 waiters failed with Closed within {slowest:?}");
        assert!(matches!(client.request("PING", NONE), Err(Error::Closed)));
    });
}

#[test]
fn std_client_std_server_killed() {
    std_client_sees_server_killed("std");
}

#[test]
fn std_client_tokio_server_killed() {
    std_client_sees_server_killed("tokio");
}

/// The Tokio client: as [`std_client_sees_server_killed`], then a new server
/// comes up on the same path; a client with a [`microsocket_tokio::ReconnectPolicy`]
/// reconnects and subscribes again, and its subscription says
/// [`microsocket_tokio::Error::Reconnecting`] (publications may have been
/// missed) between the last publication of the old server and the first of the
/// new one. A client without a policy ends its subscription with `Closed`.
async fn tokio_client_sees_server_killed(kind: &str) {
    use microsocket_tokio::{Client, Error, ReconnectPolicy};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("killed.sock");
    let mut server = Proc::server(kind, &path, &[(TICK, "1")]);
    let first_pid = server.pid().to_string();
    within(LIMIT, "test", async {
        let policy = ReconnectPolicy {
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            max_attempts: None,
        };
        let client = Client::builder().reconnect(policy).connect_unix(&path).await.unwrap();
        let plain = Client::connect_unix(&path).await.unwrap();
        let mut sub = client.subscribe("tick").await.unwrap();
        let mut plain_sub = plain.subscribe("tick").await.unwrap();
        let first = within(STEP, "publication", sub.next()).await.unwrap().unwrap();
        assert_eq!(first.values().get(0).unwrap(), first_pid.as_bytes());

        let busy: Vec<_> = [&client, &plain]
            .into_iter()
            .flat_map(|c| [c.clone(), c.clone()])
            .map(|c| {
                tokio::spawn(async move {
                    loop {
                        if let Err(e) = c.request("PING", NONE).await {
                            return (e, Instant::now());
                        }
                    }
                })
            })
            .collect();
        let held: Vec<_> = (0..4)
            .map(|i| {
                let c = if i % 2 == 0 { client.clone() } else { plain.clone() };
                tokio::spawn(async move {
                    let r = c.request("LATER", ["30000", &i.to_string()]).await;
                    (r, Instant::now())
                })
            })
            .collect();
        // Items of both subscriptions, as they come, until the end of the
        // plain one and the first publication of a new server on the other.
        let watch = tokio::spawn(async move {
            let mut items = Vec::new();
            while let Some(item) = sub.next().await {
                let new_server = matches!(&item, Ok(p) if p.values().get(0).unwrap() != first_pid.as_bytes());
                items.push((item, Instant::now()));
                if new_server {
                    break;
                }
            }
            (items, sub)
        });
        let plain_watch = tokio::spawn(async move {
            let mut last = None;
            while let Some(item) = plain_sub.next().await {
                last = Some((item, Instant::now()));
            }
            last
        });
        loop {
            let v = client.request("STATS", NONE).await.unwrap();
            if num(&v.get(1).unwrap()) == 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }

        let killed = Instant::now();
        server.kill();
        let mut slowest = Duration::ZERO;
        for h in busy {
            let (e, at) = within(STEP, "busy requester", h).await.unwrap();
            // In flight when the server died: Closed. Sent by the reconnecting
            // client after it noticed: Reconnecting.
            assert!(matches!(e, Error::Closed | Error::Reconnecting), "{e:?}");
            slowest = slowest.max(at - killed);
        }
        for h in held {
            let (r, at) = within(STEP, "held request", h).await.unwrap();
            assert!(matches!(r, Err(Error::Closed)), "{r:?}");
            slowest = slowest.max(at - killed);
        }
        let (item, at) = within(STEP, "plain subscription", plain_watch).await.unwrap().unwrap();
        assert!(matches!(item, Err(Error::Closed)), "{item:?}");
        slowest = slowest.max(at - killed);
        assert!(slowest < PROMPT, "waiters failed {slowest:?} after the kill");
        assert!(matches!(plain.request("PING", NONE).await, Err(Error::Closed)));
        // While no server listens, the reconnecting client fails requests at
        // once, with the error that says it is reconnecting.
        assert!(!client.is_connected());
        assert!(matches!(client.request("PING", NONE).await, Err(Error::Reconnecting)));

        // A new server on the same path (the killed one left its socket file).
        tokio::time::sleep(Duration::from_millis(100)).await;
        let server = Proc::server(kind, &path, &[(TICK, "1")]);
        let restarted = Instant::now();
        let (items, _sub) = within(STEP, "resubscribed", watch).await.unwrap();
        let reconnected = restarted.elapsed();
        let reconnecting = items
            .iter()
            .position(|(i, _)| matches!(i, Err(Error::Reconnecting)))
            .expect("the subscription said it was reconnecting");
        let (_, said_at) = items[reconnecting];
        slowest = slowest.max(said_at - killed);
        for (i, (item, _)) in items.iter().enumerate() {
            match item {
                Ok(p) if i < reconnecting => {
                    assert_ne!(p.values().get(0).unwrap(), server.pid().to_string().as_bytes())
                }
                Ok(p) => {
                    assert_eq!(
                        i,
                        reconnecting + 1,
                        "nothing between Reconnecting and the new server's publications"
                    );
                    assert_eq!(p.values().get(0).unwrap(), server.pid().to_string().as_bytes());
                }
                Err(Error::Reconnecting) => assert_eq!(i, reconnecting, "said once"),
                Err(e) => panic!("unexpected item {e:?}"),
            }
        }
        assert!(client.is_connected());
        assert_eq!(client.request("PING", NONE).await.unwrap(), ["PONG"]);
        eprintln!(
            "faults: tokio client, {kind} server killed: 9 waiters failed with Closed and the \
             subscription said Reconnecting within {slowest:?}; publications again {reconnected:?} \
             after the new server accepted"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_client_std_server_killed() {
    tokio_client_sees_server_killed("std").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_client_tokio_server_killed() {
    tokio_client_sees_server_killed("tokio").await;
}

// ---------------------------------------------------------------------------
// 2. Clients killed in the middle of a frame and of a request
// ---------------------------------------------------------------------------

/// Clients killed per round, of each kind.
const BATCH: usize = 10;
/// Rounds measured (each kills `BATCH` clients of each kind).
const ROUNDS: usize = 10;
/// Rounds before the measured ones.
const WARM_UP: usize = 10;
/// How much the server's resident memory may grow over [`ROUNDS`] rounds.
const RSS_SLACK_KIB: u64 = 2048;

/// Starts `BATCH` clients of `role`, waits until the server has their
/// connections (and, for `mid-request`, runs their handlers), then kills them.
fn kill_batch(path: &Path, probe: &microsocket_std::Client, role: &str) {
    let (started, accepted) = totals(probe);
    let mut clients: Vec<Proc> = (0..BATCH).map(|_| Proc::spawn(role, path, &[])).collect();
    for c in &mut clients {
        c.ready();
    }
    let handlers = if role == "mid-request" { BATCH as u64 } else { 0 };
    wait_until("server has the clients", || {
        let (s, a) = totals(probe);
        s >= started + handlers && a >= accepted + BATCH as u64
    });
    // Let the readers take in the half frames.
    std::thread::sleep(Duration::from_millis(20));
    for c in &mut clients {
        c.kill();
    }
}

/// Waits until the server's counters and descriptors are back at `base`.
fn settle(pid: u32, probe: &microsocket_std::Client, base: (u64, u64), fds: usize) {
    wait_until("connections freed", || stats(probe) == base && open_fds(pid) == fds);
}

/// Kills 2 × [`BATCH`] × [`ROUNDS`] clients of a `kind` server process, half
/// with half a frame sent, half with a request whose handler is still running:
/// the server's open connections, running handlers and file descriptors return
/// exactly to where they were, and its resident memory within
/// [`RSS_SLACK_KIB`].
fn killed_clients_are_freed(kind: &'static str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clients.sock");
    let server = Proc::server(kind, &path, &[]);
    let pid = server.pid();
    bounded(Duration::from_secs(50), move || {
        let probe = microsocket_std::Client::connect_unix(&path).unwrap();
        // The probe's connection only (the start-up check's has gone).
        let base = (1, 0);
        wait_until("start-up connection freed", || stats(&probe) == base);
        // Warm up: the first clients leave cached thread stacks and allocator
        // arenas behind (they grow with the most connections at once, which
        // the rounds below repeat); then measure.
        for _ in 0..WARM_UP {
            kill_batch(&path, &probe, "half-frame");
            kill_batch(&path, &probe, "mid-request");
        }
        wait_until("warm-up freed", || stats(&probe) == base);
        std::thread::sleep(Duration::from_millis(100));
        let fds = open_fds(pid);
        let rss = rss_kib(pid);
        let started = Instant::now();
        for _ in 0..ROUNDS {
            kill_batch(&path, &probe, "half-frame");
            kill_batch(&path, &probe, "mid-request");
        }
        settle(pid, &probe, base, fds);
        let freed = started.elapsed();
        let rss_after = rss_kib(pid);
        eprintln!(
            "faults: {kind} server, {} clients killed in {freed:?}: fds {fds} -> {}, connections {} -> {}, \
             RSS {rss} KiB -> {rss_after} KiB",
            2 * BATCH * ROUNDS,
            open_fds(pid),
            base.0,
            stats(&probe).0,
        );
        assert!(
            rss_after <= rss + RSS_SLACK_KIB,
            "RSS grew from {rss} KiB to {rss_after} KiB"
        );
        drop(server);
    });
}

#[test]
fn std_server_frees_killed_clients() {
    killed_clients_are_freed("std");
}

#[test]
fn tokio_server_frees_killed_clients() {
    killed_clients_are_freed("tokio");
}

// ---------------------------------------------------------------------------
// 3. Out of file descriptors
// ---------------------------------------------------------------------------

/// The servers' `RLIMIT_NOFILE` in the test.
const FD_LIMIT: &str = "48";
/// Connections opened against it.
const FD_CLIENTS: usize = 80;
/// CPU time the server may use in [`FD_WATCH`] while out of descriptors.
const FD_CPU: Duration = Duration::from_millis(250);
/// How long the server is watched while out of descriptors.
const FD_WATCH: Duration = Duration::from_secs(2);

/// A raw connection that sent one `PING` and collects the bytes of its answer.
struct Raw {
    stream: UnixStream,
    got: Vec<u8>,
}

impl Raw {
    fn answered(&mut self) -> bool {
        let expected = frame(b')', &[b"t", b"PONG"]);
        let mut buf = [0u8; 64];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.got.extend_from_slice(&buf[..n]),
                Err(_) => break,
            }
        }
        assert!(expected.starts_with(&self.got), "unexpected answer {:?}", self.got);
        self.got == expected
    }
}

/// A `kind` server process with `RLIMIT_NOFILE` [`FD_LIMIT`] and
/// [`FD_CLIENTS`] connections: it serves those it has descriptors for; the
/// others wait in the listen backlog while the accept loop backs off (the
/// server's CPU time over [`FD_WATCH`] stays under [`FD_CPU`]) and keeps
/// serving the connections it has; it does not exit; as connections close it
/// accepts and serves the waiting ones.
fn out_of_descriptors(kind: &'static str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nofile.sock");
    let mut server = Proc::server(kind, &path, &[(NOFILE, FD_LIMIT)]);
    let pid = server.pid();
    bounded(LIMIT, move || {
        let keeper = microsocket_std::Client::connect_unix(&path).unwrap();
        assert_eq!(keeper.request("PING", NONE).unwrap(), ["PONG"]);
        let mut raws: Vec<Raw> = (0..FD_CLIENTS)
            .map(|_| {
                let mut stream = UnixStream::connect(&path).unwrap();
                stream.write_all(&frame(b'(', &[b"t", b"PING"])).unwrap();
                stream.set_nonblocking(true).unwrap();
                Raw {
                    stream,
                    got: Vec::new(),
                }
            })
            .collect();
        // Those the server has descriptors for are answered. The count must hold
        // still for 500 ms: a server briefly starved of CPU on a busy machine
        // may still be answering the connections it has.
        let (mut served, mut still) = (0, 0);
        wait_until("some answered", || {
            let now = raws.iter_mut().map(Raw::answered).filter(|a| *a).count();
            still = if now > 0 && now == served { still + 1 } else { 0 };
            served = now;
            let settled = still >= 5;
            if !settled {
                std::thread::sleep(Duration::from_millis(100));
            }
            settled
        });
        assert!(served < FD_CLIENTS, "the server ran out of descriptors");
        let before = cpu_time(pid);
        let watch = Instant::now();
        while watch.elapsed() < FD_WATCH {
            assert_eq!(keeper.request("PING", NONE).unwrap(), ["PONG"]);
            std::thread::sleep(Duration::from_millis(50));
        }
        let used = cpu_time(pid) - before;
        assert!(server.alive());
        assert_eq!(
            raws.iter_mut().map(Raw::answered).filter(|a| *a).count(),
            served,
            "no descriptor freed, nothing more served"
        );
        eprintln!(
            "faults: {kind} server with RLIMIT_NOFILE {FD_LIMIT}: {served} of {FD_CLIENTS} connections served, \
             the rest waiting; {used:?} CPU time in {FD_WATCH:?} while out of descriptors"
        );
        assert!(used < FD_CPU, "the server used {used:?} of CPU in {FD_WATCH:?}");
        // Closing served connections frees descriptors: the waiting ones are
        // accepted and answered.
        let recovering = Instant::now();
        wait_until("every waiting connection served", || {
            raws.retain_mut(|r| !r.answered());
            std::thread::sleep(Duration::from_millis(10));
            raws.is_empty()
        });
        eprintln!(
            "faults: {kind} server served the waiting connections {:?} after descriptors were freed",
            recovering.elapsed()
        );
        let late = microsocket_std::Client::connect_unix(&path).unwrap();
        assert_eq!(late.request("PING", NONE).unwrap(), ["PONG"]);
        assert_eq!(keeper.request("PING", NONE).unwrap(), ["PONG"]);
        assert!(server.alive());
        drop(server);
    });
}

#[test]
fn std_server_out_of_descriptors() {
    out_of_descriptors("std");
}

#[test]
fn tokio_server_out_of_descriptors() {
    out_of_descriptors("tokio");
}

// ---------------------------------------------------------------------------
// 4. Shutdown under load
// ---------------------------------------------------------------------------
//
// "Accepted" means: the server read the request's frame and started its
// handler before shutdown began. The test knows which requests those are: the
// handler notes its request's id if `App::begun` is still unset, and the test
// sets it just before it starts the shutdown.

/// Connections of each client kind sending requests during the shutdown tests.
const LOAD_CLIENTS: usize = 6;
/// Requests each keeps in flight (one thread or task each).
const LOAD_DEPTH: usize = 4;

/// How one request of the load ended.
#[derive(Debug)]
enum Outcome {
    /// Answered with its id.
    Answered,
    /// Failed with a connection error (its description).
    Refused(String),
}

/// The command and delay of load request `id`: delays 0 to 60 ms, in the
/// handler or answered later.
fn load_request(id: u64) -> (&'static str, String) {
    let command = if id.is_multiple_of(2) { "SLEEP" } else { "LATER" };
    (command, (id * 7 % 61).to_string())
}

/// One std client thread: requests until one fails; which client made them.
fn std_load(client: microsocket_std::Client, next: Arc<AtomicU64>) -> Vec<(u64, Outcome, &'static str)> {
    use microsocket_std::Error;
    let mut outcomes = Vec::new();
    loop {
        let id = next.fetch_add(1, Ordering::SeqCst);
        let (command, ms) = load_request(id);
        let outcome = match client.request(command, [ms, id.to_string()]) {
            Ok(v) => {
                assert_eq!(v, [id.to_string()]);
                Outcome::Answered
            }
            Err(e @ Error::Closed) => Outcome::Refused(e.to_string()),
            Err(Error::Io(e)) => Outcome::Refused(format!("{:?}", e.kind())),
            Err(e) => panic!("request {id}: {e:?}"),
        };
        let end = matches!(outcome, Outcome::Refused(_));
        outcomes.push((id, outcome, "std"));
        if end {
            return outcomes;
        }
    }
}

/// One Tokio client task: as [`std_load`].
async fn tokio_load(client: microsocket_tokio::Client, next: Arc<AtomicU64>) -> Vec<(u64, Outcome, &'static str)> {
    use microsocket_tokio::Error;
    let mut outcomes = Vec::new();
    loop {
        let id = next.fetch_add(1, Ordering::SeqCst);
        let (command, ms) = load_request(id);
        let outcome = match client.request(command, [ms, id.to_string()]).await {
            Ok(v) => {
                assert_eq!(v, [id.to_string()]);
                Outcome::Answered
            }
            Err(e @ Error::Closed) => Outcome::Refused(e.to_string()),
            Err(Error::Io(e)) => Outcome::Refused(format!("{:?}", e.kind())),
            Err(e) => panic!("request {id}: {e:?}"),
        };
        let end = matches!(outcome, Outcome::Refused(_));
        outcomes.push((id, outcome, "tokio"));
        if end {
            return outcomes;
        }
    }
}

/// Runs [`LOAD_CLIENTS`] std and as many Tokio client connections against the
/// server at `path`, [`LOAD_DEPTH`] requests in flight each, begins shutdown
/// with `shutdown` after 300 ms and checks that every request accepted before
/// it began was answered with its id, and every other one was answered too or
/// failed with a connection error.
async fn shutdown_under_load<F: Future<Output = ()>>(kind: &str, path: &Path, app: &App, shutdown: F) {
    let next = Arc::new(AtomicU64::new(1));
    let mut threads = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..LOAD_CLIENTS {
        let std_client = microsocket_std::Client::connect_unix(path).unwrap();
        let tokio_client = microsocket_tokio::Client::connect_unix(path).await.unwrap();
        for _ in 0..LOAD_DEPTH {
            let (client, counter) = (std_client.clone(), next.clone());
            threads.push(std::thread::spawn(move || std_load(client, counter)));
            tasks.push(tokio::spawn(tokio_load(tokio_client.clone(), next.clone())));
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.begun.store(true, Ordering::SeqCst);
    let began = Instant::now();
    shutdown.await;
    let took = began.elapsed();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.extend(within(STEP, "tokio load", t).await.unwrap());
    }
    for t in threads {
        let t = tokio::task::spawn_blocking(move || t.join().unwrap());
        outcomes.extend(within(STEP, "std load", t).await.unwrap());
    }

    let accepted = app.accepted.lock().unwrap().clone();
    let answered: std::collections::HashSet<u64> = outcomes
        .iter()
        .filter(|(_, o, _)| matches!(o, Outcome::Answered))
        .map(|(id, _, _)| *id)
        .collect();
    for id in &accepted {
        let outcome = outcomes.iter().find(|(i, _, _)| i == id);
        assert!(
            answered.contains(id),
            "request {id} was accepted before shutdown but ended {outcome:?}"
        );
    }
    let failed: std::collections::BTreeSet<(&str, &str)> = outcomes
        .iter()
        .filter_map(|(_, o, client)| match o {
            Outcome::Refused(e) => Some((*client, e.as_str())),
            Outcome::Answered => None,
        })
        .collect();
    assert!(accepted.len() > 2 * LOAD_CLIENTS, "load was running");
    assert_eq!(
        outcomes.len() - answered.len(),
        2 * LOAD_CLIENTS * LOAD_DEPTH,
        "every load thread and task ended with one failure"
    );
    assert!(!path.exists(), "socket file removed");
    assert!(microsocket_std::Client::connect_unix(path).is_err());
    assert!(microsocket_tokio::Client::connect_unix(path).await.is_err());
    eprintln!(
        "faults: {kind} server shutdown under load took {took:?}: {} requests accepted before it began, all \
         answered; {} answered in all; {} failed, with {failed:?}",
        accepted.len(),
        answered.len(),
        outcomes.len() - answered.len(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn std_server_shutdown_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("load.sock");
    let app = Arc::new(App::default());
    let config = {
        let mut config = microsocket_std::ServerConfig::default();
        config.shutdown_timeout = Duration::from_secs(5);
        config
    };
    let running = std_server(&path, &app, config).spawn().unwrap();
    let shutdown = async move {
        tokio::task::spawn_blocking(move || running.stop().unwrap())
            .await
            .unwrap();
    };
    within(LIMIT, "test", shutdown_under_load("std", &path, &app, shutdown)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_server_shutdown_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("load.sock");
    let app = Arc::new(App::default());
    let config = microsocket_tokio::ServerConfig::default().shutdown_timeout(Duration::from_secs(5));
    let server = tokio_server(&path, &app, config);
    let shutdown = async move { server.shutdown().await };
    within(LIMIT, "test", shutdown_under_load("tokio", &path, &app, shutdown)).await;
}
