//! Packages: folders of this workspace whose build.yml makes an OCI image without Docker, from
//! their files, workspace binaries, Debian packages and a Debian kernel.
//! Runs in: `kiln pkg`, and `kiln build` for `@pkg:` images, on the build host.

pub mod build;
pub mod debian;
pub mod inputs;
pub mod kernel;
pub mod libraries;
pub mod package;
pub mod tool;
pub mod workspace;
