//! TLS over TCP (feature `tls`) with certificates made for the test (rcgen):
//! the client's verified identity reaches the handler, clients without the
//! right certificate or trust are refused, and a peer that never finishes
//! its handshake holds up no one.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use microsocket_tokio::{tls, Client, Failure, Handler, Reply, Request, RequestContext, Server, SubscriptionKind};

// The same certificates as the cross-adapter TLS tests.
#[path = "../../tests/tests/common/pki.rs"]
mod pki;

use pki::Pki;

/// Answers `WHOAMI` with the client's verified names; lets only `alice`
/// subscribe to `secret.*` topics.
struct App;

impl Handler for App {
    async fn call(&self, request: Request) -> Result<Reply, Failure> {
        match &request.command[..] {
            b"WHOAMI" => {
                let identity = request.context.tls.as_deref().cloned().unwrap_or_default();
                Ok(Reply::values(
                    identity.common_names.into_iter().chain(identity.alt_names),
                ))
            }
            _ => Err(Failure::new("no such command")),
        }
    }

    fn authorize_subscription(&self, context: &RequestContext, _kind: SubscriptionKind, topic: &[u8]) -> bool {
        !topic.starts_with(b"secret.")
            || context
                .tls
                .as_ref()
                .is_some_and(|id| id.common_names.iter().any(|cn| cn == "alice"))
    }
}

async fn start(pki: &Pki, client_ca: Option<&Path>) -> (Server<App>, std::net::SocketAddr) {
    let config = tls::server_config(pki.path("server.pem"), pki.path("server.key"), client_ca).unwrap();
    let server = Server::new(App);
    let address = server.listen_tls("127.0.0.1:0", config).await.unwrap();
    (server, address)
}

async fn connect(
    address: std::net::SocketAddr,
    config: Arc<tls::rustls::ClientConfig>,
) -> Result<Client, microsocket_tokio::Error> {
    let client = Client::builder()
        .request_timeout(Some(Duration::from_secs(10)))
        .connect_tls(address, "bus.test", config)
        .await?;
    // With TLS 1.3 a refused client certificate shows at the first exchange.
    client.request("WHOAMI", microsocket_tokio::NO_ARGS).await?;
    Ok(client)
}

#[tokio::test]
async fn the_verified_client_identity_reaches_the_handler_and_the_hook() {
    let pki = Pki::new();
    let (server, address) = start(&pki, Some(&pki.path("ca.pem"))).await;
    let alice = tls::client_config(
        pki.path("ca.pem"),
        Some((&pki.path("alice.pem"), &pki.path("alice.key"))),
    )
    .unwrap();
    let client = connect(address, alice).await.unwrap();
    let names = client.request("WHOAMI", microsocket_tokio::NO_ARGS).await.unwrap();
    let names: Vec<&[u8]> = names.iter_slices().collect();
    assert_eq!(names, [&b"alice"[..], b"alice@example.com"]);
    let mut secrets = client.subscribe("secret.plans").await.unwrap();
    assert_eq!(server.publish("secret.plans", ["go"]).unwrap(), 1);
    let publication = secrets.next().await.unwrap().unwrap();
    assert_eq!(publication.values().iter_slices().collect::<Vec<_>>(), [b"go"]);
}

#[tokio::test]
async fn clients_without_the_right_certificate_or_trust_are_refused() {
    let pki = Pki::new();
    let (server, address) = start(&pki, Some(&pki.path("ca.pem"))).await;
    // No client certificate.
    let anonymous = tls::client_config(pki.path("ca.pem"), None).unwrap();
    assert!(connect(address, anonymous).await.is_err());
    // Trusting another CA than the server's.
    let misled = tls::client_config(
        pki.path("other-ca.pem"),
        Some((&pki.path("alice.pem"), &pki.path("alice.key"))),
    )
    .unwrap();
    assert!(connect(address, misled).await.is_err());
    // A wrong server name.
    let alice = tls::client_config(
        pki.path("ca.pem"),
        Some((&pki.path("alice.pem"), &pki.path("alice.key"))),
    )
    .unwrap();
    let wrong_name = Client::builder()
        .connect_tls(address, "elsewhere.test", alice.clone())
        .await;
    let refused = match wrong_name {
        Ok(client) => client.request("WHOAMI", microsocket_tokio::NO_ARGS).await.is_err(),
        Err(_) => true,
    };
    assert!(refused);
    // Bad files are reported with their names.
    let e = tls::client_config(pki.path("missing.pem"), None).unwrap_err();
    assert!(e.to_string().contains("missing.pem"), "{e}");
    assert_eq!(server.stats().connections, 0);
    assert!(connect(address, alice).await.is_ok());
}

#[tokio::test]
async fn without_client_authentication_clients_have_no_identity() {
    let pki = Pki::new();
    let (_server, address) = start(&pki, None).await;
    let anonymous = tls::client_config(pki.path("ca.pem"), None).unwrap();
    let client = connect(address, anonymous).await.unwrap();
    assert!(client
        .request("WHOAMI", microsocket_tokio::NO_ARGS)
        .await
        .unwrap()
        .is_empty());
    // Not alice: the hook refuses the secret topic.
    assert!(client.subscribe("secret.plans").await.is_err());
}

#[tokio::test]
async fn a_peer_that_never_handshakes_holds_up_no_one() {
    let pki = Pki::new();
    let (_server, address) = start(&pki, Some(&pki.path("ca.pem"))).await;
    // Connections that say nothing, and one that sends garbage.
    let mut silent = Vec::new();
    for _ in 0..50 {
        silent.push(tokio::net::TcpStream::connect(address).await.unwrap());
    }
    let mut garbage = tokio::net::TcpStream::connect(address).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut garbage, &[0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3])
        .await
        .unwrap();
    let alice = tls::client_config(
        pki.path("ca.pem"),
        Some((&pki.path("alice.pem"), &pki.path("alice.key"))),
    )
    .unwrap();
    let client = tokio::time::timeout(Duration::from_secs(5), connect(address, alice))
        .await
        .expect("served despite the silent peers")
        .unwrap();
    assert!(client.request("WHOAMI", microsocket_tokio::NO_ARGS).await.is_ok());
    drop(silent);
}
