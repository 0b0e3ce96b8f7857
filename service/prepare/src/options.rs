//! fstab-style mount options (`ro,nosuid,size=10m`) turned into what mount(2) takes: flags and
//! a data string. Propagation options are kept apart, because the kernel ignores them when they
//! come with any other mount; they are applied by a call of their own.
//! Runs in: the supervisor while planning a bundle's mounts. Pure.
//! Mirrors LinuxKit's `parseMountOptions` (pkg/init/cmd/service/prepare.go): same names, same
//! set/clear meaning, anything else goes to the data string in order.

use nix::mount::MsFlags;

/// The flags that change a mount's propagation rather than the mount itself.
const PROPAGATION: MsFlags = MsFlags::MS_SHARED
    .union(MsFlags::MS_PRIVATE)
    .union(MsFlags::MS_SLAVE)
    .union(MsFlags::MS_UNBINDABLE);

/// Each known option: its name, whether it clears (rather than sets) the flag, and the flag.
const KNOWN: [(&str, bool, MsFlags); 29] = [
    ("async", true, MsFlags::MS_SYNCHRONOUS),
    ("atime", true, MsFlags::MS_NOATIME),
    ("bind", false, MsFlags::MS_BIND),
    ("defaults", false, MsFlags::empty()),
    ("dev", true, MsFlags::MS_NODEV),
    ("diratime", true, MsFlags::MS_NODIRATIME),
    ("dirsync", false, MsFlags::MS_DIRSYNC),
    ("exec", true, MsFlags::MS_NOEXEC),
    ("mand", false, MsFlags::MS_MANDLOCK),
    ("noatime", false, MsFlags::MS_NOATIME),
    ("nodev", false, MsFlags::MS_NODEV),
    ("nodiratime", false, MsFlags::MS_NODIRATIME),
    ("noexec", false, MsFlags::MS_NOEXEC),
    ("nomand", true, MsFlags::MS_MANDLOCK),
    ("norelatime", true, MsFlags::MS_RELATIME),
    ("nostrictatime", true, MsFlags::MS_STRICTATIME),
    ("nosuid", false, MsFlags::MS_NOSUID),
    ("private", false, MsFlags::MS_PRIVATE),
    ("rbind", false, MsFlags::MS_BIND.union(MsFlags::MS_REC)),
    ("relatime", false, MsFlags::MS_RELATIME),
    ("remount", false, MsFlags::MS_REMOUNT),
    ("ro", false, MsFlags::MS_RDONLY),
    ("rw", true, MsFlags::MS_RDONLY),
    ("shared", false, MsFlags::MS_SHARED),
    ("slave", false, MsFlags::MS_SLAVE),
    ("strictatime", false, MsFlags::MS_STRICTATIME),
    ("suid", true, MsFlags::MS_NOSUID),
    ("sync", false, MsFlags::MS_SYNCHRONOUS),
    ("unbindable", false, MsFlags::MS_UNBINDABLE),
];

/// Parsed mount options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Flags for the mount call itself (no propagation flags).
    pub flags: MsFlags,
    /// Propagation flags (`private`, `shared`, `slave`, `unbindable`), applied separately.
    pub propagation: MsFlags,
    /// Everything that is not a flag, comma-joined in order: the filesystem's own options.
    pub data: String,
}

impl MountOptions {
    /// Parses options in order; a later option overrides an earlier one (`ro,rw` is read-write).
    pub fn parse<S: AsRef<str>>(options: &[S]) -> Self {
        let mut flags = MsFlags::empty();
        let mut data: Vec<&str> = Vec::new();
        for option in options {
            let option = option.as_ref();
            match KNOWN.iter().find(|(name, _, _)| *name == option) {
                Some((_, true, flag)) => flags.remove(*flag),
                Some((_, false, flag)) => flags.insert(*flag),
                None => data.push(option),
            }
        }
        Self {
            flags: flags.difference(PROPAGATION),
            propagation: flags.intersection(PROPAGATION),
            data: data.join(","),
        }
    }

    /// Whether this is a bind mount (`bind` or `rbind`).
    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }

    /// Flags the kernel ignores on a new bind mount and that need a remount to take effect.
    pub fn bind_remount_flags(&self) -> MsFlags {
        self.flags.intersection(
            MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC
                | MsFlags::MS_NOATIME
                | MsFlags::MS_NODIRATIME
                | MsFlags::MS_RELATIME
                | MsFlags::MS_STRICTATIME,
        )
    }

    /// The overlay directories named in the data (`upperdir=`, `workdir=`), which must exist.
    pub fn overlay_dirs(&self) -> impl Iterator<Item = &str> {
        self.data.split(',').filter_map(|option| {
            option
                .strip_prefix("upperdir=")
                .or_else(|| option.strip_prefix("workdir="))
                .filter(|dir| !dir.is_empty())
        })
    }
}

/// Flags written back as option names (`rbind,ro`), for messages.
pub fn names(flags: MsFlags) -> String {
    let recursive_bind = flags.contains(MsFlags::MS_BIND | MsFlags::MS_REC);
    KNOWN
        .iter()
        .filter(|(name, clear, flag)| {
            let shown_as_rbind = *name == "bind" && recursive_bind;
            !(*clear || flag.is_empty() || shown_as_rbind) && flags.contains(*flag)
        })
        .map(|(name, _, _)| *name)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_data_are_split() {
        let options = MountOptions::parse(&["nosuid", "nodev", "size=10m", "mode=755", "ro"]);
        assert_eq!(
            options.flags,
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_RDONLY
        );
        assert_eq!(options.propagation, MsFlags::empty());
        assert_eq!(options.data, "size=10m,mode=755");
    }

    #[test]
    fn clearing_options_undo_earlier_ones() {
        let options = MountOptions::parse(&["ro", "noexec", "rw", "exec", "nosuid"]);
        assert_eq!(options.flags, MsFlags::MS_NOSUID);
    }

    #[test]
    fn defaults_is_no_flag_and_no_data() {
        let options = MountOptions::parse(&["defaults"]);
        assert_eq!(options.flags, MsFlags::empty());
        assert_eq!(options.propagation, MsFlags::empty());
        assert!(options.data.is_empty());
    }

    #[test]
    fn propagation_is_kept_apart() {
        let options = MountOptions::parse(&["rbind", "rprivate_unknown", "private", "ro"]);
        assert_eq!(
            options.flags,
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY
        );
        assert_eq!(options.propagation, MsFlags::MS_PRIVATE);
        assert_eq!(options.data, "rprivate_unknown");
        assert!(options.is_bind());
        assert_eq!(options.bind_remount_flags(), MsFlags::MS_RDONLY);
        assert_eq!(names(options.flags), "rbind,ro");
        assert_eq!(names(MsFlags::MS_BIND | MsFlags::MS_NOSUID), "bind,nosuid");
    }

    #[test]
    fn remount_private_is_a_propagation_change() {
        let options = MountOptions::parse(&["remount", "private"]);
        assert_eq!(options.flags, MsFlags::MS_REMOUNT);
        assert_eq!(options.propagation, MsFlags::MS_PRIVATE);
    }

    #[test]
    fn overlay_dirs_are_found_in_the_data() {
        let options = MountOptions::parse(&[
            "lowerdir=/l",
            "upperdir=/t/upper",
            "workdir=/t/work",
            "nosuid",
        ]);
        assert_eq!(
            options.overlay_dirs().collect::<Vec<_>>(),
            ["/t/upper", "/t/work"]
        );
        assert_eq!(options.flags, MsFlags::MS_NOSUID);
    }
}
