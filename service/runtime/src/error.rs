//! What can go wrong with a container operation, named by the operation, the container and
//! the path, in our words rather than libcontainer's.
//! Runs in: wherever the runtime runs.

use std::fmt;
use std::io;
use std::path::PathBuf;

use spec::Problem;

use crate::state::Status;

/// A failed runtime operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("container `{id}` already exists")]
    Exists { id: String },
    #[error("container `{id}` does not exist")]
    NotFound { id: String },
    #[error("invalid container id `{id}`: use at most {max} letters, digits, `.`, `_`, `-` and `+`, not starting with `.`", max = spec::layout::MAX_ID_LEN)]
    InvalidId { id: String },
    #[error("cannot {operation} container `{id}`: it is {status}")]
    WrongState {
        id: String,
        operation: &'static str,
        status: Status,
    },
    #[error("cannot delete container `{id}`: it is {status}; without --force only a stopped container is deleted (kill it first)")]
    NotStopped { id: String, status: Status },
    #[error("bundle {}: {}", bundle.display(), Problems(problems))]
    Bundle {
        bundle: PathBuf,
        problems: Vec<Problem>,
    },
    #[error("{operation} container `{id}`: {source}")]
    Runtime {
        operation: &'static str,
        id: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{operation} {}: {source}", path.display())]
    Io {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("unknown signal `{0}`: {hint}", hint = spec::signal::HINT)]
    UnknownSignal(String),
    #[error("{0}")]
    Unsupported(&'static str),
}

impl Error {
    pub(crate) fn io(operation: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            operation,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn runtime(
        operation: &'static str,
        id: &str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Runtime {
            operation,
            id: id.to_owned(),
            source: Box::new(source),
        }
    }
}

/// `message` followed by the text of each cause of `err` (`: cause`), each text once:
/// libcontainer's messages often repeat their cause.
pub(crate) fn with_causes(mut message: String, err: &dyn std::error::Error) -> String {
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(&format!(": {text}"));
        }
        source = cause.source();
    }
    message
}

/// Problems of a bundle, joined on one line.
struct Problems<'a>(&'a [Problem]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}
