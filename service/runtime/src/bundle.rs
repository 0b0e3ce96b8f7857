//! A bundle made ready for libcontainer: checked in our words first (config.json, root
//! filesystem, mount types, cgroups path), then turned into the spec the container is
//! created from, with an absolute root and an explicit cgroups path that can never be `/` or
//! the runtime's own cgroup.
//! Runs in: the runtime, before every create. Reads /proc/filesystems and /proc/self/cgroup.

use std::collections::HashSet;
use std::fs;
use std::path::{Component, Path, PathBuf};

use libcontainer::oci_spec::runtime::{Linux, MountBuilder, RootBuilder, Spec};
use spec::{LoadError, Problem};

use crate::container_init;
use crate::error::Error;

/// Filesystem types that may be built as modules and so be missing from /proc/filesystems
/// until first mounted (the kernel loads them on demand).
const LOADABLE_FILESYSTEMS: [&str; 14] = [
    "overlay", "squashfs", "erofs", "ext2", "ext3", "ext4", "xfs", "btrfs", "vfat", "iso9660",
    "nfs", "nfs4", "9p", "fuse",
];

/// Reads `Y` when the kernel runs AppArmor.
const APPARMOR_ENABLED: &str = "/sys/module/apparmor/parameters/enabled";

/// Mount types that are not filesystem types.
const BIND_TYPES: [&str; 3] = ["bind", "rbind", "none"];

/// Where a container sees the directory of its sd_notify socket (as podman binds it).
pub const NOTIFY_DIR: &str = "/run/notify";

/// Loads and checks `<bundle>/config.json` and returns the spec to create container `id` from.
pub(crate) fn prepare(bundle: &Path, id: &str, cgroup_parent: &str) -> Result<Spec, Error> {
    let fail = |problems: Vec<Problem>| Error::Bundle {
        bundle: bundle.to_owned(),
        problems,
    };
    if !bundle.is_dir() {
        return Err(fail(vec![Problem::new(".", "not a directory")]));
    }
    let mut spec = spec::config::load(bundle).map_err(|err| match &err {
        LoadError::Read { path, source } if source.kind() == std::io::ErrorKind::NotFound => {
            fail(vec![Problem::new(
                spec::config::FILE_NAME,
                format!("missing: {} does not exist", path.display()),
            )])
        }
        _ => fail(vec![in_config(err.problem())]),
    })?;

    let mut problems: Vec<Problem> = spec::config::check(&spec)
        .into_iter()
        .map(in_config)
        .collect();
    if let Some(process) = spec.process() {
        // The container inherits the runtime's stack limit unless config.json sets its own.
        let (stack, _) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_STACK)
            .unwrap_or((u64::MAX, u64::MAX));
        problems.extend(spec::config::check_exec_size(process, stack).map(in_config));
    }
    let root = spec::bundle::root_dir(
        bundle,
        spec.root().as_ref().map(|root| root.path().as_path()),
    );
    if !root.is_dir() {
        problems.push(Problem::new(
            "rootfs",
            format!("the root filesystem {} is missing", root.display()),
        ));
    }
    problems.extend(check_mount_types(&spec).into_iter().map(in_config));
    problems.extend(check_apparmor(&spec, Path::new(APPARMOR_ENABLED)).map(in_config));
    let cgroups_path = match cgroups_path(&spec, id, cgroup_parent) {
        Ok(path) => Some(path),
        Err(problem) => {
            problems.push(in_config(problem));
            None
        }
    };
    if !problems.is_empty() {
        return Err(fail(problems));
    }

    // Absent means writable (config.md: root.readonly defaults to false); the builder's own
    // default would make the root read-only.
    let readonly = spec.root().as_ref().and_then(|root| root.readonly());
    let new_root = RootBuilder::default()
        .path(root)
        .readonly(readonly.unwrap_or(false))
        .build()
        .map_err(|err| fail(vec![in_config(Problem::new("root", err.to_string()))]))?;
    spec.set_root(Some(new_root));
    let mut linux = spec.linux().clone().unwrap_or_else(Linux::default);
    linux.set_cgroups_path(cgroups_path);
    // runc takes the recursive names too; libcontainer makes every mode recursive but knows
    // only the plain names.
    let plain = linux
        .rootfs_propagation()
        .as_deref()
        .and_then(|mode| mode.strip_prefix('r'))
        .filter(|mode| ["shared", "slave", "private", "unbindable"].contains(mode))
        .map(str::to_owned);
    if plain.is_some() {
        linux.set_rootfs_propagation(plain);
    }
    spec.set_linux(Some(linux));
    Ok(spec)
}

/// Appends a bind mount of host path `source` at `destination`, after every other mount so
/// that none hides it.
fn bind_last(
    spec: &mut Spec,
    source: &Path,
    destination: &Path,
    options: &[&str],
) -> Result<(), String> {
    let mount = MountBuilder::default()
        .destination(destination)
        .typ("bind")
        .source(source)
        .options(
            options
                .iter()
                .map(|option| (*option).to_owned())
                .collect::<Vec<_>>(),
        )
        .build()
        .map_err(|err| err.to_string())?;
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.push(mount);
    spec.set_mounts(Some(mounts));
    Ok(())
}

/// Binds the directory holding `socket` (a host path) read-only at [`NOTIFY_DIR`], after every
/// other mount so that a bound /run does not hide it, and sets `NOTIFY_SOCKET` to the socket's
/// path inside the container, replacing any value the config has.
pub(crate) fn add_notify_socket(spec: &mut Spec, socket: &Path) -> Result<(), Problem> {
    let field = "--notify-socket";
    let (Some(dir), Some(name)) = (socket.parent(), socket.file_name()) else {
        return Err(Problem::new(
            field,
            format!("`{}` is not a path to a socket", socket.display()),
        ));
    };
    if !socket.is_absolute() {
        return Err(Problem::new(
            field,
            format!("`{}` is not an absolute path", socket.display()),
        ));
    }
    let options = ["bind", "ro", "nosuid", "nodev", "noexec"];
    bind_last(spec, dir, Path::new(NOTIFY_DIR), &options)
        .map_err(|err| Problem::new(field, err))?;

    let variable = format!(
        "NOTIFY_SOCKET={}",
        Path::new(NOTIFY_DIR).join(name).display()
    );
    set_env(spec, &[variable]);
    Ok(())
}

/// Sets `variables` (`KEY=VALUE`) in the process's environment, each replacing any value the
/// config has for its key.
pub(crate) fn set_env(spec: &mut Spec, variables: &[String]) {
    let key = |entry: &str| {
        entry
            .split_once('=')
            .map_or(entry, |(key, _)| key)
            .to_owned()
    };
    let keys: Vec<String> = variables.iter().map(|variable| key(variable)).collect();
    let mut process = spec.process().clone().unwrap_or_default();
    let mut env: Vec<String> = process
        .env()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|entry| !keys.contains(&key(entry)))
        .collect();
    env.extend(variables.iter().cloned());
    process.set_env(Some(env));
    spec.set_process(Some(process));
}

/// Binds `init` (this binary, a host path) read-only at [`container_init::PATH`], after every
/// other mount, and puts it in front of `process.args`, as `docker run --init` does with
/// docker-init.
pub(crate) fn add_init(spec: &mut Spec, init: &Path) -> Result<(), Problem> {
    let field = "--init";
    let options = ["bind", "ro", "nosuid", "nodev"];
    bind_last(spec, init, Path::new(container_init::PATH), &options)
        .map_err(|err| Problem::new(field, err))?;

    let mut process = spec.process().clone().unwrap_or_default();
    let args = process.args().clone().unwrap_or_default();
    if args.is_empty() {
        return Err(Problem::new(
            "process.args",
            "is empty: no program to run under the init",
        ));
    }
    let args = [container_init::PATH.to_owned(), "--".to_owned()]
        .into_iter()
        .chain(args)
        .collect();
    process.set_args(Some(args));
    spec.set_process(Some(process));
    Ok(())
}

fn in_config(problem: Problem) -> Problem {
    Problem::new(
        format!("{}: {}", spec::config::FILE_NAME, problem.field),
        problem.message,
    )
}

fn check_mount_types(spec: &Spec) -> Vec<Problem> {
    let known = known_filesystems();
    let mut problems = Vec::new();
    for (i, mount) in spec.mounts().iter().flatten().enumerate() {
        let Some(kind) = mount.typ().as_deref().filter(|kind| !kind.is_empty()) else {
            continue;
        };
        if !BIND_TYPES.contains(&kind) && !known.contains(kind) {
            problems.push(Problem::new(
                format!("mounts[{i}].type"),
                format!("unknown filesystem type `{kind}` (not in /proc/filesystems)"),
            ));
        }
    }
    problems
}

/// A profile named for a kernel without AppArmor cannot be applied (libcontainer only says
/// "No such file or directory"). `enabled` is [`APPARMOR_ENABLED`].
fn check_apparmor(spec: &Spec, enabled: &Path) -> Option<Problem> {
    let profile = spec.process().as_ref()?.apparmor_profile().as_ref()?;
    if profile.is_empty() || fs::read_to_string(enabled).is_ok_and(|text| text.trim() == "Y") {
        return None;
    }
    Some(Problem::new(
        "process.apparmorProfile",
        format!(
            "`{profile}` cannot be applied: AppArmor is not enabled on this machine ({} does not read Y)",
            enabled.display()
        ),
    ))
}

fn known_filesystems() -> HashSet<String> {
    let listed = fs::read_to_string("/proc/filesystems").unwrap_or_default();
    listed
        .lines()
        .filter_map(|line| line.split_whitespace().last())
        .map(str::to_owned)
        .chain(LOADABLE_FILESYSTEMS.iter().map(|kind| (*kind).to_owned()))
        .collect()
}

/// The cgroups path the container gets: `linux.cgroupsPath`, or `<parent>/<id>`. A relative
/// path is taken from the cgroup root, as LinuxKit images get it (`podruntime/docker` is
/// `/podruntime/docker` on a LinuxKit system, whose runtimes run in the root cgroup). It must
/// be below the root and must not hold the runtime's own cgroup: deleting a container kills
/// every process in its cgroup.
fn cgroups_path(spec: &Spec, id: &str, cgroup_parent: &str) -> Result<PathBuf, Problem> {
    let field = "linux.cgroupsPath";
    let path = spec
        .linux()
        .as_ref()
        .and_then(|linux| linux.cgroups_path().clone())
        .filter(|path| !path.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new(cgroup_parent).join(id));
    let path = Path::new("/").join(path);
    if path
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(Problem::new(
            field,
            format!("`{}` may not contain `..` or `.`", path.display()),
        ));
    }
    if path.components().count() < 2 {
        return Err(Problem::new(
            field,
            "`/` is the root cgroup: give the container a cgroup of its own",
        ));
    }
    let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    for line in own.lines() {
        let Some(own_path) = line.splitn(3, ':').nth(2) else {
            continue;
        };
        if Path::new(own_path).starts_with(&path) {
            return Err(Problem::new(
                field,
                format!(
                    "`{}` holds the runtime's own cgroup ({line}): deleting the container would kill the runtime",
                    path.display()
                ),
            ));
        }
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxBuilder, SpecBuilder};

    fn with_path(path: &str) -> Spec {
        SpecBuilder::default()
            .linux(
                LinuxBuilder::default()
                    .cgroups_path(PathBuf::from(path))
                    .build()
                    .expect("linux"),
            )
            .build()
            .expect("spec")
    }

    #[test]
    fn an_apparmor_profile_needs_apparmor() {
        let dir = tempfile::tempdir().unwrap();
        let enabled = dir.path().join("enabled");
        let mut spec = Spec::default();
        let mut process = spec.process().clone().unwrap();
        process.set_apparmor_profile(Some("kiln-default".to_owned()));
        spec.set_process(Some(process));
        let problem = check_apparmor(&spec, &enabled).expect("no AppArmor module");
        assert_eq!(problem.field, "process.apparmorProfile");
        assert!(
            problem.message.contains("`kiln-default` cannot be applied"),
            "{problem}"
        );
        fs::write(&enabled, "N\n").unwrap();
        assert!(check_apparmor(&spec, &enabled).is_some(), "disabled");
        fs::write(&enabled, "Y\n").unwrap();
        assert_eq!(check_apparmor(&spec, &enabled), None, "enabled");
        assert_eq!(
            check_apparmor(&Spec::default(), Path::new("/nonexistent")),
            None
        );
    }

    #[test]
    fn a_relative_cgroups_path_starts_at_the_cgroup_root() {
        assert_eq!(
            cgroups_path(&with_path("podruntime/docker"), "c", "/kiln"),
            Ok(PathBuf::from("/podruntime/docker"))
        );
        assert_eq!(
            cgroups_path(&with_path("/kiln-test/a"), "c", "/kiln"),
            Ok(PathBuf::from("/kiln-test/a"))
        );
        assert_eq!(
            cgroups_path(&with_path(""), "c", "/kiln"),
            Ok(PathBuf::from("/kiln/c"))
        );
    }

    #[test]
    fn without_a_path_the_parent_must_not_be_the_root() {
        let problem = cgroups_path(&with_path(""), "", "/").expect_err("the root");
        assert!(problem.to_string().contains("root cgroup"), "{problem}");
    }

    #[test]
    fn the_root_and_dot_dot_are_refused() {
        for path in ["/", "a/../..", "../x"] {
            let problem = cgroups_path(&with_path(path), "c", "/kiln").expect_err(path);
            assert!(
                problem.to_string().contains("linux.cgroupsPath"),
                "{problem}"
            );
        }
    }

    #[test]
    fn set_variables_replace_the_configs_own() {
        let mut spec = Spec::default();
        let mut process = spec.process().clone().unwrap();
        process.set_env(Some(vec![
            "PATH=/bin".into(),
            "WATCHDOG_USEC=1".into(),
            "TERM".into(),
        ]));
        spec.set_process(Some(process));
        set_env(
            &mut spec,
            &["WATCHDOG_USEC=5000000".into(), "TERM=xterm".into()],
        );
        let env = spec.process().as_ref().unwrap().env().clone().unwrap();
        assert_eq!(env, ["PATH=/bin", "WATCHDOG_USEC=5000000", "TERM=xterm"]);
    }
}
