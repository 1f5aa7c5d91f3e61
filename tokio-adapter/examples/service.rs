//! A Tokio service with a custom [`Handler`]: a small key-value store that
//! publishes every change, with access control on subscriptions by the peer's
//! credentials, and a log of subscription changes. A client in the same program
//! exercises it over a UNIX socket; the program exits by itself.
//!
//! ```text
//! cargo run -p microsocket-tokio --example service
//! ```
//!
//! Access rules (checked in [`Handler::authorize_subscription`] with the
//! kernel's view of the peer, `RequestContext::peer`):
//!
//! - `kv.<key>` and patterns under `kv.`: anyone;
//! - `admin.>`: only peers running as the same user as the service;
//! - `private.<pid>`: only the process with that pid, by exact topic;
//! - anything else: refused.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use microsocket_tokio::{
    Client, Error, Failure, Handler, Publisher, Reply, Request, RequestContext, Server, SubscriptionChange,
    SubscriptionKind,
};

/// The service: a map of keys to values, publishing changes on `kv.<key>`.
#[derive(Debug)]
struct KvService {
    /// The user the service runs as.
    uid: u32,
    store: Mutex<HashMap<Vec<u8>, Vec<u8>>>,
    publisher: OnceLock<Publisher>,
    /// Subscription decisions and changes, for the log and the final check.
    log: Arc<Mutex<Vec<String>>>,
}

impl KvService {
    fn publish(&self, topic: &[u8], values: &[&[u8]]) {
        if let Some(p) = self.publisher.get() {
            let _ = p.publish(topic, values);
        }
    }

    fn log(&self, line: String) {
        println!("[service] {line}");
        self.log.lock().unwrap().push(line);
    }
}

impl Handler for KvService {
    async fn call(&self, request: Request) -> Result<Reply, Failure> {
        let args = request.args.to_vec();
        match (&request.command[..], args.as_slice()) {
            (b"SET", [key, value]) => {
                self.store.lock().unwrap().insert(key.to_vec(), value.to_vec());
                self.publish(&[b"kv.", &key[..]].concat(), &[value]);
                Ok(Reply::empty())
            }
            (b"GET", [key]) => match self.store.lock().unwrap().get(&key[..]) {
                Some(value) => Ok(Reply::one(value.clone())),
                None => Err(Failure::new("no such key").with_detail(key.clone())),
            },
            (b"WHOAMI", []) => {
                let peer = request.context.peer.ok_or("no peer credentials")?;
                Ok(Reply::values([peer.pid.to_string(), peer.uid.to_string()]))
            }
            (b"ANNOUNCE", pids) => {
                // One notice for the admins, one private message to each pid.
                self.publish(b"admin.notice", &[b"maintenance at noon"]);
                for pid in pids {
                    self.publish(&[b"private.", &pid[..]].concat(), &[b"a private message"]);
                }
                Ok(Reply::empty())
            }
            (b"SET" | b"GET" | b"WHOAMI", _) => Err(Failure::new("wrong number of arguments")),
            _ => Err(Failure::new("no such command").with_detail(request.command)),
        }
    }

    fn authorize_subscription(&self, context: &RequestContext, kind: SubscriptionKind, topic: &[u8]) -> bool {
        // No credentials (a TCP connection, say): nothing here is public.
        let Some(peer) = context.peer else { return false };
        let allowed = if topic.starts_with(b"kv.") {
            true
        } else if topic.starts_with(b"admin.") {
            peer.uid == self.uid
        } else if let Some(pid) = topic.strip_prefix(b"private.") {
            kind == SubscriptionKind::Exact && pid == peer.pid.to_string().as_bytes()
        } else {
            false
        };
        self.log(format!(
            "connection {} (pid {}, uid {}): {} {kind:?} {}",
            context.connection,
            peer.pid,
            peer.uid,
            if allowed { "allowed" } else { "refused" },
            String::from_utf8_lossy(topic)
        ));
        allowed
    }

    fn subscription_changed(&self, context: &RequestContext, change: SubscriptionChange<'_>) {
        let id = context.connection;
        self.log(match change {
            SubscriptionChange::Subscribed { kind, topic } => {
                format!(
                    "connection {id} subscribed ({kind:?}) to {}",
                    String::from_utf8_lossy(topic)
                )
            }
            SubscriptionChange::Unsubscribed { topic } => {
                format!("connection {id} unsubscribed from {}", String::from_utf8_lossy(topic))
            }
        });
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("kv.sock");
    let log = Arc::new(Mutex::new(Vec::new()));
    let service = KvService {
        uid: std::fs::metadata(dir.path())?.uid(),
        store: Mutex::new(HashMap::new()),
        publisher: OnceLock::new(),
        log: log.clone(),
    };
    let server = Server::new(service);
    server.handler().publisher.set(server.publisher()).expect("set once");
    // Keep the last value of every key for late subscribers.
    server.set_buffer("kv.>", 1)?;
    server.listen_unix(&path)?;
    println!("[service] listening on {}", path.display());

    let outcome = tokio::time::timeout(Duration::from_secs(10), exercise(&path)).await;
    server.shutdown().await;
    outcome??;

    let log = log.lock().unwrap();
    assert!(log.iter().any(|l| l.ends_with("refused Exact private.1")));
    assert!(log.iter().any(|l| l.ends_with("unsubscribed from kv.color")));
    println!("[client] done");
    Ok(())
}

/// The client side: requests, failures, subscriptions allowed and refused.
async fn exercise(path: &Path) -> Result<(), Error> {
    let client = Client::connect_unix(path).await?;

    let me = client.request("WHOAMI", [b""; 0]).await?;
    println!(
        "[client] the service sees me as pid {:?}, uid {:?}",
        me.get(0),
        me.get(1)
    );

    client.request("SET", ["color", "blue"]).await?;
    // A late subscriber gets the buffered last value first.
    let mut color = client.subscribe("kv.color").await?;
    let first = color.next().await.ok_or(Error::Closed)??;
    println!("[client] kv.color is {:?} (buffered)", first.values());
    assert_eq!(*first.values(), ["blue"]);

    client.request("SET", ["color", "green"]).await?;
    let next = color.next().await.ok_or(Error::Closed)??;
    println!("[client] kv.color changed to {:?}", next.values());
    assert_eq!(*next.values(), ["green"]);

    match client.request("GET", ["shape"]).await {
        Err(Error::Failed { message, details }) => {
            println!(
                "[client] GET shape failed: {} {details:?}",
                String::from_utf8_lossy(&message)
            );
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    client.request("SET", ["shape", "round"]).await?;
    assert_eq!(client.request("GET", ["shape"]).await?, ["round"]);

    // Allowed by credentials: this process runs as the service's user, and
    // `private.<own pid>` is its own.
    let mut admin = client.subscribe_pattern("admin.>").await?;
    let my_pid = std::process::id().to_string();
    let mut private = client.subscribe(format!("private.{my_pid}")).await?;
    // Refused: someone else's private topic. The server answers the
    // subscription's barrier with the refusal, so `subscribe` fails.
    let theirs = client.subscribe("private.1").await;

    client.request("ANNOUNCE", [my_pid.as_str(), "1"]).await?;
    let notice = admin.next().await.ok_or(Error::Closed)??;
    println!("[client] {:?}: {:?}", notice.topic_bytes(), notice.values());
    let message = private.next().await.ok_or(Error::Closed)??;
    println!("[client] {:?}: {:?}", message.topic_bytes(), message.values());
    let refused = matches!(theirs, Err(Error::SubscriptionRefused { .. }));
    println!("[client] private.1: {theirs:?} (refused: {refused})");
    assert!(refused);

    drop(color); // logged by the service as an unsubscription
    client.request("GET", ["color"]).await?; // the `-` has been handled by now
    Ok(())
}
