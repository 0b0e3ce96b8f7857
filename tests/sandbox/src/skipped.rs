//! The root tests a non-root run did not run, counted and said once when the test binary ends:
//! outside CI a non-root `cargo test` passes them, and without this line nothing would show
//! that they never ran. (With `CI=true` they fail instead.)
//! Runs in: the test process, outside the sandbox.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

static SKIPPED: AtomicUsize = AtomicUsize::new(0);
static REPORT_AT_EXIT: Once = Once::new();

/// Counts one root test that did not run; the first arranges for the count to be said at exit.
pub fn count() {
    REPORT_AT_EXIT.call_once(|| {
        // SAFETY: atexit only stores a pointer to a function that takes no arguments and never
        // unwinds; `report` reads an atomic and writes to standard error.
        unsafe { libc::atexit(report) };
    });
    SKIPPED.fetch_add(1, Ordering::SeqCst);
}

/// The line said at exit.
pub fn line(count: usize) -> String {
    format!(
        "{count} root test{} did not run: not root (run the tests as root; under CI=true they fail instead)",
        if count == 1 { "" } else { "s" }
    )
}

extern "C" fn report() {
    let line = format!("\nnote: {}\n", line(SKIPPED.load(Ordering::SeqCst)));
    // Straight to standard error: the test harness captures only print! and eprint!.
    let _ = std::io::stderr().write_all(line.as_bytes());
}
