//! Kiln's host tool as a library, in folders by concept, each using only those below it:
//! [`run`] (booting under qemu), [`build`] (where each entry's image comes from, the bundles,
//! the root filesystem and the outputs), [`media`] (bootable disks and ISOs), [`pkg`]
//! (packages), [`images`] (local images, registry pulls, the cache), [`oci`] (digests, platform, layout, ingest), [`manifest`] (the
//! YAML model and its checks: `kiln validate` is [`load`] followed by printing the report) and
//! [`tree`] (the file tree in memory). ARCHITECTURE.md has the map.
//! Runs in: `kiln` on the build host. Writes only the outputs it is asked for.
//! No unsafe code, but for `run::accel`, which must give a test VM its memory.
#![deny(unsafe_code)]

pub mod build;
pub mod images;
pub mod manifest;
pub mod media;
pub mod oci;
pub mod pkg;
pub mod run;
pub mod tree;

pub use manifest::diagnostic::{Diagnostic, Report};
pub use manifest::Manifest;

/// A manifest's text and the name it is reported under.
#[derive(Debug, Clone)]
pub struct Input {
    pub name: String,
    pub text: String,
}

/// Parses every input, merges them in order and checks the result; the report holds every
/// problem found (empty when the manifest is valid), in file order and then line order.
pub fn load(inputs: &[Input]) -> (Manifest, Report) {
    let mut report = Report::default();
    let mut merged = Manifest::default();
    for input in inputs {
        let manifest = manifest::parse(&mut report, &input.name, &input.text);
        merged.merge(manifest);
    }
    manifest::check::check(&merged, &mut report);
    sort(&mut report, inputs);
    (merged, report)
}

/// Puts the report's problems in file order (as `inputs` has the files), then line order.
pub fn sort(report: &mut Report, inputs: &[Input]) {
    let order = |file: &str| inputs.iter().position(|input| input.name == file);
    for list in [&mut report.diagnostics, &mut report.warnings] {
        list.sort_by_key(|diagnostic| (order(&diagnostic.file), diagnostic.line));
    }
}
