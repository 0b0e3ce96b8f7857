//! A YAML document as a tree of nodes that remember where they start, so that every error about
//! a manifest can name its line. Scalars are typed by the YAML 1.2 core schema (as LinuxKit's
//! yaml.v3 does for the documents it accepts): `10` is a number, `"10"` a string.
//! Runs in: `kiln` on the build host. Pure: parses text, touches nothing.

use std::collections::HashMap;
use std::fmt;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span};
use serde_json::Number;

/// One node of a document and the place where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// 1-based line.
    pub line: usize,
    pub value: Value,
}

/// The content of a node.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Sequence(Vec<Node>),
    /// Entries in document order; keys are unique.
    Mapping(Vec<(Node, Node)>),
}

/// One step of a path into a document: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// Where a field is: `services[2].binds[0]`. Rendered with `.` between keys and `[i]` for
/// indices; keys that themselves contain a dot (`binds.add`) stay as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPath(pub Vec<Step>);

impl FieldPath {
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// This path with a key appended.
    pub fn key(&self, key: impl Into<String>) -> Self {
        let mut steps = self.0.clone();
        steps.push(Step::Key(key.into()));
        Self(steps)
    }

    /// This path with an index appended.
    pub fn index(&self, index: usize) -> Self {
        let mut steps = self.0.clone();
        steps.push(Step::Index(index));
        Self(steps)
    }

    /// This path followed by `other`.
    pub fn join(&self, other: &FieldPath) -> Self {
        let mut steps = self.0.clone();
        steps.extend(other.0.iter().cloned());
        Self(steps)
    }

    /// Parses a path in the form the spec crate writes it (`interfaces[1].peer`, `bindNS.net`).
    pub fn parse(text: &str) -> Self {
        let mut steps = Vec::new();
        for part in text.split('.').filter(|part| !part.is_empty()) {
            let (key, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
            if !key.is_empty() {
                steps.push(Step::Key(key.to_owned()));
            }
            while let Some(end) = rest.find(']') {
                if let Ok(index) = rest[1..end].parse() {
                    steps.push(Step::Index(index));
                }
                rest = &rest[end + 1..];
            }
        }
        Self(steps)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str(".");
        }
        for (i, step) in self.0.iter().enumerate() {
            match step {
                Step::Key(key) if i == 0 => f.write_str(key)?,
                Step::Key(key) => write!(f, ".{key}")?,
                Step::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// A document that is not well-formed YAML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub message: String,
}

impl Node {
    /// The node at `path`, or the deepest node on the way there when the path leaves the
    /// document (an error about a missing field points at its parent).
    pub fn find(&self, path: &FieldPath) -> &Node {
        let mut node = self;
        for step in &path.0 {
            let next = match (step, &node.value) {
                (Step::Key(key), _) => node.get(key),
                (Step::Index(index), Value::Sequence(items)) => items.get(*index),
                _ => None,
            };
            match next {
                Some(next) => node = next,
                None => break,
            }
        }
        node
    }

    /// The value of `key` in this mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Mapping(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The line of the key `key` in this mapping (an unknown field is reported where it is written).
    pub fn key_line(&self, key: &str) -> Option<usize> {
        match &self.value {
            Value::Mapping(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(k, _)| k.line),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::String(text) => Some(text),
            _ => None,
        }
    }

    /// The node as JSON, the form serde decodes the typed model from. Keys become strings.
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Number(n) => serde_json::Value::Number(n.clone()),
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::Sequence(items) => items.iter().map(Node::to_json).collect(),
            Value::Mapping(entries) => entries
                .iter()
                .map(|(k, v)| (k.key_text(), v.to_json()))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }

    /// A key as text: strings as they are, other scalars as written in JSON.
    pub fn key_text(&self) -> String {
        match &self.value {
            Value::String(s) => s.clone(),
            _ => self.to_json().to_string(),
        }
    }

    /// How many nodes this one holds, itself included (keys count as nodes).
    pub fn size(&self) -> usize {
        1 + match &self.value {
            Value::Sequence(items) => items.iter().map(Node::size).sum(),
            Value::Mapping(entries) => entries.iter().map(|(k, v)| k.size() + v.size()).sum(),
            _ => 0,
        }
    }

    /// What kind of value this is, in words for error messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Sequence(_) => "a list",
            Value::Mapping(_) => "a mapping",
        }
    }
}

/// The most nodes a document may hold once its aliases are expanded. A manifest has hundreds;
/// nested aliases ("billion laughs") would otherwise grow a 1 KB text to gigabytes.
pub const MAX_NODES: usize = 100_000;

/// The deepest nesting of lists and mappings a document may have.
pub const MAX_DEPTH: usize = 64;

/// Parses the first document of `text`; an empty text is a null document.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut builder = Builder::default();
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|err: ScanError| SyntaxError {
            line: err.marker().line(),
            message: err.info().to_owned(),
        })?;
        if builder.event(event, span)? {
            break;
        }
    }
    Ok(builder.root.unwrap_or(Node {
        line: 1,
        value: Value::Null,
    }))
}

/// A collection being filled: its node and, for a mapping, the key waiting for its value.
#[derive(Debug)]
struct Open {
    node: Node,
    anchor: usize,
    pending_key: Option<Node>,
}

#[derive(Debug, Default)]
struct Builder {
    stack: Vec<Open>,
    /// Each anchored node and how many nodes it holds, itself included.
    anchors: HashMap<usize, (Node, usize)>,
    root: Option<Node>,
    /// Nodes in the document so far, aliases counted at their expanded size.
    nodes: usize,
}

impl Builder {
    /// Takes one event; true once the first document is complete.
    fn event(&mut self, event: Event<'_>, span: Span) -> Result<bool, SyntaxError> {
        let line = span.start.line();
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                self.count(1, line)?;
                let tag = tag.map(|tag| tag.suffix.clone());
                let value = resolve(&text, style, tag.as_deref());
                self.complete(Node { line, value }, anchor)?;
            }
            Event::SequenceStart(anchor, _) => {
                self.open(line, anchor, Value::Sequence(Vec::new()))?
            }
            Event::MappingStart(anchor, _) => {
                self.open(line, anchor, Value::Mapping(Vec::new()))?
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some(open) = self.stack.pop() {
                    self.complete(open.node, open.anchor)?;
                }
            }
            Event::Alias(id) => {
                let (node, size) = self.anchors.get(&id).ok_or_else(|| SyntaxError {
                    line,
                    message: "alias to an unknown anchor".into(),
                })?;
                let (node, size) = (node.clone(), *size);
                self.count(size, line)?;
                self.complete(node, 0)?;
            }
            Event::DocumentEnd => return Ok(self.root.is_some()),
            Event::StreamEnd => return Ok(true),
            Event::Nothing | Event::StreamStart | Event::DocumentStart(_) => {}
        }
        Ok(false)
    }

    /// Counts `size` more nodes, refusing a document that grows past [`MAX_NODES`] (the check
    /// comes before an alias is copied, so the copy that would pass it is never made).
    fn count(&mut self, size: usize, line: usize) -> Result<(), SyntaxError> {
        self.nodes = self.nodes.saturating_add(size);
        if self.nodes > MAX_NODES {
            return Err(SyntaxError {
                line,
                message: format!(
                    "the document holds more than {MAX_NODES} values once its aliases are \
                     expanded (nested aliases multiply: each copies its anchor whole)"
                ),
            });
        }
        Ok(())
    }

    /// Starts a collection that the events to come fill.
    fn open(&mut self, line: usize, anchor: usize, value: Value) -> Result<(), SyntaxError> {
        self.count(1, line)?;
        if self.stack.len() >= MAX_DEPTH {
            return Err(SyntaxError {
                line,
                message: format!("lists and mappings nest deeper than {MAX_DEPTH} levels"),
            });
        }
        self.stack.push(Open {
            node: Node { line, value },
            anchor,
            pending_key: None,
        });
        Ok(())
    }

    /// Places a finished node in its parent (or as the root) and records its anchor.
    fn complete(&mut self, node: Node, anchor: usize) -> Result<(), SyntaxError> {
        if anchor != 0 {
            let size = node.size();
            self.anchors.insert(anchor, (node.clone(), size));
        }
        let Some(parent) = self.stack.last_mut() else {
            self.root = Some(node);
            return Ok(());
        };
        match &mut parent.node.value {
            Value::Sequence(items) => items.push(node),
            Value::Mapping(entries) => match parent.pending_key.take() {
                None => parent.pending_key = Some(node),
                Some(key) => {
                    if entries.iter().any(|(k, _)| k.value == key.value) {
                        return Err(SyntaxError {
                            line: key.line,
                            message: format!(
                                "key `{}` appears twice in one mapping",
                                key.key_text()
                            ),
                        });
                    }
                    entries.push((key, node));
                }
            },
            _ => {}
        }
        Ok(())
    }
}

/// The value of a scalar: quoted and block scalars are strings; plain ones follow the core schema.
fn resolve(text: &str, style: ScalarStyle, tag: Option<&str>) -> Value {
    if style != ScalarStyle::Plain || tag == Some("str") {
        return Value::String(text.to_owned());
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Some(number) = integer(text) {
        return Value::Number(number);
    }
    if is_float(text) {
        if let Some(number) = text.parse::<f64>().ok().and_then(Number::from_f64) {
            return Value::Number(number);
        }
    }
    Value::String(text.to_owned())
}

/// `[-+]?[0-9]+`, `0o[0-7]+` or `0x[0-9a-fA-F]+`.
fn integer(text: &str) -> Option<Number> {
    let (radix, digits) = if let Some(octal) = text.strip_prefix("0o") {
        (8, octal)
    } else if let Some(hex) = text.strip_prefix("0x") {
        (16, hex)
    } else {
        (10, text)
    };
    let unsigned = digits.strip_prefix(['-', '+']).unwrap_or(digits);
    if unsigned.is_empty() || !unsigned.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    if radix != 10 && unsigned.len() != digits.len() {
        return None;
    }
    if let Ok(value) = i64::from_str_radix(digits, radix) {
        return Some(value.into());
    }
    u64::from_str_radix(digits.strip_prefix('+').unwrap_or(digits), radix)
        .ok()
        .map(Number::from)
}

/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`
fn is_float(text: &str) -> bool {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(at) => (&body[..at], Some(&body[at + 1..])),
        None => (body, None),
    };
    let (whole, fraction) = match mantissa.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (mantissa, None),
    };
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    let mantissa_ok = match fraction {
        Some(fraction) => {
            digits(whole) && digits(fraction) && !(whole.is_empty() && fraction.is_empty())
        }
        None => !whole.is_empty() && digits(whole),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> Value {
        parse(text).expect("parses").value
    }

    #[test]
    fn scalars_follow_the_core_schema() {
        assert_eq!(value("10"), Value::Number(10.into()));
        assert_eq!(value("0666"), Value::Number(666.into()));
        assert_eq!(value("0o17"), Value::Number(15.into()));
        assert_eq!(value("-3"), Value::Number((-3).into()));
        assert_eq!(value("'10'"), Value::String("10".into()));
        assert_eq!(value("!!str 10"), Value::String("10".into()));
        assert_eq!(value("true"), Value::Bool(true));
        assert_eq!(value("yes"), Value::String("yes".into()));
        assert_eq!(value("~"), Value::Null);
        assert_eq!(value(""), Value::Null);
        assert!(matches!(value("1.5"), Value::Number(n) if n.as_f64() == Some(1.5)));
        assert_eq!(value("1.2.3"), Value::String("1.2.3".into()));
        assert_eq!(value("6.12.59"), Value::String("6.12.59".into()));
        assert_eq!(value("0x"), Value::String("0x".into()));
    }

    #[test]
    fn nodes_know_their_lines_and_paths_find_them() {
        let doc = parse("a:\n  b:\n    - x\n    - y: 1\n      z: [2, 3]\n").expect("parses");
        let path = FieldPath::root()
            .key("a")
            .key("b")
            .index(1)
            .key("z")
            .index(1);
        assert_eq!(path.to_string(), "a.b[1].z[1]");
        assert_eq!(doc.find(&path).line, 5);
        assert_eq!(doc.find(&path).value, Value::Number(3.into()));
        // A path that leaves the document ends at the deepest node on the way.
        let missing = FieldPath::root().key("a").key("b").index(0).key("nope");
        assert_eq!(doc.find(&missing).line, 3);
        assert_eq!(doc.find(&FieldPath::root().key("a")).key_line("b"), Some(2));
    }

    #[test]
    fn paths_parse_as_the_spec_crate_writes_them() {
        let path = FieldPath::parse("interfaces[1].peer");
        assert_eq!(
            path,
            FieldPath::root().key("interfaces").index(1).key("peer")
        );
        assert_eq!(FieldPath::parse("a[0][2]").to_string(), "a[0][2]");
        assert_eq!(FieldPath::root().to_string(), ".");
    }

    #[test]
    fn aliases_copy_their_anchor() {
        let doc = parse("a: &x [1, 2]\nb: *x\n").expect("parses");
        assert_eq!(
            doc.find(&FieldPath::root().key("b")).to_json(),
            serde_json::json!([1, 2])
        );
    }

    #[test]
    fn nested_aliases_and_deep_nesting_are_refused_with_their_line() {
        // Nine levels of ten aliases each: 10^9 values once expanded, from a text under 1 KB.
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..10 {
            let prev = format!("*a{}", level - 1);
            let items = [prev.as_str(); 10].join(", ");
            text.push_str(&format!("a{level}: &a{level} [{items}]\n"));
        }
        assert!(text.len() < 1024, "{}", text.len());
        let err = parse(&text).expect_err("billion laughs");
        assert!(err.message.contains("more than 100000 values"), "{err:?}");
        // a0..a3 hold 11, 111, 1111, 11111 values; a4 passes the limit on its line.
        assert_eq!(err.line, 5, "{err:?}");
        // Below the limit aliases still expand.
        let small = "a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n";
        // The root, three keys, and lists of 3, 7 and 15 values.
        assert_eq!(parse(small).expect("parses").size(), 1 + 3 + 3 + 7 + 15);
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let err = parse(&deep).expect_err("too deep");
        assert!(err.message.contains("deeper than 64"), "{err:?}");
        let fine = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        parse(&fine).expect("64 levels parse");
    }

    #[test]
    fn duplicate_keys_and_bad_syntax_are_errors_with_lines() {
        let err = parse("a: 1\nb: 2\na: 3\n").expect_err("duplicate key");
        assert_eq!(err.line, 3);
        assert!(err.message.contains("`a` appears twice"), "{}", err.message);
        let err = parse("a: [1, 2\nb: 3\n").expect_err("unclosed flow sequence");
        assert!(err.line >= 1, "{err:?}");
    }
}
