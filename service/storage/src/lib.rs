//! Disks on a running image, for LinuxKit's format and mount packages: `format` partitions the
//! first empty disk (or the one named) and makes a filesystem on it; `mountie` finds a
//! filesystem by label, UUID or device, waiting for it to appear, checks it and mounts it.
//! Both run Debian's tools for what they are made for (blkid, sfdisk, mkfs, e2fsck, found on
//! PATH) and do the rest themselves: LinuxKit's command lines, finding disks in sysfs,
//! waiting for device nodes through inotify, the mount itself.
//! Runs in: the onboot containers of pkg/format and pkg/mount (root, /dev bound in, all
//! block devices allowed).

pub mod block;
pub mod check;
pub mod flags;
pub mod probe;
pub mod tool;

/// Prints one line on stderr, prefixed with the program's name (the console's log shows it
/// beside the container's name).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        eprintln!("{}: {}", $crate::program(), format_args!($($arg)*))
    };
}

/// What `format` and `mountie` share around their work: the command line read against
/// `flags` (`-h`: the usage, exit 0; a bad flag: said with the usage, exit 2), turned into a
/// request by `of` (exit 2 when it refuses, saying why), then `run` (exit 1 when it fails,
/// saying why on one line).
pub fn main<R>(
    synopsis: &str,
    flags: &[flags::Flag],
    of: impl FnOnce(&flags::Parsed) -> anyhow::Result<R>,
    run: impl FnOnce(R) -> anyhow::Result<()>,
) -> std::process::ExitCode {
    use std::process::ExitCode;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match flags::parse(flags, &args) {
        Ok(parsed) => parsed,
        Err(flags::Stop::Help) => {
            eprint!("{}", flags::usage(synopsis, flags));
            return ExitCode::SUCCESS;
        }
        Err(flags::Stop::Bad(why)) => {
            say!("{why}");
            eprint!("{}", flags::usage(synopsis, flags));
            return ExitCode::from(2);
        }
    };
    let request = match of(&parsed) {
        Ok(request) => request,
        Err(err) => {
            say!("{err:#}");
            return ExitCode::from(2);
        }
    };
    match run(request) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            say!("{err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The name this program was started as (`format`, `mountie`).
pub fn program() -> String {
    std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|path| {
            path.file_name()
                .map(|name| name.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "storage".to_owned())
}

#[cfg(test)]
mod testing {
    use std::path::{Path, PathBuf};

    /// A 16 MiB ext4 filesystem labelled `t` in a file, made by the host's mkfs.ext4.
    pub fn ext4(dir: &Path) -> PathBuf {
        let path = dir.join("fs.img");
        std::fs::File::create(&path)
            .and_then(|file| file.set_len(16 << 20))
            .expect("image");
        crate::tool::succeed(
            "mkfs.ext4",
            &["-q", "-F", "-L", "t", &path.to_string_lossy()],
            None,
        )
        .expect("mkfs.ext4");
        path
    }
}
