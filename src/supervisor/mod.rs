//! The sandbox supervisor: one small process inside every persistent sandbox (local: the
//! sandbox's PID 1; docker: the container's entrypoint) that runs calls, file operations,
//! contexts and background processes on the service's behalf. The service speaks to it over a
//! unix socket in a directory only root can enter, one connection per operation
//! (`proto.rs`); `client.rs` is the service's side, `server/` the supervisor's.

pub mod client;
pub mod proto;
pub mod server;
