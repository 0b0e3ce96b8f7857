//! The kernel's mount tables as typed entries: /proc/PID/mountinfo (proc(5): ids, device,
//! root, mount point, options, peer groups, type, source) and /proc/mounts (source, mount point,
//! type, options), with the kernel's octal escapes (`\040` space, `\011` tab, `\012` newline,
//! `\134` backslash) decoded in one place, [`unescape`].
//! Runs in: init at shutdown, the supervisor (cgroup hierarchies), the test sandbox and the VM
//! tests' probe. It parses text only: reading the table is the caller's, and nothing here changes
//! the system.
//! Mirrors the kernel's writers, show_mountinfo and show_vfsmnt in fs/proc_namespace.c: fields
//! are separated by single spaces, and space, tab, newline and backslash in paths, sources and
//! types are written as `\` and three octal digits.

use std::path::PathBuf;

/// The name of the mountinfo table in errors.
const MOUNTINFO: &str = "mountinfo";
/// The name of the /proc/mounts table in errors.
const MOUNTS: &str = "/proc/mounts";

/// A line that is not what the kernel writes in that table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {table} line `{line}`: {reason}")]
pub struct MalformedLine {
    /// `mountinfo` or `/proc/mounts`.
    pub table: &'static str,
    pub line: String,
    pub reason: &'static str,
}

/// One line of /proc/PID/mountinfo:
/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// The mount's unique id (reused once it is unmounted).
    pub mount_id: u32,
    /// The parent mount's id (its own id at the top of the mount namespace's tree).
    pub parent_id: u32,
    /// The device number of the file system (`st_dev`), major part.
    pub major: u32,
    /// The device number of the file system (`st_dev`), minor part.
    pub minor: u32,
    /// The directory of the file system that forms this mount's root, unescaped.
    pub root: PathBuf,
    /// Where it is mounted, relative to the reading process's root, unescaped.
    pub mount_point: PathBuf,
    /// The per-mount options, comma-separated (`rw,nosuid,relatime`).
    pub mount_options: String,
    /// The optional fields, as written: `shared:N`, `master:N`, `propagate_from:N`,
    /// `unbindable`; none for a private mount.
    pub optional_fields: Vec<String>,
    /// The file system type (`ext4`, `cgroup2`, `fuse.sshfs`), unescaped.
    pub fs_type: String,
    /// The file system's source (`/dev/vda1`, `tmpfs`, `none`), unescaped.
    pub source: String,
    /// The per-superblock options, comma-separated and still escaped: an option's value may
    /// hold an escaped comma (`\054`), so decode each option with [`unescape`] after splitting.
    pub super_options: String,
}

impl MountInfo {
    /// Parses one line of /proc/PID/mountinfo (without its newline).
    pub fn parse(line: &str) -> Result<Self, MalformedLine> {
        let malformed = |reason| MalformedLine {
            table: MOUNTINFO,
            line: line.to_owned(),
            reason,
        };
        let fields: Vec<&str> = line.split(' ').collect();
        // The separator follows the six fixed fields and any optional ones.
        let separator = fields
            .iter()
            .skip(6)
            .position(|field| *field == "-")
            .map(|position| position + 6)
            .ok_or_else(|| malformed("no ` - ` after six fields"))?;
        let (mount, filesystem) = fields.split_at(separator);
        let &[mount_id, parent_id, device, root, mount_point, mount_options, ref optional @ ..] =
            mount
        else {
            return Err(malformed("fewer than six fields before ` - `"));
        };
        let &[_separator, fs_type, source, super_options, ..] = filesystem else {
            return Err(malformed("fewer than three fields after ` - `"));
        };
        let number = |field: &str, what| field.parse::<u32>().map_err(|_| malformed(what));
        let mount_id = number(mount_id, "the mount id is not a number")?;
        let parent_id = number(parent_id, "the parent id is not a number")?;
        let not_device = "the device is not MAJOR:MINOR";
        let (major, minor) = device
            .split_once(':')
            .ok_or_else(|| malformed(not_device))?;
        Ok(Self {
            mount_id,
            parent_id,
            major: number(major, not_device)?,
            minor: number(minor, not_device)?,
            root: PathBuf::from(unescape(root)),
            mount_point: PathBuf::from(unescape(mount_point)),
            mount_options: mount_options.to_owned(),
            optional_fields: optional.iter().map(|field| (*field).to_owned()).collect(),
            fs_type: unescape(fs_type),
            source: unescape(source),
            super_options: super_options.to_owned(),
        })
    }

    /// Whether mount events propagate to or from this mount: it is shared or a slave
    /// (`shared:` or `master:` among its optional fields), not private.
    pub fn propagates(&self) -> bool {
        self.optional_fields
            .iter()
            .any(|field| field.starts_with("shared:") || field.starts_with("master:"))
    }
}

/// The entries of a /proc/PID/mountinfo text, in the kernel's order (mount order); malformed
/// lines are skipped.
pub fn parse(text: &str) -> impl DoubleEndedIterator<Item = MountInfo> + '_ {
    lines(text).filter_map(|line| MountInfo::parse(line).ok())
}

/// One line of /proc/mounts (or /proc/PID/mounts, /etc/mtab):
/// `/dev/vda1 /var/lib ext4 rw,relatime 0 0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// The file system's source (`/dev/vda1`, `tmpfs`), unescaped.
    pub source: String,
    /// Where it is mounted, unescaped.
    pub mount_point: PathBuf,
    /// The file system type, unescaped.
    pub fs_type: String,
    /// The mount and superblock options together, comma-separated and still escaped, as in
    /// [`MountInfo::super_options`].
    pub options: String,
}

impl MountEntry {
    /// Parses one line of /proc/mounts (without its newline); the two trailing `0 0` fields
    /// (dump and pass in fstab(5)) are not needed.
    pub fn parse(line: &str) -> Result<Self, MalformedLine> {
        let &[source, mount_point, fs_type, options, ..] =
            line.split(' ').collect::<Vec<_>>().as_slice()
        else {
            return Err(MalformedLine {
                table: MOUNTS,
                line: line.to_owned(),
                reason: "fewer than four fields",
            });
        };
        Ok(Self {
            source: unescape(source),
            mount_point: PathBuf::from(unescape(mount_point)),
            fs_type: unescape(fs_type),
            options: options.to_owned(),
        })
    }
}

/// The entries of a /proc/mounts text, in mount order; malformed lines are skipped.
pub fn parse_mounts(text: &str) -> impl DoubleEndedIterator<Item = MountEntry> + '_ {
    lines(text).filter_map(|line| MountEntry::parse(line).ok())
}

/// The lines of a table. Only `\n` ends a line: the kernel escapes newlines in fields but not
/// carriage returns, which [`str::lines`] would drop at the end of a line.
fn lines(text: &str) -> impl DoubleEndedIterator<Item = &str> {
    text.split('\n').filter(|line| !line.is_empty())
}

/// Decodes a field's octal escapes: `\` followed by three octal digits is that byte (the kernel
/// writes `\040` space, `\011` tab, `\012` newline and `\134` backslash); anything else, a
/// backslash not followed by an escape included, is kept as it is. Bytes that decode to invalid
/// UTF-8 become U+FFFD.
pub fn unescape(field: &str) -> String {
    if !field.contains('\\') {
        return field.to_owned();
    }
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some((&byte, tail)) = rest.split_first() {
        match (byte, octal_byte(tail)) {
            (b'\\', Some(decoded)) => {
                out.push(decoded);
                rest = &tail[3..];
            }
            _ => {
                out.push(byte);
                rest = tail;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The byte that three leading octal digits of `digits` stand for (`040` -> space); `None` when
/// they are not three octal digits or do not fit a byte (`400` and up).
fn octal_byte(digits: &[u8]) -> Option<u8> {
    let digits = digits.get(..3)?;
    digits
        .iter()
        .try_fold(0u16, |value, &digit| {
            (b'0'..=b'7')
                .contains(&digit)
                .then(|| value * 8 + u16::from(digit - b'0'))
        })
        .and_then(|value| u8::try_from(value).ok())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn escapes_decode_to_space_tab_newline_and_backslash() {
        assert_eq!(unescape("/mnt/my\\040share"), "/mnt/my share");
        assert_eq!(unescape("a\\011b\\012c\\134d"), "a\tb\nc\\d");
        // A backslash in a path is written `\134`: `\134040` is a backslash then "040".
        assert_eq!(unescape("/x\\134040"), "/x\\040");
        assert_eq!(unescape("/plain"), "/plain");
        // Not an escape: kept as written.
        assert_eq!(unescape("\\"), "\\");
        assert_eq!(unescape("a\\04"), "a\\04");
        assert_eq!(unescape("a\\089"), "a\\089");
        assert_eq!(unescape("a\\400"), "a\\400");
        // Escaped UTF-8 bytes decode; a lone high byte is not UTF-8.
        assert_eq!(unescape("caf\\303\\251"), "café");
        assert_eq!(unescape("\\377"), "\u{fffd}");
    }

    #[test]
    fn mountinfo_line_has_every_field() {
        let line = "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue";
        assert_eq!(
            MountInfo::parse(line),
            Ok(MountInfo {
                mount_id: 36,
                parent_id: 35,
                major: 98,
                minor: 0,
                root: PathBuf::from("/mnt1"),
                mount_point: PathBuf::from("/mnt2"),
                mount_options: "rw,noatime".into(),
                optional_fields: vec!["master:1".into()],
                fs_type: "ext3".into(),
                source: "/dev/root".into(),
                super_options: "rw,errors=continue".into(),
            })
        );
    }

    #[test]
    fn mountinfo_paths_source_and_type_are_unescaped_and_options_are_not() {
        let line = "40 1 0:50 /a\\040b /mnt/my\\040share\\011x rw - fuse.my\\040fs src\\134dir \
                    rw,path=a\\054b";
        let entry = MountInfo::parse(line).unwrap();
        assert_eq!(entry.root, Path::new("/a b"));
        assert_eq!(entry.mount_point, Path::new("/mnt/my share\tx"));
        assert_eq!(entry.fs_type, "fuse.my fs");
        assert_eq!(entry.source, "src\\dir");
        assert_eq!(entry.super_options, "rw,path=a\\054b");
        let options: Vec<String> = entry.super_options.split(',').map(unescape).collect();
        assert_eq!(options, ["rw", "path=a,b"]);
    }

    #[test]
    fn optional_fields_name_the_peer_groups() {
        let shared_slave =
            MountInfo::parse("22 1 0:21 / / rw,relatime shared:1 master:5 - ext4 /dev/vda rw")
                .unwrap();
        assert_eq!(shared_slave.optional_fields, ["shared:1", "master:5"]);
        assert!(shared_slave.propagates());

        let slave = MountInfo::parse("23 22 0:22 / /proc rw master:5 - proc proc rw").unwrap();
        assert_eq!(slave.optional_fields, ["master:5"]);
        assert!(slave.propagates());

        let private = MountInfo::parse("24 22 0:23 / /tmp rw,nosuid - tmpfs tmpfs rw").unwrap();
        assert!(private.optional_fields.is_empty());
        assert!(!private.propagates());

        let unbindable =
            MountInfo::parse("25 22 0:24 / /u rw unbindable - tmpfs tmpfs rw").unwrap();
        assert_eq!(unbindable.optional_fields, ["unbindable"]);
        assert!(!unbindable.propagates());
    }

    #[test]
    fn the_separator_is_the_first_dash_field_after_the_fixed_ones() {
        // A source named `-` comes after the separator and is not one.
        let entry = MountInfo::parse("30 1 0:40 / /run rw shared:2 - tmpfs - rw").unwrap();
        assert_eq!(entry.optional_fields, ["shared:2"]);
        assert_eq!(
            (entry.fs_type.as_str(), entry.source.as_str()),
            ("tmpfs", "-")
        );
        // A mount point with ` - ` in it is written escaped and is no separator either.
        let entry = MountInfo::parse("31 1 0:41 / /a\\040-\\040b rw - tmpfs t rw").unwrap();
        assert_eq!(entry.mount_point, Path::new("/a - b"));
        assert!(entry.optional_fields.is_empty());
    }

    #[test]
    fn malformed_mountinfo_lines_are_refused_and_skipped() {
        for (line, reason) in [
            ("36 35 98:0 /mnt1 /mnt2 rw ext3 /dev/root rw", "no ` - `"),
            ("36 35 98:0 /mnt1 - ext3 /dev/root rw", "no ` - `"),
            (
                "36 35 98:0 /mnt1 /mnt2 rw - ext3 /dev/root",
                "fewer than three",
            ),
            ("x 35 98:0 /mnt1 /mnt2 rw - ext3 /dev/root rw", "mount id"),
            ("36 35 98 /mnt1 /mnt2 rw - ext3 /dev/root rw", "MAJOR:MINOR"),
            (
                "36  35 98:0 /mnt1 /mnt2 rw - ext3 /dev/root rw",
                "parent id",
            ),
        ] {
            let err = MountInfo::parse(line).unwrap_err();
            assert_eq!(err.line, line);
            assert!(err.reason.contains(reason), "{line}: {err}");
            assert!(
                err.to_string().starts_with("malformed mountinfo line"),
                "{err}"
            );
        }
        let table = "not a mount\n\
                     24 22 0:23 / /tmp rw - tmpfs tmpfs rw\n\
                     \n\
                     25 22 0:24 / /run rw - tmpfs\n";
        let points: Vec<PathBuf> = parse(table).map(|m| m.mount_point).collect();
        assert_eq!(points, [PathBuf::from("/tmp")]);
    }

    #[test]
    fn mountinfo_lines_end_only_at_newlines() {
        let table = "24 22 0:23 / /tmp rw - tmpfs tmpfs rw\r\n25 22 0:24 / /run rw - tmpfs t rw";
        let entries: Vec<MountInfo> = parse(table).collect();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].super_options, "rw\r");
        assert_eq!(entries[1].mount_point, Path::new("/run"));
    }

    #[test]
    fn mounts_lines_have_source_point_type_and_options() {
        let table = "rootfs / rootfs rw 0 0\n\
                     srv:/x /mnt/my\\040share nfs4 rw,vers=4.2 0 0\n\
                     short line here\n\
                     /dev/vda /var/lib ext4 rw\n";
        let entries: Vec<MountEntry> = parse_mounts(table).collect();
        assert_eq!(
            entries,
            [
                MountEntry {
                    source: "rootfs".into(),
                    mount_point: PathBuf::from("/"),
                    fs_type: "rootfs".into(),
                    options: "rw".into(),
                },
                MountEntry {
                    source: "srv:/x".into(),
                    mount_point: PathBuf::from("/mnt/my share"),
                    fs_type: "nfs4".into(),
                    options: "rw,vers=4.2".into(),
                },
                MountEntry {
                    source: "/dev/vda".into(),
                    mount_point: PathBuf::from("/var/lib"),
                    fs_type: "ext4".into(),
                    options: "rw".into(),
                },
            ]
        );
        let err = MountEntry::parse("short line here").unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed /proc/mounts line `short line here`: fewer than four fields"
        );
    }
}
