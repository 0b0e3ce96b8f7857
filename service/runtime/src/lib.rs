//! The embedded OCI runtime: creates, starts, signals, inspects and deletes containers from OCI
//! bundles, over youki's `libcontainer`, which nothing outside this crate sees. It also holds the
//! runc-compatible command line that `service runtime` exposes.
//! Runs in: single-threaded processes only (`service runtime ...`, a short-lived helper the
//! supervisor starts). libcontainer clones children that run ordinary Rust code and changes the
//! calling process (dumpable flag, oom_score_adj, cwd), so a multithreaded caller goes through
//! [`helper`], which re-executes the binary, never through [`Runtime::create`] directly.
//! Mirrors runc's command line (create/start/state/kill/delete/run/exec/list) and the OCI runtime
//! spec's lifecycle (runtime.md).

mod bundle;
pub mod cli;
mod container;
pub mod container_init;
mod devbind;
pub mod diagnostics;
mod error;
mod exec;
mod executor;
pub mod helper;
mod hooks;
mod oom;
mod seccomp;
mod state;
mod wait;

pub use container::{CreateOptions, Runtime, Stdio, DEFAULT_CGROUP_PARENT, DEFAULT_ROOT};
pub use error::Error;
pub use exec::ExecOptions;
pub use state::{State, Status};
pub use wait::{exit_code, wait_ended, Ended};
