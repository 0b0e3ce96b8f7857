//! The last step in the container's init (and in exec'd processes): find the program, restore
//! default signal dispositions and an empty signal mask, and exec it.
//! Runs in: the container's init process after clone, inside the container's namespaces and
//! root, just before exec. Rust ignores SIGPIPE at start-up and the caller may block signals;
//! without the reset every container would inherit both.
//! Mirrors runc's `libcontainer/standard_init_linux.go` (signal reset via Go's runtime) and
//! execve(2) / signal(7): ignored dispositions and the mask survive exec.

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use libcontainer::oci_spec::runtime::Spec;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};

use crate::seccomp::{self, Deferred};

/// The search path when the container's environment has no PATH (as execvp's default, widened
/// to the sbin directories that images use).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Executes `process.args` with signals reset; loads a seccomp filter libcontainer was not
/// given (see [`crate::seccomp`]) in its check before the container is reported created.
#[derive(Debug, Clone)]
pub(crate) struct ResetSignalsExecutor {
    seccomp: Option<Deferred>,
}

impl ResetSignalsExecutor {
    pub(crate) fn new(seccomp: Option<Deferred>) -> Self {
        Self { seccomp }
    }
}

impl Executor for ResetSignalsExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        let args = args(spec).ok_or(ExecutorError::InvalidArg)?;
        let program = find_program(&args[0], &search_path(spec))
            .ok_or_else(|| ExecutorError::Other(not_found(&args[0], spec)))?;
        let program = CString::new(program.as_os_str().as_encoded_bytes())
            .map_err(|_| ExecutorError::InvalidArg)?;
        let argv = args
            .iter()
            .map(|arg| CString::new(arg.as_bytes()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| ExecutorError::InvalidArg)?;
        reopen_dev_null_writable();
        reset_signals();
        let err = nix::unistd::execv(&program, &argv).unwrap_err();
        Err(ExecutorError::Other(format!(
            "exec {}: {err}",
            program.to_string_lossy()
        )))
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        let args = args(spec).ok_or_else(|| {
            ExecutorValidationError::ArgValidationError("process.args is empty".into())
        })?;
        if find_program(&args[0], &search_path(spec)).is_none() {
            return Err(ExecutorValidationError::ArgValidationError(not_found(
                &args[0], spec,
            )));
        }
        match &self.seccomp {
            Some(deferred) => {
                seccomp::load(deferred).map_err(ExecutorValidationError::ArgValidationError)
            }
            None => Ok(()),
        }
    }
}

fn args(spec: &Spec) -> Option<&Vec<String>> {
    spec.process()
        .as_ref()?
        .args()
        .as_ref()
        .filter(|args| !args.is_empty())
}

fn search_path(spec: &Spec) -> String {
    spec.process()
        .as_ref()
        .and_then(|process| process.env().as_ref())
        .and_then(|env| env.iter().find_map(|entry| entry.strip_prefix("PATH=")))
        .unwrap_or(DEFAULT_PATH)
        .to_owned()
}

fn not_found(program: &str, spec: &Spec) -> String {
    if program.contains('/') {
        format!("process.args[0]: `{program}` is not an executable file in the container")
    } else {
        format!(
            "process.args[0]: `{program}` not found in the container's PATH ({})",
            search_path(spec)
        )
    }
}

/// The executable for `program`: itself if it has a `/`, else the first match along `path`.
fn find_program(program: &str, path: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let candidate = PathBuf::from(program);
        return is_executable(&candidate).then_some(candidate);
    }
    path.split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// libcontainer points stdio that was the host's /dev/null at the container's /dev/null, but
/// opens that read-only, so a container whose stdout is /dev/null gets EBADF on every write.
/// Output fds that are /dev/null and read-only are reopened read-write, as runc opens them.
fn reopen_dev_null_writable() {
    let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    else {
        return;
    };
    let Ok(null_stat) = nix::sys::stat::fstat(null.as_raw_fd()) else {
        return;
    };
    for fd in [libc::STDOUT_FILENO, libc::STDERR_FILENO] {
        let is_null = nix::sys::stat::fstat(fd).is_ok_and(|stat| {
            stat.st_mode & libc::S_IFMT == libc::S_IFCHR && stat.st_rdev == null_stat.st_rdev
        });
        let read_only = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL)
            .is_ok_and(|flags| flags & libc::O_ACCMODE == libc::O_RDONLY);
        if is_null && read_only {
            let _ = nix::unistd::dup2(null.as_raw_fd(), fd);
        }
    }
}

/// The kernel's `struct sigaction` for rt_sigaction(2) on x86_64.
#[repr(C)]
struct KernelSigaction {
    handler: libc::sighandler_t,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

/// Every catchable signal back to SIG_DFL, and nothing blocked. The raw system call is used
/// because libc refuses to touch the signals it reserves for itself (32 and 33), which the
/// container must not inherit ignored either.
pub(crate) fn reset_signals() {
    let default = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for number in 1..=libc::SIGRTMAX() {
        if number == libc::SIGKILL || number == libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction reads `default` (a valid, live struct in the kernel's layout)
        // and writes nothing (old action is null); installing SIG_DFL runs no handler code.
        // This process is the single-threaded container init, about to exec.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                number,
                &default as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                std::mem::size_of::<u64>(),
            )
        };
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn find_program_searches_path_and_needs_the_exec_bit() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        fs::create_dir(&bin).unwrap();
        fs::write(bin.join("tool"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(bin.join("tool"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(bin.join("data"), "").unwrap();
        let path = format!("/nonexistent:{}", bin.display());
        assert_eq!(find_program("tool", &path), Some(bin.join("tool")));
        assert_eq!(find_program("data", &path), None);
        assert_eq!(find_program("missing", &path), None);
        let absolute = bin.join("tool");
        assert_eq!(
            find_program(absolute.to_str().unwrap(), ""),
            Some(absolute.clone())
        );
        assert_eq!(find_program(bin.join("data").to_str().unwrap(), ""), None);
    }
}
