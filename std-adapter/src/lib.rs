//! Blocking client and server for microsocket over std sockets.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod socket;
