//! VM tests' tools: an initramfs assembled in memory with Kiln's own tree and initrd writer
//! (files, directories, symlinks, device nodes; no root needed to make it), Kiln's release
//! binaries, busybox and kernel modules put in it, and a boot with `kiln run`'s qemu recipe
//! (microvm, the ELF kernel, tsc_early_khz) whose console is captured and whose outcome is
//! the guest's result.
//! Runs in: test processes on the host. The kernel comes from `tools/dev setup`, which unpacks
//! Debian's cloud kernel, runs depmod and extracts the ELF into /var/cache/kiln/vm-kernel
//! (`KILN_VM_KERNEL` names another directory).
//! Guests get no network unless a test asks for one, and then only qemu's user-mode network
//! with restrict=on: the guest reaches nothing beyond its published ports and DHCP.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test harness")]

use std::fs;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc::{self, Receiver};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kiln::run::disk::Disk;
use kiln::run::network::{Mac, Network, Networking, Publish};
pub use kiln::run::qemu::Outcome;
use kiln::run::qemu::{Console, Machine};
use kiln::tree::compression::Compression;
use kiln::tree::initrd;
use kiln::tree::{self, Kind, Node, Tree};

/// Where `tools/dev setup` puts the kernel.
const DEFAULT_KERNEL_DIR: &str = "/var/cache/kiln/vm-kernel";

/// The unpacked Debian kernel: the ELF to boot and its modules tree.
#[derive(Debug, Clone)]
pub struct Kernel {
    pub vmlinux: PathBuf,
    pub release: String,
    /// `lib/modules/<release>` with modules.dep.
    pub modules: PathBuf,
}

impl Kernel {
    /// The kernel from `$KILN_VM_KERNEL` or the default directory; panics with what to run
    /// when it is missing.
    pub fn find() -> Self {
        let dir = std::env::var_os("KILN_VM_KERNEL")
            .map_or_else(|| PathBuf::from(DEFAULT_KERNEL_DIR), PathBuf::from);
        let release = fs::read_to_string(dir.join("release")).unwrap_or_else(|err| {
            panic!(
                "no VM kernel in {} ({err}): run `tools/dev setup`",
                dir.display()
            )
        });
        let release = release.trim().to_owned();
        Self {
            vmlinux: dir.join("vmlinux"),
            modules: dir.join("modules").join(&release),
            release,
        }
    }
}

/// A port on 127.0.0.1 nothing listens on now, to publish a guest's port on.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// The workspace's root directory.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// Kiln's release binaries (the static `init`, `service` and the tests' `probe`, and `kiln`),
/// built once per test process.
pub fn release_binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let workspace = workspace();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(&workspace)
            .args([
                "build",
                "--release",
                "--locked",
                "-p",
                "init",
                "-p",
                "supervisor",
                "-p",
                "kiln",
                "-p",
                "probe",
            ])
            .status()
            .expect("run cargo build --release");
        assert!(status.success(), "cargo build --release: {status}");
        workspace.join("target/x86_64-unknown-linux-gnu/release")
    });
    dir.join(name)
}

/// The files of an initramfs: a tree of Kiln's build, written the way `kiln build` writes
/// initrds.
#[derive(Debug, Default, Clone)]
pub struct Image {
    tree: Tree,
}

impl Image {
    /// The skeleton every image has: the directories init mounts on, and /dev/console so the
    /// kernel can give init a console.
    pub fn new() -> Self {
        let mut image = Self::default();
        for dir in [
            "dev", "proc", "sys", "run", "tmp", "var", "etc", "bin", "mnt",
        ] {
            image.dir(dir, 0o755);
        }
        image.char_device("dev/console", 0o600, 5, 1);
        image
    }

    /// The image's files.
    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    fn put(&mut self, path: &str, node: Node) -> &mut Self {
        let key = tree::key(path)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("`{path}` is not a path in the image"));
        self.tree.put(&key, node);
        self
    }

    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        self.put(path, Node::dir(mode))
    }

    pub fn file(&mut self, path: &str, data: impl Into<Vec<u8>>, mode: u32) -> &mut Self {
        self.put(path, Node::file(data.into(), mode))
    }

    /// A shell script (mode 0755).
    pub fn script(&mut self, path: &str, text: &str) -> &mut Self {
        self.file(path, text, 0o755)
    }

    /// A copy of a host file.
    pub fn copy(&mut self, path: &str, host: &Path, mode: u32) -> &mut Self {
        let data = fs::read(host).unwrap_or_else(|err| panic!("read {}: {err}", host.display()));
        self.file(path, data, mode)
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.put(path, Node::symlink(target))
    }

    pub fn char_device(&mut self, path: &str, mode: u32, major: u32, minor: u32) -> &mut Self {
        self.put(path, Node::new(Kind::Char { major, minor }, mode))
    }

    /// Debian's static busybox at /bin/busybox with a link per applet in /bin.
    pub fn busybox(&mut self) -> &mut Self {
        self.copy("bin/busybox", Path::new("/bin/busybox"), 0o755);
        let applets = Command::new("/bin/busybox")
            .arg("--list")
            .output()
            .expect("busybox --list");
        for applet in String::from_utf8_lossy(&applets.stdout).lines() {
            if applet != "busybox" {
                self.symlink(&format!("bin/{applet}"), "busybox");
            }
        }
        self
    }

    /// Kiln: /init and /usr/bin/service, release builds.
    pub fn kiln(&mut self) -> &mut Self {
        self.copy("init", &release_binary("init"), 0o755);
        self.copy("usr/bin/service", &release_binary("service"), 0o755);
        self
    }

    /// `names` listed in /etc/modules, with their files and every dependency's, modules.dep
    /// and modules.builtin.
    pub fn modules(&mut self, kernel: &Kernel, names: &[&str]) -> &mut Self {
        let base = format!("lib/modules/{}", kernel.release);
        let dep = fs::read_to_string(kernel.modules.join("modules.dep"))
            .unwrap_or_else(|err| panic!("read modules.dep of {}: {err}", kernel.release));
        let dependencies = spec::modules::Dependencies::parse(&dep);
        let mut wanted: Vec<String> = Vec::new();
        for name in names {
            let name = spec::modules::canonical(name);
            let files = dependencies
                .load_order(&name)
                .unwrap_or_else(|| panic!("module {name} is not in modules.dep"));
            wanted.extend(files);
        }
        for file in wanted {
            self.copy(
                &format!("{base}/{file}"),
                &kernel.modules.join(&file),
                0o644,
            );
        }
        for index in ["modules.dep", "modules.builtin"] {
            self.copy(
                &format!("{base}/{index}"),
                &kernel.modules.join(index),
                0o644,
            );
        }
        self.file("etc/modules", names.join("\n") + "\n", 0o644)
    }

    /// Writes the image as a newc cpio archive, compressed as `kiln build` compresses it.
    pub fn write_initramfs(&self, path: &Path) -> io::Result<()> {
        let out = BufWriter::new(fs::File::create(path)?);
        initrd::write_initrd(&self.tree, None, Compression::default(), out)?.flush()
    }
}

/// What a boot ended with.
#[derive(Debug)]
pub struct Run {
    /// How qemu ended: poweroff (or reboot, as qemu runs with `-no-reboot`), a value the guest
    /// wrote to the debug-exit port, or the timeout.
    pub outcome: Outcome,
    /// Everything the guest wrote on its serial console.
    pub console: String,
}

impl Run {
    /// The console lines that start with `prefix`, without it.
    pub fn lines_after(&self, prefix: &str) -> Vec<String> {
        self.console
            .lines()
            .filter_map(|line| line.trim_end_matches('\r').strip_prefix(prefix))
            .map(str::to_owned)
            .collect()
    }

    /// Where `text` was first printed; panics, showing the console, unless it was.
    pub fn assert_printed(&self, text: &str) -> usize {
        self.console
            .find(text)
            .unwrap_or_else(|| panic!("`{text}` not on the console:\n{}", self.console))
    }

    /// Panics, showing the console, unless every one of `texts` was printed, each first
    /// printed after the one before it.
    pub fn assert_in_order(&self, texts: &[&str]) {
        let at: Vec<usize> = texts.iter().map(|text| self.assert_printed(text)).collect();
        assert!(
            at.is_sorted(),
            "not in this order: {texts:#?} (at {at:?}):\n{}",
            self.console
        );
    }
}

/// A virtual machine to boot: Kiln's qemu recipe with the test kernel.
#[derive(Debug)]
pub struct Vm {
    kernel: Kernel,
    dir: tempfile::TempDir,
    disks: Vec<PathBuf>,
    timeout: Duration,
    cmdline: String,
    network: Network,
}

impl Vm {
    pub fn new(kernel: &Kernel) -> Self {
        Self {
            kernel: kernel.clone(),
            dir: tempfile::tempdir().expect("temporary directory"),
            disks: Vec::new(),
            timeout: Duration::from_secs(120),
            cmdline: "quiet".to_owned(),
            network: Network::none(),
        }
    }

    /// A virtio NIC on qemu's user-mode network, restricted (the guest can open no
    /// connection to the host or beyond), with `publish` forwarded from the host.
    pub fn user_network(&mut self, publish: &[Publish]) -> &mut Self {
        self.network = Network {
            networking: Networking::User { restrict: true },
            publish: publish.to_vec(),
            mac: Mac::derived("vm-test"),
        };
        self
    }

    /// A raw disk image, as a virtio block device (/dev/vda, /dev/vdb, ...).
    pub fn disk(&mut self, image: &Path) -> &mut Self {
        self.disks.push(image.to_path_buf());
        self
    }

    /// Adds words to the kernel command line.
    pub fn cmdline(&mut self, words: &str) -> &mut Self {
        self.cmdline.push(' ');
        self.cmdline.push_str(words);
        self
    }

    pub fn timeout(&mut self, timeout: Duration) -> &mut Self {
        self.timeout = timeout;
        self
    }

    /// Boots `image` and waits until qemu exits or the timeout stops it.
    pub fn boot(&self, image: &Image) -> Run {
        let initrd = self.dir.path().join("initrd.img");
        image.write_initramfs(&initrd).expect("write the initramfs");
        self.boot_initrd(&initrd)
    }

    /// Boots the initrd at `initrd` and waits until qemu exits or the timeout stops it.
    pub fn boot_initrd(&self, initrd: &Path) -> Run {
        let mut machine = Machine::new(
            self.kernel.vmlinux.clone(),
            initrd.to_path_buf(),
            self.cmdline.clone(),
        );
        machine.disks = self.disks.iter().map(Disk::raw).collect();
        machine.timeout = Some(self.timeout);
        machine.network.clone_from(&self.network);
        run(&machine, self.dir.path())
    }
}

/// Boots `machine`, its console captured in a file in `dir`.
pub fn run(machine: &Machine, dir: &Path) -> Run {
    let console = dir.join("console");
    let outcome = machine
        .run(&Console::File(console.clone()))
        .expect("run qemu (tools/dev setup installs it)");
    let console = String::from_utf8_lossy(&fs::read(&console).unwrap_or_default()).into_owned();
    Run { outcome, console }
}

/// The console of a running `kiln run` (its standard output piped), read line by line.
#[derive(Debug)]
pub struct LiveConsole {
    lines: Receiver<String>,
    /// Every line read so far.
    pub text: String,
}

impl LiveConsole {
    /// Reads `child`'s standard output, which must be piped.
    pub fn of(child: &mut Child) -> Self {
        let stdout = child.stdout.take().expect("kiln run's stdout is piped");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            lines,
            text: String::new(),
        }
    }

    /// Reads until a line contains `text`; panics, showing the console, if the VM ends or
    /// `within` passes first.
    pub fn wait_for(&mut self, text: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(text);
                    self.text.push_str(&line);
                    self.text.push('\n');
                    if found {
                        return;
                    }
                }
                Err(err) => panic!("`{text}` not on the console ({err}):\n{}", self.text),
            }
        }
    }

    /// Reads the rest, until the VM ends, and waits for `child`: its exit status and what
    /// it wrote on standard error (piped).
    pub fn finish(&mut self, child: &mut Child) -> (ExitStatus, String) {
        for line in self.lines.iter() {
            self.text.push_str(&line);
            self.text.push('\n');
        }
        let status = child.wait().expect("wait for kiln run");
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            pipe.read_to_string(&mut stderr)
                .expect("read kiln run's stderr");
        }
        (status, stderr)
    }
}

/// A program (`kiln run`) on a pseudo-terminal, driven as a person at a terminal drives it:
/// keys typed into the master, what it shows read back.
#[derive(Debug)]
pub struct Terminal {
    master: fs::File,
    chunks: Receiver<String>,
    /// Everything shown so far.
    pub text: String,
    /// Where [`Terminal::wait_for`] starts looking.
    from: usize,
}

impl Terminal {
    /// Starts `command` with a new pseudo-terminal (80x24) as its stdin, stdout and stderr.
    pub fn spawn(command: &mut Command) -> (Self, Child) {
        let size = nix::pty::Winsize {
            ws_row: 24,
            ws_col: 80,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(&size, None).expect("openpty");
        let child = command
            .stdin(pty.slave.try_clone().expect("dup the terminal"))
            .stdout(pty.slave.try_clone().expect("dup the terminal"))
            .stderr(pty.slave)
            .spawn()
            .expect("start the program on the terminal");
        let master = fs::File::from(pty.master);
        let mut reader = master.try_clone().expect("dup the master");
        let (send, chunks) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0_u8; 4096];
            // EIO once the program and its children have closed the terminal.
            while let Ok(count) = reader.read(&mut buf) {
                if count == 0
                    || send
                        .send(String::from_utf8_lossy(&buf[..count]).into_owned())
                        .is_err()
                {
                    break;
                }
            }
        });
        let terminal = Self {
            master,
            chunks,
            text: String::new(),
            from: 0,
        };
        (terminal, child)
    }

    /// Types `keys` (`\r` is Enter, `\x03` Ctrl-C, `\x1a` Ctrl-Z); later waits look only at
    /// what is shown after this.
    pub fn type_keys(&mut self, keys: &str) {
        self.drain();
        self.from = self.text.len();
        self.master
            .write_all(keys.as_bytes())
            .and_then(|()| self.master.flush())
            .expect("type on the terminal");
    }

    fn drain(&mut self) {
        while let Ok(chunk) = self.chunks.try_recv() {
            self.text.push_str(&chunk);
        }
    }

    /// Waits until `text` is shown (after the last keys typed); panics with the screen if
    /// `within` passes first or the terminal closes.
    pub fn wait_for(&mut self, text: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if self.text[self.from..].contains(text) {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.chunks.recv_timeout(left) {
                Ok(chunk) => self.text.push_str(&chunk),
                Err(err) => panic!("`{text}` not shown ({err}):\n{}", self.text),
            }
        }
    }

    /// Whether `text` is shown within `within` (after the last keys typed).
    pub fn shows(&mut self, text: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while !self.text[self.from..].contains(text) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.chunks.recv_timeout(left) {
                Ok(chunk) => self.text.push_str(&chunk),
                Err(_) => return false,
            }
        }
        true
    }

    /// Reads what is still coming, once the program has ended (until nothing came for a
    /// second: the command that started it may still hold the terminal open).
    pub fn finish(&mut self) {
        while let Ok(chunk) = self.chunks.recv_timeout(Duration::from_secs(1)) {
            self.text.push_str(&chunk);
        }
    }
}
