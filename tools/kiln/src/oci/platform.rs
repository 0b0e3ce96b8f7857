//! The platform every image is built for (linux/amd64), and the entry for it in an index
//! (manifest list), whether the index came from a registry or a local layout.
//! Runs in: `kiln` on the build host. Pure.

use anyhow::{bail, Result};
use oci_spec::image::{Descriptor, ImageIndex};

/// The platform every image is built for.
pub const OS: &str = "linux";
pub const ARCHITECTURE: &str = "amd64";

/// The index entry for linux/amd64: one without a variant first.
pub fn platform(index: &ImageIndex) -> Result<&Descriptor> {
    let matching: Vec<&Descriptor> = index
        .manifests()
        .iter()
        .filter(|entry| {
            entry.platform().as_ref().is_some_and(|platform| {
                platform.os().to_string() == OS
                    && platform.architecture().to_string() == ARCHITECTURE
            })
        })
        .collect();
    if let Some(entry) = matching
        .iter()
        .find(|entry| {
            entry
                .platform()
                .as_ref()
                .is_some_and(|p| p.variant().is_none())
        })
        .or(matching.first())
    {
        return Ok(entry);
    }
    let offered: Vec<String> = index
        .manifests()
        .iter()
        .filter_map(|entry| entry.platform().as_ref())
        .map(|platform| {
            let mut text = format!("{}/{}", platform.os(), platform.architecture());
            if let Some(variant) = platform.variant() {
                text = format!("{text}/{variant}");
            }
            text
        })
        .collect();
    bail!(
        "the image has no {OS}/{ARCHITECTURE} version; its index offers {}",
        if offered.is_empty() {
            "no platforms".to_owned()
        } else {
            offered.join(", ")
        }
    )
}
