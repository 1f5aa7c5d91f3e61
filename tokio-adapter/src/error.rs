//! The error type, shared with every adapter.

pub use microsocket_host::Error;
