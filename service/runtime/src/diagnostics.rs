//! libcontainer's diagnostics: the container init process reports only the top-level text of a
//! failure back to the runtime ("failed to prepare rootfs"); the cause (which mount, which
//! path, which errno) is only emitted as a `tracing` event. This installs a subscriber that
//! prints errors to stderr, one line each, or to the file [`write_to`] names.
//! Runs in: every `service` process, before any container is created. In a container's init
//! process stderr is already the container's stderr by then, so the cause lands in the
//! service's log beside its output, where an operator looks first. `exec` for the supervisor
//! sends them to its message file instead: the command's stderr is an operator's terminal.

use std::fs::File;
use std::io::{self, Write};
use std::mem::ManuallyDrop;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};

use tracing_subscriber::filter::LevelFilter;

/// Where the lines go: stderr unless [`write_to`] said otherwise.
static TARGET: AtomicI32 = AtomicI32::new(libc::STDERR_FILENO);

/// Installs the subscriber; a second call (or another subscriber) is left alone.
pub fn install() {
    let _ = tracing_subscriber::fmt()
        .with_writer(|| Target)
        .with_max_level(LevelFilter::ERROR)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .try_init();
}

/// Sends the lines to `file` from now on, in this process and the children it clones (which
/// share its descriptors whatever they do with stdio); it stays open until the process ends.
pub fn write_to(file: OwnedFd) {
    let previous = TARGET.swap(file.into_raw_fd(), Ordering::SeqCst);
    if previous != libc::STDERR_FILENO {
        // SAFETY: `previous` came from an earlier call's OwnedFd, whose ownership moved here.
        drop(unsafe { OwnedFd::from_raw_fd(previous) });
    }
}

/// Writes a warning line (`WARN message`) where the errors go: for what the runtime carries on
/// after, such as a failing poststart hook.
pub fn warn(message: &str) {
    let _ = Target.write_all(format!("WARN {message}\n").as_bytes());
}

/// The current target, written through without taking ownership.
struct Target;

impl Write for Target {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: the fd is stderr or one `write_to` keeps open for the rest of the process;
        // ManuallyDrop never closes it.
        let mut file =
            ManuallyDrop::new(unsafe { File::from_raw_fd(TARGET.load(Ordering::SeqCst)) });
        file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
