//! Kernel modules listed in /etc/modules, loaded with their dependencies from the running
//! kernel's modules.dep through finit_module(2), so an image needs no modprobe; and the
//! modules the kernel asks for later (a veth link, a file system): init registers itself as
//! the kernel's module helper, which runs `/init -q -- NAME`, a name or an alias resolved
//! through modules.alias. Compressed modules (.ko.xz, .ko.zst, .ko.gz) are handed to the
//! kernel to decompress.
//! Runs in: PID 1 as the system's init, after the mounts, each failure one logged line; and
//! `/init` started by the kernel as its module helper, which loads and exits.
//! Mirrors modprobe(8)'s reading of modules.dep (a module's dependencies are listed after it,
//! the last to be loaded first) and /etc/modules (one name per line, optional parameters).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::kmod::{finit_module, ModuleInitFlags};

use crate::say;

/// finit_module's flag for a file the kernel must decompress (linux/module.h).
const MODULE_INIT_COMPRESSED_FILE: u32 = 4;

/// The kernel's module helper path (what it runs to load a module it needs).
const MODPROBE_SETTING: &str = "/proc/sys/kernel/modprobe";
/// Where a real modprobe would be; an image that has one keeps it as the kernel's helper.
const SYSTEM_MODPROBE: &str = "/sbin/modprobe";

/// Loads every module /etc/modules names.
pub fn load_listed() {
    let Ok(listed) = fs::read_to_string("/etc/modules") else {
        return;
    };
    let requests = requests(&listed);
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
            result = Err(err);
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
    aliases: Vec<(String, String)>,
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
            parse_aliases(&fs::read_to_string(dir.join("modules.alias")).unwrap_or_default());
        let builtin = fs::read_to_string(dir.join("modules.builtin")).unwrap_or_default();
        let builtin = builtin.lines().map(module_name).collect();
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
        let name = canonical(request);
        if self.dep.by_name.contains_key(&name) || self.builtin.contains(&name) {
            return vec![name];
        }
        let mut names: Vec<String> = Vec::new();
        for (pattern, module) in &self.aliases {
            let module = canonical(module);
            if !names.contains(&module)
                && glob::Pattern::new(pattern).is_ok_and(|p| p.matches(request))
            {
                names.push(module);
            }
        }
        names
    }

    /// Loads `name` (canonical) after its dependencies, skipping files in `loaded`; `params`
    /// go to `name` itself. A built-in module needs nothing.
    fn load(&self, name: &str, params: &str, loaded: &mut BTreeSet<String>) -> Result<(), String> {
        if self.builtin.contains(name) {
            return Ok(());
        }
        let order = self
            .dep
            .load_order(name)
            .ok_or_else(|| format!("{name}: not in {}", self.dir.join("modules.dep").display()))?;
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
            load(&path, params).map_err(|err| format!("load {}: {err}", path.display()))?;
            loaded.insert(file);
        }
        Ok(())
    }
}

/// modules.alias: `alias PATTERN MODULE` lines.
fn parse_aliases(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "alias").then_some(())?;
            Some((words.next()?.to_owned(), words.next()?.to_owned()))
        })
        .collect()
}

fn load(path: &Path, params: &str) -> Result<(), String> {
    let file = File::open(path).map_err(|err| err.to_string())?;
    let params = CString::new(params).map_err(|err| err.to_string())?;
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
        Err(err) => Err(err.to_string()),
    }
}

/// `(name, parameters)` for each line of /etc/modules; `#` starts a comment.
fn requests(listed: &str) -> Vec<(String, String)> {
    listed
        .lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|line| !line.is_empty())
        .map(|line| match line.split_once(char::is_whitespace) {
            Some((name, params)) => (name.to_owned(), params.trim().to_owned()),
            None => (line.to_owned(), String::new()),
        })
        .collect()
}

/// Module names compare with `-` and `_` alike.
fn canonical(name: &str) -> String {
    name.replace('-', "_")
}

/// `kernel/drivers/net/veth.ko.xz` -> `veth`.
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    canonical(stem)
}

/// modules.dep: each module's file and its dependencies' files.
#[derive(Debug, Default)]
struct Dependencies {
    by_name: BTreeMap<String, (String, Vec<String>)>,
}

impl Dependencies {
    fn parse(text: &str) -> Self {
        let by_name = text
            .lines()
            .filter_map(|line| {
                let (file, deps) = line.split_once(':')?;
                let deps = deps.split_whitespace().map(str::to_owned).collect();
                Some((module_name(file), (file.to_owned(), deps)))
            })
            .collect();
        Self { by_name }
    }

    /// The files to load for `name`, dependencies first.
    fn load_order(&self, name: &str) -> Option<Vec<String>> {
        let (file, deps) = self.by_name.get(name)?;
        let mut order: Vec<String> = deps.iter().rev().cloned().collect();
        order.push(file.clone());
        Some(order)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etc_modules_lines_give_names_and_parameters() {
        let listed = "# modules\nveth\n\nloop max_loop=8  # more loops\n  9p \n";
        assert_eq!(
            requests(listed),
            [
                ("veth".to_owned(), String::new()),
                ("loop".to_owned(), "max_loop=8".to_owned()),
                ("9p".to_owned(), String::new()),
            ]
        );
    }

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
            aliases: parse_aliases(
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
            .is_err_and(|err| err.contains("not in /lib/modules/6.1.0/modules.dep")));
    }

    #[test]
    fn dependencies_load_first_last_listed_first() {
        let dep = Dependencies::parse(
            "kernel/net/bridge/bridge.ko.xz: kernel/net/802/stp.ko.xz kernel/net/llc/llc.ko.xz\n\
             kernel/net/802/stp.ko.xz: kernel/net/llc/llc.ko.xz\n\
             kernel/net/llc/llc.ko.xz:\n\
             kernel/drivers/block/virtio_blk.ko:\n",
        );
        assert_eq!(
            dep.load_order("bridge").unwrap(),
            [
                "kernel/net/llc/llc.ko.xz",
                "kernel/net/802/stp.ko.xz",
                "kernel/net/bridge/bridge.ko.xz"
            ]
        );
        assert_eq!(
            dep.load_order(&canonical("virtio-blk")).unwrap(),
            ["kernel/drivers/block/virtio_blk.ko"]
        );
        assert!(dep.load_order("nothere").is_none());
    }
}
