//! Security of the std and Tokio servers on UNIX sockets:
//!
//! - socket files are never more open than their mode, not even for an instant
//!   (checked in a child process with umask 0 while a watcher stats the path);
//! - owner and group are configurable;
//! - binding a too-long path, a path in a missing directory, or a path that is not
//!   a socket fails with a clear error and deletes nothing the server did not
//!   create;
//! - peer credentials gate commands and subscriptions by user id, across real
//!   users: a client re-executed as `nobody` through `setpriv` is refused what
//!   root is granted, and cannot even connect to a socket with the default mode.
//!
//! Several tests run this binary again in a role (the `role` test, which does
//! nothing unless [`ROLE`] is set). Tests that switch users need root and
//! `setpriv`; without them they print why they skip and pass.

mod common;

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::{bounded, within, LIMIT, STEP};
use microsocket_socket::{bind_unix, bind_unix_with, SocketOptions, DEFAULT_SOCKET_MODE, MAX_SOCKET_PATH};

/// The role the re-executed binary plays: `umask`, `client`, `denied` or
/// `connects`.
const ROLE: &str = "MICROSOCKET_SECURITY_ROLE";
/// The socket a client role connects to.
const SOCKET: &str = "MICROSOCKET_SECURITY_SOCKET";
/// Which client a client role uses: `std` or `tokio`.
const FLAVOR: &str = "MICROSOCKET_SECURITY_FLAVOR";
/// What a role prints last, so the parent knows the role really ran.
const DONE: &str = "security role finished";
/// The user and group the client roles run as.
const NOBODY: u32 = 65534;
/// The only user allowed the `admin` command and `admin.` topics.
const ADMIN_UID: u32 = 0;

const NONE: [&[u8]; 0] = [];

// ---------------------------------------------------------------------------
// The gated application, once per server kind
// ---------------------------------------------------------------------------
//
// Commands:
//   whoami            -> the peer's uid
//   admin             -> "granted" for ADMIN_UID; failure "permission denied" otherwise
//   publish topic v.. -> publishes; -> how many connections it was queued for
// Subscriptions: topics under `admin.` (and any pattern that could match one)
// only for ADMIN_UID; everything else for everyone.

/// Whether `uid` may subscribe to `topic` of `kind`. A pattern is allowed to
/// others only when its first token is a literal other than `admin`, since `>`
/// or `*.log` would match admin topics too.
fn may_subscribe(uid: Option<u32>, pattern: bool, topic: &[u8]) -> bool {
    if uid == Some(ADMIN_UID) {
        return true;
    }
    let first = topic.split(|&b| b == b'.').next().unwrap_or_default();
    if pattern {
        !matches!(first, b"admin" | b"*" | b">")
    } else {
        first != b"admin"
    }
}

fn uid_text(uid: Option<u32>) -> String {
    uid.map_or_else(|| "unknown".to_owned(), |u| u.to_string())
}

/// What the gate refused: (uid, topic).
type Refusals = Arc<Mutex<Vec<(Option<u32>, Vec<u8>)>>>;

#[derive(Debug, Default, Clone)]
struct StdGate {
    publisher: Arc<OnceLock<microsocket_std::Publisher>>,
    refused: Refusals,
}

impl microsocket_std::Handler for StdGate {
    fn handle(&self, request: microsocket_std::Request<'_>, responder: microsocket_std::Responder) {
        let uid = request.context.peer.map(|p| p.uid);
        let mut args = request.args.clone();
        let _ = match request.command {
            b"whoami" => responder.respond([uid_text(uid)]),
            b"admin" if uid == Some(ADMIN_UID) => responder.respond(["granted"]),
            b"admin" => responder.fail("permission denied", [format!("uid {}", uid_text(uid))]),
            b"publish" => {
                let topic = args.next().unwrap_or_default();
                let n = self.publisher.get().map_or(0, |p| p.publish(topic, args).unwrap_or(0));
                responder.respond([n.to_string()])
            }
            _ => responder.fail("no such command", [request.command]),
        };
    }

    fn authorize_subscription(
        &self,
        context: &microsocket_std::RequestContext,
        kind: microsocket_std::SubscriptionKind,
        topic: &[u8],
    ) -> bool {
        let uid = context.peer.map(|p| p.uid);
        let allowed = may_subscribe(uid, kind == microsocket_std::SubscriptionKind::Pattern, topic);
        if !allowed {
            self.refused.lock().unwrap().push((uid, topic.to_vec()));
        }
        allowed
    }
}

#[derive(Debug, Default)]
struct TokioGate {
    publisher: OnceLock<microsocket_tokio::Publisher>,
    refused: Refusals,
}

impl microsocket_tokio::Handler for TokioGate {
    async fn call(
        &self,
        request: microsocket_tokio::Request,
    ) -> Result<microsocket_tokio::Reply, microsocket_tokio::Failure> {
        use microsocket_tokio::{Failure, Reply};
        let uid = request.context.peer.map(|p| p.uid);
        let args = request.args.to_vec();
        match &request.command[..] {
            b"whoami" => Ok(Reply::one(uid_text(uid))),
            b"admin" if uid == Some(ADMIN_UID) => Ok(Reply::one("granted")),
            b"admin" => Err(Failure::new("permission denied").with_detail(format!("uid {}", uid_text(uid)))),
            b"publish" => {
                let topic = args.first().cloned().unwrap_or_default();
                let values: Vec<&[u8]> = args.iter().skip(1).map(|b| &b[..]).collect();
                let n = self
                    .publisher
                    .get()
                    .map_or(0, |p| p.publish(&topic, &values).unwrap_or(0));
                Ok(Reply::one(n.to_string()))
            }
            _ => Err(Failure::new("no such command").with_detail(request.command)),
        }
    }

    fn authorize_subscription(
        &self,
        context: &microsocket_tokio::RequestContext,
        kind: microsocket_tokio::SubscriptionKind,
        topic: &[u8],
    ) -> bool {
        let uid = context.peer.map(|p| p.uid);
        let allowed = may_subscribe(uid, kind == microsocket_tokio::SubscriptionKind::Pattern, topic);
        if !allowed {
            self.refused.lock().unwrap().push((uid, topic.to_vec()));
        }
        allowed
    }
}

/// A running gated server of either kind.
enum GateServer {
    Std {
        running: Option<microsocket_std::RunningServer>,
        refused: Refusals,
    },
    Tokio {
        server: microsocket_tokio::Server<TokioGate>,
        rt: Option<tokio::runtime::Runtime>,
    },
}

impl GateServer {
    fn start(flavor: &str, path: &Path, mode: u32) -> Self {
        Self::start_with(flavor, path, mode, microsocket_host::MemoryLimits::default())
    }

    fn start_with(flavor: &str, path: &Path, mode: u32, memory: microsocket_host::MemoryLimits) -> Self {
        match flavor {
            "std" => {
                let gate = StdGate::default();
                let config = {
                    let mut config = microsocket_std::ServerConfig::default();
                    config.socket_mode = mode;
                    config.shutdown_timeout = Duration::from_millis(300);
                    config.memory = memory;
                    config
                };
                let server = microsocket_std::Server::bind_unix(path, gate.clone(), config).unwrap();
                gate.publisher.set(server.publisher()).unwrap();
                Self::Std {
                    running: Some(server.spawn().unwrap()),
                    refused: gate.refused,
                }
            }
            "tokio" => {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap();
                let config = microsocket_tokio::ServerConfig::default()
                    .socket_mode(mode)
                    .shutdown_timeout(Duration::from_millis(300))
                    .memory(memory);
                let server = microsocket_tokio::Server::with_config(TokioGate::default(), config);
                server.handler().publisher.set(server.publisher()).unwrap();
                {
                    let _entered = rt.enter();
                    server.listen_unix(path).unwrap();
                }
                Self::Tokio { server, rt: Some(rt) }
            }
            other => panic!("unknown server {other}"),
        }
    }

    fn refused(&self) -> Vec<(Option<u32>, Vec<u8>)> {
        match self {
            Self::Std { refused, .. } => refused.lock().unwrap().clone(),
            Self::Tokio { server, .. } => server.handler().refused.lock().unwrap().clone(),
        }
    }
}

impl Drop for GateServer {
    fn drop(&mut self) {
        match self {
            Self::Std { running, .. } => {
                if let Some(running) = running.take() {
                    let _ = running.stop();
                }
            }
            Self::Tokio { server, rt } => {
                if let Some(rt) = rt.take() {
                    let server = server.clone();
                    let _ = rt.block_on(async move { tokio::time::timeout(STEP, server.shutdown()).await });
                    rt.shutdown_timeout(Duration::from_secs(1));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Roles of the re-executed binary
// ---------------------------------------------------------------------------

/// Not a test of its own: the body of a child process started by the tests
/// below (does nothing unless [`ROLE`] is set).
#[test]
fn role() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let socket = std::env::var(SOCKET).map(PathBuf::from);
    let flavor = std::env::var(FLAVOR).unwrap_or_default();
    match role.as_str() {
        "umask" => bounded(LIMIT, umask_role),
        "client" => {
            let socket = socket.unwrap();
            match flavor.as_str() {
                "std" => bounded(LIMIT, move || std_refused_client(&socket)),
                "tokio" => tokio_refused_client(&socket),
                other => panic!("unknown client {other}"),
            }
        }
        "denied" => denied_role(&socket.unwrap()),
        "connects" => connects_role(&socket.unwrap()),
        other => panic!("unknown role {other}"),
    }
    println!("{DONE}");
}

/// As another user: `admin` fails, `admin.` topics and patterns that could
/// match them are refused, ordinary topics work (std client).
fn std_refused_client(socket: &Path) {
    let me = rustix::process::geteuid().as_raw();
    let client = microsocket_std::Client::connect_unix(socket).unwrap();
    assert_eq!(client.request("whoami", NONE).unwrap(), [me.to_string()]);
    match client.request("admin", NONE) {
        Err(microsocket_std::Error::Failed { message, details }) => {
            assert_eq!(message, "permission denied");
            assert_eq!(details, [format!("uid {me}")]);
        }
        other => panic!("admin answered {other:?} to uid {me}"),
    }
    // Each refused subscription is told so by the server.
    let refused = [
        client.subscribe("admin.log"),
        client.subscribe_pattern("admin.>"),
        client.subscribe_pattern(">"),
        client.subscribe_pattern("*.log"),
    ];
    for r in refused {
        assert!(
            matches!(r, Err(microsocket_std::Error::SubscriptionRefused { .. })),
            "{r:?}"
        );
    }
    let mut news = client.subscribe("news").unwrap();
    // The refused subscriptions are not in place: a publication reaches nobody.
    assert_eq!(client.request("publish", ["admin.log", "secret"]).unwrap(), ["0"]);
    assert_eq!(client.request("publish", ["news", "hello"]).unwrap(), ["1"]);
    assert_eq!(news.recv_timeout(STEP).unwrap().values(), ["hello"]);
}

/// The same with the Tokio client.
fn tokio_refused_client(socket: &Path) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(within(LIMIT, "tokio client role", async {
        let me = rustix::process::geteuid().as_raw();
        let client = microsocket_tokio::Client::connect_unix(socket).await.unwrap();
        assert_eq!(client.request("whoami", NONE).await.unwrap(), [me.to_string()]);
        match client.request("admin", NONE).await {
            Err(microsocket_tokio::Error::Failed { message, details }) => {
                assert_eq!(message, "permission denied");
                assert_eq!(details, [format!("uid {me}")]);
            }
            other => panic!("admin answered {other:?} to uid {me}"),
        }
        let refused = [
            client.subscribe("admin.log").await,
            client.subscribe_pattern("admin.>").await,
            client.subscribe_pattern(">").await,
            client.subscribe_pattern("*.log").await,
        ];
        for r in refused {
            assert!(
                matches!(r, Err(microsocket_tokio::Error::SubscriptionRefused { .. })),
                "{r:?}"
            );
        }
        let mut news = client.subscribe("news").await.unwrap();
        assert_eq!(client.request("publish", ["admin.log", "secret"]).await.unwrap(), ["0"]);
        assert_eq!(client.request("publish", ["news", "hello"]).await.unwrap(), ["1"]);
        let p = within(STEP, "news", news.next()).await.unwrap().unwrap();
        assert_eq!(*p.values(), ["hello"]);
    }));
}

/// As another user: connecting is refused by the file's permissions.
fn denied_role(socket: &Path) {
    let err = UnixStream::connect(socket).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
    let err = io::Error::from(microsocket_std::Client::connect_unix(socket).unwrap_err());
    assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
}

/// As another user: connecting works, and the server sees this user.
fn connects_role(socket: &Path) {
    let client = microsocket_std::Client::connect_unix(socket).unwrap();
    let me = rustix::process::geteuid().as_raw();
    assert_eq!(client.request("whoami", NONE).unwrap(), [me.to_string()]);
}

// ---------------------------------------------------------------------------
// Starting roles
// ---------------------------------------------------------------------------

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn setpriv() -> Option<PathBuf> {
    ["/usr/bin/setpriv", "/bin/setpriv", "/usr/sbin/setpriv", "/sbin/setpriv"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Whether this test can run clients as other users; prints why not.
fn can_switch_users(test: &str) -> bool {
    if !is_root() {
        println!("SKIPPED {test}: needs root to run clients as other users");
        return false;
    }
    if setpriv().is_none() {
        println!("SKIPPED {test}: needs setpriv (util-linux) to run clients as other users");
        return false;
    }
    true
}

/// A directory others may enter (a socket's directory must be searchable).
fn open_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// This test binary, where another user may run it: in place if every
/// directory above it is searchable and the file executable by others,
/// otherwise a copy in `dir`.
fn exe_for_others(dir: &Path) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let reachable =
        exe.ancestors().skip(1).all(|d| {
            d.as_os_str().is_empty() || std::fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o001 != 0)
        }) && std::fs::metadata(&exe).is_ok_and(|m| m.permissions().mode() & 0o005 == 0o005);
    if reachable {
        return exe;
    }
    let copy = dir.join("security-test-exe");
    std::fs::copy(&exe, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    copy
}

/// Runs this binary in `role`, as `user` (uid, gid) through setpriv or as this
/// user; fails the test unless the role ran and passed.
fn run_role(role: &str, user: Option<(u32, u32)>, exe: &Path, env: &[(&str, &Path)], flavor: &str) {
    let mut command = match user {
        Some((uid, gid)) => {
            let mut c = Command::new(setpriv().unwrap());
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--clear-groups")
                .arg(exe);
            c
        }
        None => Command::new(exe),
    };
    command
        .args(["--exact", "role", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(FLAVOR, flavor)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    let deadline = Instant::now() + LIMIT + STEP;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("role {role} did not finish within {:?}", LIMIT + STEP);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        status.success() && stdout.contains(DONE),
        "role {role} as {user:?} failed ({status}):\n{stdout}\n{stderr}"
    );
}

// ---------------------------------------------------------------------------
// Socket files: no window, owner and group
// ---------------------------------------------------------------------------

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

/// In a child with umask 0 (so the kernel would create a plain socket file
/// `0o777`): the file never shows more than its mode, and ends exactly at it.
#[test]
fn socket_file_is_never_wider_than_its_mode() {
    run_role("umask", None, &std::env::current_exe().unwrap(), &[], "");
}

fn set_umask(mask: u32) -> u32 {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(mask)).as_raw_mode()
}

fn umask_role() {
    set_umask(0);
    let dir = tempfile::tempdir().unwrap();

    // The kernel behaviour the Linux path relies on. A socket bound plainly
    // under umask 0 is created 0o777: the window a bind-then-chmod had.
    let plain = dir.path().join("plain.sock");
    let listener = std::os::unix::net::UnixListener::bind(&plain).unwrap();
    assert_eq!(mode_of(&plain), 0o777);
    drop(listener);
    // The socket inode's mode, set before bind, becomes the file's mode, less the
    // umask's bits.
    for (umask, inode_mode, file_mode) in [(0, 0o640, 0o640), (0, 0o000, 0o000), (0o027, 0o666, 0o640)] {
        let path = dir.path().join(format!("raw-{umask:o}-{inode_mode:o}.sock"));
        let fd = rustix::net::socket(rustix::net::AddressFamily::UNIX, rustix::net::SocketType::STREAM, None).unwrap();
        rustix::fs::fchmod(&fd, rustix::fs::Mode::from_raw_mode(inode_mode)).unwrap();
        set_umask(umask);
        rustix::net::bind(&fd, &rustix::net::SocketAddrUnix::new(&path).unwrap()).unwrap();
        set_umask(0);
        assert_eq!(mode_of(&path), file_mode, "umask {umask:o}, inode mode {inode_mode:o}");
    }

    let mut cases = vec![
        SocketOptions::new(0o600),
        SocketOptions::new(0o640),
        SocketOptions::new(0o666),
    ];
    if is_root() {
        cases.push(SocketOptions::new(0o600).owner(NOBODY).group(NOBODY));
        cases.push(SocketOptions::new(0o660).group(NOBODY));
    } else {
        println!("(owner and group cases skipped: not root)");
    }
    let me = (rustix::process::geteuid().as_raw(), rustix::process::getegid().as_raw());
    for options in cases {
        let path = dir.path().join("watched.sock");
        let wanted_owner = (options.owner.unwrap_or(me.0), options.group.unwrap_or(me.1));
        let stop = Arc::new(AtomicBool::new(false));
        let seen_once = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (stop, path, seen_once) = (stop.clone(), path.clone(), seen_once.clone());
            std::thread::spawn(move || {
                let (mut seen, mut wider) = (0u64, Vec::new());
                let deadline = Instant::now() + STEP;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    if let Ok(meta) = std::fs::symlink_metadata(&path) {
                        seen += 1;
                        seen_once.store(true, Ordering::Relaxed);
                        let mode = meta.permissions().mode() & 0o7777;
                        let owner = (meta.uid(), meta.gid());
                        // Never a bit beyond the mode; before the file has its final
                        // owner and group, no bits at all.
                        if (mode & !options.mode != 0 || (owner != wanted_owner && mode != 0)) && wider.len() < 8 {
                            wider.push((format!("{mode:#o}"), owner));
                        }
                    }
                }
                (seen, wider)
            })
        };
        // At least 300 binds, and on until the watcher has seen the file (a
        // loaded machine may not schedule it at first), within the watcher's time.
        let binding_deadline = Instant::now() + STEP / 2;
        for round in 0.. {
            if round >= 300 && (seen_once.load(Ordering::Relaxed) || Instant::now() > binding_deadline) {
                break;
            }
            let (listener, guard) = bind_unix_with(&path, &options).unwrap();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            assert_eq!(meta.permissions().mode() & 0o7777, options.mode);
            assert_eq!((meta.uid(), meta.gid()), wanted_owner);
            drop(listener);
            drop(guard);
        }
        stop.store(true, Ordering::Relaxed);
        let (seen, wider) = watcher.join().unwrap();
        println!("{options:?}: the watcher saw the file {seen} times");
        assert!(seen > 0, "{options:?}: the watcher never saw the file");
        assert!(wider.is_empty(), "{options:?}: seen wider than asked: {wider:?}");
    }

    // Both servers, through their configurations.
    let path = dir.path().join("std.sock");
    let config = microsocket_std::ServerConfig::default();
    let server = microsocket_std::Server::bind_unix(&path, StdGate::default(), config).unwrap();
    assert_eq!(mode_of(&path), DEFAULT_SOCKET_MODE);
    drop(server);
    assert!(!path.exists());
    let path = dir.path().join("tokio.sock");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let server = microsocket_tokio::Server::with_config(
            TokioGate::default(),
            microsocket_tokio::ServerConfig::default().socket_mode(0o640),
        );
        server.listen_unix(&path).unwrap();
        assert_eq!(mode_of(&path), 0o640);
        within(STEP, "shutdown", server.shutdown()).await;
    });
    assert!(!path.exists());

    // Binding never touched the process umask.
    assert_eq!(set_umask(0), 0);
}

/// As root: the socket file is given away to another user and group, and that
/// user can then connect while a third user cannot.
#[test]
fn socket_owner_and_group_are_configurable() {
    if !can_switch_users("socket_owner_and_group_are_configurable") {
        return;
    }
    let dir = open_tempdir();
    let exe = exe_for_others(dir.path());
    bounded(LIMIT + LIMIT, move || {
        // Owner and group through bind_unix_with.
        let path = dir.path().join("owned.sock");
        let (listener, guard) = bind_unix_with(&path, &SocketOptions::new(0o600).owner(NOBODY).group(NOBODY)).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!((meta.uid(), meta.gid(), mode_of(&path)), (NOBODY, NOBODY, 0o600));
        drop(listener);
        drop(guard);
        assert!(!path.exists(), "the guard removes a file it gave away");

        // Group access through the std server: root owns the file, group NOBODY
        // may connect, anyone else may not.
        let path = dir.path().join("std-group.sock");
        let gate = StdGate::default();
        let config = {
            let mut config = microsocket_std::ServerConfig::default();
            config.socket_mode = 0o660;
            config.socket_group = Some(NOBODY);
            config
        };
        let server = microsocket_std::Server::bind_unix(&path, gate, config)
            .unwrap()
            .spawn()
            .unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!((meta.uid(), meta.gid(), mode_of(&path)), (0, NOBODY, 0o660));
        run_role("connects", Some((NOBODY - 1, NOBODY)), &exe, &[(SOCKET, &path)], "std");
        run_role(
            "denied",
            Some((NOBODY - 1, NOBODY - 1)),
            &exe,
            &[(SOCKET, &path)],
            "std",
        );
        server.stop().unwrap();
        assert!(!path.exists());

        // Owner through the Tokio server: the new owner may connect.
        let path = dir.path().join("tokio-owner.sock");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let server = microsocket_tokio::Server::with_config(
            TokioGate::default(),
            microsocket_tokio::ServerConfig::default()
                .socket_owner(NOBODY)
                .socket_group(NOBODY),
        );
        {
            let _entered = rt.enter();
            server.listen_unix(&path).unwrap();
        }
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!((meta.uid(), meta.gid(), mode_of(&path)), (NOBODY, NOBODY, 0o600));
        run_role("connects", Some((NOBODY, NOBODY)), &exe, &[(SOCKET, &path)], "std");
        run_role(
            "denied",
            Some((NOBODY - 1, NOBODY - 1)),
            &exe,
            &[(SOCKET, &path)],
            "std",
        );
        rt.block_on(within(STEP, "shutdown", server.shutdown()));
        assert!(!path.exists());
    });
}

/// Without privilege, giving the file away fails with PermissionDenied and the
/// new file is removed again (runs only when not root: root may give files
/// away).
#[test]
fn unpermitted_owner_change_fails_and_removes_only_the_new_file() {
    if is_root() {
        println!("SKIPPED unpermitted_owner_change_fails_and_removes_only_the_new_file: root may give files away");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    // Give the file to root: not permitted to anyone else.
    let err = bind_unix_with(&path, &SocketOptions::new(0o600).owner(0)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
    assert!(!path.exists());
}

// ---------------------------------------------------------------------------
// Bind errors: clear, and nothing deleted
// ---------------------------------------------------------------------------

/// Which binder a bind-error check goes through.
#[derive(Debug, Clone, Copy)]
enum Binder {
    Function,
    StdServer,
    TokioServer,
}

const BINDERS: [Binder; 3] = [Binder::Function, Binder::StdServer, Binder::TokioServer];

/// Binds `path` through `binder`; on success, keeps the listener until the
/// returned value is dropped.
fn bind_through(binder: Binder, path: &Path) -> io::Result<Box<dyn std::any::Any>> {
    match binder {
        Binder::Function => bind_unix(path, DEFAULT_SOCKET_MODE).map(|b| Box::new(b) as Box<dyn std::any::Any>),
        Binder::StdServer => microsocket_std::Server::bind_unix(path, StdGate::default(), Default::default())
            .map(|s| Box::new(s) as Box<dyn std::any::Any>),
        Binder::TokioServer => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let server = microsocket_tokio::Server::new(TokioGate::default());
            {
                let _entered = rt.enter();
                server.listen_unix(path)?;
            }
            Ok(Box::new((server, rt)))
        }
    }
}

/// Everything in `dir`: names, kinds, inodes and regular files' contents.
fn snapshot(dir: &Path) -> Vec<(String, u32, u64, Vec<u8>)> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            let content = if meta.is_file() {
                std::fs::read(e.path()).unwrap()
            } else {
                Vec::new()
            };
            (
                e.file_name().to_string_lossy().into_owned(),
                meta.mode(),
                meta.ino(),
                content,
            )
        })
        .collect();
    entries.sort();
    entries
}

#[test]
fn too_long_path_is_refused_with_the_limit() {
    for binder in BINDERS {
        let dir = tempfile::tempdir().unwrap();
        let room = MAX_SOCKET_PATH - dir.path().as_os_str().len() - 1;
        let fits = dir.path().join("f".repeat(room));
        assert_eq!(fits.as_os_str().len(), MAX_SOCKET_PATH);
        let bound = bind_through(binder, &fits).unwrap();
        UnixStream::connect(&fits).unwrap();
        drop(bound);
        assert!(!fits.exists());

        let long = dir.path().join("l".repeat(room + 1));
        let before = snapshot(dir.path());
        let err = bind_through(binder, &long).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{binder:?}: {err}");
        let message = err.to_string();
        assert!(message.contains("too long"), "{binder:?}: {message}");
        assert!(
            message.contains(&format!("at most {MAX_SOCKET_PATH} bytes")),
            "{binder:?}: {message}"
        );
        assert_eq!(snapshot(dir.path()), before, "{binder:?}");
    }
}

#[test]
fn missing_directory_is_named() {
    for binder in BINDERS {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-dir");
        let err = bind_through(binder, &missing.join("s.sock")).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{binder:?}: {err}");
        let message = err.to_string();
        assert!(
            message.contains(&format!("directory {} does not exist", missing.display())),
            "{binder:?}: {message}"
        );
        assert!(!missing.exists());
    }
}

#[test]
fn non_sockets_are_refused_and_kept() {
    for binder in BINDERS {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("data");
        std::fs::write(&file, b"precious").unwrap();
        let subdir = dir.path().join("subdir");
        std::fs::create_dir(&subdir).unwrap();
        // A symbolic link to a stale socket: the link is not a socket.
        let (listener, guard) = bind_unix(dir.path().join("stale.sock"), DEFAULT_SOCKET_MODE).unwrap();
        drop(listener);
        let stale = guard.keep();
        let link = dir.path().join("link.sock");
        std::os::unix::fs::symlink(&stale, &link).unwrap();
        let before = snapshot(dir.path());
        for path in [&file, &subdir, &link] {
            let err = bind_through(binder, path).err().unwrap();
            assert_eq!(
                err.kind(),
                io::ErrorKind::AlreadyExists,
                "{binder:?} {}: {err}",
                path.display()
            );
            assert!(err.to_string().contains("not a socket"), "{binder:?}: {err}");
        }
        assert_eq!(snapshot(dir.path()), before, "{binder:?}");
    }
}

#[test]
fn live_server_keeps_its_path_and_stale_socket_is_replaced() {
    for binder in BINDERS {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let first = GateServer::start("std", &path, DEFAULT_SOCKET_MODE);
        let before = snapshot(dir.path());
        let err = bind_through(binder, &path).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{binder:?}: {err}");
        assert_eq!(snapshot(dir.path()), before, "{binder:?}");
        let client = microsocket_std::Client::connect_unix(&path).unwrap();
        let me = rustix::process::geteuid().as_raw().to_string();
        assert_eq!(client.request("whoami", NONE).unwrap(), [me]);
        drop(client);
        drop(first);
        assert!(!path.exists(), "the server removed its own file");

        // A stale socket (its server gone without cleaning up) is replaced.
        let (listener, guard) = bind_unix(&path, DEFAULT_SOCKET_MODE).unwrap();
        drop(listener);
        let _ = guard.keep();
        let bound = bind_through(binder, &path).unwrap();
        UnixStream::connect(&path).unwrap();
        drop(bound);
        assert!(!path.exists(), "{binder:?}");
    }
}

/// A server whose path was taken over (its file removed and a new one put
/// there) leaves the newcomer's file alone on shutdown.
#[test]
fn shutdown_removes_only_the_servers_own_file() {
    for flavor in ["std", "tokio"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        for replacement in ["socket", "file"] {
            let server = GateServer::start(flavor, &path, DEFAULT_SOCKET_MODE);
            std::fs::remove_file(&path).unwrap();
            let newcomer = match replacement {
                "socket" => {
                    let (listener, guard) = bind_unix(&path, DEFAULT_SOCKET_MODE).unwrap();
                    Some((listener, guard.keep()))
                }
                _ => {
                    std::fs::write(&path, b"someone else's").unwrap();
                    None
                }
            };
            let before = snapshot(dir.path());
            drop(server);
            assert_eq!(
                snapshot(dir.path()),
                before,
                "{flavor} server removed a {replacement} it did not create"
            );
            if newcomer.is_some() {
                UnixStream::connect(&path).unwrap();
            }
            drop(newcomer);
            std::fs::remove_file(&path).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------
// Peer credentials across users
// ---------------------------------------------------------------------------

/// A server (std and Tokio) on a `0o666` socket grants `admin` and `admin.`
/// topics to root only: a client running as `nobody` is refused both (and its
/// refusals are recorded with its uid), root is granted both.
#[test]
fn commands_and_subscriptions_are_gated_by_uid() {
    if !can_switch_users("commands_and_subscriptions_are_gated_by_uid") {
        return;
    }
    let dir = open_tempdir();
    let exe = exe_for_others(dir.path());
    for flavor in ["std", "tokio"] {
        let path = dir.path().join(format!("{flavor}-gate.sock"));
        let server = GateServer::start(flavor, &path, 0o666);
        assert_eq!(mode_of(&path), 0o666);
        run_role("client", Some((NOBODY, NOBODY)), &exe, &[(SOCKET, &path)], flavor);
        let refused = server.refused();
        for topic in ["admin.log", "admin.>", ">", "*.log"] {
            assert!(
                refused.contains(&(Some(NOBODY), topic.as_bytes().to_vec())),
                "{flavor}: {topic} was not refused to nobody: {refused:?}"
            );
        }
        // Root is granted what nobody was refused.
        let path2 = path.clone();
        bounded(LIMIT, move || {
            let client = microsocket_std::Client::connect_unix(&path2).unwrap();
            assert_eq!(client.request("whoami", NONE).unwrap(), ["0"]);
            assert_eq!(client.request("admin", NONE).unwrap(), ["granted"]);
            let mut sub = client.subscribe("admin.log").unwrap();
            assert_eq!(client.request("publish", ["admin.log", "for root"]).unwrap(), ["1"]);
            assert_eq!(sub.recv_timeout(STEP).unwrap().values(), ["for root"]);
        });
        assert_eq!(
            server.refused().len(),
            refused.len(),
            "{flavor}: root was refused something"
        );
    }
}

/// One user at its share of the memory budget leaves the others served: a
/// subscriber of root's that never reads holds root's whole share, so root's
/// new requests are answered "server busy", while `nobody` still connects and
/// is answered.
#[test]
fn a_user_at_its_memory_share_leaves_others_served() {
    if !can_switch_users("a_user_at_its_memory_share_leaves_others_served") {
        return;
    }
    let dir = open_tempdir();
    let exe = exe_for_others(dir.path());
    let limits = microsocket_host::MemoryLimits {
        max_memory: 8 << 20,
        max_memory_per_user: 1 << 20,
        max_connections_per_user: 100,
    };
    for flavor in ["std", "tokio"] {
        let path = dir.path().join(format!("{flavor}-share.sock"));
        let _server = GateServer::start_with(flavor, &path, 0o666, limits);
        let hog_path = path.clone();
        let hog = bounded(LIMIT, move || {
            let mut hog = UnixStream::connect(&hog_path).unwrap();
            hog.set_read_timeout(Some(STEP)).unwrap();
            common::write_frame(&mut hog, b'+', &[b"flood"]).unwrap();
            common::write_frame(&mut hog, b'(', &[b"\x01", b""]).unwrap();
            assert_eq!(common::read_frame(&mut hog).unwrap().unwrap().sigil, b')');
            let client = microsocket_std::Client::connect_unix(&hog_path).unwrap();
            let value = "x".repeat(20_000);
            for round in 0.. {
                assert!(round < 2_000, "root's share never filled");
                match client.request("publish", ["flood", value.as_str()]) {
                    Ok(_) => std::thread::sleep(Duration::from_millis(1)),
                    Err(microsocket_std::Error::Failed { message, .. }) if message == "server busy" => break,
                    Err(e) => panic!("{e}"),
                }
            }
            hog
        });
        run_role("connects", Some((NOBODY, NOBODY)), &exe, &[(SOCKET, &path)], flavor);
        drop(hog);
    }
}

/// With the default mode (0o600) another user cannot even connect.
#[test]
fn default_mode_keeps_other_users_out() {
    if !can_switch_users("default_mode_keeps_other_users_out") {
        return;
    }
    let dir = open_tempdir();
    let exe = exe_for_others(dir.path());
    for flavor in ["std", "tokio"] {
        let path = dir.path().join(format!("{flavor}-private.sock"));
        let _server = GateServer::start(flavor, &path, DEFAULT_SOCKET_MODE);
        assert_eq!(mode_of(&path), 0o600);
        run_role("denied", Some((NOBODY, NOBODY)), &exe, &[(SOCKET, &path)], "std");
        // The owner still can.
        UnixStream::connect(&path).unwrap();
    }
}
