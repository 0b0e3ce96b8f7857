//! Booting a built image under qemu the quick way: `-M microvm` with the ELF kernel when the
//! build wrote one (`NAME-vmlinux`), `tsc_early_khz` from the host's clock (microvm hangs
//! without it), the serial port as the console, no network device at all, and
//! `isa-debug-exit` on port 0xf4 so a guest can end the run with a result: writing V there
//! makes qemu exit with `(V << 1) | 1`, a clean poweroff makes it exit 0.
//! Runs in: `kiln run` and the VM tests, on the build host, as any user allowed to run qemu.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::network::Network;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use wait_timeout::ChildExt;

/// The qemu binary booted.
pub const QEMU: &str = "qemu-system-x86_64";
/// Kernel command-line words that make a TCG boot quicker; they change nothing a service sees.
const QUICK_CMDLINE: &str =
    "cryptomgr.notests initcall_blacklist=init_kprobe_trace,crypto_kdf108_init \
                             rodata=off mitigations=off";
/// How long qemu gets to exit after SIGTERM at the timeout before it is killed.
const TERM_GRACE: Duration = Duration::from_secs(5);

/// A machine to boot: the kernel, the initrd and what qemu gets besides.
#[derive(Debug, Clone)]
pub struct Machine {
    /// An ELF (booted directly) or a bzImage.
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The image's command line; the console and the quick-boot words are added to it.
    pub cmdline: String,
    pub memory_mb: u32,
    /// Raw disk images, attached as virtio block devices (/dev/vda, /dev/vdb, ...).
    pub disks: Vec<PathBuf>,
    /// More devices, each as qemu's `-device` takes it (`pvpanic`, `virtio-rng-device`).
    pub devices: Vec<String>,
    /// qemu's accelerator (`tcg`, or `kvm` where the host has a working one).
    pub accel: String,
    /// Virtual CPUs.
    pub cpus: u32,
    /// The network device and what it is connected to.
    pub network: Network,
    /// When the run is stopped, if ever.
    pub timeout: Option<Duration>,
}

/// The suffixes of a kernel+initrd image's files.
const VMLINUX: &str = "-vmlinux";
const BZIMAGE: &str = "-kernel";
const INITRD: &str = "-initrd.img";

/// `prefix` with `suffix` appended to its last component.
fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The kernel of the image at `prefix`: the ELF one if the build wrote it, else the bzImage.
fn kernel_of(prefix: &Path) -> Option<PathBuf> {
    [VMLINUX, BZIMAGE]
        .into_iter()
        .map(|suffix| with_suffix(prefix, suffix))
        .find(|path| path.is_file())
}

/// The images (`DIR/NAME`: a kernel and an initrd) the directory `dir` holds, by name.
fn images_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut images: Vec<PathBuf> = entries
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let prefix = dir.join(name.strip_suffix(INITRD)?);
            kernel_of(&prefix).map(|_| prefix)
        })
        .collect();
    images.sort();
    images
}

/// Says which images `dir` holds, for an error that names a wrong one.
fn holds(dir: &Path) -> String {
    let images = images_in(dir);
    if images.is_empty() {
        return format!(
            "{} holds no image (NAME-initrd.img with NAME-vmlinux or NAME-kernel)",
            dir.display()
        );
    }
    let names: Vec<String> = images
        .iter()
        .map(|image| image.display().to_string())
        .collect();
    format!("{} holds {}", dir.display(), names.join(", "))
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The guest powered off (or rebooted: qemu runs with `-no-reboot`).
    PoweredOff,
    /// The guest wrote this non-zero value to the debug-exit port.
    Reported(u8),
    /// qemu itself failed with this exit status (it exits 1 on its own errors).
    Failed(i32),
    /// qemu was killed by this signal, not by the timeout.
    Signalled(i32),
    /// The timeout ran out and qemu was stopped.
    TimedOut,
}

impl Outcome {
    fn of(status: ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        match status.code() {
            Some(0) => Self::PoweredOff,
            Some(code) if code & 1 == 1 && (3..=0x1ff).contains(&code) => {
                Self::Reported(u8::try_from(code >> 1).unwrap_or(u8::MAX))
            }
            Some(code) => Self::Failed(code),
            None => Self::Signalled(status.signal().unwrap_or(0)),
        }
    }
}

/// Where the guest's console goes.
#[derive(Debug)]
pub enum Console {
    /// This process's terminal or output: interactive when standard input is a terminal
    /// (qemu's monitor is on Ctrl-A C, Ctrl-A X quits).
    Inherit,
    /// A file; the guest gets no input.
    File(PathBuf),
}

impl Machine {
    /// The machine `kiln build` wrote as `PREFIX-vmlinux` (or `PREFIX-kernel`),
    /// `PREFIX-initrd.img` and `PREFIX-cmdline`, where `prefix` is `OUT/NAME`.
    /// A directory, or a prefix naming no image, is refused with the images the directory
    /// holds.
    pub fn built(prefix: &Path) -> Result<Self> {
        if prefix.is_dir() {
            bail!(
                "{} is a directory: give OUT/NAME; {}",
                prefix.display(),
                holds(prefix)
            );
        }
        let kernel = kernel_of(prefix).ok_or_else(|| {
            let dir = match prefix.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir,
                _ => Path::new("."),
            };
            anyhow::anyhow!(
                "no kernel at {} or {}: build the image with `kiln build -o DIR FILE.yml` \
                 (format kernel+initrd) and give DIR/NAME; {}",
                with_suffix(prefix, VMLINUX).display(),
                with_suffix(prefix, BZIMAGE).display(),
                holds(dir)
            )
        })?;
        let initrd = with_suffix(prefix, INITRD);
        if !initrd.is_file() {
            bail!("no initrd at {}", initrd.display());
        }
        let cmdline_path = with_suffix(prefix, "-cmdline");
        let cmdline = match fs::read_to_string(&cmdline_path) {
            Ok(text) => text.trim().to_owned(),
            Err(err) if err.kind() == io::ErrorKind::NotFound => String::new(),
            Err(err) => {
                return Err(err).with_context(|| format!("cannot read {}", cmdline_path.display()))
            }
        };
        Ok(Self::new(kernel, initrd, cmdline))
    }

    /// A machine with one CPU, 512 MiB, no disks, no network, TCG and no time limit.
    pub fn new(kernel: PathBuf, initrd: PathBuf, cmdline: String) -> Self {
        Self {
            kernel,
            initrd,
            cmdline,
            memory_mb: 512,
            disks: Vec::new(),
            devices: Vec::new(),
            accel: "tcg".to_owned(),
            cpus: 1,
            network: Network::none(),
            timeout: None,
        }
    }

    /// The kernel command line qemu passes: the image's words, the serial console unless the
    /// image names a console, the TSC frequency `tsc_khz` when known and the quick-boot words.
    pub fn append(&self, tsc_khz: Option<u64>) -> String {
        let mut words: Vec<String> = Vec::new();
        if !self
            .cmdline
            .split_whitespace()
            .any(|w| w.starts_with("console="))
        {
            words.push("console=ttyS0".to_owned());
        }
        words.extend(self.cmdline.split_whitespace().map(str::to_owned));
        if let Some(khz) = tsc_khz {
            words.push(format!("tsc_early_khz={khz}"));
        }
        words.extend(QUICK_CMDLINE.split_whitespace().map(str::to_owned));
        if !words.iter().any(|w| w.starts_with("panic=")) {
            // A kernel panic ends the run instead of hanging until the timeout.
            words.push("panic=-1".to_owned());
        }
        words.join(" ")
    }

    /// The qemu command, its console on standard output.
    pub fn command(&self, interactive: bool) -> Command {
        let mut command = Command::new(QEMU);
        // microvm needs the TSC frequency; where /proc/cpuinfo gives none, q35 boots anyway.
        let khz = tsc_khz();
        let machine = if khz.is_some() { "microvm" } else { "q35" };
        command
            .args(["-accel", &self.accel, "-M", machine])
            .args(["-no-reboot", "-nodefaults", "-no-user-config"])
            .args(["-display", "none"])
            .args(["-serial", if interactive { "mon:stdio" } else { "stdio" }])
            .args(["-m", &self.memory_mb.to_string()])
            .args(["-smp", &self.cpus.to_string()])
            .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
            .arg("-kernel")
            .arg(&self.kernel)
            .arg("-initrd")
            .arg(&self.initrd)
            .args(["-append", &self.append(khz)]);
        // microvm has virtio-mmio transports, q35 PCI.
        let bus = if machine == "microvm" {
            "device"
        } else {
            "pci"
        };
        let device = format!("virtio-blk-{bus}");
        for (n, disk) in self.disks.iter().enumerate() {
            let mut drive = std::ffi::OsString::from(format!("if=none,id=d{n},format=raw,file="));
            drive.push(disk);
            command
                .arg("-drive")
                .arg(drive)
                .args(["-device", &format!("{device},drive=d{n}")]);
        }
        command.args(self.network.qemu_args(&format!("virtio-net-{bus}")));
        for device in &self.devices {
            command.args(["-device", device]);
        }
        command
    }

    /// Boots the machine and waits until qemu exits or the timeout stops it.
    pub fn run(&self, console: &Console) -> Result<Outcome> {
        for path in [&self.kernel, &self.initrd].into_iter().chain(&self.disks) {
            fs::metadata(path).with_context(|| format!("cannot use {}", path.display()))?;
        }
        self.network.check().map_err(anyhow::Error::msg)?;
        let interactive =
            matches!(console, Console::Inherit) && io::IsTerminal::is_terminal(&io::stdin());
        let mut command = self.command(interactive);
        match console {
            Console::Inherit => {}
            Console::File(path) => {
                let file = fs::File::create(path)
                    .with_context(|| format!("cannot create {}", path.display()))?;
                command.stdin(Stdio::null()).stdout(file);
            }
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot run {QEMU} (Debian package qemu-system-x86)"))?;
        let waited = match self.timeout {
            Some(timeout) => child.wait_timeout(timeout),
            None => child.wait().map(Some),
        }
        .with_context(|| format!("cannot wait for {QEMU}"))?;
        match waited {
            Some(status) => Ok(Outcome::of(status)),
            None => {
                stop(&mut child)?;
                Ok(Outcome::TimedOut)
            }
        }
    }
}

/// Stops qemu: SIGTERM, which lets it put the terminal back, then SIGKILL after a grace time.
fn stop(child: &mut Child) -> Result<()> {
    let pid = Pid::from_raw(i32::try_from(child.id()).context("qemu's pid")?);
    // qemu may have exited just now; then there is nothing to signal.
    let _ = kill(pid, Signal::SIGTERM);
    if child
        .wait_timeout(TERM_GRACE)
        .with_context(|| format!("cannot wait for {QEMU}"))?
        .is_none()
    {
        let _ = child.kill();
        child
            .wait()
            .with_context(|| format!("cannot wait for {QEMU}"))?;
    }
    Ok(())
}

/// The host's TSC frequency in kHz, from /proc/cpuinfo's first "cpu MHz".
pub fn tsc_khz() -> Option<u64> {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "cpu MHz").then(|| value.trim().parse().ok())?
    })?;
    // A frequency in MHz fits easily; the cast drops only the fraction of a kHz.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "positive and small"
    )]
    let khz = (mhz * 1000.0) as u64;
    (khz > 0).then_some(khz)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn exited(code: i32) -> ExitStatus {
        ExitStatus::from_raw(code << 8)
    }

    #[test]
    fn exit_codes_tell_poweroff_a_guest_report_and_qemu_failures_apart() {
        assert_eq!(Outcome::of(exited(0)), Outcome::PoweredOff);
        assert_eq!(Outcome::of(exited(3)), Outcome::Reported(1));
        assert_eq!(Outcome::of(exited(255)), Outcome::Reported(127));
        assert_eq!(Outcome::of(exited(1)), Outcome::Failed(1));
        assert_eq!(Outcome::of(exited(2)), Outcome::Failed(2));
        assert_eq!(Outcome::of(ExitStatus::from_raw(9)), Outcome::Signalled(9));
    }

    #[test]
    fn the_command_line_keeps_the_images_words_and_adds_what_booting_needs() {
        let mut machine = Machine::new("k".into(), "i".into(), "console=hvc0 quiet".into());
        let append = machine.append(Some(2_596_136));
        assert!(append.starts_with("console=hvc0 quiet "), "{append}");
        assert!(
            append.contains(" tsc_early_khz=2596136 cryptomgr.notests "),
            "{append}"
        );
        assert!(!append.contains("ttyS0"), "{append}");
        assert!(append.contains("panic=-1"), "{append}");
        machine.cmdline = "quiet panic=5".into();
        let append = machine.append(None);
        assert!(!append.contains("tsc_early_khz"), "{append}");
        assert!(
            append.starts_with("console=ttyS0 quiet panic=5"),
            "{append}"
        );
        assert!(!append.contains("panic=-1"), "{append}");
    }

    #[test]
    fn a_built_machine_prefers_the_elf_and_names_what_is_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let prefix = dir.path().join("demo");
        let err = Machine::built(&prefix).expect_err("nothing built");
        assert!(format!("{err}").contains("demo-vmlinux"), "{err}");
        fs::write(dir.path().join("demo-kernel"), "bz").expect("kernel");
        let err = Machine::built(&prefix).expect_err("no initrd");
        assert!(format!("{err}").contains("demo-initrd.img"), "{err}");
        fs::write(dir.path().join("demo-initrd.img"), "cpio").expect("initrd");
        fs::write(dir.path().join("demo-cmdline"), "quiet\n").expect("cmdline");
        let machine = Machine::built(&prefix).expect("kernel and initrd");
        assert_eq!(machine.kernel, dir.path().join("demo-kernel"));
        assert_eq!(machine.cmdline, "quiet");
        fs::write(dir.path().join("demo-vmlinux"), "elf").expect("vmlinux");
        let machine = Machine::built(&prefix).expect("all");
        assert_eq!(machine.kernel, dir.path().join("demo-vmlinux"));
    }
}
