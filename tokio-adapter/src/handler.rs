//! What the application plugs into a server: the request handler and the
//! subscription hook.

use std::fmt;
use std::future::Future;

use bytes::Bytes;
use microsocket_core::SubscriptionKind;

pub use microsocket_socket::{PeerCredentials, TlsIdentity};

use microsocket_host::{ConnectionId, SubscriptionChange, Values};

/// Who sent a request or a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    /// The connection.
    pub connection: ConnectionId,
    /// The peer's process, user and group ids, on UNIX sockets (`None` on TCP and
    /// on streams handed to [`crate::Server::serve_stream`]).
    pub peer: Option<PeerCredentials>,
    /// The verified certificate of a client over TLS that presented one
    /// (mutual TLS, feature `tls`); `None` otherwise.
    pub tls: Option<std::sync::Arc<TlsIdentity>>,
}

/// A request for the application: command, arguments (zero-copy slices of the
/// received frame) and who sent it.
#[derive(Debug, Clone)]
pub struct Request {
    /// The command (never empty: the server answers the empty command itself).
    pub command: Bytes,
    /// The arguments.
    pub args: Values,
    /// The connection it came from.
    pub context: RequestContext,
}

/// The values of a successful response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply(pub(crate) ReplyValues);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum ReplyValues {
    #[default]
    Empty,
    One(Bytes),
    Many(Vec<Bytes>),
    Values(Values),
}

impl Reply {
    /// A response without values.
    #[must_use]
    pub fn empty() -> Self {
        Self(ReplyValues::Empty)
    }

    /// A response with one value.
    #[must_use]
    pub fn one(value: impl Into<Bytes>) -> Self {
        Self(ReplyValues::One(value.into()))
    }

    /// A response with these values.
    #[must_use]
    pub fn values<I>(values: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<Bytes>,
    {
        Self(ReplyValues::Many(values.into_iter().map(Into::into).collect()))
    }
}

impl From<Bytes> for Reply {
    fn from(b: Bytes) -> Self {
        Self::one(b)
    }
}

impl From<&'static [u8]> for Reply {
    fn from(b: &'static [u8]) -> Self {
        Self::one(b)
    }
}

impl From<&'static str> for Reply {
    fn from(s: &'static str) -> Self {
        Self::one(s)
    }
}

impl From<Vec<u8>> for Reply {
    fn from(v: Vec<u8>) -> Self {
        Self::one(v)
    }
}

impl From<String> for Reply {
    fn from(s: String) -> Self {
        Self::one(s)
    }
}

impl From<Vec<Bytes>> for Reply {
    fn from(v: Vec<Bytes>) -> Self {
        Self(ReplyValues::Many(v))
    }
}

impl From<Values> for Reply {
    /// Sends values received earlier (an echo, say) without copying them first.
    fn from(v: Values) -> Self {
        Self(ReplyValues::Values(v))
    }
}

impl From<()> for Reply {
    fn from((): ()) -> Self {
        Self::empty()
    }
}

/// A failed request: the `#` answer's message and details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// A human-readable message.
    pub message: Bytes,
    /// Optional further details.
    pub details: Vec<Bytes>,
}

impl Failure {
    /// A failure with a message and no details.
    #[must_use]
    pub fn new(message: impl Into<Bytes>) -> Self {
        Self {
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// Adds a detail.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<Bytes>) -> Self {
        self.details.push(detail.into());
        self
    }
}

impl From<&'static str> for Failure {
    fn from(s: &'static str) -> Self {
        Self::new(s)
    }
}

impl From<String> for Failure {
    fn from(s: String) -> Self {
        Self::new(s)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.message))
    }
}

impl std::error::Error for Failure {}

/// The application side of a server.
///
/// Requests of one connection run concurrently (as futures polled by that
/// connection's task) and their answers leave in the order they complete. The
/// subscription methods are called from the connection's task, in the order the
/// client sent its frames, and must not block.
///
/// ```
/// use microsocket_tokio::{Failure, Handler, Reply, Request, RequestContext, SubscriptionKind};
///
/// struct App;
///
/// impl Handler for App {
///     async fn call(&self, request: Request) -> Result<Reply, Failure> {
///         match &request.command[..] {
///             b"PING" => Ok(Reply::one("PONG")),
///             b"ECHO" => Ok(request.args.into()),
///             _ => Err(Failure::new("no such command")),
///         }
///     }
///
///     fn authorize_subscription(&self, ctx: &RequestContext, _: SubscriptionKind, topic: &[u8]) -> bool {
///         // Only the owner of the server process may watch `admin.` topics.
///         !topic.starts_with(b"admin.") || ctx.peer.is_some_and(|p| p.uid == 0)
///     }
/// }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Answers one request.
    fn call(&self, request: Request) -> impl Future<Output = Result<Reply, Failure>> + Send;

    microsocket_host::handler_hooks!();
}

type AuthorizeFn = dyn Fn(&RequestContext, SubscriptionKind, &[u8]) -> bool + Send + Sync;
type ObserveFn = dyn Fn(&RequestContext, SubscriptionChange<'_>) + Send + Sync;

/// A [`Handler`] made of closures (see [`handler_fn`]).
pub struct FnHandler<F> {
    call: F,
    authorize: Option<Box<AuthorizeFn>>,
    observe: Option<Box<ObserveFn>>,
}

impl<F> fmt::Debug for FnHandler<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnHandler")
            .field("authorize", &self.authorize.is_some())
            .field("observe", &self.observe.is_some())
            .finish_non_exhaustive()
    }
}

/// A handler from an async closure.
///
/// ```
/// use microsocket_tokio::{handler_fn, Failure, Reply, Request};
///
/// let handler = handler_fn(|request: Request| async move {
///     match &request.command[..] {
///         b"PING" => Ok(Reply::one("PONG")),
///         _ => Err(Failure::new("no such command")),
///     }
/// });
/// ```
pub fn handler_fn<F, Fut>(call: F) -> FnHandler<F>
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Reply, Failure>> + Send,
{
    FnHandler {
        call,
        authorize: None,
        observe: None,
    }
}

impl<F> FnHandler<F> {
    /// Adds an access-control hook (see [`Handler::authorize_subscription`]).
    #[must_use]
    pub fn authorize_subscription(
        mut self,
        f: impl Fn(&RequestContext, SubscriptionKind, &[u8]) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.authorize = Some(Box::new(f));
        self
    }

    /// Adds an observer of subscriptions (see [`Handler::subscription_changed`]).
    #[must_use]
    pub fn on_subscription_change(
        mut self,
        f: impl Fn(&RequestContext, SubscriptionChange<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.observe = Some(Box::new(f));
        self
    }
}

impl<F, Fut> Handler for FnHandler<F>
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Reply, Failure>> + Send,
{
    fn call(&self, request: Request) -> impl Future<Output = Result<Reply, Failure>> + Send {
        (self.call)(request)
    }

    fn authorize_subscription(&self, context: &RequestContext, kind: SubscriptionKind, topic: &[u8]) -> bool {
        self.authorize.as_ref().is_none_or(|f| f(context, kind, topic))
    }

    fn subscription_changed(&self, context: &RequestContext, change: SubscriptionChange<'_>) {
        if let Some(f) = &self.observe {
            f(context, change);
        }
    }
}
