//! libcontainer's diagnostics: the container init process reports only the top-level text of a
//! failure back to the runtime ("failed to prepare rootfs"); the cause (which mount, which
//! path, which errno) is only emitted as a `tracing` event. This installs a subscriber that
//! prints errors to stderr, one line each.
//! Runs in: every `service` process, before any container is created. In a container's init
//! process stderr is already the container's stderr by then, so the cause lands in the
//! service's log beside its output, where an operator looks first.

use tracing_subscriber::filter::LevelFilter;

/// Installs the stderr subscriber; a second call (or another subscriber) is left alone.
pub fn install() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(LevelFilter::ERROR)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .try_init();
}
