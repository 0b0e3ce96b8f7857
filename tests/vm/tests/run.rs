//! `kiln run` on what `kiln build` writes (OUT/NAME-vmlinux, -initrd.img, -cmdline): the
//! console on its standard output, the image's command line passed on, and its exit status
//! the guest's result: the value written to the debug-exit port, or 124 with a message when
//! the timeout stops a guest that never ends.
//! With `--networking user,restrict=on`, published ports reach the guest's servers and the
//! guest reaches nothing on the host.
//! Runs on the host as any user that can run qemu. The images are a bare /init script on
//! busybox (no Kiln init) with the probe to write the debug-exit port, so only `kiln run` is
//! under test. No guest here can reach beyond this machine: each runs with no network or a
//! restricted one.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use vm::{free_port, release_binary, Image, Kernel, LiveConsole};

/// Writes OUT/NAME-* as `kiln build` does, /init being `script`.
fn built(kernel: &Kernel, out: &Path, name: &str, script: &str, cmdline: &str) {
    built_with(kernel, out, name, script, cmdline, |_| ());
}

/// As [`built`], `extra` adding to the image.
fn built_with(
    kernel: &Kernel,
    out: &Path,
    name: &str,
    script: &str,
    cmdline: &str,
    extra: impl FnOnce(&mut Image),
) {
    let mut image = Image::new();
    image
        .busybox()
        .copy("bin/probe", &release_binary("probe"), 0o755)
        .script("init", script);
    extra(&mut image);
    image
        .write_initramfs(&out.join(format!("{name}-initrd.img")))
        .expect("initrd");
    symlink(&kernel.vmlinux, out.join(format!("{name}-vmlinux"))).expect("vmlinux");
    std::fs::write(out.join(format!("{name}-cmdline")), cmdline).expect("cmdline");
}

fn kiln_run(args: &[&str], image: &Path) -> Output {
    Command::new(release_binary("kiln"))
        .args(["run", "--networking", "none"])
        .args(args)
        .arg(image)
        .output()
        .expect("run kiln")
}

#[test]
fn published_ports_reach_the_guest_and_the_restricted_guest_reaches_nothing() {
    let kernel = Kernel::find();
    let out = tempfile::tempdir().expect("tempdir");
    // A listener on the host that the guest tries to reach through the user network's
    // gateway (10.0.2.2 is the host's loopback, unless the network is restricted).
    let host = TcpListener::bind("127.0.0.1:0").expect("bind");
    let host_port = host.local_addr().expect("address").port();
    host.set_nonblocking(true).expect("nonblocking");
    // The guest's listener on port 81 starts before its web server, so it listens by the time
    // the host, having fetched the page, connects to it.
    built_with(
        &kernel,
        out.path(),
        "net",
        "#!/bin/sh
mount -t devtmpfs dev /dev
mount -t proc proc /proc
         mount -t sysfs sys /sys
         modprobe virtio_mmio && modprobe virtio_net || echo no-driver
         ip link set lo up && ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0
         ip route add default via 10.0.2.2
         cat /sys/class/net/eth0/address
         for word in $(cat /proc/cmdline); do case $word in kiln.hostport=*) port=${word#*=};; esac; done\n\
         if echo hello | nc -w 3 10.0.2.2 $port; then echo reached-the-host;          else echo host-unreachable; fi
         nc -l -p 81 > /dev/null &
         listener=$!
         mkdir -p /www && echo page-from-the-guest > /www/index.html
         httpd -p 80 -h /www
         echo guest-serving
         wait $listener
         probe --exit 7
         sleep 1000
",
        &format!("quiet kiln.hostport={host_port}"),
        |image| {
            image.modules(&kernel, &["virtio_mmio", "virtio_net"]);
        },
    );
    let (web, stop) = (free_port(), free_port());
    let mut child = Command::new(release_binary("kiln"))
        .args([
            "run",
            "--networking",
            "user,restrict=on",
            "--timeout",
            "120",
        ])
        .args(["--publish", &format!("{web}:80")])
        .args(["--publish", &format!("127.0.0.1:{stop}:81/tcp")])
        .args(["--mac", "02:4b:49:4c:4e:01"])
        .arg(out.path().join("net"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kiln");
    let mut console = LiveConsole::of(&mut child);
    console.wait_for("guest-serving", Duration::from_secs(120));
    let mut page = String::new();
    let mut stream = TcpStream::connect(("127.0.0.1", web)).expect("connect to the published port");
    stream
        .write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
        .expect("request");
    stream.read_to_string(&mut page).expect("response");
    assert!(
        page.contains("page-from-the-guest"),
        "{page}\n{}",
        console.text
    );
    drop(TcpStream::connect(("127.0.0.1", stop)).expect("connect to the second port"));
    let (status, stderr) = console.finish(&mut child);
    let seen = console.text;
    assert_eq!(status.code(), Some(7), "{seen}\n{stderr}");
    assert!(seen.contains("02:4b:49:4c:4e:01"), "the MAC given: {seen}");
    assert!(seen.contains("host-unreachable"), "restricted: {seen}");
    assert!(!seen.contains("no-driver"), "{seen}");
    assert!(
        host.accept().is_err(),
        "the restricted guest connected to the host"
    );
}

#[test]
fn the_guests_result_is_the_exit_status() {
    let kernel = Kernel::find();
    let out = tempfile::tempdir().expect("tempdir");
    built(
        &kernel,
        out.path(),
        "report",
        "#!/bin/sh\nmount -t devtmpfs dev /dev\nmount -t proc proc /proc\n\
         echo \"cmdline: $(cat /proc/cmdline)\"\n\
         probe --exit 5\n\
         sleep 1000\n",
        "quiet kiln.test=yes",
    );
    let output = kiln_run(&["--timeout", "60"], &out.path().join("report"));
    let console = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(5), "{console}\n{stderr}");
    assert!(
        console.contains("cmdline: console=ttyS0 quiet kiln.test=yes tsc_early_khz="),
        "the console first, then the image's words, then the quick-boot ones: {console}"
    );
    assert!(stderr.contains("reported failure 5"), "{stderr}");
}

#[test]
fn a_guest_that_never_ends_is_stopped_at_the_timeout() {
    let kernel = Kernel::find();
    let out = tempfile::tempdir().expect("tempdir");
    built(
        &kernel,
        out.path(),
        "hang",
        "#!/bin/sh\necho guest-is-up\nexec sleep 1000\n",
        "quiet",
    );
    let output = kiln_run(&["--timeout", "20"], &out.path().join("hang"));
    let console = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(124), "{console}\n{stderr}");
    assert!(console.contains("guest-is-up"), "{console}");
    assert!(
        stderr.contains("hang: still running after 20 s; stopped"),
        "{stderr}"
    );
}

#[test]
fn a_missing_image_is_named() {
    let out = tempfile::tempdir().expect("tempdir");
    let output = kiln_run(&[], &out.path().join("absent"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("absent-vmlinux") && stderr.contains("kiln build"),
        "{stderr}"
    );
}
