//! One integration-test binary: the real `execbox` binary, real HTTP, real programs.

mod helpers;

mod admission;
mod agent;
mod agent_eval;
mod auth;
mod batch;
mod cli;
mod compat_clients;
mod console;
mod containment;
mod contexts;
mod contract;
mod docker_sandboxes;
mod errors;
mod eval;
mod gvisor;
mod judge0;
mod kernel_isolation;
mod languages;
mod lifecycle;
mod local_sandboxes;
mod model_clients;
mod openapi;
mod piston;
mod quotas;
mod runs;
mod sandboxes;
mod scripted_model;
mod service_limits;
mod streaming;
mod validation;
