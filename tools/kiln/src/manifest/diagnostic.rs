//! What `kiln validate` reports: one problem with a manifest, at its file, line and field path
//! (`m.yml:14: services[2].binds[0]: "a:b:c:d" has 4 parts, expected src:dst[:opts]`).
//! Runs in: `kiln` on the build host. Pure data.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::manifest::document::{FieldPath, Node};

/// One problem in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The file as named on the command line (`-` is `<stdin>`).
    pub file: String,
    /// 1-based line of the field (or of the nearest enclosing one that exists); 0 when the
    /// problem is with the file as a whole.
    pub line: usize,
    /// The field, such as `services[2].binds[0]`; `.` for the whole document.
    pub path: String,
    pub message: String,
    /// A warning: said, but the manifest is still valid.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub warning: bool,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            // Not about a place in the document (the file could not be read).
            return write!(f, "{}: {}", self.file, self.message);
        }
        let kind = if self.warning { "warning: " } else { "" };
        write!(
            f,
            "{}:{}: {}: {kind}{}",
            self.file, self.line, self.path, self.message
        )
    }
}

/// A parsed manifest file: its name for messages and its tree for line numbers.
#[derive(Debug, Clone)]
pub struct Document {
    pub name: String,
    pub root: Node,
}

/// Where an entry of the model came from, so that checks made after merging still name the
/// file and the line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// Index into the documents of the run.
    pub document: usize,
    /// The entry's path in that document, such as `services[2]`.
    pub path: FieldPath,
}

/// The documents of one run and the problems found in them.
#[derive(Debug, Default)]
pub struct Report {
    pub documents: Vec<Document>,
    pub diagnostics: Vec<Diagnostic>,
    /// What is allowed but likely not what the author meant.
    pub warnings: Vec<Diagnostic>,
}

impl Report {
    /// Records a problem at `path` in document `document`.
    pub fn error(&mut self, document: usize, path: &FieldPath, message: impl Into<String>) {
        let line = self.documents[document].root.find(path).line;
        self.error_at_line(document, line, path, message);
    }

    /// The directory the relative paths of the entry at `origin` start from: its manifest's
    /// (the working directory for standard input).
    pub fn base(&self, origin: &Origin) -> PathBuf {
        let name = &self.documents[origin.document].name;
        match Path::new(name).parent() {
            Some(dir) if !name.starts_with('<') && !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        }
    }

    /// An entry named for a message about a conflict with it: `services[2] (m.yml:14)`.
    pub fn describe(&self, origin: &Origin) -> String {
        let doc = &self.documents[origin.document];
        let line = doc.root.find(&origin.path).line;
        format!("{} ({}:{line})", origin.path, doc.name)
    }

    /// Records a problem at a known line.
    pub fn error_at_line(
        &mut self,
        document: usize,
        line: usize,
        path: &FieldPath,
        message: impl Into<String>,
    ) {
        self.diagnostics.push(Diagnostic {
            file: self.documents[document].name.clone(),
            line,
            path: path.to_string(),
            message: message.into(),
            warning: false,
        });
    }

    /// Records a warning with a field below an entry of the model.
    pub fn warn(&mut self, origin: &Origin, field: &FieldPath, message: impl Into<String>) {
        let path = origin.path.join(field);
        let document = &self.documents[origin.document];
        self.warnings.push(Diagnostic {
            file: document.name.clone(),
            line: document.root.find(&path).line,
            path: path.to_string(),
            message: message.into(),
            warning: true,
        });
    }

    /// Records a problem with a field below an entry of the model.
    pub fn at(&mut self, origin: &Origin, field: &FieldPath, message: impl Into<String>) {
        self.error(origin.document, &origin.path.join(field), message);
    }
}
