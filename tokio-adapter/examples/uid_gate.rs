//! A command only one user may run. The `shutdown` command and `admin.` topics
//! are allowed to a single user id and refused to everyone else, by the kernel's
//! account of who connected (`SO_PEERCRED`, [`RequestContext::peer`]); `whoami`
//! and other topics are open to all.
//!
//! ```text
//! cargo run -p microsocket-tokio --example uid_gate
//! ```
//!
//! runs a demonstration in one process and exits: the same client is refused
//! by a gate whose admin is another user, and granted by a gate whose admin it is.
//!
//! ```text
//! cargo run -p microsocket-tokio --example uid_gate -- /tmp/gate/gate.sock [ADMIN_UID]
//! ```
//!
//! serves on that path (mode `0o666`, so any local user may connect; the
//! directory must be searchable by them) until the admin (default: the user
//! running the example) sends `shutdown`. Try, as root:
//!
//! ```text
//! microsocket request /tmp/gate/gate.sock whoami
//! setpriv --reuid=65534 --regid=65534 --clear-groups microsocket request /tmp/gate/gate.sock shutdown
//! microsocket request /tmp/gate/gate.sock shutdown
//! ```
//!
//! The second is refused (`permission denied`, exit code 1); the third stops the
//! server.
//!
//! Two layers decide who gets in: the socket file's permissions (here `0o666`:
//! everyone may connect; the default `0o600` admits only the owner) and, once
//! connected, the handler's checks on the peer's credentials. Credentials are
//! those of the process at `connect` time and cannot be chosen by the peer; they
//! exist only on UNIX sockets (on TCP `peer` is `None`, and this gate refuses).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use microsocket_tokio::{
    Client, Error, Failure, Handler, PeerCredentials, Reply, Request, RequestContext, Server, ServerConfig,
    SubscriptionKind,
};

/// Allows `shutdown` and `admin.` subscriptions to `admin_uid` only.
#[derive(Debug)]
struct UidGate {
    admin_uid: u32,
    stop: tokio::sync::Notify,
}

impl UidGate {
    fn new(admin_uid: u32) -> Self {
        Self {
            admin_uid,
            stop: tokio::sync::Notify::new(),
        }
    }

    /// `Ok` for the admin; a failure saying who was refused for anyone else,
    /// and for peers without credentials (TCP).
    fn require_admin(&self, peer: Option<PeerCredentials>) -> Result<(), Failure> {
        match peer {
            Some(p) if p.uid == self.admin_uid => Ok(()),
            Some(p) => Err(Failure::new("permission denied").with_detail(format!("uid {} is not the admin", p.uid))),
            None => Err(Failure::new("permission denied").with_detail("no peer credentials")),
        }
    }
}

impl Handler for UidGate {
    async fn call(&self, request: Request) -> Result<Reply, Failure> {
        let peer = request.context.peer;
        match &request.command[..] {
            b"whoami" => {
                let p = peer.ok_or_else(|| Failure::new("no peer credentials"))?;
                Ok(Reply::values([
                    format!("uid {}", p.uid),
                    format!("gid {}", p.gid),
                    format!("pid {}", p.pid),
                ]))
            }
            b"shutdown" => {
                self.require_admin(peer)?;
                self.stop.notify_one();
                Ok(Reply::one("shutting down"))
            }
            _ => Err(Failure::new("no such command").with_detail(request.command)),
        }
    }

    fn authorize_subscription(&self, context: &RequestContext, kind: SubscriptionKind, topic: &[u8]) -> bool {
        let first = topic.split(|&b| b == b'.').next().unwrap_or_default();
        // A pattern starting with `*` or `>` could match `admin.` topics too.
        let touches_admin = first == b"admin" || (kind == SubscriptionKind::Pattern && matches!(first, b"*" | b">"));
        !touches_admin || self.require_admin(context.peer).is_ok()
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    match args.next() {
        Some(path) => {
            let admin_uid = match args.next() {
                Some(uid) => uid.parse()?,
                None => std::fs::metadata("/proc/self")?.uid(),
            };
            serve(Path::new(&path), admin_uid).await
        }
        None => demo().await,
    }
}

/// Serves until the admin sends `shutdown`.
async fn serve(path: &Path, admin_uid: u32) -> Result<(), Box<dyn std::error::Error>> {
    let server = Server::with_config(UidGate::new(admin_uid), ServerConfig::default().socket_mode(0o666));
    server.listen_unix(path)?;
    println!(
        "listening on {} (mode 0666); only uid {admin_uid} may run `shutdown`",
        path.display()
    );
    server.handler().stop.notified().await;
    server.shutdown().await;
    println!("stopped by the admin");
    Ok(())
}

/// One client, two gates: refused where another user is the admin, granted
/// where it is.
async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let me = std::fs::metadata(dir.path())?.uid();
    let someone_else = me.wrapping_add(1);

    let path = dir.path().join("others.sock");
    let server = Server::new(UidGate::new(someone_else));
    server.listen_unix(&path)?;
    let outcome = tokio::time::timeout(Duration::from_secs(10), async {
        let client = Client::connect_unix(&path).await?;
        println!(
            "[client] the gate sees me as {:?}",
            client.request("whoami", [b""; 0]).await?
        );
        match client.request("shutdown", [b""; 0]).await {
            Err(Error::Failed { message, details }) => {
                println!("[client] shutdown refused (admin is uid {someone_else}): {message:?} {details:?}");
                assert_eq!(message, "permission denied");
            }
            other => panic!("a non-admin was not refused: {other:?}"),
        }
        Ok::<_, Error>(())
    })
    .await;
    server.shutdown().await;
    outcome??;

    let path = dir.path().join("mine.sock");
    let server = Server::new(UidGate::new(me));
    server.listen_unix(&path)?;
    let client = Client::connect_unix(&path).await?;
    let answer = tokio::time::timeout(Duration::from_secs(10), client.request("shutdown", [b""; 0])).await??;
    println!("[client] shutdown granted (admin is uid {me}, me): {answer:?}");
    tokio::time::timeout(Duration::from_secs(10), server.handler().stop.notified()).await?;
    server.shutdown().await;
    println!("[gate] stopped by the admin");
    Ok(())
}
