//! A test application shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use microsocket_tokio::{Failure, Handler, Publisher, Reply, Request, Server, ServerConfig};

/// The bound on every test step.
pub const LIMIT: Duration = Duration::from_secs(20);

/// Runs `f` with a timeout so a test can never hang.
pub async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f).await.expect("test step timed out")
}

/// Commands:
/// - `PING` -> `PONG`
/// - `ECHO args...` -> args
/// - `SLEEP ms value` -> value after ms milliseconds
/// - `PUB topic values...` -> publishes, answers the number reached
/// - `FAIL msg details...` -> failure
/// - `WHO` -> connection id, pid, uid, gid (decimal; empty without credentials)
/// - `HANG` -> never answers
#[derive(Debug, Default)]
pub struct App {
    pub publisher: OnceLock<Publisher>,
}

fn num(b: &[u8]) -> u64 {
    std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()).unwrap_or(0)
}

impl Handler for App {
    async fn call(&self, request: Request) -> Result<Reply, Failure> {
        let args = request.args.to_vec();
        match &request.command[..] {
            b"PING" => Ok(Reply::one("PONG")),
            b"ECHO" => Ok(request.args.into()),
            b"SLEEP" => {
                tokio::time::sleep(Duration::from_millis(num(&args[0]))).await;
                Ok(Reply::one(args.get(1).cloned().unwrap_or_default()))
            }
            b"PUB" => {
                let publisher = self.publisher.get().ok_or("no publisher")?;
                let n = publisher
                    .publish(&args[0], &args[1..])
                    .map_err(|e| Failure::new(e.to_string()))?;
                Ok(Reply::one(n.to_string()))
            }
            b"FAIL" => {
                let mut f = Failure::new(args.first().cloned().unwrap_or_default());
                f.details = args.get(1..).unwrap_or_default().to_vec();
                Err(f)
            }
            b"WHO" => {
                let ctx = request.context;
                let (pid, uid, gid) = match ctx.peer {
                    Some(p) => (p.pid.to_string(), p.uid.to_string(), p.gid.to_string()),
                    None => Default::default(),
                };
                Ok(Reply::values([ctx.connection.get().to_string(), pid, uid, gid]))
            }
            b"HANG" => std::future::pending().await,
            _ => Err(Failure::new("no such command")),
        }
    }
}

/// A server running [`App`], its publisher installed.
pub fn app_server(config: ServerConfig) -> Server<App> {
    let server = Server::with_config(App::default(), config);
    let _ = server.handler().publisher.set(server.publisher());
    server
}

/// Values as owned byte vectors, for comparisons.
pub fn strings(values: &microsocket_tokio::Values) -> Vec<Vec<u8>> {
    values.iter().map(|b: Bytes| b.to_vec()).collect()
}

pub type Shared<T> = Arc<T>;
