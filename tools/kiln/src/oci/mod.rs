//! The OCI image format as kiln stores it: sha256 digests, the platform every image is built
//! for, the image layout directory (the local cache and the layouts tests build), and the
//! ingest area blobs pass through on their way in.
//! Runs in: `kiln` on the build host.

pub mod digest;
pub mod ingest;
pub mod layout;
pub mod platform;
