//! `format`: LinuxKit's pkg/format. Makes a filesystem on the first disk that holds nothing
//! (no partition table, no filesystem), or on the device named: one partition spanning it
//! (`-partition dos` or `gpt`, by sfdisk), then `mkfs.TYPE` (`-type ext4`, `xfs` or `btrfs`,
//! `-label`). A device that holds something is left alone and said so unless `-force`; with
//! `-label`, a filesystem of that label already on some device means there is nothing to do,
//! so running it at every boot formats once. It fails (exit 1) only when there is no disk,
//! the device named is not one, or a tool fails; a bad command line exits 2.
//! Runs in: pkg/format's onboot container, as root with /dev bound in.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};
use storage::flags::{Flag, Parsed};
use storage::{block, probe, say, tool};

/// How long the new partition's device node may take to appear.
const PARTITION_TIMEOUT: Duration = Duration::from_secs(10);

const FLAGS: [Flag; 5] = [
    Flag {
        name: "type",
        value: Some("TYPE"),
        default: "ext4",
        help: "the filesystem to make: ext4, ext3, ext2, xfs or btrfs",
    },
    Flag {
        name: "label",
        value: Some("LABEL"),
        default: "",
        help: "the filesystem's label (a filesystem with it already on a device: nothing to do)",
    },
    Flag {
        name: "partition",
        value: Some("TABLE"),
        default: "dos",
        help: "the partition table to write: dos or gpt",
    },
    Flag {
        name: "force",
        value: None,
        default: "",
        help: "format the device named even if it holds a filesystem or partitions",
    },
    Flag {
        name: "verbose",
        value: None,
        default: "",
        help: "say what each disk holds",
    },
];

const SYNOPSIS: &str = "format [-type TYPE] [-label LABEL] [-partition dos|gpt] [-force] \
                        [-verbose] [DEVICE]";

fn main() -> ExitCode {
    storage::main(SYNOPSIS, &FLAGS, Request::of, |request| {
        request.run(Path::new("/dev"), Path::new("/sys"))
    })
}

/// What the command line asks for, checked.
#[derive(Debug)]
struct Request {
    kind: String,
    label: String,
    table: String,
    force: bool,
    verbose: bool,
    device: Option<PathBuf>,
}

impl Request {
    fn of(parsed: &Parsed) -> Result<Self> {
        let kind = parsed.value(&FLAGS, "type");
        if !["ext4", "ext3", "ext2", "xfs", "btrfs"].contains(&kind.as_str()) {
            bail!("-type {kind}: not a filesystem format makes (ext4, ext3, ext2, xfs, btrfs)");
        }
        let table = parsed.value(&FLAGS, "partition");
        if table != "dos" && table != "gpt" {
            bail!("-partition {table}: not a partition table format writes (dos, gpt)");
        }
        if parsed.args.len() > 1 {
            bail!(
                "too many arguments ({}): name one device at most",
                parsed.args.join(" ")
            );
        }
        Ok(Self {
            kind,
            label: parsed.value(&FLAGS, "label"),
            table,
            force: parsed.set("force"),
            verbose: parsed.set("verbose"),
            device: parsed.args.first().map(PathBuf::from),
        })
    }

    fn run(&self, dev: &Path, sys: &Path) -> Result<()> {
        if let Some(device) = &self.device {
            return self.named(device, dev, sys);
        }
        if let Some(done) = self.labelled(dev, sys) {
            say!("nothing to do: {done}");
            return Ok(());
        }
        let disks = block::disks(sys);
        if disks.is_empty() {
            bail!(
                "no disk to format: /sys/block lists none but loop, RAM, CD and read-only devices"
            );
        }
        let mut held = Vec::new();
        for disk in &disks {
            let node = block::node(dev, disk);
            let found = probe::probe(&node)?;
            if found.is_empty() && block::partitions(sys, disk).is_empty() {
                return self.format(&node, disk, dev);
            }
            if self.verbose {
                say!("{} holds {}: left alone", node.display(), found.describe());
            }
            held.push(format!("{} ({})", node.display(), found.describe()));
        }
        say!(
            "no empty disk to format, so nothing was changed: {} (name a device with -force to \
             format it anyway)",
            held.join(", ")
        );
        Ok(())
    }

    /// The device named on the command line: formatted if empty or `-force`.
    fn named(&self, device: &Path, dev: &Path, sys: &Path) -> Result<()> {
        if !device.exists() {
            bail!("{} does not exist", device.display());
        }
        if !block::is_block_device(device) {
            bail!("{} is not a block device", device.display());
        }
        let real = device.canonicalize().unwrap_or_else(|_| device.to_owned());
        let name = real
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        if sys
            .join("class/block")
            .join(&name)
            .join("partition")
            .exists()
        {
            bail!(
                "{} is a partition: name the whole disk, which format partitions",
                device.display()
            );
        }
        if self.force {
            say!(
                "formatting {} whatever it holds, as -force asks",
                device.display()
            );
            return self.format(device, &name, dev);
        }
        let found = probe::probe(device)?;
        if found.is_empty() && block::partitions(sys, &name).is_empty() {
            return self.format(device, &name, dev);
        }
        say!(
            "{} holds {}: left alone, nothing was changed (-force formats it anyway)",
            device.display(),
            found.describe()
        );
        Ok(())
    }

    /// A device that already holds a filesystem with the label asked for, in words.
    fn labelled(&self, dev: &Path, sys: &Path) -> Option<String> {
        if self.label.is_empty() {
            return None;
        }
        block::devices(sys).into_iter().find_map(|name| {
            let node = block::node(dev, &name);
            let found = probe::probe(&node).ok()?;
            (found.get("LABEL") == Some(self.label.as_str()))
                .then(|| format!("{} already holds {}", node.display(), found.describe()))
        })
    }

    /// One partition over the whole of `device` (the disk `disk`), and the filesystem on it.
    fn format(&self, device: &Path, disk: &str, dev: &Path) -> Result<()> {
        let path = device.to_string_lossy();
        say!(
            "partitioning {path} ({} table, one Linux partition) for {}{}",
            self.table,
            self.kind,
            self.labelled_as()
        );
        tool::succeed(
            "sfdisk",
            &[
                "--quiet",
                "--wipe",
                "always",
                "--wipe-partitions",
                "always",
                &path,
            ],
            Some(&format!("label: {}\n,,L\n", self.table)),
        )?;
        let partition = block::node(dev, &block::partition_name(disk, 1));
        if !block::wait_for_node(dev, &partition, PARTITION_TIMEOUT)? {
            bail!(
                "{} did not appear within {} s of partitioning {path}",
                partition.display(),
                PARTITION_TIMEOUT.as_secs()
            );
        }
        let part = partition.to_string_lossy();
        let mut args: Vec<&str> = vec!["-q"];
        args.push(if self.kind.starts_with("ext") {
            "-F"
        } else {
            "-f"
        });
        if !self.label.is_empty() {
            args.extend(["-L", &self.label]);
        }
        args.push(&part);
        tool::succeed(&format!("mkfs.{}", self.kind), &args, None)?;
        say!("made {}{} on {part}", self.kind, self.labelled_as());
        Ok(())
    }

    fn labelled_as(&self) -> String {
        if self.label.is_empty() {
            String::new()
        } else {
            format!(" labelled {}", self.label)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(args: &[&str]) -> Result<Request> {
        let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
        let parsed =
            storage::flags::parse(&FLAGS, &args).map_err(|stop| anyhow::anyhow!("{stop:?}"))?;
        Request::of(&parsed)
    }

    #[test]
    fn linuxkits_command_lines_are_read_and_bad_ones_say_which_flag() {
        let made = request(&["-verbose", "-type", "xfs", "-force", "/dev/sdb"]).expect("ok");
        assert_eq!(made.kind, "xfs");
        assert!(made.force && made.verbose);
        assert_eq!(made.table, "dos", "LinuxKit's default table");
        assert_eq!(made.device, Some(PathBuf::from("/dev/sdb")));
        let auto = request(&["-label", "docker"]).expect("ok");
        assert_eq!((auto.kind.as_str(), auto.device), ("ext4", None));

        let err = |args: &[&str]| format!("{:#}", request(args).expect_err("refused"));
        assert!(err(&["-type", "zfs"]).contains("-type zfs: not a filesystem format makes"));
        assert!(err(&["-partition", "apm"]).contains("-partition apm: not a partition table"));
        assert!(err(&["/dev/vda", "/dev/vdb"]).contains("too many arguments"));
    }
}
