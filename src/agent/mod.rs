//! The agent loop: a model writes code, a sandbox runs it, the output goes back, until a
//! termination condition fires. `conversation.rs` is the loop and knows nothing of HTTP or of
//! storage (runs in flight live in the service, `service/agent/`); `model/` speaks to the model
//! endpoints.

pub mod blocks;
pub mod conversation;
pub mod messages;
pub mod model;
pub mod prompt;
pub mod request;
pub mod termination;
