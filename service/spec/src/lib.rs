//! The on-disk contract between `kiln build`, which writes it, and `service`, which reads it:
//! `runtime.json`, the checks on `config.json`, and the `/containers` bundle layout; with them,
//! the kernel's mount tables parsed, for init, the supervisor and the tests alike, and its
//! module tables (modules.dep, modules.alias) for init and kiln.
//! Runs in: the build host, init, the supervisor and the tests. It reads files and never changes
//! the system.
//! Mirrors LinuxKit's `Runtime` (src/moby/config.go and pkg/init/cmd/service/prepare.go), kept in one place.
#![forbid(unsafe_code)]

pub mod bundle;
pub mod config;
mod json;
pub mod layout;
pub mod modules;
pub mod mountinfo;
pub mod problem;
pub mod runtime;
pub mod signal;
pub mod supervision;

pub use bundle::check_bundle;
pub use json::LoadError;
pub use layout::{Bundle, Layout, Section};
pub use problem::Problem;
pub use runtime::Runtime;
