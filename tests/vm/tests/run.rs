//! `kiln run` on what `kiln build` writes (OUT/NAME-vmlinux, -initrd.img, -cmdline): the
//! console on its standard output, the image's command line passed on, and its exit status
//! the guest's result: the value written to the debug-exit port, or 124 with a message when
//! the timeout stops a guest that never ends.
//! Runs on the host as any user that can run qemu. The images are a bare /init script on
//! busybox (no Kiln init) with the probe to write the debug-exit port, so only `kiln run` is
//! under test.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Output};

use vm::{release_binary, Image, Kernel};

/// Writes OUT/NAME-* as `kiln build` does, /init being `script`.
fn built(kernel: &Kernel, out: &Path, name: &str, script: &str, cmdline: &str) {
    let mut image = Image::new();
    image
        .busybox()
        .copy("bin/probe", &release_binary("probe"), 0o755)
        .script("init", script);
    image
        .write_initramfs(&out.join(format!("{name}-initrd.img")))
        .expect("initrd");
    symlink(&kernel.vmlinux, out.join(format!("{name}-vmlinux"))).expect("vmlinux");
    std::fs::write(out.join(format!("{name}-cmdline")), cmdline).expect("cmdline");
}

fn kiln_run(args: &[&str], image: &Path) -> Output {
    Command::new(release_binary("kiln"))
        .arg("run")
        .args(args)
        .arg(image)
        .output()
        .expect("run kiln")
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
