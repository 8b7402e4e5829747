//! The control socket: protocol types, the server threads, the `ctl` client.

pub mod protocol;
