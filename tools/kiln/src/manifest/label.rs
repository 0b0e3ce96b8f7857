//! An image's `org.mobyproject.config` label: JSON holding the same container settings a
//! manifest entry may set (never `name` or `image`), decoded with the manifest's own decoder so
//! a bad label is reported field by field, with its line.
//! Runs in: `kiln` on the build host. Pure.

use crate::manifest::decode::Decoder;
use crate::manifest::diagnostic::{Document, Report};
use crate::manifest::document::{self, FieldPath, Node, Value};
use crate::manifest::entry::ImageConfig;

/// The label an image carries its default container settings in.
pub const LABEL: &str = "org.mobyproject.config";

/// Decodes the label `text` of the image `image`; the error lists every problem.
pub fn decode(image: &str, text: &str) -> Result<ImageConfig, String> {
    let mut report = Report::default();
    let config = match document::parse(text) {
        Ok(root) => {
            report.documents.push(Document {
                name: String::new(),
                root: root.clone(),
            });
            for key in ["name", "image"] {
                if root.get(key).is_some() {
                    report.error(0, &FieldPath::root().key(key), "not allowed in a label");
                }
            }
            let mut decoder = Decoder {
                report: &mut report,
                document: 0,
            };
            decoder.fields::<ImageConfig>(&root, &FieldPath::root(), &["name", "image"])
        }
        Err(err) => {
            report.documents.push(Document {
                name: String::new(),
                root: Node {
                    line: err.line,
                    value: Value::Null,
                },
            });
            report.error_at_line(0, err.line, &FieldPath::root(), err.message);
            None
        }
    };
    match config {
        Some(config) if report.diagnostics.is_empty() => Ok(config),
        _ => {
            let problems: Vec<String> = report
                .diagnostics
                .iter()
                .map(|d| format!("{}: {}", d.path, d.message))
                .collect();
            Err(format!(
                "image `{image}`: its {} label is not valid: {}",
                LABEL,
                problems.join("; ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_decode_like_manifest_entries() {
        let config = decode(
            "getty",
            r#"{"pid":"host","binds":["/dev:/dev"],"capabilities":["all"]}"#,
        )
        .expect("valid");
        assert_eq!(config.pid.as_deref(), Some("host"));
        assert_eq!(config.binds, Some(vec!["/dev:/dev".to_owned()]));
        let err = decode("x", r#"{"name":"x","pid":3,"capabilites":[]}"#).expect_err("bad");
        assert!(
            err.starts_with("image `x`: its org.mobyproject.config label is not valid: "),
            "{err}"
        );
        assert!(err.contains("name: not allowed in a label"), "{err}");
        assert!(err.contains("pid: "), "{err}");
        assert!(err.contains("capabilites"), "{err}");
        let err = decode("x", r#"{"pid":"#).expect_err("syntax");
        assert!(err.contains("label is not valid"), "{err}");
    }
}
