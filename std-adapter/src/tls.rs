//! TLS over TCP (feature `tls`), with rustls: [`Server::with_tls`] and
//! [`Server::bind_tls`](crate::Server::bind_tls) serve it,
//! [`Client::connect_tls`](crate::Client::connect_tls) connects with it, and a
//! client that presents a verified certificate (mutual TLS) is known to the
//! handler by [`RequestContext::tls`](crate::RequestContext::tls). The same
//! PEM loading as the Tokio adapter's.
//!
//! ```no_run
//! # fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use microsocket_std::{tls, Client, ClientConfig, Request, Responder, Server, ServerConfig};
//!
//! // Clients must present a certificate signed by `clients-ca.pem`.
//! let config = tls::server_config("server.pem", "server.key", Some("clients-ca.pem".as_ref()))?;
//! let server = Server::bind_tls("127.0.0.1:7443", |request: Request<'_>, responder: Responder| {
//!     let who = request.context.tls.as_ref().and_then(|id| id.common_names.first().cloned());
//!     let _ = responder.respond([who.unwrap_or_default()]);
//! }, ServerConfig::default(), config)?
//! .spawn()?;
//!
//! let client_config = tls::client_config("server-ca.pem", Some(("alice.pem".as_ref(), "alice.key".as_ref())))?;
//! let client = Client::connect_tls("127.0.0.1:7443", "bus.example", client_config, ClientConfig::default())?;
//! let me = client.request("WHOAMI", microsocket_std::NO_ARGS)?;
//! # Ok(()) }
//! ```
//!
//! [`Server::with_tls`]: crate::Server::with_tls

pub use microsocket_socket::tls::{client_config, rustls, server_config, HANDSHAKE_TIMEOUT, MAX_HANDSHAKES};
