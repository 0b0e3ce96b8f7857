//! Where the probe's lines go: /dev/console when the container has it (a service's own output
//! goes to its log file, which the test cannot see), and standard output as well.
//! Runs in: the probe.

use std::fs::{File, OpenOptions};
use std::io::Write;

use nix::sys::termios::tcdrain;

#[derive(Debug)]
pub struct Console {
    device: Option<File>,
}

impl Console {
    pub fn open() -> Self {
        Self {
            device: OpenOptions::new().write(true).open("/dev/console").ok(),
        }
    }

    /// Writes `text` and a newline, whole, to each destination.
    pub fn line(&mut self, text: &str) {
        let line = format!("{text}\n");
        if let Some(device) = &mut self.device {
            // The console is best effort: standard output still has the line.
            let _ = device.write_all(line.as_bytes());
        }
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(line.as_bytes());
        let _ = stdout.flush();
    }

    /// Waits until the console has sent what it was given (what the guest wrote before, too):
    /// qemu exits at the debug-exit port at once, dropping what the serial port still holds.
    pub fn drain(&self) {
        if let Some(device) = &self.device {
            // Best effort: a console that is no terminal has nothing to drain.
            let _ = tcdrain(device);
        }
        let _ = tcdrain(std::io::stdout());
    }
}
