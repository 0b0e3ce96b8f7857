//! Kernel modules listed in /etc/modules, loaded with their dependencies from the running
//! kernel's modules.dep through finit_module(2), so an image needs no modprobe. Compressed
//! modules (.ko.xz, .ko.zst, .ko.gz) are handed to the kernel to decompress.
//! Runs in: PID 1 as the system's init, after the mounts; each failure is one logged line.
//! Mirrors modprobe(8)'s reading of modules.dep (a module's dependencies are listed after it,
//! the last to be loaded first) and /etc/modules (one name per line, optional parameters).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fs::{self, File};
use std::path::Path;

use nix::errno::Errno;
use nix::kmod::{finit_module, ModuleInitFlags};

use crate::say;

/// finit_module's flag for a file the kernel must decompress (linux/module.h).
const MODULE_INIT_COMPRESSED_FILE: u32 = 4;

/// Loads every module /etc/modules names.
pub fn load_listed() {
    let Ok(listed) = fs::read_to_string("/etc/modules") else {
        return;
    };
    let requests = requests(&listed);
    if requests.is_empty() {
        return;
    }
    let release = match nix::sys::utsname::uname() {
        Ok(uts) => uts.release().to_string_lossy().into_owned(),
        Err(err) => {
            say!("modules: uname: {err}");
            return;
        }
    };
    let dir = Path::new("/lib/modules").join(release);
    let dep = match fs::read_to_string(dir.join("modules.dep")) {
        Ok(dep) => Dependencies::parse(&dep),
        Err(err) => {
            say!("modules: read {}: {err}", dir.join("modules.dep").display());
            return;
        }
    };
    let builtin = fs::read_to_string(dir.join("modules.builtin")).unwrap_or_default();
    let builtin: BTreeSet<String> = builtin.lines().map(module_name).collect();
    let mut loaded = BTreeSet::new();
    for (name, params) in requests {
        let name = canonical(&name);
        if builtin.contains(&name) {
            continue;
        }
        let Some(order) = dep.load_order(&name) else {
            say!(
                "modules: {name}: not in {}",
                dir.join("modules.dep").display()
            );
            continue;
        };
        for file in order {
            if loaded.contains(&file) {
                continue;
            }
            let is_target = module_name(&file) == name;
            let params = if is_target { params.as_str() } else { "" };
            match load(&dir.join(&file), params) {
                Ok(()) => {
                    loaded.insert(file);
                }
                Err(err) => {
                    say!("modules: load {}: {err}", dir.join(&file).display());
                    break;
                }
            }
        }
    }
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
