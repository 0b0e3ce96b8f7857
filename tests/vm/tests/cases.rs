//! The VM suite: images built from manifests the way users build them (`kiln build` with the
//! packages of pkg/, examples from yml/ and cases from tests/vm/cases/), booted with `kiln
//! run`. In each image the probe (pkg/probe) checks from inside what should hold, prints
//! `PROBE PASS`/`PROBE FAIL` lines and ends the VM: a poweroff through init when all passed,
//! so shutdown runs as for a user, else a failure code. The test asserts the probe's verdict,
//! the check count, `kiln run`'s exit status 0 and what the console must show besides.
//! Runs on the host as root or any user that can run qemu and write the image cache; cases run
//! in parallel (cargo's test threads). Packages are built into the user's cache on first use.
//! Every guest has qemu's restricted user network (or none): it reaches nothing beyond its
//! published ports and DHCP.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vm::{free_port, release_binary, workspace, LiveConsole, Outcome, Run, Terminal};

/// Seconds a case's VM may run.
const TIMEOUT: &str = "240";

/// Builds `manifests` (paths from the workspace root) as image `name`, boots it with `kiln
/// run`, and asserts the probe ran `checks` checks, all passed, and the VM powered off.
fn boot(name: &str, manifests: &[&str], checks: usize) -> Run {
    boot_with(name, manifests, checks, &[], |_| ())
}

/// `kiln build` of `manifests` (paths from the workspace root) as image `name` in `formats`
/// (kernel+initrd when none), in a new directory.
fn build(name: &str, manifests: &[&str], formats: &[&str]) -> tempfile::TempDir {
    let out = tempfile::tempdir().expect("output directory");
    let build = Command::new(release_binary("kiln"))
        .current_dir(workspace())
        .args(["build", "-o"])
        .arg(out.path())
        .args(["--name", name])
        .args(formats.iter().flat_map(|format| ["--format", format]))
        .args(manifests)
        .output()
        .expect("run kiln build");
    assert!(
        build.status.success(),
        "kiln build {manifests:?}:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    out
}

/// As [`boot`], with `args` for `kiln run` besides the network, and `during` called with the
/// console while the VM runs.
fn boot_with(
    name: &str,
    manifests: &[&str],
    checks: usize,
    args: &[String],
    during: impl FnOnce(&mut LiveConsole),
) -> Run {
    // The format `kiln run` is told to boot is the one built.
    let out = build(name, manifests, format_in(args).as_slice());
    boot_built(name, out.path(), checks, args, during)
}

/// The format `--format F` in `args` names.
fn format_in(args: &[String]) -> Option<&str> {
    args.windows(2)
        .find(|pair| pair[0] == "--format")
        .map(|pair| pair[1].as_str())
}

/// `kiln run` of the image `name` built in `out`, with `args` besides the network.
fn kiln_run(name: &str, out: &Path, args: &[String]) -> std::process::Child {
    let networking = if args.iter().any(|arg| arg == "--networking") {
        &[][..]
    } else {
        &["--networking", "user,restrict=on"][..]
    };
    Command::new(release_binary("kiln"))
        .args(["run", "--timeout", TIMEOUT])
        .args(networking)
        .args(args)
        .arg(out.join(name))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kiln run")
}

/// As [`boot_with`], for an image already built in `out`.
fn boot_built(
    name: &str,
    out: &Path,
    checks: usize,
    args: &[String],
    during: impl FnOnce(&mut LiveConsole),
) -> Run {
    let format = format_in(args);
    let mut child = kiln_run(name, out, args);
    let mut console = LiveConsole::of(&mut child);
    during(&mut console);
    let (status, stderr) = console.finish(&mut child);
    let console = console.text;
    let failed: Vec<&str> = console
        .lines()
        .filter(|line| line.contains("PROBE FAIL") || line.contains("PROBE ERROR"))
        .collect();
    assert!(
        failed.is_empty(),
        "{name}: {failed:#?}\n{console}\n{stderr}"
    );
    assert!(
        console.contains(&format!("PROBE DONE passed={checks} failed=0")),
        "{name}: the probe did not pass its {checks} checks:\n{console}\n{stderr}"
    );
    assert_eq!(
        status.code(),
        Some(0),
        "{name}: the VM did not power off cleanly:\n{console}\n{stderr}"
    );
    if let Some(format) = format.filter(|format| *format != "kernel+initrd") {
        assert!(
            stderr.contains("kiln run: booting ") && stderr.contains(&format!("({format}, under ")),
            "{name}: kiln run did not boot the {format} image:\n{stderr}"
        );
    }
    Run {
        outcome: Outcome::PoweredOff,
        console,
    }
}

#[test]
fn minimal_example_applies_sysctl_runs_getty_and_listens_nowhere() {
    // A pvpanic device, whose driver no target machine needs: left out, and named.
    let args = ["--device".to_owned(), "pvpanic".to_owned()];
    let console = boot_with(
        "minimal",
        &["yml/minimal.yml", "tests/vm/cases/minimal.yml"],
        4,
        &args,
        |_| (),
    );
    console.assert_printed(
        "init: modules: device acpi:QEMU0001:: pvpanic_mmio was left out of this image \
         (the manifest's `kernel: modules: [pvpanic_mmio]` keeps it)",
    );
    console.assert_printed("onboot 000-sysctl: exited with status 0");
    console.assert_printed("service: getty: running");
    console.assert_printed("init: poweroff");
}

#[test]
fn onboot_runs_in_order_past_a_failure_and_onshutdown_runs_at_poweroff() {
    let console = boot(
        "onboot",
        &["tests/vm/cases/base.yml", "tests/vm/cases/onboot.yml"],
        2,
    );
    console.assert_printed("first-says-hello");
    console.assert_printed("onboot 001-second: failed: exited with status 3");
    console.assert_printed("onboot 002-third: exited with status 0");
    console.assert_printed("onboot 003-fourth: exited with status 0");
    let done = console.assert_printed("PROBE DONE");
    let shutdown = console.assert_printed("onshutdown saw 1,2,3,4,");
    assert!(
        done < shutdown,
        "onshutdown runs at poweroff, after the probe"
    );
}

#[test]
fn runtime_json_makes_cgroups_directories_and_mounts() {
    boot(
        "runtime",
        &["tests/vm/cases/base.yml", "tests/vm/cases/runtime.yml"],
        5,
    );
}

/// The page at `port` on this host, asked for until it comes (the published port accepts
/// before the guest's server listens) or `within` passes.
fn fetch(port: u16, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let mut page = String::new();
        let answered = TcpStream::connect(("127.0.0.1", port)).and_then(|mut stream| {
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            stream.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
            stream.read_to_string(&mut page)
        });
        if answered.is_ok() && page.starts_with("HTTP/1.") {
            return page;
        }
        assert!(
            Instant::now() < deadline,
            "no page at 127.0.0.1:{port}: {answered:?} {page}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_example_leases_eth0_serves_a_published_port_and_crosses_a_veth_pair() {
    let port = free_port();
    let disk = tempfile::NamedTempFile::new().expect("disk image");
    disk.as_file().set_len(1 << 20).expect("size the disk");
    let args = [
        "--publish".to_owned(),
        format!("{port}:80"),
        "--disk".to_owned(),
        disk.path().display().to_string(),
        "--device".to_owned(),
        "pvpanic".to_owned(),
    ];
    let mut page = String::new();
    let console = boot_with(
        "example",
        &["yml/example.yml", "tests/vm/cases/example.yml"],
        6,
        &args,
        |console| {
            console.wait_for("service: web: running", Duration::from_secs(200));
            page = fetch(port, Duration::from_secs(60));
        },
    );
    assert!(page.contains("Served by Kiln's httpd package."), "{page}");
    let loaded = console.assert_printed("init: modules: loaded for the devices present:");
    let line = console.console[loaded..].lines().next().unwrap_or_default();
    // pvpanic_mmio only because the case's `kernel: modules:` names it.
    for module in ["virtio_mmio", "virtio_net", "virtio_blk", "pvpanic_mmio"] {
        assert!(line.contains(module), "{module} not loaded: {line}");
    }
    console.assert_printed("onboot 001-dhcpcd: exited with status 0");
    // A restricted user network's DHCP gives an address only.
    console.assert_printed("dhcpcd: eth0: bound 10.0.2.15/24, router none, DNS none");
    console.assert_printed("service: getty: running");
}

#[test]
fn without_a_network_the_dhcp_onboot_fails_at_once_and_the_boot_goes_on() {
    let args = ["--networking".to_owned(), "none".to_owned()];
    let console = boot_with(
        "offline",
        &["yml/example.yml", "tests/vm/cases/offline.yml"],
        4,
        &args,
        |_| (),
    );
    console.assert_printed("onboot 001-dhcpcd: failed: exited with status 1");
    console.assert_printed("dhcpcd: no network device to configure (none but lo)");
    console.assert_printed("onboot 003-veth-host: exited with status 0");
    console.assert_printed("service: web: running");
}

#[test]
fn volumes_example_is_writable_read_only_and_from_its_image() {
    boot(
        "volumes",
        &["yml/volumes.yml", "tests/vm/cases/volumes.yml"],
        3,
    );
}

#[test]
fn a_crashing_service_is_restarted_and_dependents_wait_for_readiness() {
    let console = boot(
        "restart",
        &["tests/vm/cases/base.yml", "tests/vm/cases/restart.yml"],
        5,
    );
    console.assert_printed("service: crasher: exited with status 1");
    console.assert_printed("service: early: ready");
    // `service list` from inside, shown by the probe: the table, every service in it.
    let shown = console.assert_printed("PROBE PASS show service list");
    let table: Vec<&str> = console.console[shown..]
        .lines()
        .skip(1)
        .take(5)
        .map(str::trim_end)
        .collect();
    assert!(
        table[0].starts_with("NAME ") && table[0].ends_with("LAST EXIT"),
        "{table:#?}"
    );
    for (row, name) in table[1..].iter().zip(["crasher", "early", "late", "probe"]) {
        assert!(row.starts_with(&format!("{name} ")), "{table:#?}");
        assert!(
            row.contains(" running ") || row.contains(" ready "),
            "{table:#?}"
        );
    }
}

/// Builds base.yml with the case `name` and boots it, which must end with the guest's reboot
/// (qemu runs with `-no-reboot`): the console.
fn boot_to_reboot(name: &str) -> Run {
    let case = format!("tests/vm/cases/{name}.yml");
    let out = build(name, &["tests/vm/cases/base.yml", &case], &[]);
    let mut child = kiln_run(name, out.path(), &[]);
    let mut console = LiveConsole::of(&mut child);
    let (status, stderr) = console.finish(&mut child);
    assert_eq!(
        status.code(),
        Some(0),
        "{name}: kiln run did not end with the guest:\n{}\n{stderr}",
        console.text
    );
    Run {
        outcome: Outcome::PoweredOff,
        console: console.text,
    }
}

/// A service past its restartLimit with `onFailure: reboot`: the reason is said first, then
/// init shuts down in order and reboots.
#[test]
fn a_service_past_its_restart_limit_reboots_the_machine_saying_why() {
    let run = boot_to_reboot("onfailure");
    run.assert_in_order(&[
        "service: failer: exited with status 3",
        "service: failer: exited with status 3; restartLimit reached (1 restarts within 60s): failed, not restarted",
        "service: failer: failed for good: onFailure: reboot, asking init to reboot",
        "init: SIGTERM received: reboot",
        "service: all services stopped",
        "reboot: Restarting system",
    ]);
    assert_eq!(
        run.console
            .matches("service: failer: exited with status 3")
            .count(),
        2,
        "started once, restarted once:\n{}",
        run.console
    );
}

/// `kiln.watchdog=6`: softdog armed and petted while the supervisor answers; the supervisor
/// stopped with SIGSTOP, softdog resets the machine.
#[test]
fn a_stopped_supervisor_lets_softdog_reset_the_machine() {
    let run = boot_to_reboot("watchdog");
    run.assert_in_order(&[
        "init: watchdog: /dev/watchdog (softdog) armed, 6 s: petted while the supervisor answers",
        "init: watchdog: the supervisor answers: from now on it is petted only while it does",
        "stopper: SIGSTOP to the supervisor, pid ",
        "init: watchdog: the supervisor does not answer on /run/service.sock: not petting",
        "softdog: Initiating system reboot",
    ]);
    assert!(
        !run.console.contains("received: reboot"),
        "the reset came from the watchdog, not a shutdown:\n{}",
        run.console
    );
}

/// Types `keys` every few seconds until `text` is shown (a shell that is not there yet, or
/// not yet back, misses keys typed ahead).
fn answered(term: &mut Terminal, keys: &str, text: &str) {
    for _ in 0..30 {
        term.type_keys(keys);
        if term.shows(text, Duration::from_secs(5)) {
            return;
        }
    }
    panic!("`{text}` never shown:\n{}", term.text);
}

/// The example image's console used as a person at a terminal uses it: `kiln run` on a
/// pseudo-terminal (so qemu passes Ctrl-C and Ctrl-Z to the guest), keys typed into getty's
/// shell. Each expected text can only come from running the command (`$((6*7))` is echoed as
/// typed, `42` only when run).
#[test]
fn the_getty_shell_takes_ctrl_c_and_ctrl_z_and_the_operators_commands_work_from_it() {
    let out = build("console", &["yml/example.yml"], &[]);
    let (mut term, mut child) = Terminal::spawn(
        Command::new(release_binary("kiln"))
            .args([
                "run",
                "--timeout",
                TIMEOUT,
                "--networking",
                "user,restrict=on",
            ])
            .arg(out.path().join("console")),
    );
    term.wait_for("service: web: running", Duration::from_secs(200));
    // The shell comes up a moment after its service: asked until it answers.
    answered(&mut term, "echo up-$((1+1))\r", "up-2");
    let long = Duration::from_secs(60);

    // Ctrl-C ends the foreground command: the next one runs long before `sleep 600` would end.
    // The line is printed by the foreground job itself, so the key comes once it has the
    // terminal.
    term.type_keys("sh -c 'echo sleeping-$((40+2)); exec sleep 600'\r");
    term.wait_for("sleeping-42", long);
    term.type_keys("\x03");
    term.type_keys("echo back-$((6*7))\r");
    term.wait_for("back-42", long);
    // Ctrl-Z stops it instead, and job control has it.
    term.type_keys("sh -c 'echo pausing-$((40+2)); exec sleep 600'\r");
    term.wait_for("pausing-42", long);
    term.type_keys("\x1a");
    term.type_keys("jobs; kill %1; echo jobs-$((2+3))\r");
    term.wait_for("jobs-5", long);
    assert!(term.text.contains("Stopped"), "{}", term.text);

    // exec through the supervisor: the exit status, then an interactive shell on a terminal.
    term.type_keys("service exec web -- sh -c 'exit 7'; echo rc-$?-$((0))\r");
    term.wait_for("rc-7-0", long);
    term.type_keys("service exec -t web -- sh\r");
    term.type_keys("echo inner-$((5*5)) $(cat /proc/1/comm)\r");
    term.wait_for("inner-25 kiln-init", long);
    term.type_keys("exit\r");
    // Keys typed before the inner shell has gone would go to it: asked until the outer answers.
    answered(&mut term, "echo outer-$((3*3))\r", "outer-9");

    // web runs under the container init: stopped by the SIGTERM it passes on, no SIGKILL.
    term.type_keys(
        "service stop web; service status web | grep 'last exit'; \
                    echo killed-$(grep -c 'web: still running' /var/log/service.log)\r",
    );
    term.wait_for("killed-0", long);
    assert!(term.text.contains("last exit: status 143"), "{}", term.text);

    term.type_keys("poweroff\r");
    let status = child.wait().expect("wait for kiln run");
    term.finish();
    assert_eq!(status.code(), Some(0), "{}", term.text);
}

/// The README's first image, by the README's own commands: validated, built and booted as it
/// says from a directory that looks like the repository's root (the port it publishes moved
/// to a free one, and the network restricted, as every test's is), the page fetched with its
/// curl, and its console commands typed into getty's shell.
#[test]
fn the_readmes_first_image_builds_boots_serves_and_answers() {
    use clidoc::readme::tagged;
    let port = free_port().to_string();
    let root = tempfile::tempdir().expect("a root-like directory");
    release_binary("kiln");
    for name in ["yml", "pkg", "target"] {
        std::os::unix::fs::symlink(workspace().join(name), root.path().join(name)).expect("link");
    }
    let commands = tagged("first-image-run").commands();
    let (run, before) = commands.split_last().expect("the README's commands");
    let built = Command::new("sh")
        .arg("-c")
        .arg(format!("set -e; {}", before.join("; ")))
        .current_dir(root.path())
        .output()
        .expect("sh runs");
    let said = String::from_utf8_lossy(&built.stdout);
    assert!(
        built.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&built.stderr)
    );
    assert!(said.contains("yml/first.yml: valid"), "{said}");
    assert!(root.path().join("out/first-initrd.img").is_file());

    let restricted = format!("kiln run --networking user,restrict=on --timeout {TIMEOUT} ");
    let run = run
        .replace("8080", &port)
        .replacen("kiln run ", &restricted, 1);
    let exports: Vec<&str> = before
        .iter()
        .map(String::as_str)
        .filter(|command| command.starts_with("export "))
        .collect();
    let (mut term, mut child) = Terminal::spawn(
        Command::new("sh")
            .arg("-c")
            .arg(format!("{}; exec {run}", exports.join("; ")))
            .current_dir(root.path()),
    );
    term.wait_for("service: web: running", Duration::from_secs(200));

    // The published port accepts before the guest's server listens: asked until it answers.
    let curl = tagged("first-image-curl")
        .commands()
        .join("; ")
        .replace("8080", &port);
    let deadline = Instant::now() + Duration::from_secs(60);
    let page = loop {
        let fetched = Command::new("timeout")
            .args(["10", "sh", "-c", &curl])
            .output()
            .expect("curl runs");
        let page = String::from_utf8_lossy(&fetched.stdout).into_owned();
        if fetched.status.success() && !page.is_empty() {
            break page;
        }
        assert!(Instant::now() < deadline, "`{curl}` never answered");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(page, "<h1>Hello from Kiln</h1>\n");

    answered(&mut term, "echo up-$((1+1))\r", "up-2");
    for command in tagged("first-image-console").commands() {
        if command == "poweroff" {
            term.type_keys("poweroff\r");
            continue;
        }
        term.type_keys(&format!("{command}; echo done-$((6*7))\r"));
        term.wait_for("done-42", Duration::from_secs(60));
    }
    let status = child.wait().expect("wait for kiln run");
    term.finish();
    assert_eq!(status.code(), Some(0), "{}", term.text);
    // `service list`'s table: both services running.
    for name in ["getty", "web"] {
        assert!(
            term.text
                .lines()
                .any(|line| line.starts_with(name) && line.contains("running")),
            "no running {name} in `service list`:\n{}",
            term.text
        );
    }
}

/// Boots yml/example.yml with yml/tour.yml built as `format` under `kiln run --format`: the
/// firmware boots the disk or ISO, the root is the initrd on it, and on q35's PCI devices the
/// example leases eth0, serves its page across the veth pair and brings every service up
/// before the tour powers it off. Returns the console.
fn boots_as(format: &str) -> Run {
    let args = ["--format".to_owned(), format.to_owned()];
    let console = boot_with(
        &format!("tour-{format}"),
        &["yml/example.yml", "yml/tour.yml"],
        5,
        &args,
        |_| (),
    );
    console.assert_printed("service: all 4 services up");
    console.assert_printed("init: poweroff");
    console
}

#[test]
fn a_raw_efi_disk_boots_under_uefi() {
    boots_as("raw-efi").assert_printed("BdsDxe: starting Boot0001 \"UEFI Misc Device\"");
}

#[test]
fn a_qcow2_efi_disk_boots_under_uefi() {
    boots_as("qcow2-efi").assert_printed("BdsDxe: starting Boot0001 \"UEFI Misc Device\"");
}

#[test]
fn an_efi_iso_boots_from_a_cd_under_uefi() {
    boots_as("iso-efi").assert_printed("BdsDxe: starting Boot0001 \"UEFI QEMU DVD-ROM");
}

#[test]
fn a_raw_bios_disk_boots_under_seabios() {
    boots_as("raw-bios");
}

#[test]
fn a_bios_iso_boots_from_a_cd_under_seabios() {
    boots_as("iso-bios");
}

/// `--disk file=PATH,size=64M`: created blank by the first `kiln run`, kept after.
fn data_disk(path: &Path) -> Vec<String> {
    vec![
        "--disk".to_owned(),
        format!("file={},size=64M", path.display()),
    ]
}

/// The ext4 filesystem of the disk image's first partition, as e2fsprogs opens it from the
/// host: `PATH?offset=BYTES`, the offset read from the MBR's first entry.
fn first_partition(disk: &Path) -> String {
    let bytes = std::fs::read(disk).expect("read the disk");
    let start = u32::from_le_bytes(bytes[454..458].try_into().expect("four bytes"));
    assert!(start > 0, "{}: no first partition", disk.display());
    format!("{}?offset={}", disk.display(), u64::from(start) * 512)
}

/// Runs one of the host's e2fsprogs tools on the disk's first partition.
fn e2fs(tool: &str, args: &[&str], disk: &Path) -> std::process::Output {
    Command::new(tool)
        .args(args)
        .arg(first_partition(disk))
        .output()
        .unwrap_or_else(|err| panic!("run {tool}: {err}"))
}

/// `e2fsck -fn` on the host finds the disk's filesystem clean, with no journal left to
/// recover (it was unmounted, or made read-only, before the power went).
fn assert_clean(disk: &Path) {
    let header = e2fs("dumpe2fs", &["-h"], disk);
    let header = String::from_utf8_lossy(&header.stdout);
    assert!(
        header.contains("Filesystem state:         clean") && !header.contains("needs_recovery"),
        "not cleanly unmounted:\n{header}"
    );
    let check = e2fs("e2fsck", &["-fn"], disk);
    assert!(
        check.status.success(),
        "e2fsck -fn: {}\n{}{}",
        check.status,
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}

/// A file of the disk's filesystem, read on the host by debugfs.
fn disk_file(disk: &Path, path: &str) -> String {
    let cat = e2fs("debugfs", &["-R", &format!("cat {path}")], disk);
    String::from_utf8_lossy(&cat.stdout).into_owned()
}

/// LinuxKit's format and mount packages as its examples use them, with a disk that `kiln run
/// --disk file=...,size=...` creates: the first boot formats the blank disk and mounts it by
/// label, the diary writes, and poweroff leaves the filesystem clean (e2fsck on the host);
/// the next boot finds it formatted (format says so and changes nothing), checks it and
/// mounts it with the first boot's line still there.
#[test]
fn a_blank_disk_is_formatted_once_mounted_at_every_boot_and_left_clean() {
    let dir = tempfile::tempdir().expect("dir");
    let disk = dir.path().join("data.img");
    let manifests = ["yml/persistent.yml", "tests/vm/cases/persistent.yml"];
    let out = build("persistent", &manifests, &[]);

    let first = boot_built("persistent", out.path(), 3, &data_disk(&disk), |_| ());
    first.assert_printed("format: partitioning /dev/vda (dos table, one Linux partition)");
    first.assert_printed("format: made ext4 labelled data on /dev/vda1");
    first.assert_printed("mountie: mounted /dev/vda1 (ext4 labelled data) on /var/lib/data");
    first.assert_printed("init: unmounted /var/lib/data (ext4)");
    assert_eq!(
        std::fs::metadata(&disk)
            .expect("the disk was created")
            .len(),
        64 << 20
    );
    assert_clean(&disk);
    assert_eq!(disk_file(&disk, "/boots").lines().count(), 1);

    let second = boot_built("persistent", out.path(), 3, &data_disk(&disk), |_| ());
    second.assert_printed("format: nothing to do: /dev/vda1 already holds ext4 labelled data");
    second.assert_printed("mountie: checked /dev/vda1 (ext4): clean");
    assert!(
        !second.console.contains("format: partitioning"),
        "formatted again:\n{}",
        second.console
    );
    assert_clean(&disk);
    let boots = disk_file(&disk, "/boots");
    assert_eq!(boots.lines().count(), 2, "{boots}");
}

/// A power cut: qemu is killed while a service writes to the disk, after it synced a marker.
/// The filesystem is left needing recovery; the next boot's mountie recovers the journal
/// before mounting, the marker is there, and the disk is clean after that boot's poweroff.
#[test]
fn a_power_cut_during_writes_is_recovered_at_the_next_boot() {
    let dir = tempfile::tempdir().expect("dir");
    let disk = dir.path().join("data.img");
    let cut = build(
        "powercut",
        &["yml/persistent.yml", "tests/vm/cases/powercut.yml"],
        &[],
    );
    let mut child = kiln_run("powercut", cut.path(), &data_disk(&disk));
    let mut console = LiveConsole::of(&mut child);
    console.wait_for(
        "PROBE PASS exists /var/lib/data/synced",
        Duration::from_secs(200),
    );
    // The power goes: qemu, kiln run's child, is killed outright.
    let qemu = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id()))
        .expect("kiln run's children");
    for pid in qemu.split_whitespace() {
        let pid: i32 = pid.parse().expect("a pid");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL)
            .expect("kill qemu");
    }
    let (status, _) = console.finish(&mut child);
    assert!(!status.success(), "the VM was cut off, not powered off");
    let header = e2fs("dumpe2fs", &["-h"], &disk);
    assert!(
        String::from_utf8_lossy(&header.stdout).contains("needs_recovery"),
        "the cut left the journal to recover"
    );

    let out = build(
        "persistent",
        &["yml/persistent.yml", "tests/vm/cases/persistent.yml"],
        &[],
    );
    let after = boot_built("persistent", out.path(), 3, &data_disk(&disk), |_| ());
    after.assert_printed("mountie: checked /dev/vda1 (ext4)");
    after.assert_printed("recovering journal");
    after.assert_printed("mountie: mounted /dev/vda1 (ext4 labelled data) on /var/lib/data");
    assert_eq!(disk_file(&disk, "/marker"), "synced-before-the-cut\n");
    assert_clean(&disk);
}

/// Boots yml/persistent.yml with the case `name` (2 checks) on a new data disk, asserts init
/// said `line` at poweroff, and that the disk was left clean.
fn left_clean_at_poweroff(name: &str, line: &str) {
    let dir = tempfile::tempdir().expect("dir");
    let disk = dir.path().join("data.img");
    let case = format!("tests/vm/cases/{name}.yml");
    let run = boot_with(
        name,
        &["yml/persistent.yml", &case],
        2,
        &data_disk(&disk),
        |_| (),
    );
    run.assert_printed(line);
    assert_clean(&disk);
}

/// A disk that cannot be unmounted at shutdown (a tmpfs mounted on top keeps it busy) is
/// left read-only, and so clean.
#[test]
fn a_busy_disk_is_left_read_only_and_clean_at_poweroff() {
    left_clean_at_poweroff(
        "busy",
        "init: /var/lib/data (ext4) is busy: left mounted read-only, clean",
    );
}

/// A disk whose filesystem outlives init's unmount (an onboot container's mount namespace
/// holds it, kept by a bindNS file) is still left clean: init makes it read-only before
/// unmounting.
#[test]
fn a_disk_a_pinned_namespace_holds_is_left_clean_at_poweroff() {
    left_clean_at_poweroff("pinned", "init: unmounted /var/lib/data (ext4)");
}

/// LinuxKit's format_mount cases on three blank disks: a named disk formatted (ext4) and
/// left alone when asked again without -force, -force with a gpt table and xfs, the first
/// empty disk found for btrfs; mounts of the first Linux partition no one uses, by device
/// (in use already: not checked again) and by label, and a label no disk has failing within
/// its timeout while the boot goes on; /dev/disk/by-uuid links to each filesystem.
#[test]
fn format_and_mountie_take_linuxkits_flags_on_three_disks() {
    let dir = tempfile::tempdir().expect("dir");
    let mut args = Vec::new();
    // xfs needs 300 MB at least; the files are sparse.
    for name in ["a", "b", "c"] {
        args.push("--disk".to_owned());
        args.push(format!(
            "file={},size=320M",
            dir.path().join(name).display()
        ));
    }
    let run = boot_with("disks", &["tests/vm/cases/disks.yml"], 6, &args, |_| ());
    run.assert_printed("mountie: mounted /dev/vda1 (ext4 labelled one) on /var/lib/first");
    run.assert_printed("mountie: /dev/vda1 is mounted elsewhere already: not checked");
    run.assert_printed("mountie: mounted /dev/vda1 (ext4 labelled one) on /var/lib/one");
    run.assert_printed("format: made ext4 labelled one on /dev/vda1");
    run.assert_printed(
        "format: /dev/vda holds a dos partition table: left alone, nothing was changed (-force \
         formats it anyway)",
    );
    run.assert_printed("format: formatting /dev/vdb whatever it holds, as -force asks");
    run.assert_printed("format: partitioning /dev/vdb (gpt table, one Linux partition)");
    run.assert_printed("format: made xfs labelled two on /dev/vdb1");
    run.assert_printed("format: made btrfs labelled three on /dev/vdc1");
    run.assert_printed(
        "mountie: a filesystem with LABEL nowhere did not appear within 2 s: /var/lib/none is \
         left unmounted",
    );
    run.assert_printed("onboot 004-mount-none: failed: exited with status 1");
    run.assert_printed("mountie: mounted /dev/vdc1 (btrfs labelled three) on /var/lib/three");
}

/// An ed25519 key pair made by ssh-keygen in `dir`: the private key's path and the public key.
fn key_pair(dir: &Path, name: &str) -> (std::path::PathBuf, String) {
    let key = dir.join(name);
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .status()
        .expect("run ssh-keygen (Debian package openssh-client)");
    assert!(made.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("public key");
    (key, public.trim().to_owned())
}

/// How ssh treats the guest's host key.
#[derive(Clone, Copy)]
enum HostKey<'a> {
    /// Any key, none kept.
    Any,
    /// Accepted and kept in the file when new, else checked against it.
    Learn(&'a Path),
    /// Must be the one the file holds.
    Known(&'a Path),
}

/// `ssh -p PORT -i KEY root@127.0.0.1 COMMAND`, with no user configuration and no prompt.
fn ssh(port: u16, key: &Path, host: HostKey<'_>, command: &str) -> std::process::Output {
    let (file, strict) = match host {
        HostKey::Any => (Path::new("/dev/null"), "no"),
        HostKey::Learn(file) => (file, "accept-new"),
        HostKey::Known(file) => (file, "yes"),
    };
    Command::new("ssh")
        .args(["-F", "/dev/null", "-p", &port.to_string(), "-i"])
        .arg(key)
        .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
        .args(["-o", &format!("StrictHostKeyChecking={strict}")])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", file.display()))
        .args(["-o", "ConnectTimeout=20", "-o", "LogLevel=ERROR"])
        .arg("root@127.0.0.1")
        .arg(command)
        .stdin(Stdio::null())
        .output()
        .expect("run ssh (Debian package openssh-client)")
}

/// [`ssh`] once sshd answers: it listens once its host keys are made, so the login is tried
/// until it works (120 s at most).
fn ssh_once_up(port: u16, key: &Path, host: HostKey<'_>, command: &str) -> std::process::Output {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = ssh(port, key, host, command);
        if out.status.success() {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "ssh {command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The user data that hands `public` in as root's key, as LinuxKit's metadata reads it, with
/// `more` JSON members before it.
fn user_data_with_key(dir: &Path, public: &str, more: &str) -> std::path::PathBuf {
    let data = dir.join("userdata.json");
    std::fs::write(
        &data,
        format!(
            r#"{{{more}"ssh": {{"entries": {{"authorized_keys": {{"perm": "0600", "content": "{public}\n"}}}}}}}}"#
        ),
    )
    .expect("write the user data");
    data
}

/// Remote access as a LinuxKit user has it: the host's key handed in as user data (`kiln run
/// --data-file`, a cidata volume the metadata package reads), sshd reached through a published
/// port on the restricted network. The right key runs `service list`; another is refused.
#[test]
fn sshd_lets_in_the_key_the_user_data_hands_in_and_refuses_another() {
    let dir = tempfile::tempdir().expect("dir");
    let (key, public) = key_pair(dir.path(), "id_ed25519");
    let (other, _) = key_pair(dir.path(), "other");
    let data = user_data_with_key(
        dir.path(),
        &public,
        r#""hostname": {"content": "kiln-sshd"}, "secret": {"perm": "0700", "content": "s3cret"}, "#,
    );
    let port = free_port();
    let args = [
        "--publish".to_owned(),
        format!("{port}:22"),
        "--data-file".to_owned(),
        data.display().to_string(),
    ];
    let (mut listed, mut refused) = (None, None);
    let console = boot_with(
        "sshd",
        &["yml/sshd.yml", "tests/vm/cases/sshd.yml"],
        9,
        &args,
        |console| {
            console.wait_for("service: sshd: running", Duration::from_secs(200));
            listed = Some(ssh_once_up(port, &key, HostKey::Any, "service list"));
            refused = Some(ssh(port, &other, HostKey::Any, "touch /run/ssh-wrong-key"));
            let session = ssh(port, &key, HostKey::Any, "touch /run/ssh-session");
            assert!(
                session.status.success(),
                "{}",
                String::from_utf8_lossy(&session.stderr)
            );
        },
    );
    let listed = listed.expect("listed");
    let table = String::from_utf8_lossy(&listed.stdout);
    for service in ["getty", "dhcpcd", "sshd", "probe"] {
        assert!(
            table
                .lines()
                .any(|line| line.starts_with(service) && line.contains("running")),
            "{service} in:\n{table}"
        );
    }
    let refused = refused.expect("refused");
    assert_eq!(refused.status.code(), Some(255), "the other key is refused");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("Permission denied (publickey)"), "{said}");
    console.assert_printed("metadata: CDROM /dev/vda answered: user data (");
    console.assert_printed("metadata: hostname set to kiln-sshd");
}

/// No provider: no cidata volume, and the restricted network reaches no metadata server. The
/// metadata package says so and the boot goes on to the services.
#[test]
fn with_no_provider_metadata_gives_up_and_the_boot_goes_on() {
    let console = boot(
        "nometadata",
        &["yml/sshd.yml", "tests/vm/cases/nometadata.yml"],
        3,
    );
    let said = console.assert_printed(
        "metadata: no provider answered (AWS, GCP, Hetzner, openstack, Vultr, DigitalOcean, metaldata): going on without",
    );
    let services = console.assert_printed("service: sshd: running");
    assert!(said < services, "{}", console.console);
}

/// A cloud's metadata server inside the guest, at its link-local address (cases/cloud.yml):
/// the metadata program, asking every provider, takes AWS's answer.
#[test]
fn metadata_takes_a_clouds_answer_from_its_link_local_address() {
    let console = boot(
        "cloud",
        &["tests/vm/cases/base.yml", "tests/vm/cases/cloud.yml"],
        12,
    );
    console.assert_printed("service: metadata: exited with status 0");
}

/// Host keys kept on a disk (cases/sshkeys.yml binds a directory of the data disk on
/// /etc/ssh/keys): the first boot makes them and the host's ssh learns the key; the second
/// boot makes none, and ssh, which now accepts only the key it learnt, logs in.
#[test]
fn sshd_keeps_its_host_keys_on_a_disk_across_boots() {
    let dir = tempfile::tempdir().expect("dir");
    let (key, public) = key_pair(dir.path(), "id_ed25519");
    let data = user_data_with_key(dir.path(), &public, "");
    let known = dir.path().join("known_hosts");
    let disk = dir.path().join("data.img");
    let port = free_port();
    let mut args = data_disk(&disk);
    args.extend([
        "--publish".to_owned(),
        format!("{port}:22"),
        "--data-file".to_owned(),
        data.display().to_string(),
    ]);
    let manifests = ["tests/vm/cases/base.yml", "tests/vm/cases/sshkeys.yml"];
    let out = build("sshkeys", &manifests, &[]);
    let key = key.as_path();
    let login = |host| {
        move |console: &mut LiveConsole| {
            console.wait_for("service: sshd: running", Duration::from_secs(200));
            ssh_once_up(port, key, host, "touch /run/ssh-session");
        }
    };
    let first = boot_built(
        "sshkeys",
        out.path(),
        2,
        &args,
        login(HostKey::Learn(&known)),
    );
    first.assert_printed("mountie: mounted /dev/vda1 (ext4 labelled data) on /var/lib/data");
    let learnt = std::fs::read_to_string(&known).expect("the host key was learnt");
    assert_eq!(learnt.lines().count(), 1, "{learnt}");
    let on_disk = disk_file(&disk, "/ssh/ssh_host_ed25519_key.pub");
    assert_eq!(
        on_disk.split_whitespace().nth(1),
        learnt.split_whitespace().nth(2),
        "the key on the disk is the one sshd showed: {on_disk} {learnt}"
    );

    let second = boot_built(
        "sshkeys",
        out.path(),
        2,
        &args,
        login(HostKey::Known(&known)),
    );
    second.assert_printed("mountie: checked /dev/vda1 (ext4): clean");
    assert_eq!(
        std::fs::read_to_string(&known).expect("known hosts"),
        learnt,
        "nothing new learnt"
    );
}
