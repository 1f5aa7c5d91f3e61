//! A test server whose commands exercise the adapter.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use microsocket_std::{
    Handler, Publisher, Request, RequestContext, Responder, RunningServer, Server, ServerConfig, SubscriptionKind,
};

/// Commands:
/// - `ECHO args...` answers the arguments;
/// - `SLEEP ms` answers `ms` from another thread after `ms` milliseconds;
/// - `FAIL msg details...` fails with them;
/// - `DROP` drops the responder;
/// - `HANG` keeps the responder forever (never answers);
/// - `PUBLISH topic values...` publishes, then answers;
/// - `BIG n` answers one value of `n` bytes;
/// - `WHO` answers the peer's pid and uid;
/// - `PID` answers the server's own pid.
///
/// Subscriptions to topics starting `secret` are refused.
#[derive(Default)]
pub struct TestHandler {
    pub publisher: Arc<OnceLock<Publisher>>,
    hung: Mutex<Vec<Responder>>,
}

fn num(arg: Option<&[u8]>) -> u64 {
    arg.and_then(|a| std::str::from_utf8(a).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

impl Handler for TestHandler {
    fn handle(&self, request: Request<'_>, responder: Responder) {
        let mut args = request.args.clone();
        match request.command {
            b"ECHO" => {
                let _ = responder.respond(request.args);
            }
            b"SLEEP" => {
                let ms = num(args.next());
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(ms));
                    let _ = responder.respond([ms.to_string()]);
                });
            }
            b"FAIL" => {
                let message = args.next().unwrap_or_default();
                let _ = responder.fail(message, args);
            }
            b"DROP" => drop(responder),
            b"HANG" => self.hung.lock().unwrap().push(responder),
            b"PUBLISH" => {
                let topic = args.next().unwrap_or_default();
                if let Some(p) = self.publisher.get() {
                    p.publish(topic, args).unwrap();
                }
                let _ = responder.respond([b""; 0]);
            }
            b"BIG" => {
                let n = num(args.next()) as usize;
                let _ = responder.respond([vec![b'x'; n]]);
            }
            b"PID" => {
                let _ = responder.respond([std::process::id().to_string()]);
            }
            b"WHO" => {
                let peer = request.context.peer;
                let _ = responder.respond([
                    peer.map_or(String::new(), |p| p.pid.to_string()),
                    peer.map_or(String::new(), |p| p.uid.to_string()),
                ]);
            }
            _ => {
                let _ = responder.fail("no such command", [request.command]);
            }
        }
    }

    fn authorize_subscription(&self, _context: &RequestContext, _kind: SubscriptionKind, topic: &[u8]) -> bool {
        !topic.starts_with(b"secret")
    }
}

pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub running: Option<RunningServer>,
    pub publisher: Publisher,
}

pub fn start(config: ServerConfig) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.sock");
    let mut server = start_at(&path, config);
    server.dir = dir;
    server
}

pub fn start_at(path: &Path, config: ServerConfig) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let path = path.to_path_buf();
    let handler = TestHandler::default();
    let slot = handler.publisher.clone();
    let server = Server::bind_unix(&path, handler, config).unwrap();
    let publisher = server.publisher();
    let _ = slot.set(publisher.clone());
    TestServer {
        dir,
        path,
        running: Some(server.spawn().unwrap()),
        publisher,
    }
}

impl TestServer {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Runs `f` on a thread and fails the test if it takes longer than `limit`.
pub fn bounded<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).expect("test step did not finish in time")
}
