//! Reading a JSON document into a typed value, with errors that name the file, the field path
//! and the line, instead of serde's bare "invalid type" message.
//! Runs in: anything that reads config.json or runtime.json.

use std::path::{Path, PathBuf};
use std::{fs, io};

use serde::de::DeserializeOwned;

use crate::problem::Problem;

/// A document that could not be read or did not parse.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: {problem}", path.display())]
    Parse { path: PathBuf, problem: Problem },
}

impl LoadError {
    /// The problem in the words of `service check`: the field and what is wrong with it.
    pub fn problem(&self) -> Problem {
        match self {
            LoadError::Read { source, .. } => Problem::new(".", format!("cannot read: {source}")),
            LoadError::Parse { problem, .. } => problem.clone(),
        }
    }
}

/// Reads `path` and parses it; `Ok(None)` when the file does not exist.
pub(crate) fn load_optional<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, LoadError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(source) if source.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(LoadError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    parse(&bytes).map(Some).map_err(|problem| LoadError::Parse {
        path: path.to_owned(),
        problem,
    })
}

/// Reads `path` and parses it; a missing file is an error.
pub(crate) fn load<T: DeserializeOwned>(path: &Path) -> Result<T, LoadError> {
    load_optional(path)?.ok_or_else(|| LoadError::Read {
        path: path.to_owned(),
        source: io::Error::from(io::ErrorKind::NotFound),
    })
}

/// Parses `bytes` as JSON into `T`, naming the field path of the first error.
pub(crate) fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let field = err.path().to_string();
        let inner = err.into_inner();
        Problem::new(field, describe(&inner))
    })?;
    deserializer
        .end()
        .map_err(|err| Problem::new(".", describe(&err)))?;
    Ok(value)
}

/// serde_json's message without its trailing " at line L column C", which is given in our words.
fn describe(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let text = match text.rfind(" at line ") {
        Some(at) => &text[..at],
        None => &text,
    };
    if err.line() == 0 {
        text.to_owned()
    } else {
        format!("{text} (line {}, column {})", err.line(), err.column())
    }
}
