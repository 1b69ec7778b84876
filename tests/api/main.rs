//! One integration-test binary: the real `execbox` binary, real HTTP, real programs.

mod helpers;

mod admission;
mod agent;
mod agent_eval;
mod batch;
mod auth;
mod cli;
mod containment;
mod contract;
mod errors;
mod eval;
mod gvisor;
mod kernel_isolation;
mod lifecycle;
mod openapi;
mod quotas;
mod sandboxes;
mod streaming;
mod validation;
mod model_clients;
mod scripted_model;
mod service_limits;
