//! One thing wrong with a document, named by the path of the field it is about
//! (`interfaces[1].peer`), so that every error message points at its place.
//! Runs in: anything that checks a bundle (builder, `service check`, the runtime before create).

use std::fmt;

/// A problem with one field of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where: a field path such as `process.args` or `interfaces[1].peer`; `.` for the whole document.
    pub field: String,
    /// What is wrong, in words.
    pub message: String,
}

impl Problem {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for Problem {}
