//! What a bridge carries and where, and how it reaches NATS.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::BridgeError;
use crate::mapping::{join, subject_tail, SubjectError};

/// What a bridge exports, imports and answers.
///
/// ```
/// use microsocket_nats::BridgeConfig;
///
/// let config = BridgeConfig::new("kitchen")
///     .export("sensor.>")          // local sensor.temp -> NATS kitchen.sensor.temp
///     .import("attic:sensor.>")    // NATS attic.sensor.temp -> local sensor.temp
///     .import("alerts.>");         // NATS alerts.fire -> local alerts.fire
/// assert_eq!(config.prefix(), "kitchen");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConfig {
    prefix: String,
    exports: Vec<String>,
    imports: Vec<Import>,
    /// Why import specs given to [`BridgeConfig::import`] were refused.
    bad_imports: Vec<String>,
    serve_requests: bool,
    request_timeout: Duration,
    max_held_bytes: usize,
    max_requests_in_flight: usize,
    state_topic: Option<String>,
    origin_header: bool,
}

/// One import rule: NATS subjects matching `pattern` under `remote_prefix`
/// are published on the local bus with `remote_prefix.` taken off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// The prefix taken off the subject (empty: none).
    pub remote_prefix: String,
    /// A subject pattern (`*` one token, final `>` the rest), after the prefix.
    pub pattern: String,
}

impl Import {
    /// Reads `[REMOTE_PREFIX:]PATTERN`.
    ///
    /// # Errors
    /// [`BridgeError::Config`] if either part is not a valid subject or pattern.
    pub fn parse(spec: &str) -> Result<Self, BridgeError> {
        let (remote_prefix, pattern) = spec.split_once(':').unwrap_or(("", spec));
        if !remote_prefix.is_empty() {
            subject_tail(remote_prefix.as_bytes())
                .map_err(|e| BridgeError::Config(format!("import {spec:?}: the prefix has {e}")))?;
        }
        microsocket_core::Pattern::new(pattern.as_bytes())
            .map_err(|e| BridgeError::Config(format!("import {spec:?}: {e}")))?;
        if pattern.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(BridgeError::Config(format!(
                "import {spec:?}: the pattern has {}",
                SubjectError::Whitespace
            )));
        }
        Ok(Import {
            remote_prefix: remote_prefix.to_owned(),
            pattern: pattern.to_owned(),
        })
    }

    /// The NATS subject (pattern) this rule subscribes to.
    #[must_use]
    pub fn subject(&self) -> String {
        join(&self.remote_prefix, &self.pattern)
    }

    /// The local topic for a subject this rule received.
    #[must_use]
    pub fn topic<'s>(&self, subject: &'s str) -> &'s str {
        if self.remote_prefix.is_empty() {
            return subject;
        }
        subject
            .strip_prefix(self.remote_prefix.as_str())
            .and_then(|rest| rest.strip_prefix('.'))
            .unwrap_or(subject)
    }
}

impl BridgeConfig {
    /// A bridge that exports and imports nothing yet and answers NATS requests
    /// on `prefix.COMMAND`; its exports go to `prefix.TOPIC`. The prefix names
    /// this bus on NATS: the host name is a good one.
    #[must_use]
    pub fn new(prefix: impl Into<String>) -> Self {
        BridgeConfig {
            prefix: prefix.into(),
            exports: Vec::new(),
            imports: Vec::new(),
            bad_imports: Vec::new(),
            serve_requests: true,
            request_timeout: Duration::from_secs(5),
            max_held_bytes: 8 << 20,
            max_requests_in_flight: 256,
            state_topic: Some(DEFAULT_STATE_TOPIC.to_owned()),
            origin_header: true,
        }
    }

    /// Exports local publications on topics matching `pattern` (a topic or a
    /// microsocket pattern) to NATS as `prefix.TOPIC`.
    #[must_use]
    pub fn export(mut self, pattern: impl Into<String>) -> Self {
        self.exports.push(pattern.into());
        self
    }

    /// Imports NATS subjects per `spec`, `[REMOTE_PREFIX:]PATTERN` (see
    /// [`Import`]); checked by [`BridgeConfig::validate`].
    #[must_use]
    pub fn import(mut self, spec: &str) -> Self {
        match Import::parse(spec) {
            Ok(import) => self.imports.push(import),
            Err(BridgeError::Config(why)) => self.bad_imports.push(why),
            Err(other) => self.bad_imports.push(other.to_string()),
        }
        self
    }

    /// Whether NATS requests on `prefix.COMMAND` are handed to the bus (on by
    /// default).
    #[must_use]
    pub fn serve_requests(mut self, on: bool) -> Self {
        self.serve_requests = on;
        self
    }

    /// How long a request crossing the bridge may take, either way (5 s by
    /// default).
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Bytes of exported publications held while NATS is not connected (8 MiB
    /// by default); past it the oldest are dropped and counted.
    #[must_use]
    pub fn max_held_bytes(mut self, bytes: usize) -> Self {
        self.max_held_bytes = bytes;
        self
    }

    /// NATS requests handed to the bus at once (256 by default); past it they
    /// are answered with a failure.
    #[must_use]
    pub fn max_requests_in_flight(mut self, n: usize) -> Self {
        self.max_requests_in_flight = n.max(1);
        self
    }

    /// The local topic on which the bridge reports its state (`None`: it does
    /// not); [`DEFAULT_STATE_TOPIC`] by default.
    #[must_use]
    pub fn state_topic(mut self, topic: Option<String>) -> Self {
        self.state_topic = topic;
        self
    }

    /// Whether exports carry the `Microsocket-Origin` header (on by
    /// default). Without it a message of one value goes out with no header
    /// at all, which NATS carries about twice as fast; loops are then
    /// stopped by no-echo and by the bridge recognizing its own imports
    /// alone, not when NATS itself brings a message back on another
    /// connection (a stream that republishes, say).
    #[must_use]
    pub fn origin_header(mut self, on: bool) -> Self {
        self.origin_header = on;
        self
    }

    pub(crate) fn marks_origin(&self) -> bool {
        self.origin_header
    }

    /// The subject prefix of this bus.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The export patterns.
    #[must_use]
    pub fn exports(&self) -> &[String] {
        &self.exports
    }

    /// The import rules.
    #[must_use]
    pub fn imports(&self) -> &[Import] {
        &self.imports
    }

    pub(crate) fn serves_requests(&self) -> bool {
        self.serve_requests
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.request_timeout
    }

    pub(crate) fn held_limit(&self) -> usize {
        self.max_held_bytes
    }

    pub(crate) fn in_flight_limit(&self) -> usize {
        self.max_requests_in_flight
    }

    pub(crate) fn state(&self) -> Option<&str> {
        self.state_topic.as_deref()
    }

    /// Checks every setting.
    ///
    /// # Errors
    /// [`BridgeError::Config`] naming the first bad one.
    pub fn validate(&self) -> Result<(), BridgeError> {
        subject_tail(self.prefix.as_bytes())
            .map_err(|e| BridgeError::Config(format!("the prefix {:?} has {e}", self.prefix)))?;
        for export in &self.exports {
            microsocket_core::Pattern::new(export.as_bytes())
                .map_err(|e| BridgeError::Config(format!("export {export:?}: {e}")))?;
        }
        if let Some(bad) = self.bad_imports.first() {
            return Err(BridgeError::Config(bad.clone()));
        }
        if let Some(topic) = &self.state_topic {
            if topic.is_empty() || topic.starts_with('$') {
                return Err(BridgeError::Config(format!(
                    "the state topic {topic:?} must be non-empty and not start with $"
                )));
            }
        }
        Ok(())
    }
}

/// The local topic where a bridge reports its state, unless told otherwise.
pub const DEFAULT_STATE_TOPIC: &str = "microsocket.nats";

/// How to reach NATS: its URL (`nats://host:4222`, `tls://host:4222`; several,
/// comma-separated, for a cluster), credentials and TLS.
#[derive(Clone, Default)]
pub struct NatsOptions {
    /// The server URL(s).
    pub url: String,
    /// How to authenticate.
    pub credentials: Credentials,
    /// CA certificates (PEM) to verify the NATS server with; setting it
    /// requires TLS.
    pub tls_ca: Option<PathBuf>,
    /// A client certificate and key (PEM) for NATS's mutual TLS.
    pub tls_client: Option<(PathBuf, PathBuf)>,
}

/// Credentials for NATS. Their `Debug` shows which kind, never the secret.
#[derive(Clone, Default)]
pub enum Credentials {
    /// None (or those in the URL).
    #[default]
    None,
    /// A user name and password.
    UserPassword {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
    /// A token.
    Token(String),
    /// An nkey seed.
    NKey(String),
    /// A `.creds` file (JWT and nkey seed).
    CredsFile(PathBuf),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Credentials::None => "None",
            Credentials::UserPassword { .. } => "UserPassword(..)",
            Credentials::Token(_) => "Token(..)",
            Credentials::NKey(_) => "NKey(..)",
            Credentials::CredsFile(_) => "CredsFile(..)",
        })
    }
}

impl fmt::Debug for NatsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsOptions")
            .field("url", &redacted_url(&self.url))
            .field("credentials", &self.credentials)
            .field("tls_ca", &self.tls_ca)
            .field("tls_client", &self.tls_client.as_ref().map(|(cert, _)| cert))
            .finish()
    }
}

impl NatsOptions {
    /// The server URLs, one per comma-separated part of `url`.
    #[must_use]
    pub fn urls(&self) -> Vec<String> {
        self.url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Options for `url`, without credentials.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        NatsOptions {
            url: url.into(),
            ..NatsOptions::default()
        }
    }

    /// Credentials from the environment, the first of: `NATS_CREDS` (a creds
    /// file), `NATS_NKEY` (a seed), `NATS_TOKEN`, `NATS_USER` with
    /// `NATS_PASSWORD`; none if none is set.
    #[must_use]
    pub fn credentials_from_env(mut self) -> Self {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        self.credentials = if let Some(file) = var("NATS_CREDS") {
            Credentials::CredsFile(file.into())
        } else if let Some(seed) = var("NATS_NKEY") {
            Credentials::NKey(seed)
        } else if let Some(token) = var("NATS_TOKEN") {
            Credentials::Token(token)
        } else if let Some(user) = var("NATS_USER") {
            Credentials::UserPassword {
                user,
                password: var("NATS_PASSWORD").unwrap_or_default(),
            }
        } else {
            Credentials::None
        };
        self
    }
}

/// `url` with any user, password or token in it replaced by `***`, for logs.
#[must_use]
pub fn redacted_url(url: &str) -> String {
    url.split(',')
        .map(|one| {
            let start = one.find("://").map_or(0, |scheme| scheme + 3);
            match one.rfind('@') {
                Some(at) if at >= start => format!("{}***{}", &one[..start], &one[at..]),
                _ => one.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_map_the_prefix_back() {
        let import = Import::parse("attic:sensor.>").unwrap();
        assert_eq!(import.subject(), "attic.sensor.>");
        assert_eq!(import.topic("attic.sensor.temp"), "sensor.temp");
        let plain = Import::parse("alerts.*").unwrap();
        assert_eq!(plain.subject(), "alerts.*");
        assert_eq!(plain.topic("alerts.fire"), "alerts.fire");
        assert!(Import::parse("attic:sensor.>.x").is_err());
        assert!(Import::parse("at tic:x").is_err());
    }

    #[test]
    fn validation_names_the_bad_setting() {
        assert!(BridgeConfig::new("h").export("a.>").import("b:c.*").validate().is_ok());
        let bad = BridgeConfig::new("").validate().unwrap_err().to_string();
        assert!(bad.contains("prefix"), "{bad}");
        let bad = BridgeConfig::new("h")
            .export("a.>.b")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(bad.contains("a.>.b"), "{bad}");
        let bad = BridgeConfig::new("h").import("x y").validate().unwrap_err().to_string();
        assert!(bad.contains("x y"), "{bad}");
        assert!(BridgeConfig::new("h")
            .state_topic(Some("$x".into()))
            .validate()
            .is_err());
    }

    #[test]
    fn secrets_never_show() {
        let options = NatsOptions {
            url: "nats://me:secret@localhost:4222,nats://other:4222".into(),
            credentials: Credentials::Token("tok-secret".into()),
            ..NatsOptions::default()
        };
        let shown = format!("{options:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("nats://***@localhost:4222,nats://other:4222"), "{shown}");
        assert_eq!(redacted_url("me:secret@localhost:4222"), "***@localhost:4222");
        assert_eq!(options.urls(), ["nats://me:secret@localhost:4222", "nats://other:4222"]);
    }
}
