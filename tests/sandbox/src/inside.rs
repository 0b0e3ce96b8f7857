//! The inside of the sandbox: proves it is isolated, makes `/` private, mounts a fresh /proc and
//! the scratch tmpfs, then runs the body and exits with its result.
//! Runs in: the re-executed test binary, as PID 1 of the new namespaces. Until
//! [`check_isolated`] passes nothing here changes any mount.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::mount::{mount, MsFlags};
use nix::unistd::getpid;
use spec::mountinfo::MountInfo;

use crate::{BodyResult, ENV_HOST_PIDNS, ENV_SCRATCH};

/// Sets the sandbox up and runs the body; never returns.
pub(crate) fn run_body<F: FnOnce() -> BodyResult>(body: F) -> ! {
    if let Err(err) = set_up() {
        eprintln!("sandbox refused to run the test: {err}");
        exit(2);
    }
    match body() {
        Ok(()) => exit(0),
        Err(err) => {
            eprintln!("test body failed: {err}");
            let mut source = err.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            exit(1)
        }
    }
}

#[allow(
    clippy::exit,
    reason = "the sandboxed test process ends here with the body's result"
)]
fn exit(code: i32) -> ! {
    std::process::exit(code)
}

fn set_up() -> Result<(), String> {
    check_pid_namespace()?;
    // From here on this process is PID 1 of a pid namespace of its own: mounts are safe to change.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|err| format!("make / recursively private: {err}"))?;
    mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|err| format!("mount a fresh /proc: {err}"))?;
    check_isolated()?;
    let scratch = std::env::var(ENV_SCRATCH).map_err(|_| format!("{ENV_SCRATCH} is not set"))?;
    mount(
        Some("tmpfs"),
        scratch.as_str(),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    )
    .map_err(|err| format!("mount tmpfs on {scratch}: {err}"))?;
    Ok(())
}

/// Whether this process is PID 1 of a pid namespace other than the test machine's, and every
/// mount it sees is private. A test that does dangerous things calls this first too.
pub fn check_isolated() -> Result<(), String> {
    check_pid_namespace()?;
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|err| format!("read /proc/self/mountinfo: {err}"))?;
    if let Some(line) = mountinfo.lines().find(|line| !is_private(line)) {
        return Err(format!("a mount still propagates: {line}"));
    }
    Ok(())
}

fn check_pid_namespace() -> Result<(), String> {
    let pid = getpid().as_raw();
    if pid != 1 {
        return Err(format!("not PID 1 of a new pid namespace (pid {pid})"));
    }
    let host: u64 = std::env::var(ENV_HOST_PIDNS)
        .ok()
        .and_then(|inode| inode.parse().ok())
        .ok_or_else(|| format!("{ENV_HOST_PIDNS} is not set"))?;
    let own = pid_namespace_inode(Path::new("/proc/self/ns/pid"))?;
    if own == host {
        return Err("still in the test machine's pid namespace".into());
    }
    Ok(())
}

pub(crate) fn pid_namespace_inode(path: &Path) -> Result<u64, String> {
    fs::metadata(path)
        .map(|meta| meta.ino())
        .map_err(|err| format!("stat {}: {err}", path.display()))
}

/// A mountinfo line's optional fields (between the mount options and ` - `) name its peer
/// groups: `shared:N` or `master:N` mean events still propagate. A line that does not parse
/// names none.
fn is_private(line: &str) -> bool {
    MountInfo::parse(line).map_or(true, |mount| !mount.propagates())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_private_reads_optional_fields() {
        let shared = "22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw";
        let slave = "23 22 0:22 / /proc rw master:5 - proc proc rw";
        let private = "24 22 0:23 / /tmp rw,nosuid - tmpfs tmpfs rw";
        assert!(!is_private(shared));
        assert!(!is_private(slave));
        assert!(is_private(private));
    }

    #[test]
    fn check_isolated_refuses_outside_a_sandbox() {
        let err = check_isolated().unwrap_err();
        assert!(err.contains("not PID 1"), "{err}");
    }
}
