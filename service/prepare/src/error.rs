//! The error of a runtime.json step: which field asked for it, what was being done (with the path
//! or interface), and the system's answer.
//! Runs in: the supervisor.

use std::fmt;
use std::io;

use crate::plan::Step;

/// A step that failed, or a change that could not be undone.
#[derive(Debug, thiserror::Error)]
pub struct Error {
    /// The runtime.json field (`mounts[1]`, `interfaces[0]`, `bindNS.net`); none for an undo.
    pub field: Option<String>,
    /// What was being done, naming the path or interface.
    pub action: String,
    /// The system's answer (part of the message, so not also a `source`).
    pub cause: io::Error,
}

impl Error {
    pub(crate) fn new(step: &Step, cause: io::Error) -> Self {
        Self {
            field: Some(step.field.clone()),
            action: step.action.to_string(),
            cause,
        }
    }

    pub(crate) fn undo(action: String, cause: io::Error) -> Self {
        Self {
            field: None,
            action,
            cause,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(field) = &self.field {
            write!(f, "runtime.json {field}: ")?;
        }
        write!(f, "{}: {}", self.action, self.cause)
    }
}
