//! Typed decoding of document nodes into the manifest model through serde, reporting every bad
//! field of an object rather than stopping at the first: each field is decoded on its own, and
//! keys that a type would silently drop are reported as unknown.
//! Runs in: `kiln` on the build host. Pure.

use serde::de::DeserializeOwned;

use crate::manifest::diagnostic::Report;
use crate::manifest::document::{FieldPath, Node, Step, Value};

/// Decodes nodes of one document, recording problems in the report.
#[derive(Debug)]
pub struct Decoder<'a> {
    pub report: &'a mut Report,
    pub document: usize,
}

/// A problem found while decoding, relative to the decoded node.
struct Failure {
    path: FieldPath,
    message: String,
    /// The field that is not known, when that is the problem; `path` is then its parent.
    unknown: Option<String>,
}

impl Decoder<'_> {
    /// Decodes `node` (found at `path`) as a `T`.
    pub fn value<T: DeserializeOwned>(&mut self, node: &Node, path: &FieldPath) -> Option<T> {
        self.keep(node, path, deserialize(node.to_json()))
    }

    /// Decodes the mapping `node` as a `T` one field at a time, so that every bad field is
    /// reported and the good ones are kept. Keys listed in `skip` are left to the caller.
    /// A null node is an empty mapping.
    pub fn fields<T: DeserializeOwned>(
        &mut self,
        node: &Node,
        path: &FieldPath,
        skip: &[&str],
    ) -> Option<T> {
        let entries: &[(Node, Node)] = match &node.value {
            Value::Mapping(entries) => entries,
            Value::Null => &[],
            _ => {
                self.report.error(
                    self.document,
                    path,
                    format!("expected a mapping, found {}", node.kind()),
                );
                return None;
            }
        };
        let mut good = serde_json::Map::new();
        for (key, value) in entries {
            let name = key.key_text();
            if skip.contains(&name.as_str()) {
                continue;
            }
            let json = value.to_json();
            let single: serde_json::Map<_, _> =
                [(name.clone(), json.clone())].into_iter().collect();
            let decoded = deserialize::<T>(single.into());
            if self.keep(node, path, decoded).is_some() {
                good.insert(name, json);
            }
        }
        // Every field decoded on its own, so together they do too.
        self.keep(node, path, deserialize(good.into()))
    }

    /// The decoded value, or `None` with its failures reported.
    fn keep<T>(
        &mut self,
        node: &Node,
        path: &FieldPath,
        result: Result<T, Vec<Failure>>,
    ) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(failures) => {
                for failure in failures {
                    self.report_failure(node, path, failure);
                }
                None
            }
        }
    }

    fn report_failure(&mut self, node: &Node, path: &FieldPath, failure: Failure) {
        // For an unknown key, `failure.path` is its parent; the key is reported where it is written.
        let found = node.find(&failure.path);
        let (line, full) = match failure.unknown {
            Some(key) => (
                found.key_line(&key).unwrap_or(found.line),
                path.join(&failure.path).key(key),
            ),
            None => (found.line, path.join(&failure.path)),
        };
        self.report
            .error_at_line(self.document, line, &full, failure.message);
    }
}

/// Decodes `value` as a `T`; the failures name paths relative to `value`.
fn deserialize<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, Vec<Failure>> {
    let mut ignored = Vec::new();
    let mut record = |path: serde_ignored::Path<'_>| ignored.push(ignored_path(&path));
    let result = serde_path_to_error::deserialize::<_, T>(serde_ignored::Deserializer::new(
        value,
        &mut record,
    ));
    match result {
        Err(err) => {
            let path = FieldPath(
                err.path()
                    .iter()
                    .filter_map(|segment| match segment {
                        serde_path_to_error::Segment::Seq { index } => Some(Step::Index(*index)),
                        serde_path_to_error::Segment::Map { key } => Some(Step::Key(key.clone())),
                        serde_path_to_error::Segment::Enum { variant } => {
                            Some(Step::Key(variant.clone()))
                        }
                        serde_path_to_error::Segment::Unknown => None,
                    })
                    .collect(),
            );
            let message = err.into_inner().to_string();
            let unknown = unknown_field(&message);
            let (path, message) = match &unknown {
                // The unknown key may be in the path already; report it on its parent.
                Some(key) => {
                    let mut path = path;
                    if path.0.last() == Some(&Step::Key(key.clone())) {
                        path.0.pop();
                    }
                    (path, describe_unknown(key, &message))
                }
                None => (path, describe(&message)),
            };
            Err(vec![Failure {
                path,
                message,
                unknown,
            }])
        }
        Ok(_) if !ignored.is_empty() => Err(ignored
            .into_iter()
            .map(|mut path: FieldPath| {
                let key = match path.0.pop() {
                    Some(Step::Key(key)) => key,
                    Some(Step::Index(index)) => index.to_string(),
                    None => String::new(),
                };
                Failure {
                    path,
                    message: format!("unknown field `{key}`"),
                    unknown: Some(key),
                }
            })
            .collect()),
        Ok(value) => Ok(value),
    }
}

fn ignored_path(path: &serde_ignored::Path<'_>) -> FieldPath {
    use serde_ignored::Path;
    match path {
        Path::Root => FieldPath::root(),
        Path::Seq { parent, index } => ignored_path(parent).index(*index),
        Path::Map { parent, key } => ignored_path(parent).key(key.clone()),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}

/// The key of serde's "unknown field `x`, expected ..." message.
fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_owned())
}

/// "unknown field `x`", with the closest known field when there is a likely one.
fn describe_unknown(key: &str, message: &str) -> String {
    let known: Vec<&str> = message
        .split_once("expected ")
        .map(|(_, list)| list.split('`').skip(1).step_by(2).collect())
        .unwrap_or_default();
    let closest = known
        .iter()
        .map(|name| (edit_distance(key, name), *name))
        .min()
        .filter(|(distance, _)| *distance <= 2.max(key.len() / 4));
    match closest {
        Some((_, name)) => format!("unknown field `{key}`; did you mean `{name}`?"),
        None if known.is_empty() => format!("unknown field `{key}`"),
        None => format!(
            "unknown field `{key}`; known fields are {}",
            known
                .iter()
                .map(|name| format!("`{name}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// serde's message, with a hint where YAML typed a value the user meant as text.
fn describe(message: &str) -> String {
    let typed_by_yaml = [
        "invalid type: integer",
        "invalid type: floating point",
        "invalid type: boolean",
    ];
    if message.ends_with("expected a string")
        && typed_by_yaml.iter().any(|p| message.starts_with(p))
    {
        format!("{message}; quote the value to make it a string")
    } else {
        message.to_owned()
    }
}

/// Levenshtein distance, for suggesting a field name.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_pick_a_close_name() {
        assert_eq!(edit_distance("bind", "binds"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        let message = "unknown field `comand`, expected one of `command`, `env`";
        assert_eq!(
            describe_unknown("comand", message),
            "unknown field `comand`; did you mean `command`?"
        );
        let message = "unknown field `zzz`, expected `image` or `org`";
        assert_eq!(
            describe_unknown("zzz", message),
            "unknown field `zzz`; known fields are `image`, `org`"
        );
    }
}
