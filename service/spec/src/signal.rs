//! Signal names as users write them: `SIGTERM`, `TERM`, `term` or `15`.
//! Runs in: anything that reads a signal from a file or a command line. Pure.

use std::str::FromStr;

use nix::sys::signal::Signal;

/// Parses a signal name (with or without `SIG`, any case) or number.
pub fn parse(text: &str) -> Option<Signal> {
    let text = text.trim();
    if let Ok(number) = text.parse::<i32>() {
        return Signal::try_from(number).ok();
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_names_short_names_and_numbers() {
        assert_eq!(parse("SIGTERM"), Some(Signal::SIGTERM));
        assert_eq!(parse("term"), Some(Signal::SIGTERM));
        assert_eq!(parse("HUP"), Some(Signal::SIGHUP));
        assert_eq!(parse("9"), Some(Signal::SIGKILL));
    }

    #[test]
    fn parse_rejects_unknown_names_and_numbers() {
        assert_eq!(parse("SIGFOO"), None);
        assert_eq!(parse("0"), None);
        assert_eq!(parse("99"), None);
        assert_eq!(parse(""), None);
    }
}
