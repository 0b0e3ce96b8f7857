//! Command lines as LinuxKit's Go programs read them (Go's `flag` package): `-name value`,
//! `-name=value`, `--name` alike; a boolean flag takes no value (`-force`, or `-force=false`);
//! flags end at the first argument that is not one, or after `--`. `-h` and `-help` ask for
//! the usage.
//! Runs in: format and mountie, first thing.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One flag a program takes.
#[derive(Debug, Clone, Copy)]
pub struct Flag {
    pub name: &'static str,
    /// The value's placeholder in the usage, or `None` for a boolean flag.
    pub value: Option<&'static str>,
    pub default: &'static str,
    pub help: &'static str,
}

/// What a command line said.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    values: BTreeMap<&'static str, String>,
    /// The arguments after the flags.
    pub args: Vec<String>,
}

/// Why a command line is not run.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    /// `-h` or `-help`: the usage is printed and the program exits 0.
    Help,
    /// A flag that is not defined, or lacks its value: said, with the usage, exit 2.
    Bad(String),
}

impl Parsed {
    /// The value of a flag that takes one (its default when not given).
    pub fn value(&self, flags: &[Flag], name: &str) -> String {
        self.values.get(name).cloned().unwrap_or_else(|| {
            flags
                .iter()
                .find(|flag| flag.name == name)
                .map(|flag| flag.default.to_owned())
                .unwrap_or_default()
        })
    }

    /// Whether a boolean flag is set.
    pub fn set(&self, name: &str) -> bool {
        self.values.get(name).is_some_and(|value| value == "true")
    }
}

/// Reads `args` (without the program's name) against `flags`.
pub fn parse(flags: &[Flag], args: &[String]) -> Result<Parsed, Stop> {
    let mut parsed = Parsed::default();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg == "--" {
            break;
        }
        let Some(body) = arg
            .strip_prefix("--")
            .or_else(|| arg.strip_prefix('-'))
            .filter(|body| !body.is_empty() && !body.starts_with('-') && arg != "-")
        else {
            parsed.args.push(arg.clone());
            break;
        };
        let (name, inline) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (body, None),
        };
        if name == "h" || name == "help" {
            return Err(Stop::Help);
        }
        let Some(flag) = flags.iter().find(|flag| flag.name == name) else {
            return Err(Stop::Bad(format!("flag provided but not defined: -{name}")));
        };
        let value = match (flag.value, inline) {
            (None, None) => "true".to_owned(),
            (None, Some(value)) => match value {
                "1" | "t" | "T" | "true" | "TRUE" | "True" => "true".to_owned(),
                "0" | "f" | "F" | "false" | "FALSE" | "False" => "false".to_owned(),
                _ => {
                    return Err(Stop::Bad(format!(
                        "invalid boolean value {value:?} for -{name}"
                    )))
                }
            },
            (Some(_), Some(value)) => value.to_owned(),
            (Some(_), None) => match rest.next() {
                Some(value) => value.clone(),
                None => return Err(Stop::Bad(format!("flag needs an argument: -{name}"))),
            },
        };
        parsed.values.insert(flag.name, value);
    }
    parsed.args.extend(rest.cloned());
    Ok(parsed)
}

/// The usage: `synopsis`, then each flag with its default.
pub fn usage(synopsis: &str, flags: &[Flag]) -> String {
    let mut text = format!("usage: {synopsis}\n");
    for flag in flags {
        let _ = match flag.value {
            Some(value) => writeln!(text, "  -{} {value}", flag.name),
            None => writeln!(text, "  -{}", flag.name),
        };
        let _ = if flag.default.is_empty() {
            writeln!(text, "        {}", flag.help)
        } else {
            writeln!(text, "        {} (default {})", flag.help, flag.default)
        };
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAGS: [Flag; 3] = [
        Flag {
            name: "type",
            value: Some("TYPE"),
            default: "ext4",
            help: "the filesystem",
        },
        Flag {
            name: "label",
            value: Some("LABEL"),
            default: "",
            help: "its label",
        },
        Flag {
            name: "force",
            value: None,
            default: "",
            help: "format anyway",
        },
    ];

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|arg| (*arg).to_owned()).collect()
    }

    #[test]
    fn flags_take_go_forms_and_stop_at_the_first_argument() {
        let parsed = parse(
            &FLAGS,
            &args(&["-label", "data", "--type=xfs", "-force", "/dev/vda", "-x"]),
        )
        .expect("parsed");
        assert_eq!(parsed.value(&FLAGS, "label"), "data");
        assert_eq!(parsed.value(&FLAGS, "type"), "xfs");
        assert!(parsed.set("force"));
        assert_eq!(parsed.args, ["/dev/vda", "-x"]);

        let parsed = parse(&FLAGS, &args(&["-force=false", "--", "-dev"])).expect("parsed");
        assert!(!parsed.set("force"));
        assert_eq!(parsed.value(&FLAGS, "type"), "ext4", "the default");
        assert_eq!(parsed.args, ["-dev"]);
    }

    #[test]
    fn unknown_flags_missing_values_and_help_stop_the_program() {
        assert_eq!(
            parse(&FLAGS, &args(&["-partition", "gpt"])),
            Err(Stop::Bad(
                "flag provided but not defined: -partition".into()
            ))
        );
        assert_eq!(
            parse(&FLAGS, &args(&["-label"])),
            Err(Stop::Bad("flag needs an argument: -label".into()))
        );
        assert_eq!(
            parse(&FLAGS, &args(&["-force=maybe"])),
            Err(Stop::Bad(
                "invalid boolean value \"maybe\" for -force".into()
            ))
        );
        assert_eq!(parse(&FLAGS, &args(&["-help"])), Err(Stop::Help));
        let text = usage("format [flags] [DEVICE]", &FLAGS);
        assert!(text.contains("  -type TYPE\n        the filesystem (default ext4)"));
    }
}
