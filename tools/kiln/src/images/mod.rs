//! Images kiln reads: local layouts and archives, registry pulls (logins, progress) and the
//! local cache they are pulled into.
//! Runs in: `kiln` on the build host.

pub mod cache;
pub mod credentials;
pub mod local;
pub mod progress;
pub mod registry;
