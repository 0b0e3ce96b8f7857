//! `probe`: the VM tests' witness inside a test image. It runs each check given on its command
//! line until it holds or the time is up, prints `PROBE PASS CHECK` or `PROBE FAIL CHECK:
//! WHY` for each and `PROBE DONE passed=N failed=M` on the console, and with `--end` ends the
//! VM: a poweroff through init when all passed (so onshutdown and the services' stop run as
//! for a user), else the number of failures written to qemu's debug-exit port.
//! Runs in: a container of a test image (pid: host, to signal init; CAP_SYS_RAWIO for the port).

mod check;
mod console;
mod port;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::check::Check;
use crate::console::Console;

#[derive(Debug, Parser)]
#[command(
    name = "probe",
    version,
    about = "Check a test image from inside and report"
)]
struct Cli {
    /// Seconds all checks together have to hold.
    #[arg(long, default_value_t = 60, value_name = "S")]
    within: u64,
    /// After the checks, power the VM off when all passed, else write the number of failures
    /// to the debug-exit port.
    #[arg(long)]
    end: bool,
    /// Write VALUE to the debug-exit port at once (qemu exits with (VALUE << 1) | 1).
    #[arg(long, value_name = "VALUE", conflicts_with = "end")]
    exit: Option<u8>,
    /// Checks, one per argument: `exists PATH`, `absent PATH`, `contains PATH TEXT`,
    /// `equals PATH TEXT`, `mounted PATH [FSTYPE|OPTION]...`, `connect HOST:PORT`,
    /// `no-listeners`, `run SHELL-COMMAND`, `show SHELL-COMMAND` (`run`, its output shown on
    /// the console after the PASS line). TEXT may hold \n and \t.
    #[arg(value_name = "CHECK")]
    checks: Vec<String>,
}

/// How often a check that does not hold yet is tried again.
const RETRY: Duration = Duration::from_millis(100);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut console = Console::open();
    if let Some(value) = cli.exit {
        console.drain();
        console.line(&format!("PROBE ERROR {}", port::exit(value)));
        return ExitCode::FAILURE;
    }
    let checks: Vec<Result<Check, String>> = cli.checks.iter().map(|c| Check::parse(c)).collect();
    let deadline = Instant::now() + Duration::from_secs(cli.within);
    let (mut passed, mut failed) = (0_u32, 0_u32);
    for (text, check) in cli.checks.iter().zip(checks) {
        // One line per check, whatever its text holds.
        let text = text.replace('\n', "\\n").replace('\t', "\\t");
        let result = check.and_then(|check| check.until(deadline, RETRY));
        match result {
            Ok(shown) => {
                passed += 1;
                console.line(&format!("PROBE PASS {text}"));
                for line in shown.lines() {
                    console.line(line);
                }
            }
            Err(why) => {
                failed += 1;
                console.line(&format!("PROBE FAIL {text}: {why}"));
            }
        }
    }
    console.line(&format!("PROBE DONE passed={passed} failed={failed}"));
    if cli.end {
        end(&mut console, failed);
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Ends the VM: poweroff through init (SIGUSR2 to PID 1) when nothing failed, else the
/// failure count on the debug-exit port; a poweroff too if the port cannot be used, so the
/// run ends either way.
fn end(console: &mut Console, failed: u32) {
    if failed > 0 {
        console.drain();
        let err = port::exit(u8::try_from(failed).unwrap_or(u8::MAX));
        console.line(&format!("PROBE ERROR {err}; powering off instead"));
    }
    match kill(Pid::from_raw(1), Signal::SIGUSR2) {
        // Stays until the shutdown stops it, so no restart policy starts it again meanwhile.
        Ok(()) => loop {
            nix::unistd::pause();
        },
        Err(err) => console.line(&format!(
            "PROBE ERROR cannot signal init (SIGUSR2 to pid 1; the probe needs pid: host): {err}"
        )),
    }
}
