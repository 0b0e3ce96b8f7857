//! Ending the system: the shutdown.d scripts, the supervisor asked to stop (it runs onshutdown
//! and stops every service in reverse dependency order within their timeouts), then every
//! process left sent SIGTERM and, past a deadline, SIGKILL; sync; disks, overlays and network
//! filesystems unmounted (each disk remounted read-only first, so its filesystem is clean at
//! the next boot even where it stays busy), each said on the console; reboot(2) with the
//! requested action.
//! Runs in: PID 1's main loop, once a shutdown signal came; never returns as the system's init.
//! In userspace mode nothing is unmounted and init exits instead of calling reboot(2); it
//! signals every process of its pid namespace only when it is that namespace's PID 1, and
//! otherwise just its own descendants.
//! Mirrors LinuxKit rc.shutdown (doShutdown, unmountAll) with the fixed `sleep 5` replaced by
//! waiting for the processes to be gone.

use std::fmt;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::reboot::{reboot, RebootMode};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use spec::mountinfo;

use crate::reaper::{self, Signals};
use crate::supervisor::Supervisor;
use crate::{say, scripts};

/// How long the supervisor gets for onshutdown and the ordered stop of every service.
const SUPERVISOR_DEADLINE: Duration = Duration::from_secs(120);
/// How long processes get between SIGTERM and SIGKILL, and after SIGKILL.
const TERM_DEADLINE: Duration = Duration::from_secs(5);

/// Filesystems unmounted at shutdown, and those detached lazily (a server may be gone).
const UNMOUNTED: [&str; 8] = [
    "ext2", "ext3", "ext4", "btrfs", "xfs", "vfat", "msdos", "overlay",
];
const DETACHED: [&str; 3] = ["nfs", "nfs4", "cifs"];

/// What the shutdown ends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Poweroff,
    Reboot,
    Halt,
}

impl Action {
    /// The action a signal asks for, as busybox's commands send them.
    pub fn for_signal(signal: Signal) -> Option<Self> {
        match signal {
            Signal::SIGUSR2 => Some(Self::Poweroff),
            Signal::SIGTERM | Signal::SIGINT => Some(Self::Reboot),
            Signal::SIGUSR1 => Some(Self::Halt),
            _ => None,
        }
    }

    fn mode(self) -> RebootMode {
        match self {
            Self::Poweroff => RebootMode::RB_POWER_OFF,
            Self::Reboot => RebootMode::RB_AUTOBOOT,
            Self::Halt => RebootMode::RB_HALT_SYSTEM,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Poweroff => "poweroff",
            Self::Reboot => "reboot",
            Self::Halt => "halt",
        })
    }
}

/// Shuts down. As the system's init this ends in reboot(2) and never returns; in userspace
/// mode it returns once everything is stopped, for init to exit.
pub fn run(action: Action, supervisor: &mut Supervisor, signals: &Signals, system: bool) {
    say!("{action}: stopping everything");
    supervisor.cancel_restart();
    scripts::run_all(Path::new("/etc/shutdown.d"));
    if let Some(pid) = supervisor.pid() {
        stop_supervisor(pid, supervisor, signals);
    }
    stop_everything(signals);
    nix::unistd::sync();
    say!("{action}: filesystems synced");
    if !system {
        say!("{action}: done");
        return;
    }
    unmount_all();
    say!("{action}");
    let Err(err) = reboot(action.mode());
    say!("{action}: reboot(2): {err}");
    // PID 1 must not exit; nothing is left to do but wait.
    loop {
        let _ = signals.wait(None);
        reaper::reap(|_, _| {});
    }
}

/// SIGTERM to the supervisor, then waits for it (SIGKILL past the deadline, after which the
/// wait has none: SIGKILL cannot be ignored).
fn stop_supervisor(pid: Pid, supervisor: &mut Supervisor, signals: &Signals) {
    if let Err(err) = kill(pid, Signal::SIGTERM) {
        say!("signal the supervisor (pid {pid}): {err}");
    }
    let mut deadline = Some(Instant::now() + SUPERVISOR_DEADLINE);
    while supervisor.pid().is_some() {
        if deadline.is_some_and(|at| Instant::now() >= at) {
            say!(
                "the supervisor is still running after {}s: killing it",
                SUPERVISOR_DEADLINE.as_secs()
            );
            let _ = kill(pid, Signal::SIGKILL);
            deadline = None;
        }
        let _ = signals.wait(deadline);
        reap_noting(supervisor);
    }
}

fn reap_noting(supervisor: &mut Supervisor) {
    let now = Instant::now();
    reaper::reap(|pid, status| {
        supervisor.reaped(pid, status, now, true);
    });
}

/// SIGTERM to everything left, SIGKILL to whatever is there after the deadline, and waits
/// until nothing is left (or a last deadline passes).
fn stop_everything(signals: &Signals) {
    signal_everything(Signal::SIGTERM);
    if wait_for_no_children(signals, Instant::now() + TERM_DEADLINE, None) {
        return;
    }
    say!(
        "processes still running {}s after SIGTERM: killing them",
        TERM_DEADLINE.as_secs()
    );
    signal_everything(Signal::SIGKILL);
    if !wait_for_no_children(
        signals,
        Instant::now() + TERM_DEADLINE,
        Some(Signal::SIGKILL),
    ) {
        say!("processes still left after SIGKILL");
    }
}

/// Waits until init has no children; `again` is re-sent to everything at each wake-up (new
/// processes may have been forked meanwhile).
fn wait_for_no_children(signals: &Signals, deadline: Instant, again: Option<Signal>) -> bool {
    loop {
        if !reaper::reap(|_, _| {}) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        let _ = signals.wait(Some(deadline));
        if let Some(signal) = again {
            signal_everything(signal);
        }
    }
}

/// As PID 1 of a pid namespace, every process in it (kill(-1) spares the caller); otherwise
/// only this process's descendants, found through /proc.
fn signal_everything(signal: Signal) {
    if nix::unistd::getpid().as_raw() == 1 {
        let _ = kill(Pid::from_raw(-1), signal);
        return;
    }
    for pid in descendants(nix::unistd::getpid()) {
        let _ = kill(pid, signal);
    }
}

/// The descendants of `pid`, from the `children` lists of every thread.
fn descendants(pid: Pid) -> Vec<Pid> {
    let mut found = Vec::new();
    let mut queue = vec![pid];
    while let Some(parent) = queue.pop() {
        let Ok(tasks) = fs::read_dir(format!("/proc/{parent}/task")) else {
            continue;
        };
        for task in tasks.filter_map(Result::ok) {
            let Ok(list) = fs::read_to_string(task.path().join("children")) else {
                continue;
            };
            for child in list.split_whitespace().filter_map(|p| p.parse().ok()) {
                let child = Pid::from_raw(child);
                if !found.contains(&child) {
                    found.push(child);
                    queue.push(child);
                }
            }
        }
    }
    found
}

/// Unmounts disks and overlays, and detaches network filesystems, newest mount first. A disk's
/// filesystem is remounted read-only first: that writes it out and marks it clean even where
/// the unmount cannot end it (a mount on top of it keeps it busy, or a mount namespace pinned
/// by a bindNS file holds it too), and then it stays read-only until the power goes.
fn unmount_all() {
    let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
    for (target, fstype) in unmount_plan(&mounts) {
        let detach = DETACHED.contains(&fstype.as_str());
        if detach {
            match umount2(target.as_str(), MntFlags::MNT_DETACH) {
                Ok(()) => say!("detached {target} ({fstype})"),
                Err(err) => say!("detach {target} ({fstype}): {err}"),
            }
            continue;
        }
        let read_only = if fstype == "overlay" {
            None
        } else {
            Some(mount(
                None::<&str>,
                target.as_str(),
                None::<&str>,
                MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            ))
        };
        match (umount2(target.as_str(), MntFlags::empty()), read_only) {
            (Ok(()), _) => say!("unmounted {target} ({fstype})"),
            (Err(Errno::EBUSY), Some(Ok(()))) => {
                say!("{target} ({fstype}) is busy: left mounted read-only, clean");
            }
            (Err(err), Some(Err(ro))) => {
                say!("unmount {target} ({fstype}): {err}, and remounting it read-only failed: {ro}")
            }
            (Err(err), _) => say!("unmount {target} ({fstype}): {err}"),
        }
    }
}

/// `(mount point, type)` of the mounts to undo, in the order to undo them.
fn unmount_plan(mounts: &str) -> Vec<(String, String)> {
    mountinfo::parse_mounts(mounts)
        .rev()
        .filter(|mount| {
            UNMOUNTED.contains(&mount.fs_type.as_str())
                || DETACHED.contains(&mount.fs_type.as_str())
        })
        .map(|mount| {
            (
                mount.mount_point.to_string_lossy().into_owned(),
                mount.fs_type,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_signals_map_to_actions() {
        assert_eq!(Action::for_signal(Signal::SIGUSR2), Some(Action::Poweroff));
        assert_eq!(Action::for_signal(Signal::SIGTERM), Some(Action::Reboot));
        assert_eq!(Action::for_signal(Signal::SIGINT), Some(Action::Reboot));
        assert_eq!(Action::for_signal(Signal::SIGUSR1), Some(Action::Halt));
        assert_eq!(Action::for_signal(Signal::SIGHUP), None);
        assert_eq!(Action::for_signal(Signal::SIGCHLD), None);
    }

    #[test]
    fn disks_overlays_and_network_filesystems_are_unmounted_newest_first() {
        let mounts = "rootfs / tmpfs rw 0 0\n\
                      proc /proc proc rw 0 0\n\
                      /dev/vda /var/lib ext4 rw 0 0\n\
                      overlay /containers/volumes/v/merged overlay rw 0 0\n\
                      srv:/x /mnt/my\\040share nfs4 rw 0 0\n\
                      tmpfs /run tmpfs rw 0 0\n";
        assert_eq!(
            unmount_plan(mounts),
            [
                ("/mnt/my share".to_owned(), "nfs4".to_owned()),
                (
                    "/containers/volumes/v/merged".to_owned(),
                    "overlay".to_owned()
                ),
                ("/var/lib".to_owned(), "ext4".to_owned()),
            ]
        );
    }
}
