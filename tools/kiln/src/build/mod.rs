//! `kiln build`: where each entry's image comes from (a local image, the cache, a pull or a
//! package build), each entry turned into its bundle's config.json and runtime.json, the root
//! filesystem assembled with its mount points and the kernel modules it can use, and the
//! outputs written.
//! Runs in: `kiln build` on the build host.

pub mod assemble;
pub mod container;
pub mod modules;
pub mod mountpoint;
pub mod output;
pub mod preflight;
pub mod source;
