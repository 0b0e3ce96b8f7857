//! Signal names as users write them: `SIGTERM`, `TERM`, `term`, `15`, and the real-time ones
//! `SIGRTMIN+3`, `RTMAX-2` or `37`, numbered as glibc and runc number them (SIGRTMIN is 34,
//! SIGRTMAX 64: glibc keeps 32 and 33 for itself).
//! Runs in: anything that reads a signal from a file or a command line. Pure.

use std::fmt;
use std::str::FromStr;

use nix::sys::signal::Signal;

/// The first real-time signal a program may use, as glibc counts.
pub const RTMIN: i32 = 34;
/// The last real-time signal.
pub const RTMAX: i32 = 64;

/// What an unknown signal's message says to give instead.
pub const HINT: &str = "give a name (TERM, SIGTERM, SIGRTMIN+3) or a number from 1 to 64";

/// A signal by its number, 1 to 64: the standard ones nix names and the real-time ones it does
/// not (systemd stops on SIGRTMIN+3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Number(i32);

impl Number {
    /// The signal numbered `number`, if there is one (1 to 64).
    pub fn new(number: i32) -> Option<Self> {
        (1..=RTMAX).contains(&number).then_some(Self(number))
    }

    /// The number kill(2) takes.
    pub fn raw(self) -> i32 {
        self.0
    }

    /// The signal as nix names it; `None` for 32 and up.
    pub fn as_nix(self) -> Option<Signal> {
        Signal::try_from(self.0).ok()
    }
}

impl From<Signal> for Number {
    fn from(signal: Signal) -> Self {
        Self(signal as i32)
    }
}

impl fmt::Display for Number {
    /// `SIGTERM`, `SIGRTMIN`, `SIGRTMIN+3`, `SIGRTMAX-1`, `SIGRTMAX`; `SIG32` and `SIG33`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        match self.as_nix() {
            Some(signal) => f.write_str(signal.as_str()),
            None if n == RTMIN => f.write_str("SIGRTMIN"),
            None if n == RTMAX => f.write_str("SIGRTMAX"),
            // The first half counts up from RTMIN, the second down from RTMAX, as kill -l does.
            None if n > RTMIN && n <= (RTMIN + RTMAX) / 2 => write!(f, "SIGRTMIN+{}", n - RTMIN),
            None if n > RTMIN => write!(f, "SIGRTMAX-{}", RTMAX - n),
            None => write!(f, "SIG{n}"),
        }
    }
}

/// Parses a signal name (with or without `SIG`, any case), a real-time name (`RTMIN`,
/// `RTMIN+N`, `RTMAX`, `RTMAX-N`) or a number from 1 to 64.
pub fn parse(text: &str) -> Option<Number> {
    let text = text.trim();
    if let Ok(number) = text.parse::<i32>() {
        return Number::new(number);
    }
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Ok(number) = name.parse::<i32>() {
        return Number::new(number);
    }
    let offset = |rest: &str, sign: char| -> Option<i32> {
        match rest {
            "" => Some(0),
            _ => rest.strip_prefix(sign)?.parse::<u8>().ok().map(i32::from),
        }
    };
    let number = if let Some(rest) = name.strip_prefix("RTMIN") {
        RTMIN + offset(rest, '+')?
    } else if let Some(rest) = name.strip_prefix("RTMAX") {
        RTMAX - offset(rest, '-')?
    } else {
        return Signal::from_str(&format!("SIG{name}"))
            .ok()
            .map(Number::from);
    };
    (RTMIN..=RTMAX)
        .contains(&number)
        .then(|| Number::new(number))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(text: &str) -> Option<i32> {
        parse(text).map(Number::raw)
    }

    #[test]
    fn parse_accepts_names_short_names_and_numbers() {
        assert_eq!(parse("SIGTERM"), Some(Signal::SIGTERM.into()));
        assert_eq!(parse("term"), Some(Signal::SIGTERM.into()));
        assert_eq!(parse("HUP"), Some(Signal::SIGHUP.into()));
        assert_eq!(parse("9"), Some(Signal::SIGKILL.into()));
    }

    #[test]
    fn real_time_signals_are_numbered_as_glibc_and_runc_number_them() {
        assert_eq!(number("SIGRTMIN"), Some(34));
        assert_eq!(number("SIGRTMIN+3"), Some(37));
        assert_eq!(number("rtmin+3"), Some(37));
        assert_eq!(number("RTMAX-2"), Some(62));
        assert_eq!(number("SIGRTMAX"), Some(64));
        assert_eq!(number("SIGRTMIN+30"), Some(64));
        assert_eq!(number("34"), Some(34));
        assert_eq!(number("64"), Some(64));
        assert_eq!(number("32"), Some(32));
        assert_eq!(parse("SIGRTMIN+3").unwrap().as_nix(), None);
        assert_eq!(parse("15").unwrap().as_nix(), Some(Signal::SIGTERM));
    }

    #[test]
    fn names_read_back_as_they_parse() {
        for n in 1..=RTMAX {
            let signal = Number::new(n).unwrap();
            let name = signal.to_string();
            assert_eq!(parse(&name), Some(signal), "{n} shown as {name}");
        }
        assert_eq!(Number::new(37).unwrap().to_string(), "SIGRTMIN+3");
        assert_eq!(Number::new(62).unwrap().to_string(), "SIGRTMAX-2");
        assert_eq!(Number::new(15).unwrap().to_string(), "SIGTERM");
    }

    #[test]
    fn parse_rejects_unknown_names_and_numbers() {
        assert_eq!(parse("SIGFOO"), None);
        assert_eq!(parse("0"), None);
        assert_eq!(parse("65"), None);
        assert_eq!(parse("99"), None);
        assert_eq!(parse("-3"), None);
        assert_eq!(parse(""), None);
        assert_eq!(parse("SIGRTMIN+31"), None);
        assert_eq!(parse("SIGRTMIN-1"), None);
        assert_eq!(parse("SIGRTMAX+1"), None);
        assert_eq!(parse("RTMIN+"), None);
    }
}
