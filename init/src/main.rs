//! `/init`: PID 1 of every Kiln image. It moves an initramfs root to a tmpfs, sets up the system
//! as LinuxKit's rc.init does, runs /etc/init.d, starts the supervisor (`service system-init`)
//! and keeps it alive, reaps every orphan, and on SIGUSR2, SIGTERM, SIGUSR1 or ctrl-alt-del
//! shuts down: poweroff, reboot or halt. Run by the kernel as `/init -q -- NAME`, it loads
//! that module (init is the kernel's module helper) and exits.
//! Runs in: the image as PID 1 (the system's init), or in userspace mode when it is not PID 1
//! or /proc is already mounted (a container or a test's namespaces): then it is a child
//! subreaper, leaves mounts, devices, modules and the network alone, and exits after shutdown.
//! PID 1 must never exit (the kernel panics): after start-up every failure is logged and
//! survived, and nothing here panics on bad input.

mod console;
mod early;
mod loopback;
mod modules;
mod reaper;
mod scripts;
mod shutdown;
mod spawn;
mod supervisor;
mod switch_root;
mod watchdog;

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use nix::sys::signal::Signal;

use crate::reaper::Signals;
use crate::shutdown::Action;
use crate::supervisor::Supervisor;

/// Where init is on every image; the kernel runs it from there as its module helper.
const INIT_PATH: &str = "/init";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(module) = modules::helper_request(&args) {
        return match modules::autoload(module) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                say!("modules: {err}");
                ExitCode::FAILURE
            }
        };
    }
    // The first line: where userspace begins on the boot clock (the boot benchmark reads it).
    say!(
        "kiln init {} started, {} after boot",
        env!("CARGO_PKG_VERSION"),
        console::since_boot()
    );
    let system = nix::unistd::getpid().as_raw() == 1 && !Path::new("/proc/self").exists();
    let signals = match Signals::new() {
        Ok(signals) => signals,
        Err(err) => {
            say!("block signals and open a signalfd: {err}");
            return hang_or_fail(system);
        }
    };
    if system {
        start_system();
    } else {
        say!(
            "userspace mode: not the system's init; leaving mounts, devices and the network alone"
        );
        if let Err(err) = nix::sys::prctl::set_child_subreaper(true) {
            say!("become a child subreaper: {err}");
        }
    }
    early::raise_limits();
    early::set_hostname();
    early::make_resolv_conf_target();
    scripts::run_all(Path::new("/etc/init.d"));

    // Only the system's init owns the machine's watchdog.
    let watchdog = if system {
        watchdog::Watchdog::start(&std::fs::read_to_string("/proc/cmdline").unwrap_or_default())
    } else {
        None
    };
    let mut supervisor = Supervisor::from_env();
    supervisor.start(Instant::now());
    let action = main_loop(&signals, &mut supervisor);
    if let Some(watchdog) = &watchdog {
        watchdog.ending();
    }
    shutdown::run(action, &mut supervisor, &signals, system);
    ExitCode::SUCCESS
}

/// The steps only the system's init takes: the root moved off the initramfs, the mount table,
/// ctrl-alt-del as a signal, kernel modules and the loopback interface.
fn start_system() {
    if switch_root::needed() {
        if let Err(err) = switch_root::relocate() {
            say!(
                "move the root off the initramfs: {err}; containers that need pivot_root will fail"
            );
        }
    }
    early::mount_all();
    console::reopen_if_closed();
    // Ctrl-alt-del sends SIGINT to init instead of rebooting at once.
    if let Err(err) = nix::sys::reboot::set_cad_enabled(false) {
        say!("route ctrl-alt-del to init: {err}");
    }
    modules::load_for_devices();
    modules::load_listed();
    modules::become_kernel_helper(INIT_PATH);
    if let Err(err) = loopback::bring_up() {
        say!("bring up lo: {err}");
    }
}

/// Reaps children, restarts the supervisor when due, and returns the shutdown asked for.
fn main_loop(signals: &Signals, supervisor: &mut Supervisor) -> Action {
    loop {
        for signal in signals.wait(supervisor.restart_at()) {
            if let Some(action) = Action::for_signal(signal) {
                say!("{} received: {action}", signal.as_str());
                return action;
            }
            if signal != Signal::SIGCHLD {
                say!("{} ignored", signal.as_str());
            }
        }
        let now = Instant::now();
        reaper::reap(|pid, status| {
            supervisor.reaped(pid, status, now, false);
        });
        supervisor.tick(Instant::now());
    }
}

/// Without its signalfd init cannot work; as PID 1 it must still not exit.
fn hang_or_fail(system: bool) -> ExitCode {
    if !system {
        return ExitCode::FAILURE;
    }
    loop {
        nix::unistd::pause();
    }
}
