//! The control socket: protocol types, the server threads, the `ctl` client,
//! and where the socket lives.
//!
//! The parts: `protocol` (a module of its own, `crate::protocol`, re-exported
//! here); `server`, the socket's threads; `client`, `corral ctl`; `place`,
//! where the socket lives and when a directory is safe for it; `peer`, who
//! is at the other end (SO_PEERCRED), for server and client alike.
//!
//! What it must never do: talk to a server, or admit a client, that is
//! neither root nor corral's (or the client's) own uid.

pub mod client;
mod peer;
mod place;
pub mod server;

/// The protocol is a module of its own (`crate::protocol`), below the core
/// and the socket alike; this path stays for what still names it so.
pub use crate::protocol;

pub use peer::peer_uid;
pub use place::{
    DEFAULT_SOCKET, DirError, Unsafe, candidates, check_socket_dir, create_socket_dir,
    default_candidates, server_path,
};
