//! Kernel modules: those for the devices present, found as udev's coldplug finds them (each
//! `modalias` under /sys/devices matched against modules.alias, repeated while loading makes
//! new devices appear: on microvm, virtio_mmio must load before virtio_net's device shows
//! up); those listed in /etc/modules, for what no device announces (overlay, veth); each
//! loaded with its dependencies from the running kernel's modules.dep through finit_module(2),
//! so an image needs no modprobe. And the modules the kernel asks for later (a veth link, a
//! file system): init registers itself as the kernel's module helper, which runs `/init -q --
//! NAME`, a name or an alias resolved through modules.alias. Compressed modules (.ko.xz,
//! .ko.zst, .ko.gz) are handed to the kernel to decompress.
//! Runs in: PID 1 as the system's init, after the mounts and before the supervisor, one line
//! saying what the devices needed and one per failure; and `/init` started by the kernel as
//! its module helper, which loads and exits.
//! Mirrors modprobe(8)'s reading of modules.dep (a module's dependencies are listed after it,
//! the last to be loaded first) and /etc/modules (one name per line, optional parameters).

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fmt;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::errno::Errno;
use nix::kmod::{finit_module, ModuleInitFlags};
use spec::modules::{canonical, module_name, parse_builtin, parse_listed, Aliases, Dependencies};

use crate::say;

/// finit_module's flag for a file the kernel must decompress (linux/module.h).
const MODULE_INIT_COMPRESSED_FILE: u32 = 4;

/// The kernel's module helper path (what it runs to load a module it needs).
const MODPROBE_SETTING: &str = "/proc/sys/kernel/modprobe";
/// Where a real modprobe would be; an image that has one keeps it as the kernel's helper.
const SYSTEM_MODPROBE: &str = "/sbin/modprobe";
/// Where the devices are, each with a `modalias` file when a driver could be bound to it.
const SYS_DEVICES: &str = "/sys/devices";
/// The CPU's modalias: its features would load KVM and crypto acceleration modules, large and
/// slow to load and wanted by few images; those that want them list them in /etc/modules.
const CPU_FEATURES: &str = "cpu:";
/// Rounds of coldplug at most: each finds the devices the previous round's drivers made.
const COLDPLUG_ROUNDS: usize = 8;

/// Loads the modules of the devices present, as udev's coldplug does (but for the CPU's
/// feature modules), and says in one line which it loaded. A device whose module fails to
/// load is one line naming both; a driver that finds no device of its own (ENODEV) is not a
/// failure.
pub fn load_for_devices() {
    let started = Instant::now();
    let modules = match Modules::open() {
        Ok(modules) => modules,
        Err(err) => {
            if Path::new("/lib/modules").exists() {
                say!("modules: {err}");
            }
            return;
        }
    };
    let mut coldplug = Coldplug::default();
    for _ in 0..COLDPLUG_ROUNDS {
        let mut found = BTreeSet::new();
        modaliases(Path::new(SYS_DEVICES), &mut found);
        if !coldplug.round(&modules, found) {
            break;
        }
    }
    if !coldplug.loaded.is_empty() {
        say!(
            "modules: loaded for the devices present: {} ({} ms)",
            coldplug.loaded.join(" "),
            started.elapsed().as_millis()
        );
    }
}

/// What coldplug has seen and done so far.
#[derive(Debug, Default)]
struct Coldplug {
    /// Modaliases already handled.
    seen: BTreeSet<String>,
    /// Module files loaded (dependencies included).
    files: BTreeSet<String>,
    /// Modules loaded for devices, in order.
    loaded: Vec<String>,
    /// Modules that failed or need nothing (built in, or no device of theirs).
    done: BTreeSet<String>,
}

impl Coldplug {
    /// Loads the modules for the modaliases in `found` not seen before; false when there
    /// were none.
    fn round(&mut self, modules: &Modules, found: BTreeSet<String>) -> bool {
        let new: Vec<String> = found
            .into_iter()
            .filter(|modalias| self.seen.insert(modalias.clone()))
            .collect();
        for modalias in new
            .iter()
            .filter(|modalias| !modalias.starts_with(CPU_FEATURES))
        {
            for name in modules.aliases.modules_for(modalias) {
                if self.done.contains(&name) || self.loaded.contains(&name) {
                    continue;
                }
                if modules.builtin.contains(&name) {
                    self.done.insert(name);
                    continue;
                }
                match modules.load(&name, "", &mut self.files) {
                    Ok(()) => self.loaded.push(name),
                    Err(LoadError::Kernel {
                        errno: Errno::ENODEV,
                        ..
                    }) => {
                        self.done.insert(name);
                    }
                    Err(err) => {
                        say!("modules: device {modalias}: {err}");
                        self.done.insert(name);
                    }
                }
            }
        }
        !new.is_empty()
    }
}

/// Every `modalias` under `dir`, symbolic links not followed (each device once).
fn modaliases(dir: &Path, found: &mut BTreeSet<String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            modaliases(&entry.path(), found);
        } else if entry.file_name() == "modalias" {
            if let Ok(text) = fs::read_to_string(entry.path()) {
                let modalias = text.trim();
                if !modalias.is_empty() {
                    found.insert(modalias.to_owned());
                }
            }
        }
    }
}

/// Loads every module /etc/modules names.
pub fn load_listed() {
    let Ok(listed) = fs::read_to_string("/etc/modules") else {
        return;
    };
    let requests = parse_listed(&listed);
    if requests.is_empty() {
        return;
    }
    let modules = match Modules::open() {
        Ok(modules) => modules,
        Err(err) => {
            say!("modules: {err}");
            return;
        }
    };
    let mut loaded = BTreeSet::new();
    for (name, params) in requests {
        if let Err(err) = modules.load(&canonical(&name), &params, &mut loaded) {
            say!("modules: {err}");
        }
    }
}

/// Makes `init_path` the kernel's module helper unless the image has a modprobe of its own:
/// the kernel then runs `init_path -q -- NAME` when it needs a module (a veth or bridge link
/// type, a file system, a protocol), and [`helper_request`] and [`autoload`] answer it.
pub fn become_kernel_helper(init_path: &str) {
    if Path::new(SYSTEM_MODPROBE).exists() {
        return;
    }
    if let Err(err) = fs::write(MODPROBE_SETTING, init_path) {
        say!("modules: set {MODPROBE_SETTING}: {err}; modules will not load on demand");
    }
}

/// The module name when `args` (without the program name) are the kernel's module request,
/// exactly `-q -- NAME`.
pub fn helper_request(args: &[String]) -> Option<&str> {
    match args {
        [quiet, dashes, name] if quiet == "-q" && dashes == "--" && !name.is_empty() => Some(name),
        _ => None,
    }
}

/// Loads what the kernel asked for: a module by name, or every module whose alias in
/// modules.alias matches (`rtnl-link-veth`, `fs-overlay`, `net-pf-10`), each with its
/// dependencies. A name matching nothing, or built in, is an error as for modprobe -q.
pub fn autoload(request: &str) -> Result<(), String> {
    let modules = Modules::open()?;
    let names = modules.resolve(request);
    if names.is_empty() {
        return Err(format!("{request}: no module of that name or alias"));
    }
    let mut loaded = BTreeSet::new();
    let mut result = Ok(());
    for name in names {
        if let Err(err) = modules.load(&name, "", &mut loaded) {
            result = Err(err.to_string());
        }
    }
    result
}

/// The running kernel's modules: where they are, modules.dep, modules.alias and the built-in
/// list.
#[derive(Debug)]
struct Modules {
    dir: PathBuf,
    dep: Dependencies,
    aliases: Aliases,
    builtin: BTreeSet<String>,
}

impl Modules {
    fn open() -> Result<Self, String> {
        let uts = nix::sys::utsname::uname().map_err(|err| format!("uname: {err}"))?;
        let dir = Path::new("/lib/modules").join(uts.release());
        let dep_path = dir.join("modules.dep");
        let dep = fs::read_to_string(&dep_path)
            .map(|text| Dependencies::parse(&text))
            .map_err(|err| format!("read {}: {err}", dep_path.display()))?;
        let aliases =
            Aliases::parse(&fs::read_to_string(dir.join("modules.alias")).unwrap_or_default());
        let builtin =
            parse_builtin(&fs::read_to_string(dir.join("modules.builtin")).unwrap_or_default());
        Ok(Self {
            dir,
            dep,
            aliases,
            builtin,
        })
    }

    /// The modules `request` stands for: itself when it names a module, else the modules of
    /// every alias pattern it matches.
    fn resolve(&self, request: &str) -> Vec<String> {
        spec::modules::resolve(request, &self.dep, &self.builtin, &self.aliases)
    }

    /// Loads `name` (canonical) after its dependencies, skipping files in `loaded`; `params`
    /// go to `name` itself. A built-in module needs nothing.
    fn load(
        &self,
        name: &str,
        params: &str,
        loaded: &mut BTreeSet<String>,
    ) -> Result<(), LoadError> {
        if self.builtin.contains(name) {
            return Ok(());
        }
        let order = self
            .dep
            .load_order(name)
            .ok_or_else(|| LoadError::Missing {
                name: name.to_owned(),
                table: self.dir.join("modules.dep"),
            })?;
        for file in order {
            if loaded.contains(&file) {
                continue;
            }
            let params = if module_name(&file) == name {
                params
            } else {
                ""
            };
            let path = self.dir.join(&file);
            load(&path, params).map_err(|errno| match errno {
                Errno::ENOENT => LoadError::LeftOut {
                    name: name.to_owned(),
                },
                errno => LoadError::Kernel { path, errno },
            })?;
            loaded.insert(file);
        }
        Ok(())
    }
}

/// Why a module did not load.
#[derive(Debug, PartialEq, Eq)]
enum LoadError {
    /// The module is not in the image's modules.dep.
    Missing { name: String, table: PathBuf },
    /// The tables list the module but its file is not in the image: `kiln build` keeps only
    /// the modules an image's target machines and manifest need.
    LeftOut { name: String },
    /// The file could not be opened or the kernel refused it.
    Kernel { path: PathBuf, errno: Errno },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { name, table } => write!(f, "{name}: not in {}", table.display()),
            Self::LeftOut { name } => write!(
                f,
                "{name} was left out of this image (the manifest's `kernel: modules: [{name}]` keeps it)"
            ),
            Self::Kernel { path, errno } => write!(f, "load {}: {}", path.display(), errno.desc()),
        }
    }
}

fn load(path: &Path, params: &str) -> Result<(), Errno> {
    let file =
        File::open(path).map_err(|err| err.raw_os_error().map_or(Errno::EIO, Errno::from_raw))?;
    let params = CString::new(params).map_err(|_| Errno::EINVAL)?;
    let compressed = [".xz", ".zst", ".gz"]
        .iter()
        .any(|suffix| path.to_string_lossy().ends_with(suffix));
    let flags = if compressed {
        ModuleInitFlags::from_bits_retain(MODULE_INIT_COMPRESSED_FILE)
    } else {
        ModuleInitFlags::empty()
    };
    match finit_module(&file, &params, flags) {
        Ok(()) | Err(Errno::EEXIST) => Ok(()),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_request_is_recognised_exactly() {
        let args = |words: &[&str]| words.iter().map(|w| (*w).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            helper_request(&args(&["-q", "--", "rtnl-link-veth"])),
            Some("rtnl-link-veth")
        );
        assert_eq!(helper_request(&args(&[])), None);
        assert_eq!(helper_request(&args(&["-q", "--"])), None);
        assert_eq!(helper_request(&args(&["--", "veth"])), None);
    }

    #[test]
    fn aliases_resolve_to_modules_by_pattern() {
        let modules = Modules {
            dir: PathBuf::from("/lib/modules/6.1.0"),
            dep: Dependencies::parse(
                "kernel/drivers/net/veth.ko.xz:\nkernel/fs/overlayfs/overlay.ko.xz:\n\
                 kernel/drivers/virtio/virtio_mmio.ko.xz:\n",
            ),
            aliases: Aliases::parse(
                "# Aliases extracted from modules themselves.\n\
                 alias rtnl-link-veth veth\n\
                 alias fs-overlay overlay\n\
                 alias of:N*T*Cvirtio,mmio virtio_mmio\n\
                 alias acpi*:LNRO0005:* virtio_mmio\n",
            ),
            builtin: BTreeSet::from(["ext4".to_owned()]),
        };
        assert_eq!(modules.resolve("rtnl-link-veth"), ["veth"]);
        assert_eq!(modules.resolve("fs-overlay"), ["overlay"]);
        assert_eq!(modules.resolve("acpi:LNRO0005:"), ["virtio_mmio"]);
        assert_eq!(modules.resolve("veth"), ["veth"]);
        assert_eq!(modules.resolve("ext4"), ["ext4"]);
        assert!(modules.resolve("rtnl-link-wireguard").is_empty());
        let mut loaded = BTreeSet::new();
        assert_eq!(modules.load("ext4", "", &mut loaded), Ok(()), "built in");
        assert!(modules
            .load("nothere", "", &mut loaded)
            .is_err_and(|err| err
                .to_string()
                .contains("nothere: not in /lib/modules/6.1.0/modules.dep")));
    }

    #[test]
    fn a_module_listed_but_not_in_the_image_is_named_as_left_out() {
        let modules = Modules {
            dir: PathBuf::from("/nonexistent/kiln-test/modules"),
            dep: Dependencies::parse(
                "kernel/drivers/misc/pvpanic/pvpanic-mmio.ko: kernel/drivers/misc/pvpanic/pvpanic.ko\n\
                 kernel/drivers/misc/pvpanic/pvpanic.ko:\n",
            ),
            aliases: Aliases::parse("alias acpi*:QEMU0001:* pvpanic_mmio\n"),
            builtin: BTreeSet::new(),
        };
        let mut loaded = BTreeSet::new();
        let err = modules
            .load("pvpanic_mmio", "", &mut loaded)
            .expect_err("no file");
        assert_eq!(
            err,
            LoadError::LeftOut {
                name: "pvpanic_mmio".to_owned()
            },
            "named by the module asked for, though its dependency is the first file missing"
        );
        assert!(err
            .to_string()
            .starts_with("pvpanic_mmio was left out of this image"));
        assert!(loaded.is_empty());
    }

    #[test]
    fn coldplug_handles_each_modalias_once_and_names_a_missing_module() {
        let modules = Modules {
            dir: PathBuf::from("/lib/modules/6.1.0"),
            dep: Dependencies::default(),
            aliases: Aliases::parse(
                "alias virtio:d00000001v* virtio_net\nalias acpi*:PNP0501:* serial_builtin\n",
            ),
            builtin: BTreeSet::from(["serial_builtin".to_owned()]),
        };
        let mut coldplug = Coldplug::default();
        let found = BTreeSet::from([
            "acpi:PNP0501:".to_owned(),
            "virtio:d00000001v554D4551".to_owned(),
            "platform:nothing".to_owned(),
        ]);
        assert!(coldplug.round(&modules, found.clone()));
        assert!(coldplug.loaded.is_empty());
        assert!(coldplug.done.contains("serial_builtin"));
        assert!(coldplug.done.contains("virtio_net"), "missing: tried once");
        assert!(!coldplug.round(&modules, found), "nothing new");
    }
}
