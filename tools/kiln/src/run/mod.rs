//! `kiln run`: booting a built image on this machine.
//! Runs in: `kiln run` and the VM tests, on the build host.

pub mod accel;
pub mod data;
pub mod disk;
pub mod network;
pub mod qemu;
