//! pkg/dhcpcd's client against a DHCP server that offers a router, DNS servers and a short
//! lease, as root in the sandbox: busybox udhcpd serves one end of a veth pair from a network
//! namespace of its own; the package's /sbin/dhcpcd and udhcpc hook run on the other end in a
//! root made of this machine's busybox (the Debian busybox-static the package takes) and the
//! package's files, with /etc standing for the image's /run/resolvconf. Proves what qemu's
//! restricted user network cannot (it offers no router and no DNS): as an onboot entry the
//! address, the default route and resolv.conf are set and it exits 0; as a service the lease is
//! renewed; with no server it exits 1 within its timeout, saying so.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::error::Error;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use nix::sched::CloneFlags;
use wait_timeout::ChildExt;

type Result<T = ()> = std::result::Result<T, Box<dyn Error>>;

/// The server's side of the link and what it offers.
const SERVER: &str = "10.77.0.1";
const DNS: &str = "10.77.0.53 10.77.0.54";
const DOMAIN: &str = "kiln.test";
/// Seconds of a lease: udhcpc renews at half of it.
const LEASE: u32 = 4;
/// Longer than any wait below is allowed to take: a hang fails instead of blocking the run.
const GUARD: Duration = Duration::from_secs(60);

fn package_files() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pkg/dhcpcd/files")
}

/// `PROGRAM ARGS`, which must succeed; its stdout.
fn run(program: &str, args: &[&str]) -> Result<String> {
    let output = Command::new(program).args(args).output()?;
    if !output.status.success() {
        return Err(format!("{program} {args:?}: {}", describe(&output)).into());
    }
    Ok(String::from_utf8(output.stdout)?)
}

fn describe(output: &Output) -> String {
    format!(
        "{}; stdout: {}; stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout).trim(),
        String::from_utf8_lossy(&output.stderr).trim()
    )
}

/// The package's root in the sandbox's scratch: busybox with its applets, /sbin/dhcpcd and the
/// hook, an empty /etc, and /dev and a sysfs of the sandbox's network namespace mounted.
fn client_root() -> Result<PathBuf> {
    let root = sandbox::scratch().join("dhcpcd");
    for dir in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "usr/share/udhcpc",
        "etc",
        "dev",
        "sys",
    ] {
        fs::create_dir_all(root.join(dir))?;
    }
    fs::copy("/bin/busybox", root.join("bin/busybox"))?;
    for (file, to) in [
        ("sbin/dhcpcd", "sbin/dhcpcd"),
        (
            "usr/share/udhcpc/default.script",
            "usr/share/udhcpc/default.script",
        ),
    ] {
        let to = root.join(to);
        fs::copy(package_files().join(file), &to)?;
        fs::set_permissions(&to, fs::Permissions::from_mode(0o755))?;
    }
    let root_arg = root.to_str().ok_or("scratch path is not UTF-8")?;
    run("chroot", &[root_arg, "/bin/busybox", "--install", "-s"])?;
    run("mount", &["--rbind", "/dev", &format!("{root_arg}/dev")])?;
    run(
        "mount",
        &["-t", "sysfs", "sysfs", &format!("{root_arg}/sys")],
    )?;
    Ok(root)
}

/// The package's /sbin/dhcpcd with `args`, in its root.
fn dhcpcd(root: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("chroot");
    command
        .arg(root)
        .arg("/sbin/dhcpcd")
        .args(args)
        .env_clear()
        .env("PATH", "/sbin:/bin:/usr/sbin:/usr/bin");
    command
}

/// `dhcpcd ARGS` run to its end, which must come within the guard.
fn dhcpcd_output(root: &Path, args: &[&str]) -> Result<Output> {
    let mut child = dhcpcd(root, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if child.wait_timeout(GUARD)?.is_none() {
        child.kill()?;
        return Err(format!("dhcpcd {args:?} still running after {GUARD:?}").into());
    }
    Ok(child.wait_with_output()?)
}

/// A network namespace held by a process that waits on its stdin: closing it (or the sandbox
/// ending) ends the namespace.
struct Namespace(Child);

impl Namespace {
    fn new() -> Result<Self> {
        let mut command = Command::new("cat");
        command.stdin(Stdio::piped());
        // SAFETY: unshare(2) is a system call, safe between fork and exec; spawn returns after
        // the exec, so the namespace exists by then.
        unsafe {
            command.pre_exec(|| {
                nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
            });
        }
        Ok(Self(command.spawn()?))
    }

    fn path(&self) -> String {
        format!("/proc/{}/ns/net", self.0.id())
    }

    /// `PROGRAM ARGS` inside this namespace, which must succeed.
    fn run(&self, program: &str, args: &[&str]) -> Result<String> {
        let mut all = vec![format!("--net={}", self.path()), program.to_owned()];
        all.extend(args.iter().map(|arg| (*arg).to_owned()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        run("nsenter", &all)
    }
}

/// A veth pair: `client` stays in the sandbox's namespace, `server` goes to a new namespace
/// where busybox udhcpd serves it (when `serve` is set).
struct Link {
    client: &'static str,
    namespace: Namespace,
    server: Option<Child>,
}

impl Link {
    fn new(client: &'static str, server: &'static str, serve: bool) -> Result<Self> {
        run(
            "ip",
            &[
                "link", "add", client, "type", "veth", "peer", "name", server,
            ],
        )?;
        let namespace = Namespace::new()?;
        run("ip", &["link", "set", server, "netns", &namespace.path()])?;
        namespace.run(
            "ip",
            &["addr", "add", &format!("{SERVER}/24"), "dev", server],
        )?;
        namespace.run("ip", &["link", "set", server, "up"])?;
        let server = if serve {
            let dir = sandbox::scratch().join(format!("udhcpd-{server}"));
            fs::create_dir_all(&dir)?;
            let config = dir.join("udhcpd.conf");
            fs::write(
                &config,
                format!(
                    "start 10.77.0.100\nend 10.77.0.100\ninterface {server}\n\
                     lease_file {leases}\npidfile {pid}\nmin_lease {LEASE}\n\
                     option subnet 255.255.255.0\noption router {SERVER}\n\
                     option dns {DNS}\noption domain {DOMAIN}\noption lease {LEASE}\n",
                    leases = dir.join("leases").display(),
                    pid = dir.join("pid").display(),
                ),
            )?;
            let child = Command::new("nsenter")
                .arg(format!("--net={}", namespace.path()))
                .args(["busybox", "udhcpd", "-f"])
                .arg(&config)
                .stdout(Stdio::null())
                .spawn()?;
            Some(child)
        } else {
            None
        };
        Ok(Self {
            client,
            namespace,
            server,
        })
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Some(server) = &mut self.server {
            let _ = server.kill();
            let _ = server.wait();
        }
        let _ = self.namespace.0.kill();
        let _ = self.namespace.0.wait();
        let _ = Command::new("ip")
            .args(["link", "del", self.client])
            .status();
    }
}

fn bound_line(interface: &str, verb: &str) -> String {
    format!("dhcpcd: {interface}: {verb} 10.77.0.100/24, router {SERVER}, DNS {DNS}",)
}

/// Fails unless the server's one address is on `interface`.
fn leased_address_is_set(interface: &str) -> Result {
    let address = run("ip", &["-4", "-o", "addr", "show", "dev", interface])?;
    if !address.contains("inet 10.77.0.100/24") {
        return Err(format!("the leased address is not on {interface}: {address}").into());
    }
    Ok(())
}

#[test]
fn an_onboot_lease_sets_the_address_the_default_route_and_resolv_conf_root() {
    sandbox::test(|| {
        let root = client_root()?;
        let link = Link::new("dh1", "dh1s", true)?;
        let output = dhcpcd_output(
            &root,
            &[
                "--nobackground",
                "-f",
                "/dhcpcd.conf",
                "-1",
                "-t",
                "10",
                link.client,
            ],
        )?;
        if !output.status.success() {
            return Err(format!("dhcpcd -1: {}", describe(&output)).into());
        }
        let said = String::from_utf8_lossy(&output.stdout);
        if !said.contains(&bound_line(link.client, "bound")) {
            return Err(format!("no bound line: {}", describe(&output)).into());
        }
        leased_address_is_set(link.client)?;
        let route = run("ip", &["route", "show", "default"])?;
        if !route.contains(&format!("default via {SERVER} dev {}", link.client)) {
            return Err(format!("no default route through the lease's router: {route:?}").into());
        }
        let resolv = fs::read_to_string(root.join("etc/resolv.conf"))?;
        let expected = format!("search {DOMAIN}\nnameserver 10.77.0.53\nnameserver 10.77.0.54\n");
        if resolv != expected {
            return Err(format!("resolv.conf is {resolv:?}, not {expected:?}").into());
        }
        Ok(())
    });
}

#[test]
fn as_a_service_the_lease_is_renewed_root() {
    sandbox::test(|| {
        let root = client_root()?;
        let link = Link::new("dh2", "dh2s", true)?;
        let mut client = dhcpcd(&root, &[link.client])
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = client.stdout.take().ok_or("no stdout")?;
        let (lines, said) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|line| line.ok()) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        // The lines come as the lease is bound, then renewed at half its time.
        let mut seen = Vec::new();
        let mut renewed = false;
        while let Ok(line) = said.recv_timeout(GUARD) {
            seen.push(line.clone());
            if line == bound_line(link.client, "renew") {
                renewed = true;
                break;
            }
        }
        client.kill()?;
        client.wait()?;
        if !renewed || !seen.contains(&bound_line(link.client, "bound")) {
            return Err(format!("bound then renewed expected, saw: {seen:?}").into());
        }
        if seen.first().map(String::as_str)
            != Some(&format!("dhcpcd: keeping a lease on {}", link.client))
        {
            return Err(format!("the service does not say what it keeps: {seen:?}").into());
        }
        leased_address_is_set(link.client)?;
        Ok(())
    });
}

#[test]
fn with_no_server_an_onboot_lease_fails_within_its_timeout_root() {
    sandbox::test(|| {
        let root = client_root()?;
        let link = Link::new("dh3", "dh3s", false)?;
        let output = dhcpcd_output(&root, &["-1", "-t", "3", link.client])?;
        let said = String::from_utf8_lossy(&output.stderr);
        if output.status.code() != Some(1)
            || !said.contains(&format!("dhcpcd: no lease on {} within 3 s", link.client))
        {
            return Err(format!("dhcpcd -1 -t 3 with no server: {}", describe(&output)).into());
        }
        if fs::exists(root.join("etc/resolv.conf"))? {
            return Err("resolv.conf written without a lease".into());
        }
        // No device named and none behind an Ethernet link (veths have no device): at once.
        let output = dhcpcd_output(&root, &["-1"])?;
        let said = String::from_utf8_lossy(&output.stderr);
        if output.status.code() != Some(1)
            || !said.starts_with("dhcpcd: no network device to configure (none but ")
        {
            return Err(format!("dhcpcd -1 with no device: {}", describe(&output)).into());
        }
        Ok(())
    });
}
