//! What a build can find wrong with its inputs on this machine before it fetches or builds
//! anything, all of it in one run: every image an entry names from here (an `oci:` layout, an
//! archive, a `@pkg:` folder) is there, and every `files:` entry's `source` is a regular file
//! that can be read, and the output format has what it needs. Each problem goes into the
//! report at its file, line and field, as `kiln validate`'s do.
//! Runs in: `kiln build` on the build host; reads metadata and package definitions only.

use std::fs::{self, File as HostFile};
use std::io;

use crate::build::assemble::source_path;
use crate::build::output::{needs_kernel, Format};
use crate::build::source::locate;
use crate::manifest::diagnostic::{Diagnostic, Origin, Report};
use crate::manifest::document::FieldPath;
use crate::manifest::{File, Manifest};
use crate::tree::content;

/// Adds to `report` every problem with the build's inputs on this machine and with making
/// `formats` of them.
pub fn check(manifest: &Manifest, report: &mut Report, formats: &[Format]) {
    let has_kernel = manifest
        .kernel
        .as_ref()
        .is_some_and(|k| !k.image.is_empty());
    let booted = formats.iter().find(|format| **format != Format::Tar);
    if let Some(format) = booted.filter(|_| !has_kernel && !report.documents.is_empty()) {
        let name = report.documents[0].name.clone();
        report.diagnostics.push(Diagnostic {
            file: name,
            line: 0,
            path: ".".into(),
            message: needs_kernel(*format),
            warning: false,
        });
    }
    let image = FieldPath::root().key("image");
    let mut images: Vec<(&Origin, FieldPath, &str)> = Vec::new();
    if let Some(kernel) = manifest.kernel.as_ref().filter(|k| !k.image.is_empty()) {
        images.push((&kernel.origin, image.clone(), &kernel.image));
    }
    for (text, origin) in manifest.init.iter().zip(&manifest.init_origins) {
        images.push((origin, FieldPath::root(), text));
    }
    for volume in manifest.volumes.iter().filter(|v| !v.image.is_empty()) {
        images.push((&volume.origin, image.clone(), &volume.image));
    }
    for entry in manifest
        .onboot
        .iter()
        .chain(&manifest.onshutdown)
        .chain(&manifest.services)
    {
        images.push((&entry.origin, image.clone(), &entry.image));
    }
    for (origin, field, text) in images {
        if let Err(message) = locate(&report.base(origin), text) {
            report.at(origin, &field, format!("image `{text}`: {message}"));
        }
    }
    for file in manifest.files.iter().filter(|file| !file.source.is_empty()) {
        if let Err(message) = readable(file, report) {
            report.at(&file.origin, &FieldPath::root().key("source"), message);
        }
    }
}

/// Whether a `files:` entry's source can be taken: a regular file (or a symlink to one) that
/// opens for reading; a missing one is fine when the entry is `optional`. A FIFO or device
/// is refused before it is opened, since reading one may never end.
fn readable(file: &File, report: &Report) -> Result<(), String> {
    let path = source_path(file, report);
    let shown = path.display();
    let kind = match fs::metadata(&path) {
        Ok(meta) => meta.file_type(),
        Err(err) if err.kind() == io::ErrorKind::NotFound && file.optional => return Ok(()),
        Err(err) => return Err(format!("cannot read {shown}: {err}")),
    };
    match content::not_regular(kind) {
        None => HostFile::open(&path)
            .map(drop)
            .map_err(|err| format!("cannot read {shown}: {err}")),
        Some(what) => Err(format!(
            "{shown} is {what}: a source must be a regular file"
        )),
    }
}
