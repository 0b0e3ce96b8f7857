//! The kernel's module tables as depmod writes them in /lib/modules/RELEASE: modules.dep (each
//! module's file and the files it needs), modules.alias (patterns a device's modalias or a
//! kernel request is matched against) and modules.builtin, and the matching itself, with
//! fnmatch(3)'s glob rules as kmod applies them (`*`, `?`, `[...]`, `[!...]`).
//! Runs in: init (loading the modules for the devices present and for the kernel's requests)
//! and kiln (the modules an image can use). Reads only the text it is given.

use std::collections::{BTreeMap, BTreeSet};

/// Module names compare with `-` and `_` alike; the canonical form has `_`.
pub fn canonical(name: &str) -> String {
    name.replace('-', "_")
}

/// A module file's name: `kernel/drivers/net/veth.ko.xz` -> `veth`.
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    canonical(stem)
}

/// modules.dep: each module's file and its dependencies' files, by canonical name.
#[derive(Debug, Default, Clone)]
pub struct Dependencies {
    by_name: BTreeMap<String, (String, Vec<String>)>,
}

impl Dependencies {
    pub fn parse(text: &str) -> Self {
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

    /// Whether `name` (canonical) is a module in the table.
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Every module's canonical name, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// The files to load for `name` (canonical), dependencies first: modules.dep lists a
    /// module's dependencies with the last to be loaded first, as modprobe reads it.
    pub fn load_order(&self, name: &str) -> Option<Vec<String>> {
        let (file, deps) = self.by_name.get(name)?;
        let mut order: Vec<String> = deps.iter().rev().cloned().collect();
        order.push(file.clone());
        Some(order)
    }
}

/// The modules `request` stands for, as modprobe reads a name: itself when it names a module
/// of `dep` or `builtin`, else the modules of every alias pattern it matches.
pub fn resolve(
    request: &str,
    dep: &Dependencies,
    builtin: &BTreeSet<String>,
    aliases: &Aliases,
) -> Vec<String> {
    let name = canonical(request);
    if dep.contains(&name) || builtin.contains(&name) {
        return vec![name];
    }
    aliases.modules_for(request)
}

/// modules.builtin: the modules compiled into the kernel, by canonical name.
pub fn parse_builtin(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(module_name)
        .collect()
}

/// modules.softdep: for each module (canonical name), the modules or aliases modprobe loads
/// with it (`softdep ext4 pre: crc32c`; the words after `pre:` and `post:` alike, and those
/// of lines that name neither).
pub fn parse_softdeps(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut softdeps: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("softdep") {
            continue;
        }
        let Some(module) = words.next() else {
            continue;
        };
        softdeps
            .entry(canonical(module))
            .or_default()
            .extend(words.filter(|w| !w.ends_with(':')).map(str::to_owned));
    }
    softdeps
}

/// `(name, parameters)` for each line of /etc/modules, as modprobe's `modules-load` reads
/// it: one module per line, parameters after it, `#` starting a comment.
pub fn parse_listed(listed: &str) -> Vec<(String, String)> {
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

/// One `alias PATTERN MODULE` line.
#[derive(Debug, Clone)]
struct Alias {
    /// The pattern's text up to its first wildcard: a request that does not start with it
    /// cannot match, so most patterns are never compiled.
    literal: String,
    pattern: String,
    module: String,
}

/// modules.alias.
#[derive(Debug, Default, Clone)]
pub struct Aliases {
    entries: Vec<Alias>,
}

impl Aliases {
    /// Reads `alias PATTERN MODULE` lines; comments and other lines are skipped.
    pub fn parse(text: &str) -> Self {
        let entries = text
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                (words.next()? == "alias").then_some(())?;
                let pattern = words.next()?.to_owned();
                let module = canonical(words.next()?);
                let literal = pattern
                    .split(['*', '?', '['])
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                Some(Alias {
                    literal,
                    pattern,
                    module,
                })
            })
            .collect();
        Self { entries }
    }

    /// The modules (canonical names, in the table's order, each once) whose patterns match
    /// `modalias`: a device's (`virtio:d00000001v00001AF4`) or a kernel request's
    /// (`rtnl-link-veth`, `fs-overlay`).
    pub fn modules_for(&self, modalias: &str) -> Vec<String> {
        let mut modules: Vec<String> = Vec::new();
        for alias in &self.entries {
            if modalias.starts_with(&alias.literal)
                && !modules.contains(&alias.module)
                && fnmatch(&alias.pattern, modalias)
            {
                modules.push(alias.module.clone());
            }
        }
        modules
    }
}

/// Why `pattern` cannot name modules (a name, an alias or a glob of either), if it cannot.
pub fn pattern_problem(pattern: &str) -> Option<String> {
    if pattern.is_empty() {
        return Some("is empty".to_owned());
    }
    if let Some(c) = pattern
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || *c == '/')
    {
        return Some(format!(
            "`{pattern}` holds {c:?}: a module name or glob has none"
        ));
    }
    glob::Pattern::new(pattern)
        .err()
        .map(|err| format!("`{pattern}` is not a glob: {err}"))
}

/// fnmatch(3) without flags, as kmod matches aliases: `*` any run of characters (`/`
/// included), `?` one character, `[...]` a class with ranges and `!` or `^` negation. A
/// pattern the glob rules reject matches nothing.
pub fn fnmatch(pattern: &str, text: &str) -> bool {
    glob::Pattern::new(pattern).is_ok_and(|pattern| pattern.matches(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_modaliases_match_with_the_glob_rules() {
        let aliases = Aliases::parse(
            "# Aliases extracted from modules themselves.\n\
             alias of:N*T*Cvirtio,mmio virtio_mmio\n\
             alias acpi*:LNRO0005:* virtio_mmio\n\
             alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci\n\
             alias virtio:d00000001v* virtio_net\n\
             alias virtio:d00000002v* virtio_blk\n\
             alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000\n\
             alias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e\n\
             alias usb:v*p*d*dc*dsc*dp*ic03isc01ip0[12]in* usbhid\n\
             alias hid:b0003g*v0000046Dp0000C52[!B] hid_logitech\n\
             alias rtnl-link-veth veth\n\
             alias fs-overlay overlay\n\
             alias net-pf-10 ipv6\n\
             alias symbol:whatever notamodalias\n",
        );
        assert_eq!(aliases.modules_for("acpi:LNRO0005:"), ["virtio_mmio"]);
        assert_eq!(
            aliases.modules_for("virtio:d00000001v554D4551"),
            ["virtio_net"]
        );
        assert_eq!(
            aliases.modules_for("virtio:d00000002v554D4551"),
            ["virtio_blk"]
        );
        assert!(aliases.modules_for("virtio:d00000004v554D4551").is_empty());
        assert_eq!(
            aliases.modules_for("pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00"),
            ["virtio_pci"]
        );
        assert_eq!(
            aliases.modules_for("pci:v00008086d0000100Esv00008086sd0000001Ebc02sc00i00"),
            ["e1000"]
        );
        // Classes: ip01 and ip02 match [12], ip03 does not.
        let usb = |ip: &str| format!("usb:v046Dp0001d0100dc00dsc00dp00ic03isc01ip{ip}in00");
        assert_eq!(aliases.modules_for(&usb("01")), ["usbhid"]);
        assert_eq!(aliases.modules_for(&usb("02")), ["usbhid"]);
        assert!(aliases.modules_for(&usb("03")).is_empty());
        // Negated class.
        assert_eq!(
            aliases.modules_for("hid:b0003g0001v0000046Dp0000C52A"),
            ["hid_logitech"]
        );
        assert!(aliases
            .modules_for("hid:b0003g0001v0000046Dp0000C52B")
            .is_empty());
        // `*` spans `,` and `/`; the whole text must match.
        assert_eq!(
            aliases.modules_for("of:NvirtioT(null)Cvirtio,mmio"),
            ["virtio_mmio"]
        );
        assert!(aliases
            .modules_for("of:NvirtioT(null)Cvirtio,mmioC1")
            .is_empty());
        assert_eq!(aliases.modules_for("rtnl-link-veth"), ["veth"]);
        assert_eq!(aliases.modules_for("net-pf-10"), ["ipv6"]);
        assert!(aliases.modules_for("net-pf-1").is_empty());
    }

    #[test]
    fn a_module_is_named_once_however_many_patterns_match() {
        let aliases = Aliases::parse(
            "alias of:N*T*Cvirtio,mmioC* virtio-mmio\nalias of:N*T*Cvirtio,mmio* virtio_mmio\n",
        );
        assert_eq!(
            aliases.modules_for("of:NxT(null)Cvirtio,mmioC1"),
            ["virtio_mmio"]
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
        assert!(dep.contains("llc"));
        assert!(dep.load_order("nothere").is_none());
    }

    #[test]
    fn softdeps_and_listed_modules_are_read() {
        let softdeps = parse_softdeps(
            "# Soft dependencies extracted from modules themselves.\n\
             softdep btrfs pre: blake2b-256 sha256\n\
             softdep btrfs pre: crypto-crc32c\n\
             softdep cifs gcm\n\
             softdep virtio-net post: failover\n",
        );
        assert_eq!(
            softdeps["btrfs"],
            ["blake2b-256", "sha256", "crypto-crc32c"]
        );
        assert_eq!(softdeps["cifs"], ["gcm"]);
        assert_eq!(softdeps["virtio_net"], ["failover"]);
        let listed = "# modules\nveth\n\nloop max_loop=8  # more loops\n  9p \n";
        assert_eq!(
            parse_listed(listed),
            [
                ("veth".to_owned(), String::new()),
                ("loop".to_owned(), "max_loop=8".to_owned()),
                ("9p".to_owned(), String::new()),
            ]
        );
    }

    #[test]
    fn module_patterns_are_names_or_globs() {
        for good in ["veth", "nft_*", "fs-nfs4", "pvpanic?mmio", "xt_[a-z]*"] {
            assert_eq!(pattern_problem(good), None, "{good}");
        }
        assert_eq!(pattern_problem("").as_deref(), Some("is empty"));
        assert!(pattern_problem("a b").is_some_and(|p| p.contains("' '")));
        assert!(pattern_problem("kernel/veth.ko").is_some());
        assert!(pattern_problem("nft_[a").is_some_and(|p| p.contains("not a glob")));
    }

    #[test]
    fn builtin_names_are_canonical() {
        let builtin =
            parse_builtin("kernel/fs/ext4/ext4.ko\nkernel/drivers/char/virtio-console.ko\n\n");
        assert!(builtin.contains("ext4"));
        assert!(builtin.contains("virtio_console"));
        assert_eq!(builtin.len(), 2);
    }
}
