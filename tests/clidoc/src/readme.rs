//! The README's fenced blocks, as the tests that run them read them: each block that holds
//! commands (`sh`, `console`) or a file (`yaml`) is tagged by an HTML comment on the line just
//! before it, `<!-- check: TAG -->`, which names the test that runs it.
//! Runs in: the tests, on the build host.

use std::path::PathBuf;

/// One fenced block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The `check:` tag on the line before it; empty when there is none.
    pub tag: String,
    /// The fence's language (`sh`, `console`, `yaml`, or empty).
    pub lang: String,
    /// The lines between the fences, each ending in a newline.
    pub text: String,
    /// The 1-based line of the opening fence.
    pub line: usize,
}

impl Block {
    /// The commands of an `sh` block: its lines without comments (`# ...` to the end of the
    /// line) and blank lines; of a `console` block: the lines after `$ `.
    pub fn commands(&self) -> Vec<String> {
        self.text
            .lines()
            .filter_map(|line| {
                if self.lang == "console" {
                    line.strip_prefix("$ ").map(str::to_owned)
                } else {
                    let command = line.split(" #").next().unwrap_or_default().trim();
                    (!command.is_empty() && !command.starts_with('#')).then(|| command.to_owned())
                }
            })
            .collect()
    }

    /// A `console` block as (command, the output shown after it) pairs.
    pub fn transcript(&self) -> Vec<(String, String)> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for line in self.text.lines() {
            match (line.strip_prefix("$ "), pairs.last_mut()) {
                (Some(command), _) => pairs.push((command.to_owned(), String::new())),
                (None, Some((_, output))) => {
                    output.push_str(line);
                    output.push('\n');
                }
                (None, None) => {}
            }
        }
        pairs
    }
}

/// The workspace's README.md and its path.
pub fn readme() -> (PathBuf, String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
    (path, text)
}

/// Every fenced block of `markdown`, in order.
pub fn blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    let mut previous = "";
    for (index, line) in markdown.lines().enumerate() {
        match open.as_mut() {
            Some(block) if line.trim_start().starts_with("```") => {
                blocks.push(block.clone());
                open = None;
            }
            Some(block) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
            None => {
                if let Some(lang) = line.trim_start().strip_prefix("```") {
                    let tag = previous
                        .trim()
                        .strip_prefix("<!-- check:")
                        .and_then(|rest| rest.strip_suffix("-->"))
                        .map(|tag| tag.trim().to_owned())
                        .unwrap_or_default();
                    open = Some(Block {
                        tag,
                        lang: lang.trim().to_owned(),
                        text: String::new(),
                        line: index + 1,
                    });
                }
            }
        }
        previous = line;
    }
    blocks
}

/// The one block of the README tagged `tag`.
pub fn tagged(tag: &str) -> Block {
    let (path, text) = readme();
    let found: Vec<Block> = blocks(&text)
        .into_iter()
        .filter(|block| block.tag == tag)
        .collect();
    match found.as_slice() {
        [block] => block.clone(),
        _ => panic!(
            "{} has {} blocks tagged `{tag}`, not one",
            path.display(),
            found.len()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_carry_their_tag_language_and_commands() {
        let text = "intro\n<!-- check: run -->\n```sh\nexport A=1   # set\n\n# note\nkiln run x\n```\n```\nkiln SYNOPSIS\n```\n<!-- check: t -->\n```console\n$ kiln validate a.yml\na.yml: valid\n$ echo $?\n0\n```\n";
        let found = blocks(text);
        assert_eq!(found.len(), 3);
        assert_eq!(
            (found[0].tag.as_str(), found[0].lang.as_str(), found[0].line),
            ("run", "sh", 3)
        );
        assert_eq!(found[0].commands(), ["export A=1", "kiln run x"]);
        assert_eq!((found[1].tag.as_str(), found[1].lang.as_str()), ("", ""));
        assert_eq!(
            found[2].transcript(),
            [
                (
                    "kiln validate a.yml".to_owned(),
                    "a.yml: valid\n".to_owned()
                ),
                ("echo $?".to_owned(), "0\n".to_owned())
            ]
        );
    }
}
