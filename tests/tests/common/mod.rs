//! Shared pieces of the cross-crate tests: the same application served by the
//! std and the Tokio server, harnesses that start either on a UNIX socket in a
//! temporary directory, time limits, and a hand-written frame codec that reads
//! and writes raw bytes the way an IPC::MicroSocket 0.03 peer does (independent
//! of `microsocket-core`, so byte-exact checks compare two implementations).

#![allow(dead_code)]

use std::future::Future;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use std::time::Instant;

use microsocket_std::{Request as StdRequest, RequestContext as StdContext, Responder, SubscriptionKind};
use microsocket_tokio::{Failure, Reply, Request as TokioRequest, RequestContext as TokioContext};

/// The time limit of one whole test.
pub(crate) const LIMIT: Duration = Duration::from_secs(30);
/// How long to wait for something that should happen promptly.
pub(crate) const STEP: Duration = Duration::from_secs(10);
/// How long to wait to be fairly sure something does not happen.
pub(crate) const QUIET: Duration = Duration::from_millis(150);

// ---------------------------------------------------------------------------
// Time limits
// ---------------------------------------------------------------------------

/// Runs `f` on its own thread and fails the test if it takes longer than
/// `limit`; a panic in `f` is the test's panic.
pub(crate) fn bounded<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(value) => {
            let _ = thread.join();
            value
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("test did not finish within {limit:?}"),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match thread.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the thread sends before it ends"),
        },
    }
}

/// Polls `cond` until it holds; fails the test after [`STEP`].
pub(crate) fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + STEP;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {STEP:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Awaits `f` for at most `limit`.
pub(crate) async fn within<T>(limit: Duration, what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: nothing within {limit:?}"),
    }
}

/// User plus system CPU time of every thread of process `pid`.
pub(crate) fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces): state is field 3,
    // utime 14, stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let hz = rustix::param::clock_ticks_per_second();
    Duration::from_millis(ticks * 1000 / hz)
}

// ---------------------------------------------------------------------------
// Argument sets
// ---------------------------------------------------------------------------

/// `n` arguments: every third empty, the others binary (every byte value
/// occurs), of assorted lengths.
pub(crate) fn assorted_args(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            if i % 3 == 0 {
                Vec::new()
            } else {
                (0..=255u8).cycle().skip(i).take(i * 7 % 600 + 1).collect()
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The application, once per server kind
// ---------------------------------------------------------------------------
//
// Commands (the same on both servers):
//   PING                -> "PONG"
//   ECHO args...        -> args...
//   COUNT args...       -> number of args
//   FAIL msg details... -> failure (msg, details...)
//   HOLD value          -> parked; answered with `value` by a later RELEASE
//   RELEASE             -> answers every parked HOLD, newest first; -> how many
//   PUBLISH topic v...  -> publishes; -> how many connections it was queued for
//   BIG n               -> one value of n bytes
//   PID                 -> the server's process id
//   WHO                 -> the peer's pid and uid (from the peer credentials)
//   anything else       -> failure "no such" (the example in PROTOCOL.md)

fn num(arg: Option<&[u8]>) -> usize {
    arg.and_then(|a| std::str::from_utf8(a).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The application of the std server.
#[derive(Debug, Default)]
pub(crate) struct StdApp {
    publisher: OnceLock<microsocket_std::Publisher>,
    parked: Mutex<Vec<(Responder, Vec<u8>)>>,
    /// What the handler's observers saw (see [`observed`]).
    pub(crate) observed: Mutex<Vec<String>>,
}

impl StdApp {
    /// How many HOLD requests wait.
    pub(crate) fn parked(&self) -> usize {
        self.parked.lock().unwrap().len()
    }

    /// Answers every HOLD request (as RELEASE does); returns how many.
    pub(crate) fn release(&self) -> usize {
        let parked = std::mem::take(&mut *self.parked.lock().unwrap());
        let n = parked.len();
        for (r, value) in parked.into_iter().rev() {
            let _ = r.respond([value]);
        }
        n
    }
}

/// [`StdApp`] shared with the test (the server takes its handler by value).
#[derive(Debug, Clone, Default)]
pub(crate) struct StdHandler(pub(crate) Arc<StdApp>);

impl microsocket_std::Handler for StdHandler {
    fn handle(&self, request: StdRequest<'_>, responder: Responder) {
        let app = &self.0;
        let mut args = request.args.clone();
        let _ = match request.command {
            b"PING" => responder.respond(["PONG"]),
            b"ECHO" => responder.respond(request.args),
            b"COUNT" => responder.respond([request.args.count().to_string()]),
            b"FAIL" => {
                let message = args.next().unwrap_or_default();
                responder.fail(message, args)
            }
            b"HOLD" => {
                let value = args.next().unwrap_or_default().to_vec();
                app.parked.lock().unwrap().push((responder, value));
                Ok(())
            }
            b"RELEASE" => responder.respond([app.release().to_string()]),
            b"PUBLISH" => {
                let topic = args.next().unwrap_or_default();
                let n = app.publisher.get().map_or(0, |p| p.publish(topic, args).unwrap_or(0));
                responder.respond([n.to_string()])
            }
            b"BIG" => responder.respond([vec![b'x'; num(args.next())]]),
            b"PID" => responder.respond([std::process::id().to_string()]),
            b"PANIC" => panic!("the test asked this handler to panic"),
            b"WHO" => {
                let peer = request.context.peer;
                responder.respond([
                    peer.map_or(String::new(), |p| p.pid.to_string()),
                    peer.map_or(String::new(), |p| p.uid.to_string()),
                ])
            }
            _ => responder.fail("no such", [b""; 0]),
        };
    }

    fn authorize_subscription(&self, _context: &StdContext, _kind: SubscriptionKind, topic: &[u8]) -> bool {
        !topic.starts_with(b"secret")
    }

    fn subscription_changed(&self, _context: &StdContext, change: microsocket_std::SubscriptionChange<'_>) {
        self.0.observed.lock().unwrap().push(observed(change));
    }

    fn connected(&self, _context: &StdContext) {
        self.0.observed.lock().unwrap().push("connected".into());
    }

    fn disconnected(&self, _context: &StdContext) {
        self.0.observed.lock().unwrap().push("disconnected".into());
    }
}

/// One observed subscription change as text: `+topic`, `*pattern`, `-topic`.
fn observed(change: microsocket_host::SubscriptionChange<'_>) -> String {
    use microsocket_host::SubscriptionChange::{Subscribed, Unsubscribed};
    let (sign, topic) = match change {
        Subscribed {
            kind: SubscriptionKind::Exact,
            topic,
        } => ('+', topic),
        Subscribed { topic, .. } => ('*', topic),
        Unsubscribed { topic } => ('-', topic),
    };
    format!("{sign}{}", String::from_utf8_lossy(topic))
}

/// The application of the Tokio server.
#[derive(Debug, Default)]
pub(crate) struct TokioApp {
    publisher: OnceLock<microsocket_tokio::Publisher>,
    parked: Mutex<Vec<tokio::sync::oneshot::Sender<()>>>,
    /// What the handler's observers saw (see [`observed`]).
    pub(crate) observed: Mutex<Vec<String>>,
}

impl TokioApp {
    /// How many HOLD requests wait.
    pub(crate) fn parked(&self) -> usize {
        self.parked.lock().unwrap().len()
    }

    /// Answers every HOLD request (as RELEASE does); returns how many.
    pub(crate) fn release(&self) -> usize {
        let parked = std::mem::take(&mut *self.parked.lock().unwrap());
        let n = parked.len();
        for tx in parked.into_iter().rev() {
            let _ = tx.send(());
        }
        n
    }
}

impl microsocket_tokio::Handler for TokioApp {
    async fn call(&self, request: TokioRequest) -> Result<Reply, Failure> {
        let args = request.args.to_vec();
        let arg = |i: usize| args.get(i).map(|b| &b[..]);
        match &request.command[..] {
            b"PING" => Ok(Reply::one("PONG")),
            b"ECHO" => Ok(request.args.into()),
            b"COUNT" => Ok(Reply::one(args.len().to_string())),
            b"FAIL" => Err(Failure {
                message: args.first().cloned().unwrap_or_default(),
                details: args.iter().skip(1).cloned().collect(),
            }),
            b"HOLD" => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                self.parked.lock().unwrap().push(tx);
                rx.await.map_err(|_| Failure::new("released without an answer"))?;
                Ok(Reply::one(args.first().cloned().unwrap_or_default()))
            }
            b"RELEASE" => Ok(Reply::one(self.release().to_string())),
            b"PUBLISH" => {
                let topic = arg(0).unwrap_or_default();
                let values: Vec<&[u8]> = args.iter().skip(1).map(|b| &b[..]).collect();
                let n = self
                    .publisher
                    .get()
                    .map_or(0, |p| p.publish(topic, &values).unwrap_or(0));
                Ok(Reply::one(n.to_string()))
            }
            b"BIG" => Ok(Reply::one(vec![b'x'; num(arg(0))])),
            b"PID" => Ok(Reply::one(std::process::id().to_string())),
            b"PANIC" => panic!("the test asked this handler to panic"),
            b"WHO" => {
                let peer = request.context.peer;
                Ok(Reply::values([
                    peer.map_or(String::new(), |p| p.pid.to_string()),
                    peer.map_or(String::new(), |p| p.uid.to_string()),
                ]))
            }
            _ => Err(Failure::new("no such")),
        }
    }

    fn authorize_subscription(&self, _context: &TokioContext, _kind: SubscriptionKind, topic: &[u8]) -> bool {
        !topic.starts_with(b"secret")
    }

    fn subscription_changed(&self, _context: &TokioContext, change: microsocket_tokio::SubscriptionChange<'_>) {
        self.observed.lock().unwrap().push(observed(change));
    }

    fn connected(&self, _context: &TokioContext) {
        self.observed.lock().unwrap().push("connected".into());
    }

    fn disconnected(&self, _context: &TokioContext) {
        self.observed.lock().unwrap().push("disconnected".into());
    }
}

// ---------------------------------------------------------------------------
// Server harnesses
// ---------------------------------------------------------------------------

/// A std server on a UNIX socket in a temporary directory.
#[derive(Debug)]
pub(crate) struct StdServer {
    pub(crate) app: Arc<StdApp>,
    pub(crate) publisher: microsocket_std::Publisher,
    pub(crate) path: PathBuf,
    running: Option<microsocket_std::RunningServer>,
    _dir: Option<tempfile::TempDir>,
}

impl StdServer {
    /// Starts one with `config` in a new temporary directory.
    pub(crate) fn start(config: microsocket_std::ServerConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Self::start_at(&dir.path().join("std.sock"), config);
        server._dir = Some(dir);
        server
    }

    /// Starts one with `config` at `path`.
    pub(crate) fn start_at(path: &Path, config: microsocket_std::ServerConfig) -> Self {
        let handler = StdHandler::default();
        let app = handler.0.clone();
        let server = microsocket_std::Server::bind_unix(path, handler, config).unwrap();
        let publisher = server.publisher();
        app.publisher.set(publisher.clone()).unwrap();
        Self {
            app,
            publisher,
            path: path.to_path_buf(),
            running: Some(server.spawn().unwrap()),
            _dir: None,
        }
    }

    /// Stops it gracefully (waits up to its drain timeout).
    pub(crate) fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop().unwrap();
        }
    }
}

impl Drop for StdServer {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown_handle().shutdown();
            let _ = running.stop();
        }
    }
}

/// Settings of a std server for tests: short drain timeout.
pub(crate) fn std_config() -> microsocket_std::ServerConfig {
    {
        let mut config = microsocket_std::ServerConfig::default();
        config.shutdown_timeout = Duration::from_millis(300);
        config
    }
}

/// Settings of a Tokio server for tests: short shutdown timeout.
pub(crate) fn tokio_config() -> microsocket_tokio::ServerConfig {
    microsocket_tokio::ServerConfig::default().shutdown_timeout(Duration::from_millis(300))
}

/// A Tokio server with its own runtime (so blocking std clients can use it from
/// plain threads), on a UNIX socket in a temporary directory.
#[derive(Debug)]
pub(crate) struct TokioServer {
    pub(crate) server: microsocket_tokio::Server<TokioApp>,
    pub(crate) path: PathBuf,
    rt: Option<tokio::runtime::Runtime>,
    _dir: Option<tempfile::TempDir>,
}

impl TokioServer {
    /// Starts one with `config` in a new temporary directory.
    pub(crate) fn start(config: microsocket_tokio::ServerConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Self::start_at(&dir.path().join("tokio.sock"), config);
        server._dir = Some(dir);
        server
    }

    /// Starts one with `config` at `path`.
    pub(crate) fn start_at(path: &Path, config: microsocket_tokio::ServerConfig) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = tokio_server(config);
        {
            let _entered = rt.enter();
            server.listen_unix(path).unwrap();
        }
        Self {
            server,
            path: path.to_path_buf(),
            rt: Some(rt),
            _dir: None,
        }
    }

    /// The application.
    pub(crate) fn app(&self) -> &TokioApp {
        self.server.handler()
    }

    /// Shuts it down gracefully (waits up to its shutdown timeout).
    pub(crate) fn stop(&mut self) {
        if let Some(rt) = &self.rt {
            rt.block_on(self.server.shutdown());
        }
    }
}

impl Drop for TokioServer {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            let server = self.server.clone();
            let _ = rt.block_on(async move { tokio::time::timeout(STEP, server.shutdown()).await });
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// A Tokio server over [`TokioApp`], not yet listening.
pub(crate) fn tokio_server(config: microsocket_tokio::ServerConfig) -> microsocket_tokio::Server<TokioApp> {
    let server = microsocket_tokio::Server::with_config(TokioApp::default(), config);
    server.handler().publisher.set(server.publisher()).unwrap();
    server
}

// ---------------------------------------------------------------------------
// Raw frames, written and read by hand
// ---------------------------------------------------------------------------

/// One frame: sigil, argc, then each argument as a u32 BE length and its bytes.
pub(crate) fn frame(sigil: u8, args: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![sigil, u8::try_from(args.len()).unwrap()];
    for a in args {
        out.extend_from_slice(&u32::try_from(a.len()).unwrap().to_be_bytes());
        out.extend_from_slice(a);
    }
    out
}

/// A frame read off the wire, with the bytes it was made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawFrame {
    pub(crate) sigil: u8,
    pub(crate) args: Vec<Bytes>,
    pub(crate) bytes: Vec<u8>,
}

/// Reads one frame; `None` on EOF at a frame boundary. Arguments over 64 MiB are
/// refused (a test peer need not accept more).
pub(crate) fn read_frame(r: &mut impl Read) -> io::Result<Option<RawFrame>> {
    let mut head = [0u8; 2];
    match r.read_exact(&mut head[..1]) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    r.read_exact(&mut head[1..])?;
    let mut bytes = head.to_vec();
    let mut args = Vec::with_capacity(usize::from(head[1]));
    for _ in 0..head[1] {
        let mut len = [0u8; 4];
        r.read_exact(&mut len)?;
        let n = u32::from_be_bytes(len) as usize;
        if n > 64 << 20 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "argument too large for a test peer",
            ));
        }
        let mut arg = vec![0; n];
        r.read_exact(&mut arg)?;
        bytes.extend_from_slice(&len);
        bytes.extend_from_slice(&arg);
        args.push(Bytes::from(arg));
    }
    Ok(Some(RawFrame {
        sigil: head[0],
        args,
        bytes,
    }))
}

/// Writes one frame.
pub(crate) fn write_frame(w: &mut impl Write, sigil: u8, args: &[&[u8]]) -> io::Result<()> {
    w.write_all(&frame(sigil, args))
}
