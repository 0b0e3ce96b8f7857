//! init's messages: one line each, `init: ...`, on the console (init's stdout, which the kernel
//! opens on /dev/console) and, when running as the system's init, in the kernel log through
//! /dev/kmsg, so `dmesg` holds them after the console has scrolled away. The kernel-log copy is
//! written at debug level, which the kernel does not echo to the console: each line shows once
//! whatever the console log level.
//! Runs in: PID 1, single-threaded. Writing never fails loudly: a lost line is not worth dying for.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::{Mutex, OnceLock, PoisonError};

/// The kernel log, once opened.
static KMSG: OnceLock<Mutex<File>> = OnceLock::new();

/// Copies every later line to /dev/kmsg (after /dev is mounted); a failure is left silent.
pub fn open_kernel_log() {
    if let Ok(file) = OpenOptions::new().write(true).open("/dev/kmsg") {
        let _ = KMSG.set(Mutex::new(file));
    }
}

/// Writes one line.
pub fn line(message: &str) {
    let text = format!("init: {message}\n");
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
    if let Some(kmsg) = KMSG.get() {
        let mut kmsg = kmsg.lock().unwrap_or_else(PoisonError::into_inner);
        // <7>: debug level; one write is one kernel log record.
        let _ = kmsg.write_all(format!("<7>{text}").as_bytes());
    }
}

/// The time since the kernel started (CLOCK_BOOTTIME, suspend included), as `1.234 s`.
pub fn since_boot() -> String {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME) {
        Ok(now) => format!("{}.{:03} s", now.tv_sec(), now.tv_nsec() / 1_000_000),
        Err(err) => format!("an unknown time ({err})"),
    }
}

/// Writes one line, formatted.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::console::line(&format!($($arg)*))
    };
}

/// If init was started without a console (no /dev/console in the initramfs), opens the one
/// devtmpfs provides as stdin, stdout and stderr.
pub fn reopen_if_closed() {
    if nix::fcntl::fcntl(1, nix::fcntl::FcntlArg::F_GETFD).is_ok() {
        return;
    }
    let Ok(console) = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")
    else {
        return;
    };
    // Opened on the lowest free fd, possibly one of 0..3: that one is kept open.
    let opened = std::os::fd::IntoRawFd::into_raw_fd(console);
    for fd in 0..3 {
        if fd != opened {
            let _ = nix::unistd::dup2(opened, fd);
        }
    }
    if opened > 2 {
        let _ = nix::unistd::close(opened);
    }
}
