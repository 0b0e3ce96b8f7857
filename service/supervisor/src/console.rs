//! How much of the supervisor's event log reaches the console: `all` of it, the `errors` an
//! operator must see (the default: a service's first start and first failure, one that is not
//! restarted, a stop that needs SIGKILL, the boot's and the shutdown's milestones; not every
//! restart of a crash loop, which stays in service.log and `service logs`), or `none`. Set with
//! `kiln.console=` on the kernel command line, or `service system-init --console`.
//! Runs in: the supervisor daemon. Pure.

use clap::ValueEnum;

/// The kernel command line's word that sets the level.
const KEY: &str = "kiln.console=";

/// What the console shows of the event log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Level {
    All,
    #[default]
    Errors,
    None,
}

/// How much a line matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weight {
    /// An operator must see it: on the console unless the level is `none`.
    Notice,
    /// The detail of what is going on: on the console at level `all` only.
    Detail,
}

impl Weight {
    /// A line about a run after `restarts` automatic restarts: a crash loop's first round is
    /// a notice, its later rounds (which say the same again) detail.
    pub fn of_round(restarts: u32) -> Self {
        if restarts > 0 {
            Self::Detail
        } else {
            Self::Notice
        }
    }
}

impl Level {
    /// Whether a line of `weight` goes to the console.
    pub fn shows(self, weight: Weight) -> bool {
        match self {
            Self::All => true,
            Self::Errors => weight == Weight::Notice,
            Self::None => false,
        }
    }

    /// The level `kiln.console=` names on `cmdline` (the last one wins), with a problem to
    /// report when its value is unknown (the default then applies).
    pub fn from_cmdline(cmdline: &str) -> (Self, Option<String>) {
        let Some(value) = cmdline
            .split_whitespace()
            .rev()
            .find_map(|word| word.strip_prefix(KEY))
        else {
            return (Self::default(), None);
        };
        match Self::from_str(value, true) {
            Ok(level) => (level, None),
            Err(_) => (
                Self::default(),
                Some(format!(
                    "kernel command line: {KEY}{value}: use all, errors or none (errors used)"
                )),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_sets_the_level_and_a_bad_value_is_named() {
        assert_eq!(
            Level::from_cmdline("console=ttyS0 quiet"),
            (Level::Errors, None)
        );
        assert_eq!(
            Level::from_cmdline("kiln.console=all quiet"),
            (Level::All, None)
        );
        assert_eq!(
            Level::from_cmdline("kiln.console=all kiln.console=none"),
            (Level::None, None)
        );
        let (level, problem) = Level::from_cmdline("kiln.console=loud");
        assert_eq!(level, Level::Errors);
        assert_eq!(
            problem.as_deref(),
            Some("kernel command line: kiln.console=loud: use all, errors or none (errors used)")
        );
    }

    #[test]
    fn each_level_shows_what_it_says() {
        assert!(Level::All.shows(Weight::Detail));
        assert!(Level::Errors.shows(Weight::Notice));
        assert!(!Level::Errors.shows(Weight::Detail));
        assert!(!Level::None.shows(Weight::Notice));
    }
}
