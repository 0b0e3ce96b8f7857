//! The kernel modules an image keeps. A kernel package carries every module its kernel was
//! built with (1,121 files, 91 MiB for Debian's cloud kernel); an image keeps those it can
//! use: the drivers for the devices of the machines it targets (found as udev finds them,
//! each device's modalias matched against the kernel's modules.alias: virtio on qemu and
//! Firecracker, and the NICs and disks of the common clouds and hypervisors), the modules
//! /etc/modules lists, those the kernel will ask for on behalf of the manifest (the
//! filesystem of every mount, the link type of every interface), and what the manifest's
//! `kernel: modules:` names or matches; each with what modules.dep and modules.softdep say
//! it needs. The tables themselves stay whole, so init can name a module that was left out
//! when a device asks for it.
//! Runs in: `kiln build` on the build host, once the image's tree is assembled. Reads the
//! tables depmod wrote in `lib/modules/RELEASE/` and removes the other module files.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use spec::modules::{
    canonical, fnmatch, module_name, parse_builtin, parse_listed, parse_softdeps, Aliases,
    Dependencies,
};

use crate::build::container::Configs;
use crate::tree::{Kind, Tree};

/// Where the kernel's modules are, one directory per kernel release.
const MODULES: &str = "lib/modules";
/// The modules an image's init loads at boot, one per line.
const ETC_MODULES: &str = "etc/modules";
/// Where a container's filesystem tools (`mkfs.TYPE`, `fsck.TYPE`) are found.
const TOOL_DIRS: [&str; 4] = ["sbin", "usr/sbin", "bin", "usr/bin"];
/// The modules init itself may load whatever the manifest says: softdog, for the machine
/// watchdog that `kiln.watchdog=` (which may come at run time) asks for.
const INIT_MODULES: [&str; 1] = ["softdog"];
/// Mount types that need no filesystem of their own.
const NOT_FILESYSTEMS: [&str; 3] = ["bind", "rbind", "none"];

/// A device of a machine an image is meant to boot on, as the kernel announces it: the
/// modalias udev and init match against modules.alias.
#[derive(Debug, Clone, Copy)]
pub struct Device {
    pub what: &'static str,
    pub modalias: &'static str,
}

const fn device(what: &'static str, modalias: &'static str) -> Device {
    Device { what, modalias }
}

/// The devices of the machines Kiln images boot on: qemu (microvm, pc and q35) and
/// Firecracker, and the clouds' and hypervisors' NICs and disks.
pub const TARGET_DEVICES: &[Device] = &[
    device(
        "virtio-mmio transport (microvm, Firecracker)",
        "acpi:LNRO0005:",
    ),
    device(
        "virtio-mmio transport, device tree",
        "of:NvirtioT(null)Cvirtio,mmio",
    ),
    device(
        "virtio PCI transport",
        "pci:v00001AF4d00001041sv00001AF4sd00001100bc02sc00i00",
    ),
    device("virtio network", "virtio:d00000001v00001AF4"),
    device("virtio block", "virtio:d00000002v00001AF4"),
    device("virtio console", "virtio:d00000003v00001AF4"),
    device("virtio entropy", "virtio:d00000004v00001AF4"),
    device("virtio balloon", "virtio:d00000005v00001AF4"),
    device("virtio SCSI", "virtio:d00000008v00001AF4"),
    device("virtio 9p", "virtio:d00000009v00001AF4"),
    device("virtio vsock", "virtio:d00000013v00001AF4"),
    device("virtio filesystem", "virtio:d0000001Av00001AF4"),
    device("SCSI disk", "scsi:t-0x00"),
    device("SCSI CD-ROM", "scsi:t-0x05"),
    device("ACPI power button", "acpi:LNXPWRBN:"),
    device("ACPI power button, PNP", "acpi:PNP0C0C:"),
    device(
        "input events",
        "input:b0019v0000p0001e0000-e0,1,k74,ramlsfw",
    ),
    device("qemu firmware configuration", "acpi:QEMU0002:"),
    device(
        "PIIX IDE (qemu pc)",
        "pci:v00008086d00007010sv00001AF4sd00001100bc01sc01i80",
    ),
    device(
        "ICH9 AHCI (qemu q35)",
        "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01",
    ),
    device(
        "NVMe",
        "pci:v00008086d00005845sv00001AF4sd00001100bc01sc08i02",
    ),
    device(
        "Intel e1000",
        "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00",
    ),
    device(
        "Intel e1000e",
        "pci:v00008086d000010D3sv00001AF4sd00001100bc02sc00i00",
    ),
    device(
        "Amazon ENA",
        "pci:v00001D0Fd0000EC20sv00001D0Fsd00000000bc02sc00i00",
    ),
    device(
        "Google gVNIC",
        "pci:v00001AE0d00000042sv00001AE0sd00000058bc02sc00i00",
    ),
    device("Hyper-V VMBus", "acpi:VMBUS:"),
    device("Hyper-V network", "vmbus:635161f83edfc546913ff2d2f965ed0e"),
    device("Hyper-V storage", "vmbus:d96361baa104294db60572e2ffb1dc7f"),
    device("Hyper-V IDE", "vmbus:32264132cb86a2449b5c50d1417354f5"),
    device("Hyper-V shutdown", "vmbus:31600b0e13523449818b38d90ced39db"),
    device(
        "VMware vmxnet3",
        "pci:v000015ADd000007B0sv000015ADsd000007B0bc02sc00i00",
    ),
    device(
        "VMware PVSCSI",
        "pci:v000015ADd000007C0sv000015ADsd000007C0bc01sc07i00",
    ),
    device("Xen network", "xen:vif"),
    device("Xen block", "xen:vbd"),
];

/// The kernel requests a manifest's containers will make: `fs-TYPE` for the filesystem of
/// each mount and for each filesystem a container has the tools to make or check (pkg/format
/// and pkg/mount: it will mount those), `rtnl-link-TYPE` for each interface created; gathered
/// while the bundles are assembled.
#[derive(Debug, Clone, Default)]
pub struct Needs {
    requests: BTreeSet<String>,
}

impl Needs {
    /// Records what `configs` mount and create.
    pub fn record(&mut self, configs: &Configs) {
        let oci = configs
            .spec
            .mounts()
            .iter()
            .flatten()
            .filter_map(|mount| mount.typ().clone());
        let host = configs
            .runtime
            .mounts
            .iter()
            .map(|mount| mount.kind.clone());
        for kind in oci.chain(host) {
            self.filesystem(&kind);
        }
        for interface in &configs.runtime.interfaces {
            if !interface.add.is_empty() {
                self.requests.insert(format!("rtnl-link-{}", interface.add));
            }
        }
    }

    /// Records the filesystems a container's files (`rootfs`) have a `mkfs.TYPE` or
    /// `fsck.TYPE` for (busybox's applets, links to busybox, do not count), and those its
    /// /etc/filesystems names (the types `mount` tries: pkg/metadata mounts iso9660).
    /// Errs when /etc/filesystems cannot be read.
    pub fn programs(&mut self, rootfs: &Tree) -> Result<(), String> {
        for line in text(rootfs, "etc/filesystems")?.lines() {
            // `nodev proc` lines name filesystems without a device; `*` ends the list.
            let kind = line.split_whitespace().last().unwrap_or_default();
            if kind == "*" {
                break;
            }
            if !line.trim_start().starts_with('#') {
                self.filesystem(kind);
            }
        }
        for dir in TOOL_DIRS {
            for (key, node) in rootfs.below(dir) {
                let Some(name) = key
                    .strip_prefix(dir)
                    .and_then(|rest| rest.strip_prefix('/'))
                else {
                    continue;
                };
                let applet =
                    matches!(&node.kind, Kind::Symlink(target) if target.ends_with("busybox"));
                if name.contains('/') || applet {
                    continue;
                }
                if let Some(kind) = name
                    .strip_prefix("mkfs.")
                    .or_else(|| name.strip_prefix("fsck."))
                {
                    self.filesystem(kind);
                }
            }
        }
        Ok(())
    }

    /// Records a mount of type `kind`.
    pub fn filesystem(&mut self, kind: &str) {
        if !kind.is_empty() && !NOT_FILESYSTEMS.contains(&kind) {
            self.requests.insert(format!("fs-{kind}"));
        }
    }
}

/// A kernel's module tables, as depmod wrote them.
#[derive(Debug, Clone, Default)]
pub struct Tables {
    pub dep: Dependencies,
    pub aliases: Aliases,
    pub builtin: BTreeSet<String>,
    pub softdeps: BTreeMap<String, Vec<String>>,
}

impl Tables {
    pub fn parse(dep: &str, alias: &str, builtin: &str, softdep: &str) -> Self {
        Self {
            dep: Dependencies::parse(dep),
            aliases: Aliases::parse(alias),
            builtin: parse_builtin(builtin),
            softdeps: parse_softdeps(softdep),
        }
    }

    /// The modules `request` stands for, as modprobe reads it: itself when it names a
    /// module, else the modules of every alias pattern it matches.
    fn resolve(&self, request: &str) -> Vec<String> {
        spec::modules::resolve(request, &self.dep, &self.builtin, &self.aliases)
    }

    /// The modules a `kernel: modules:` entry keeps: every module whose name the glob
    /// matches, else what it resolves to as a name or alias; None when it names nothing
    /// this kernel has, built in or not.
    fn matching(&self, pattern: &str) -> Option<Vec<String>> {
        let glob = canonical(pattern);
        let named: Vec<String> = self
            .dep
            .names()
            .chain(self.builtin.iter().map(String::as_str))
            .filter(|name| fnmatch(&glob, name))
            .map(str::to_owned)
            .collect();
        let found = if named.is_empty() {
            self.resolve(pattern)
        } else {
            named
        };
        (!found.is_empty()).then_some(found)
    }

    /// The modules to keep for `devices` (modaliases), `named` (names or aliases, each
    /// kept when the kernel has it) and `patterns` (`kernel: modules:`, each of which must
    /// match), with everything they need; built-in modules are not in it. Errs with the
    /// patterns that match nothing.
    pub fn select(
        &self,
        devices: &[&str],
        named: &[String],
        patterns: &[String],
    ) -> Result<BTreeSet<String>, Vec<String>> {
        let mut roots: Vec<String> = devices
            .iter()
            .flat_map(|modalias| self.aliases.modules_for(modalias))
            .chain(named.iter().flat_map(|request| self.resolve(request)))
            .collect();
        let mut unmatched = Vec::new();
        for pattern in patterns {
            match self.matching(pattern) {
                Some(found) => roots.extend(found),
                None => unmatched.push(pattern.clone()),
            }
        }
        if !unmatched.is_empty() {
            return Err(unmatched);
        }
        Ok(self.closure(roots))
    }

    /// `roots` with every module they depend on, hard (modules.dep) or soft
    /// (modules.softdep, resolved as names or aliases); only modules with a file.
    fn closure(&self, roots: Vec<String>) -> BTreeSet<String> {
        let mut kept = BTreeSet::new();
        let mut todo = roots;
        while let Some(name) = todo.pop() {
            let Some(files) = self.dep.load_order(&name) else {
                continue;
            };
            if !kept.insert(name.clone()) {
                continue;
            }
            todo.extend(files.iter().map(|file| module_name(file)));
            for soft in self.softdeps.get(&name).into_iter().flatten() {
                todo.extend(self.resolve(soft));
            }
        }
        kept
    }

    /// The files (paths relative to the release's directory) of `names`.
    pub fn files(&self, names: &BTreeSet<String>) -> BTreeSet<String> {
        names
            .iter()
            .filter_map(|name| self.dep.load_order(name))
            .flatten()
            .collect()
    }
}

/// What one kernel release kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub release: String,
    pub modules: usize,
    pub bytes: u64,
    pub all_modules: usize,
    pub all_bytes: u64,
}

impl fmt::Display for Kept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
        write!(
            f,
            "kernel {}: kept {} of {} modules ({:.1} of {:.1} MiB)",
            self.release,
            self.modules,
            self.all_modules,
            mib(self.bytes),
            mib(self.all_bytes)
        )
    }
}

/// Removes from `rootfs` the module files of every kernel release under lib/modules that
/// neither [`TARGET_DEVICES`], /etc/modules, `needs` nor `patterns` call for, with the
/// directories that leaves empty. Errs naming the patterns that match no module of a
/// release.
pub fn prune(rootfs: &mut Tree, needs: &Needs, patterns: &[String]) -> Result<Vec<Kept>, String> {
    let named: Vec<String> = parse_listed(&text(rootfs, ETC_MODULES)?)
        .into_iter()
        .map(|(name, _)| name)
        .chain(needs.requests.clone())
        .chain(INIT_MODULES.map(str::to_owned))
        .collect();
    let devices: Vec<&str> = TARGET_DEVICES.iter().map(|d| d.modalias).collect();
    let releases: Vec<String> = rootfs
        .below(MODULES)
        .filter_map(|(key, _)| key.strip_prefix(&format!("{MODULES}/")))
        .filter_map(|rest| rest.strip_suffix("/modules.dep"))
        .filter(|release| !release.contains('/'))
        .map(str::to_owned)
        .collect();
    let mut kept = Vec::new();
    for release in releases {
        let table = |name: &str| text(rootfs, &format!("{MODULES}/{release}/{name}"));
        let tables = Tables::parse(
            &table("modules.dep")?,
            &table("modules.alias")?,
            &table("modules.builtin")?,
            &table("modules.softdep")?,
        );
        let names = tables
            .select(&devices, &named, patterns)
            .map_err(|unmatched| {
                let quoted: Vec<String> = unmatched.iter().map(|p| format!("`{p}`")).collect();
                format!(
                    "kernel: modules: {} matches no module of kernel {release}",
                    quoted.join(", ")
                )
            })?;
        let files = tables.files(&names);
        kept.push(remove_others(rootfs, &release, &files));
    }
    Ok(kept)
}

/// The text of the file at `key` in `rootfs`; empty when there is none.
fn text(rootfs: &Tree, key: &str) -> Result<String, String> {
    match rootfs.get(key).map(|node| &node.kind) {
        Some(Kind::File { data, .. }) => data
            .to_vec()
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .map_err(|err| format!("cannot read /{key}: {err}")),
        _ => Ok(String::new()),
    }
}

/// Whether `key`'s file name is a kernel module's (`.ko`, or `.ko` compressed).
fn is_module(key: &str) -> bool {
    let name = key.rsplit('/').next().unwrap_or(key);
    [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .any(|suffix| name.ends_with(suffix))
}

/// Removes the module files of `release` not in `files`, then the directories left empty.
fn remove_others(rootfs: &mut Tree, release: &str, files: &BTreeSet<String>) -> Kept {
    let dir = format!("{MODULES}/{release}");
    let mut kept = Kept {
        release: release.to_owned(),
        modules: 0,
        bytes: 0,
        all_modules: 0,
        all_bytes: 0,
    };
    let mut drop = Vec::new();
    let mut dirs = Vec::new();
    for (key, node) in rootfs.below(&dir) {
        let relative = &key[dir.len() + 1..];
        match &node.kind {
            Kind::File { data, .. } if is_module(key) => {
                kept.all_modules += 1;
                kept.all_bytes += data.len();
                if files.contains(relative) {
                    kept.modules += 1;
                    kept.bytes += data.len();
                } else {
                    drop.push(key.to_owned());
                }
            }
            Kind::Dir => dirs.push(key.to_owned()),
            _ => {}
        }
    }
    for key in &drop {
        rootfs.remove(key);
    }
    // Deepest first, so a directory holding only empty ones goes too.
    dirs.sort_by_key(|key| std::cmp::Reverse(key.len()));
    for key in dirs {
        if rootfs.below(&key).next().is_none() {
            rootfs.remove(&key);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Node;

    const DEP: &str = "kernel/drivers/virtio/virtio_mmio.ko:\n\
        kernel/drivers/net/virtio_net.ko: kernel/net/core/failover.ko kernel/drivers/net/net_failover.ko\n\
        kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n\
        kernel/net/core/failover.ko:\n\
        kernel/drivers/net/veth.ko:\n\
        kernel/fs/overlayfs/overlay.ko:\n\
        kernel/fs/btrfs/btrfs.ko: kernel/lib/raid6/raid6_pq.ko kernel/crypto/xor.ko\n\
        kernel/lib/raid6/raid6_pq.ko:\n\
        kernel/crypto/xor.ko:\n\
        kernel/crypto/crc32c_generic.ko:\n\
        kernel/crypto/blake2b_generic.ko:\n\
        kernel/net/netfilter/nf_tables.ko: kernel/net/netfilter/nfnetlink.ko\n\
        kernel/net/netfilter/nft_ct.ko: kernel/net/netfilter/nf_tables.ko kernel/net/netfilter/nfnetlink.ko\n\
        kernel/net/netfilter/nfnetlink.ko:\n\
        kernel/drivers/misc/pvpanic/pvpanic-mmio.ko:\n\
        kernel/drivers/gpu/drm/drm.ko:\n";
    const ALIAS: &str = "alias acpi*:LNRO0005:* virtio_mmio\n\
        alias virtio:d00000001v* virtio_net\n\
        alias rtnl-link-veth veth\n\
        alias fs-overlay overlay\n\
        alias fs-btrfs btrfs\n\
        alias crypto-crc32c crc32c_generic\n\
        alias crc32c crc32c_generic\n\
        alias blake2b-256 blake2b_generic\n\
        alias acpi*:QEMU0001:* pvpanic_mmio\n\
        alias pci:v*d*sv*sd*bc03sc*i* drm\n";
    const SOFTDEP: &str = "softdep btrfs pre: blake2b-256 crypto-crc32c\n";

    fn tables() -> Tables {
        Tables::parse(DEP, ALIAS, "kernel/fs/ext4/ext4.ko\n", SOFTDEP)
    }

    fn names(set: &BTreeSet<String>) -> Vec<&str> {
        set.iter().map(String::as_str).collect()
    }

    #[test]
    fn devices_are_matched_by_modalias_with_their_dependencies() {
        let kept = tables()
            .select(&["acpi:LNRO0005:", "virtio:d00000001v554D4551"], &[], &[])
            .unwrap();
        assert_eq!(
            names(&kept),
            ["failover", "net_failover", "virtio_mmio", "virtio_net"]
        );
        let files = tables().files(&kept);
        assert!(files.contains("kernel/net/core/failover.ko"));
        assert_eq!(files.len(), 4);
    }

    #[test]
    fn named_modules_follow_aliases_and_soft_dependencies() {
        let named = ["fs-btrfs".to_owned(), "rtnl-link-veth".to_owned()];
        let kept = tables().select(&[], &named, &[]).unwrap();
        assert_eq!(
            names(&kept),
            [
                "blake2b_generic",
                "btrfs",
                "crc32c_generic",
                "raid6_pq",
                "veth",
                "xor"
            ]
        );
        // A name the kernel lacks, or has built in, keeps nothing and is no error.
        let none = [
            "fs-ext4".to_owned(),
            "fs-tmpfs".to_owned(),
            "ext4".to_owned(),
        ];
        assert!(tables().select(&[], &none, &[]).unwrap().is_empty());
    }

    #[test]
    fn the_filesystems_a_container_can_make_or_check_are_needed_but_not_busyboxs() {
        let mut rootfs = Tree::new();
        rootfs.put("sbin/mke2fs", Node::file(&b"elf"[..], 0o755));
        rootfs.put("sbin/mkfs.ext4", Node::symlink("mke2fs"));
        rootfs.put("sbin/fsck.xfs", Node::file(&b"sh"[..], 0o755));
        rootfs.put("usr/bin/mkfs.btrfs", Node::file(&b"elf"[..], 0o755));
        rootfs.put("sbin/mkfs.vfat", Node::symlink("/bin/busybox"));
        rootfs.put("sbin/fsck.minix", Node::symlink("../bin/busybox"));
        rootfs.put("usr/share/mkfs.doc/x", Node::file(&b"x"[..], 0o644));
        let mut needs = Needs::default();
        needs.programs(&rootfs).unwrap();
        let requests: Vec<&str> = needs.requests.iter().map(String::as_str).collect();
        assert_eq!(requests, ["fs-btrfs", "fs-ext4", "fs-xfs"]);
        let mut rootfs = Tree::new();
        let listed = "# mount tries these\niso9660\nnodev\tsquashfs\n\n*\nvfat\n";
        rootfs.put("etc/filesystems", Node::file(listed.as_bytes(), 0o644));
        let mut needs = Needs::default();
        needs.programs(&rootfs).unwrap();
        let requests: Vec<&str> = needs.requests.iter().map(String::as_str).collect();
        assert_eq!(requests, ["fs-iso9660", "fs-squashfs"], "up to the `*`");
    }

    #[test]
    fn patterns_are_globs_over_names_then_aliases_and_must_match() {
        let patterns = ["nft_*".to_owned(), "pvpanic-mmio".to_owned()];
        let kept = tables().select(&[], &[], &patterns).unwrap();
        assert_eq!(
            names(&kept),
            ["nf_tables", "nfnetlink", "nft_ct", "pvpanic_mmio"]
        );
        let by_alias = tables()
            .select(&[], &[], &["fs-overlay".to_owned()])
            .unwrap();
        assert_eq!(names(&by_alias), ["overlay"]);
        let built_in = tables().select(&[], &[], &["ext4".to_owned()]).unwrap();
        assert!(built_in.is_empty(), "built in: matched, nothing to keep");
        assert_eq!(
            tables().select(
                &[],
                &[],
                &["wireguard".to_owned(), "nft_*".to_owned(), "zz*".to_owned()]
            ),
            Err(vec!["wireguard".to_owned(), "zz*".to_owned()])
        );
    }

    #[test]
    fn the_target_devices_find_their_drivers_in_a_real_alias_table() {
        // Lines of Debian's cloud kernel's modules.alias for each kind of target device.
        let alias = "alias acpi*:LNRO0005:* virtio_mmio\n\
            alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci\n\
            alias virtio:d00000002v* virtio_blk\n\
            alias scsi:t-0x00* sd_mod\n\
            alias pci:v00001D0Fd0000EC20sv*sd*bc*sc*i* ena\n\
            alias vmbus:635161f83edfc546913ff2d2f965ed0e hv_netvsc\n\
            alias xen:vbd xen_blkfront\n\
            alias pci:v000015ADd000007B0sv*sd*bc*sc*i* vmxnet3\n\
            alias input:b*v*p*e*-e*k*r*a*m*l*s*f*w* evdev\n\
            alias pci:v00008086d00007010sv*sd*bc*sc*i* ata_piix\n\
            alias acpi*:QEMU0001:* pvpanic_mmio\n";
        let dep: String = [
            "virtio_mmio",
            "virtio_pci",
            "virtio_blk",
            "sd_mod",
            "ena",
            "hv_netvsc",
            "xen_blkfront",
            "vmxnet3",
            "evdev",
            "ata_piix",
            "pvpanic_mmio",
        ]
        .iter()
        .map(|name| format!("kernel/{name}.ko:\n"))
        .collect();
        let tables = Tables::parse(&dep, alias, "", "");
        let devices: Vec<&str> = TARGET_DEVICES.iter().map(|d| d.modalias).collect();
        let kept = tables.select(&devices, &[], &[]).unwrap();
        assert_eq!(kept.len(), 10, "{kept:?}");
        assert!(!kept.contains("pvpanic_mmio"), "no target device of its");
    }

    #[test]
    fn prune_keeps_what_is_needed_and_removes_the_rest_with_empty_directories() {
        let mut rootfs = Tree::new();
        let dir = "lib/modules/6.1.0-test";
        for key in ["lib", "lib/modules", dir, "etc"] {
            rootfs.put(key, Node::dir(0o755));
        }
        rootfs.put(
            &format!("{dir}/modules.dep"),
            Node::file(DEP.as_bytes(), 0o644),
        );
        rootfs.put(
            &format!("{dir}/modules.alias"),
            Node::file(ALIAS.as_bytes(), 0o644),
        );
        rootfs.put(
            &format!("{dir}/modules.softdep"),
            Node::file(SOFTDEP.as_bytes(), 0o644),
        );
        for line in DEP.lines() {
            let file = line.split(':').next().unwrap();
            let mut parent = String::from(dir);
            for part in file.split('/').collect::<Vec<_>>().split_last().unwrap().1 {
                parent = format!("{parent}/{part}");
                rootfs.put(&parent, Node::dir(0o755));
            }
            rootfs.put(&format!("{dir}/{file}"), Node::file(&b"module"[..], 0o644));
        }
        rootfs.put("etc/modules", Node::file(&b"# boot\noverlay\n"[..], 0o644));
        let mut needs = Needs::default();
        needs.filesystem("bind");
        needs.filesystem("btrfs");
        let kept = prune(&mut rootfs, &needs, &["nft_ct".to_owned()]).unwrap();
        assert_eq!(
            kept,
            [Kept {
                release: "6.1.0-test".to_owned(),
                modules: 13,
                bytes: 13 * 6,
                all_modules: 16,
                all_bytes: 16 * 6,
            }]
        );
        assert!(kept[0]
            .to_string()
            .starts_with("kernel 6.1.0-test: kept 13 of 16 modules"));
        for gone in [
            "kernel/drivers/gpu/drm/drm.ko",
            "kernel/drivers/misc/pvpanic/pvpanic-mmio.ko",
        ] {
            assert!(!rootfs.contains(&format!("{dir}/{gone}")), "{gone}");
        }
        for dir_gone in ["kernel/drivers/gpu", "kernel/drivers/misc"] {
            assert!(!rootfs.contains(&format!("{dir}/{dir_gone}")), "{dir_gone}");
        }
        for kept in [
            "modules.dep",
            "modules.alias",
            "kernel/fs/overlayfs/overlay.ko",
            "kernel/crypto/crc32c_generic.ko",
            "kernel/net/netfilter/nfnetlink.ko",
            "kernel/drivers/virtio/virtio_mmio.ko",
        ] {
            assert!(rootfs.contains(&format!("{dir}/{kept}")), "{kept}");
        }
        let err = prune(&mut rootfs, &needs, &["wireguard".to_owned()]).unwrap_err();
        assert_eq!(
            err,
            "kernel: modules: `wireguard` matches no module of kernel 6.1.0-test"
        );
    }
}
