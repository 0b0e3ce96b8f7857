//! Booting a built image under qemu. A kernel+initrd image boots the quick way: `-M
//! microvm` with the ELF kernel when the build wrote one (`NAME-vmlinux`), `tsc_early_khz`
//! from the host's clock (microvm hangs without it), and the command line with the console
//! and quick-boot words added. A disk or ISO (`NAME-efi.img`, `NAME-efi.qcow2`,
//! `NAME-bios.img`, `NAME-efi.iso`, `NAME.iso`) boots as a machine's firmware boots it: `-M
//! q35` (microvm has no CD controller and no UEFI), OVMF from Debian's ovmf package for the
//! -efi ones (with a copy of its variable store, so the package's is never written) or
//! SeaBIOS for the others, the disk on virtio-blk after any `--disk`, the ISO as a CD on
//! q35's AHCI, booted first; the command line is the one the build put on it. Either way the
//! serial port is the console, the NIC is virtio, and `isa-debug-exit` on port 0xf4 lets a
//! guest end the run with a result: writing V there makes qemu exit with `(V << 1) | 1`, a
//! clean poweroff makes it exit 0.
//! Runs in: `kiln run` and the VM tests, on the build host, as any user allowed to run qemu.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::network::Network;
use crate::build::output::Format;
use crate::media::host;
use crate::run::disk::Disk;
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

/// What a machine boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// qemu loads the kernel and the initrd itself.
    Kernel {
        /// An ELF (booted directly) or a bzImage.
        kernel: PathBuf,
        initrd: PathBuf,
        /// The image's command line; the console and the quick-boot words are added to it.
        cmdline: String,
    },
    /// The firmware boots a disk or ISO that `kiln build` wrote in `format`.
    Medium { path: PathBuf, format: Format },
}

/// A machine to boot: what it boots and what qemu gets besides.
#[derive(Debug, Clone)]
pub struct Machine {
    pub boot: Boot,
    pub memory_mb: u32,
    /// Disk images, attached as virtio block devices (/dev/vda, /dev/vdb, ...); each is
    /// created at its size first when missing.
    pub disks: Vec<Disk>,
    /// User data, attached as a cidata volume after the disks (`--data`).
    pub data: Option<Vec<u8>>,
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

/// The formats that boot, in the order `kiln run` picks one when not told: kernel+initrd
/// (quickest), then the disks and ISOs, UEFI first.
const BOOTABLE: [Format; 7] = [
    Format::KernelInitrd,
    Format::RawEfi,
    Format::Qcow2Efi,
    Format::IsoEfi,
    Format::IsoEfiInitrd,
    Format::RawBios,
    Format::IsoBios,
];

/// Whether `prefix` (`OUT/NAME`) has an image of `format`.
fn has(prefix: &Path, format: Format) -> bool {
    match format.medium_suffix() {
        Some(suffix) => with_suffix(prefix, suffix).is_file(),
        None => {
            format == Format::KernelInitrd
                && kernel_of(prefix).is_some()
                && with_suffix(prefix, INITRD).is_file()
        }
    }
}

/// The images (`DIR/NAME`) the directory `dir` holds, by name, each with the formats it has.
fn images_in(dir: &Path) -> Vec<(PathBuf, Vec<Format>)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let suffixes: Vec<&str> = BOOTABLE
        .iter()
        .map(|format| format.medium_suffix().unwrap_or(INITRD))
        .collect();
    // The longest suffix a name ends in is its format's: `NAME-efi.iso` is NAME's iso-efi,
    // not the iso-bios of an image called `NAME-efi`.
    let mut prefixes: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter_map(|name| {
            let suffix = suffixes
                .iter()
                .filter(|suffix| name.ends_with(*suffix))
                .max_by_key(|suffix| suffix.len())?;
            Some(dir.join(&name[..name.len() - suffix.len()]))
        })
        .collect();
    prefixes.sort();
    prefixes.dedup();
    prefixes
        .into_iter()
        .map(|prefix| {
            let formats: Vec<Format> = BOOTABLE
                .into_iter()
                .filter(|format| has(&prefix, *format))
                .collect();
            (prefix, formats)
        })
        .filter(|(_, formats)| !formats.is_empty())
        .collect()
}

/// Says which images `dir` holds, for an error that names a wrong one.
fn holds(dir: &Path) -> String {
    let images = images_in(dir);
    if images.is_empty() {
        return format!(
            "{} holds no image (NAME-initrd.img with NAME-vmlinux or NAME-kernel, or a disk or \
             ISO `kiln build --format` wrote)",
            dir.display()
        );
    }
    let names: Vec<String> = images
        .iter()
        .map(|(image, formats)| {
            let formats: Vec<&str> = formats.iter().map(|format| format.name()).collect();
            format!("{} ({})", image.display(), formats.join(", "))
        })
        .collect();
    format!("{} holds {}", dir.display(), names.join("; "))
}

/// The directory `prefix` (`OUT/NAME`) is in.
fn dir_of(prefix: &Path) -> &Path {
    match prefix.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// The kernel command line qemu passes: the image's words `cmdline`, the serial console unless
/// the image names a console, the TSC frequency `tsc_khz` when known and the quick-boot words.
pub fn append(cmdline: &str, tsc_khz: Option<u64>) -> String {
    let mut words: Vec<String> = Vec::new();
    if !cmdline
        .split_whitespace()
        .any(|w| w.starts_with("console="))
    {
        words.push("console=ttyS0".to_owned());
    }
    words.extend(cmdline.split_whitespace().map(str::to_owned));
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
    /// The machine `kiln build` wrote at `prefix` (`OUT/NAME`) in `format`, or, when not
    /// told, in the first format of kernel+initrd, raw-efi, qcow2-efi, iso-efi,
    /// iso-efi-initrd, raw-bios and iso-bios that it holds. A directory, or a prefix naming
    /// no image, is refused with the images the directory holds.
    pub fn built(prefix: &Path, format: Option<Format>) -> Result<Self> {
        if prefix.is_dir() {
            bail!(
                "{} is a directory: give OUT/NAME; {}",
                prefix.display(),
                holds(prefix)
            );
        }
        let format = format
            .or_else(|| BOOTABLE.into_iter().find(|format| has(prefix, *format)))
            .unwrap_or(Format::KernelInitrd);
        let Some(suffix) = format.medium_suffix() else {
            if format == Format::Tar {
                bail!("a tar does not boot: give --format with one of the formats that do");
            }
            return Self::kernel_initrd(prefix);
        };
        let path = with_suffix(prefix, suffix);
        if !path.is_file() {
            bail!(
                "no {format} image at {}: build it with `kiln build --format {format}`; {}",
                path.display(),
                holds(dir_of(prefix))
            );
        }
        Ok(Self::with(Boot::Medium { path, format }))
    }

    /// The kernel+initrd image `kiln build` wrote as `PREFIX-vmlinux` (or `PREFIX-kernel`),
    /// `PREFIX-initrd.img` and `PREFIX-cmdline`.
    fn kernel_initrd(prefix: &Path) -> Result<Self> {
        let kernel = kernel_of(prefix).ok_or_else(|| {
            anyhow::anyhow!(
                "no kernel at {} or {}: build the image with `kiln build -o DIR FILE.yml` \
                 (format kernel+initrd) and give DIR/NAME; {}",
                with_suffix(prefix, VMLINUX).display(),
                with_suffix(prefix, BZIMAGE).display(),
                holds(dir_of(prefix))
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

    /// A machine that boots `kernel` and `initrd` with `cmdline`, with one CPU, 512 MiB, no
    /// disks, no network, TCG and no time limit.
    pub fn new(kernel: PathBuf, initrd: PathBuf, cmdline: String) -> Self {
        Self::with(Boot::Kernel {
            kernel,
            initrd,
            cmdline,
        })
    }

    /// A machine that boots `boot`, otherwise as [`Machine::new`].
    pub fn with(boot: Boot) -> Self {
        Self {
            boot,
            memory_mb: 512,
            disks: Vec::new(),
            data: None,
            devices: Vec::new(),
            accel: "tcg".to_owned(),
            cpus: 1,
            network: Network::none(),
            timeout: None,
        }
    }

    /// The qemu command, its console on standard output; `vars` is the UEFI variable store an
    /// -efi medium boots with, `data` the user data's volume.
    pub fn command(&self, interactive: bool, vars: Option<&Path>, data: Option<&Path>) -> Command {
        let mut command = Command::new(QEMU);
        // microvm needs the TSC frequency; where /proc/cpuinfo gives none, q35 boots anyway.
        // Firmware boots only on q35.
        let khz = tsc_khz();
        let microvm = khz.is_some() && matches!(self.boot, Boot::Kernel { .. });
        command
            .args([
                "-accel",
                &self.accel,
                "-M",
                if microvm { "microvm" } else { "q35" },
            ])
            .args(["-no-reboot", "-nodefaults", "-no-user-config"])
            .args(["-display", "none"])
            .args(["-serial", if interactive { "mon:stdio" } else { "stdio" }])
            .args(["-m", &self.memory_mb.to_string()])
            .args(["-smp", &self.cpus.to_string()])
            .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
        if let Boot::Kernel {
            kernel,
            initrd,
            cmdline,
        } = &self.boot
        {
            command
                .arg("-kernel")
                .arg(kernel)
                .arg("-initrd")
                .arg(initrd)
                .args(["-append", &append(cmdline, khz)]);
        }
        // microvm has virtio-mmio transports, q35 PCI.
        let bus = if microvm { "device" } else { "pci" };
        let device = format!("virtio-blk-{bus}");
        for (n, disk) in self.disks.iter().enumerate() {
            command
                .arg("-drive")
                .arg(drive(
                    &format!("if=none,id=d{n},format={}", disk.format.name()),
                    &disk.path,
                ))
                .args(["-device", &format!("{device},drive=d{n}")]);
        }
        if let Some(data) = data {
            command
                .arg("-drive")
                .arg(drive("if=none,id=data,format=raw,readonly=on", data))
                .args(["-device", &format!("{device},drive=data")]);
        }
        if let Boot::Medium { path, format } = &self.boot {
            if format.is_efi() {
                command.arg("-drive").arg(drive(
                    "if=pflash,format=raw,unit=0,readonly=on",
                    Path::new(host::OVMF_CODE.path),
                ));
                if let Some(vars) = vars {
                    command
                        .arg("-drive")
                        .arg(drive("if=pflash,format=raw,unit=1", vars));
                }
            }
            let (options, device) = match format {
                Format::IsoEfi | Format::IsoEfiInitrd | Format::IsoBios => (
                    "if=none,id=boot,media=cdrom,readonly=on,format=raw".to_owned(),
                    "ide-cd,drive=boot,bootindex=0".to_owned(),
                ),
                _ => {
                    let image = if *format == Format::Qcow2Efi {
                        "qcow2"
                    } else {
                        "raw"
                    };
                    (
                        format!("if=none,id=boot,format={image}"),
                        format!("{device},drive=boot,bootindex=0"),
                    )
                }
            };
            command
                .arg("-drive")
                .arg(drive(&options, path))
                .args(["-device", &device]);
        }
        // The NIC's boot ROM would only make the firmware slower: nothing boots from the network.
        let nic = if microvm {
            "virtio-net-device"
        } else {
            "virtio-net-pci,romfile="
        };
        command.args(self.network.qemu_args(nic));
        for device in &self.devices {
            command.args(["-device", device]);
        }
        command
    }

    /// The files the machine boots from.
    fn boot_files(&self) -> Vec<&Path> {
        match &self.boot {
            Boot::Kernel { kernel, initrd, .. } => vec![kernel, initrd],
            Boot::Medium { path, .. } => vec![path],
        }
    }

    /// Boots the machine and waits until qemu exits or the timeout stops it.
    pub fn run(&self, console: &Console) -> Result<Outcome> {
        for disk in &self.disks {
            disk.prepare()?;
        }
        let disks = self.disks.iter().map(|disk| disk.path.as_path());
        for path in self.boot_files().into_iter().chain(disks) {
            fs::metadata(path).with_context(|| format!("cannot use {}", path.display()))?;
        }
        self.network.check().map_err(anyhow::Error::msg)?;
        // An -efi medium boots with a copy of OVMF's variable store, removed after the run.
        let vars = match &self.boot {
            Boot::Medium { format, .. } if format.is_efi() => {
                host::OVMF_CODE.require()?;
                host::OVMF_VARS.require()?;
                let vars = tempfile::NamedTempFile::new()
                    .context("cannot create a file for the UEFI variables")?;
                fs::copy(host::OVMF_VARS.path, vars.path()).with_context(|| {
                    format!(
                        "cannot copy {} to {}",
                        host::OVMF_VARS.path,
                        vars.path().display()
                    )
                })?;
                Some(vars)
            }
            _ => None,
        };
        let interactive =
            matches!(console, Console::Inherit) && io::IsTerminal::is_terminal(&io::stdin());
        let vars = vars.as_ref().map(tempfile::NamedTempFile::path);
        // The image's name, for the instance's: out/NAME-vmlinux, out/NAME-efi.iso.
        let file = match &self.boot {
            Boot::Kernel { kernel, .. } => kernel.file_name(),
            Boot::Medium { path, .. } => path.file_stem(),
        };
        let file = file.map(|name| name.to_string_lossy().into_owned());
        let file = file.unwrap_or_default();
        let name = [VMLINUX, BZIMAGE]
            .iter()
            .find_map(|suffix| file.strip_suffix(suffix))
            .unwrap_or(&file);
        let data = match &self.data {
            Some(data) => Some(super::data::iso(data, name)?),
            None => None,
        };
        let mut command = self.command(interactive, vars, data.as_deref());
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

/// qemu's `-drive` value: `options` and the file at `path`, whose commas are doubled as qemu
/// reads them.
fn drive(options: &str, path: &Path) -> std::ffi::OsString {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let mut bytes = format!("{options},file=").into_bytes();
    for &byte in path.as_os_str().as_bytes() {
        bytes.push(byte);
        if byte == b',' {
            bytes.push(b',');
        }
    }
    std::ffi::OsString::from_vec(bytes)
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
        let line = append("console=hvc0 quiet", Some(2_596_136));
        assert!(line.starts_with("console=hvc0 quiet "), "{line}");
        assert!(
            line.contains(" tsc_early_khz=2596136 cryptomgr.notests "),
            "{line}"
        );
        assert!(!line.contains("ttyS0"), "{line}");
        assert!(line.contains("panic=-1"), "{line}");
        let line = append("quiet panic=5", None);
        assert!(!line.contains("tsc_early_khz"), "{line}");
        assert!(line.starts_with("console=ttyS0 quiet panic=5"), "{line}");
        assert!(!line.contains("panic=-1"), "{line}");
    }

    fn kernel_of_machine(machine: &Machine) -> (&Path, &str) {
        match &machine.boot {
            Boot::Kernel {
                kernel, cmdline, ..
            } => (kernel, cmdline),
            other => panic!("not a kernel: {other:?}"),
        }
    }

    #[test]
    fn a_built_machine_prefers_the_elf_and_names_what_is_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let prefix = dir.path().join("demo");
        let err = Machine::built(&prefix, None).expect_err("nothing built");
        assert!(format!("{err}").contains("demo-vmlinux"), "{err}");
        fs::write(dir.path().join("demo-kernel"), "bz").expect("kernel");
        let err = Machine::built(&prefix, None).expect_err("no initrd");
        assert!(format!("{err}").contains("demo-initrd.img"), "{err}");
        fs::write(dir.path().join("demo-initrd.img"), "cpio").expect("initrd");
        fs::write(dir.path().join("demo-cmdline"), "quiet\n").expect("cmdline");
        let machine = Machine::built(&prefix, None).expect("kernel and initrd");
        assert_eq!(
            kernel_of_machine(&machine),
            (dir.path().join("demo-kernel").as_path(), "quiet")
        );
        fs::write(dir.path().join("demo-vmlinux"), "elf").expect("vmlinux");
        let machine = Machine::built(&prefix, None).expect("all");
        assert_eq!(
            kernel_of_machine(&machine).0,
            dir.path().join("demo-vmlinux")
        );
    }

    #[test]
    fn a_disk_or_iso_is_booted_when_named_or_when_it_is_all_there_is() {
        let dir = tempfile::tempdir().expect("tempdir");
        let prefix = dir.path().join("demo");
        let medium = |format: Format| {
            let machine = Machine::built(&prefix, Some(format)).expect("built");
            match machine.boot {
                Boot::Medium { path, format } => (path, format),
                other => panic!("not a medium: {other:?}"),
            }
        };
        fs::write(dir.path().join("demo.iso"), "iso").expect("iso");
        fs::write(dir.path().join("demo-efi.qcow2"), "qcow2").expect("qcow2");
        let err = Machine::built(&prefix, Some(Format::RawEfi)).expect_err("no raw-efi");
        let err = err.to_string();
        assert!(
            err.contains("no raw-efi image at ") && err.contains("demo-efi.img"),
            "{err}"
        );
        assert!(
            err.contains("kiln build --format raw-efi") && err.contains("(qcow2-efi, iso-bios)"),
            "{err}"
        );
        assert_eq!(
            medium(Format::IsoBios),
            (dir.path().join("demo.iso"), Format::IsoBios)
        );
        // Not told: UEFI first.
        let machine = Machine::built(&prefix, None).expect("one of them");
        assert_eq!(
            machine.boot,
            Boot::Medium {
                path: dir.path().join("demo-efi.qcow2"),
                format: Format::Qcow2Efi
            }
        );
        let err = Machine::built(dir.path(), None).expect_err("a directory");
        assert!(
            err.to_string().contains("demo (qcow2-efi, iso-bios)"),
            "{err}"
        );
        let err = Machine::built(&prefix, Some(Format::Tar)).expect_err("a tar");
        assert!(err.to_string().contains("a tar does not boot"), "{err}");
        // kernel+initrd, where there is one, is the quickest.
        fs::write(dir.path().join("demo-kernel"), "bz").expect("kernel");
        fs::write(dir.path().join("demo-initrd.img"), "cpio").expect("initrd");
        let machine = Machine::built(&prefix, None).expect("kernel+initrd");
        assert!(matches!(machine.boot, Boot::Kernel { .. }));
    }

    fn args_of(command: &Command) -> Vec<String> {
        command
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn media_boot_on_q35_from_their_firmware_after_the_extra_disks() {
        let mut machine = Machine::with(Boot::Medium {
            path: "/out/a,b-efi.img".into(),
            format: Format::RawEfi,
        });
        machine.disks = vec![Disk::raw("/data.img")];
        let args = args_of(&machine.command(
            false,
            Some(Path::new("/tmp/vars.fd")),
            Some(Path::new("/tmp/user.iso")),
        ));
        let text = args.join(" ");
        assert!(text.contains("-M q35 "), "{text}");
        assert!(!text.contains("-kernel"), "{text}");
        assert!(
            text.contains(&format!(
                "-drive if=pflash,format=raw,unit=0,readonly=on,file={}",
                host::OVMF_CODE.path
            )),
            "{text}"
        );
        assert!(
            text.contains("-drive if=pflash,format=raw,unit=1,file=/tmp/vars.fd"),
            "{text}"
        );
        let data = text.find("file=/data.img").expect("the extra disk");
        let boot = text
            .find("-drive if=none,id=boot,format=raw,file=/out/a,,b-efi.img -device virtio-blk-pci,drive=boot,bootindex=0")
            .expect("the boot disk, its comma doubled");
        assert!(data < boot, "the extra disks keep /dev/vda...: {text}");
        let user = text
            .find("-drive if=none,id=data,format=raw,readonly=on,file=/tmp/user.iso -device virtio-blk-pci,drive=data")
            .expect("the user data, read-only");
        assert!(data < user, "after the --disks: {text}");

        machine.boot = Boot::Medium {
            path: "/out/a.iso".into(),
            format: Format::IsoBios,
        };
        let text = args_of(&machine.command(false, None, None)).join(" ");
        assert!(!text.contains("pflash"), "SeaBIOS, qemu's own: {text}");
        assert!(
            text.contains("if=none,id=boot,media=cdrom,readonly=on,format=raw,file=/out/a.iso -device ide-cd,drive=boot,bootindex=0"),
            "{text}"
        );

        machine.boot = Boot::Medium {
            path: "/out/a-efi.qcow2".into(),
            format: Format::Qcow2Efi,
        };
        let text = args_of(&machine.command(false, None, None)).join(" ");
        assert!(
            text.contains("id=boot,format=qcow2,file=/out/a-efi.qcow2"),
            "{text}"
        );
    }
}
