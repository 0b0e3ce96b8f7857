//! The machine watchdog: with `kiln.watchdog=SECONDS` on the kernel command line, init loads
//! the kernel's softdog when the machine has no watchdog device of its own, opens
//! /dev/watchdog, sets its timeout, and pets it from a thread of its own for as long as the
//! supervisor shows it is alive: it answers a `list` on its control socket, which only its
//! event loop can do. Until the supervisor has answered once (volumes and onboot may take
//! long) and from the moment a shutdown begins, init pets it regardless. A supervisor that
//! hangs (or is stopped) is no longer vouched for, and the watchdog resets the machine once
//! the timeout runs out; one that dies is started again by init and answers again in time.
//! Runs in: PID 1 (the system's init only), a thread beside its main loop.
//! Follows systemd's RuntimeWatchdogSec (PID 1 pets a hardware watchdog) with Talos's rule
//! that the supervisor, not init alone, must be alive.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{modules, say};

/// The kernel command line setting that turns it on.
const SETTING: &str = "kiln.watchdog=";
const DEVICE: &str = "/dev/watchdog";
/// The software watchdog module loaded when no watchdog device exists.
const SOFTDOG: &str = "softdog";
/// The supervisor's control socket.
const SOCKET: &str = "/run/service.sock";
/// What is asked of the supervisor, and how its answer begins when it is well.
const PING: &[u8] = b"{\"command\":\"list\"}\n";
const ANSWER_OK: &str = "{\"ok\":true";
/// The most of an answer read.
const MAX_ANSWER: u64 = 1 << 20;
/// The shortest time between two pets.
const MIN_PERIOD: Duration = Duration::from_millis(500);

nix::ioctl_readwrite!(set_timeout, b'W', 6, libc::c_int);

/// The phases of the pets, shared between init's main loop and the watchdog's thread.
const BOOTING: u8 = 0;
const WATCHING: u8 = 1;
const ENDING: u8 = 2;

/// The running watchdog, for init's main loop.
#[derive(Debug)]
pub struct Watchdog {
    phase: Arc<AtomicU8>,
}

impl Watchdog {
    /// From `cmdline`: with `kiln.watchdog=SECONDS`, the device opened and armed and its
    /// thread started; `None` when it is not asked for or cannot be had (said why).
    pub fn start(cmdline: &str) -> Option<Self> {
        let seconds = match requested(cmdline)? {
            Ok(seconds) => seconds,
            Err(message) => {
                say!("watchdog: {message}: not armed");
                return None;
            }
        };
        let loaded = if Path::new(DEVICE).exists() {
            String::new()
        } else {
            if let Err(err) = modules::autoload(SOFTDOG) {
                say!("watchdog: load {SOFTDOG}: {err}: not armed");
                return None;
            }
            format!(" ({SOFTDOG})")
        };
        let device = match OpenOptions::new().write(true).open(DEVICE) {
            Ok(device) => device,
            Err(err) => {
                say!("watchdog: open {DEVICE}: {err}: not armed");
                return None;
            }
        };
        let mut timeout = libc::c_int::try_from(seconds).unwrap_or(libc::c_int::MAX);
        // SAFETY: WDIOC_SETTIMEOUT reads and writes one int, which `timeout` is, on an open
        // watchdog device.
        if let Err(err) = unsafe { set_timeout(device.as_raw_fd(), &mut timeout) } {
            say!("watchdog: set the timeout of {DEVICE} to {seconds} s: {err}; it keeps its own");
        }
        let timeout = Duration::from_secs(u64::try_from(timeout).unwrap_or(seconds).max(1));
        let phase = Arc::new(AtomicU8::new(BOOTING));
        let shared = Arc::clone(&phase);
        let pets = Pets {
            device,
            timeout,
            phase: shared,
        };
        match std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || pets.run())
        {
            Ok(_) => {
                say!(
                    "watchdog: {DEVICE}{loaded} armed, {} s: petted while the supervisor answers",
                    timeout.as_secs()
                );
                Some(Self { phase })
            }
            Err(err) => {
                // The device stays open in no thread's hands: it would reset the machine.
                say!(
                    "watchdog: start its thread: {err}: the machine resets in {} s",
                    timeout.as_secs()
                );
                None
            }
        }
    }

    /// A shutdown begins: pets go on whatever the supervisor does, until the machine ends.
    pub fn ending(&self) {
        self.phase.store(ENDING, Ordering::SeqCst);
    }
}

/// `kiln.watchdog=SECONDS` from the kernel command line: `None` without it, the error for a
/// value that is not a whole number of seconds from 1 to 65535 (softdog's range).
fn requested(cmdline: &str) -> Option<Result<u64, String>> {
    let value = cmdline
        .split_whitespace()
        .rev()
        .find_map(|word| word.strip_prefix(SETTING))?;
    Some(match value.parse::<u64>() {
        Ok(seconds) if (1..=65535).contains(&seconds) => Ok(seconds),
        _ => Err(format!(
            "{SETTING}{value} is not a number of seconds from 1 to 65535"
        )),
    })
}

/// The watchdog's thread: asks the supervisor four times per timeout (each answer awaited
/// for half of it) and pets after each answer.
struct Pets {
    device: File,
    timeout: Duration,
    phase: Arc<AtomicU8>,
}

impl Pets {
    fn run(mut self) {
        let period = (self.timeout / 4).max(MIN_PERIOD);
        let mut silent_since: Option<Instant> = None;
        loop {
            let phase = self.phase.load(Ordering::SeqCst);
            // Half the timeout to answer: a supervisor busy creating a container is slow,
            // not hung, and a pet still comes in time.
            let alive = phase == ENDING || supervisor_answers(self.timeout / 2);
            match (phase, alive) {
                (ENDING, _) => self.pet(),
                (_, true) => {
                    let first = self
                        .phase
                        .compare_exchange(BOOTING, WATCHING, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok();
                    if first {
                        say!("watchdog: the supervisor answers: from now on it is petted only while it does");
                    }
                    if let Some(since) = silent_since.take() {
                        say!(
                            "watchdog: the supervisor answers again after {} s",
                            since.elapsed().as_secs()
                        );
                    }
                    self.pet();
                }
                (BOOTING, false) => self.pet(),
                (_, false) => {
                    if silent_since.is_none() {
                        silent_since = Some(Instant::now());
                        say!(
                            "watchdog: the supervisor does not answer on {SOCKET}: not petting; \
                             the machine resets within {} s unless it answers",
                            self.timeout.as_secs()
                        );
                    }
                }
            }
            std::thread::sleep(period);
        }
    }

    fn pet(&mut self) {
        // Any byte but `V` (the magic close) is a keepalive.
        let _ = self.device.write_all(b"\0");
    }
}

/// Whether the supervisor answers `list` on its control socket within `limit`.
fn supervisor_answers(limit: Duration) -> bool {
    let Ok(mut stream) = UnixStream::connect(SOCKET) else {
        return false;
    };
    if stream.set_read_timeout(Some(limit)).is_err()
        || stream.set_write_timeout(Some(limit)).is_err()
        || stream.write_all(PING).is_err()
    {
        return false;
    }
    let mut answer = String::new();
    // The answer lists every service: a bounded read of its one line.
    let mut reader = BufReader::new(stream.take(MAX_ANSWER));
    reader.read_line(&mut answer).is_ok() && answer.starts_with(ANSWER_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setting_is_read_from_the_command_line() {
        assert_eq!(requested("console=ttyS0 quiet"), None);
        assert_eq!(requested("kiln.watchdog=30 quiet"), Some(Ok(30)));
        assert_eq!(
            requested("kiln.watchdog=5 kiln.watchdog=10"),
            Some(Ok(10)),
            "the last one wins, as the kernel's own settings"
        );
        for bad in [
            "kiln.watchdog=0",
            "kiln.watchdog=ten",
            "kiln.watchdog=70000",
            "kiln.watchdog=",
        ] {
            let Some(Err(message)) = requested(bad) else {
                panic!("{bad} accepted");
            };
            assert!(message.contains("from 1 to 65535"), "{message}");
        }
    }
}
