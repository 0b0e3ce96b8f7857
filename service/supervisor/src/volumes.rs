//! Volumes at boot: every `/containers/volumes/NAME` gets a tmpfs on `tmp/` and an overlay of
//! `lower/` with `tmp/upper` and `tmp/work` on `merged/`, which bundles bind from. A volume that
//! cannot be set up is reported and undone; the others go on.
//! Runs in: `service system-init`, before onboot, in the root mount namespace.
//! Mirrors LinuxKit's volume step of `service` (pkg/init/cmd/service, `005-volumes`).

use std::io;
use std::path::Path;

use prepare::{plan, Prepared};
use spec::runtime::{Mount, Runtime};
use spec::Layout;

/// Sets up every volume of the tree at `containers`; returns the names of those that failed.
pub async fn set_up(containers: &Path) -> Vec<String> {
    let dir = Layout::new(containers).volumes_dir();
    let entries = match dir.read_dir() {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(err) => {
            eprintln!("volumes: read {}: {err}", dir.display());
            return vec![dir.display().to_string()];
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut failed = Vec::new();
    for name in names {
        let volume = Layout::new(containers).volume(&name);
        let (tmp, lower, merged) = (volume.tmp(), volume.lower(), volume.merged());
        let mounts = Runtime {
            mounts: vec![
                Mount {
                    destination: tmp.display().to_string(),
                    kind: "tmpfs".into(),
                    source: "tmpfs".into(),
                    options: vec!["mode=0755".into()],
                },
                Mount {
                    destination: merged.display().to_string(),
                    kind: "overlay".into(),
                    source: "overlay".into(),
                    options: vec![
                        format!("lowerdir={}", lower.display()),
                        format!("upperdir={}", volume.upper().display()),
                        format!("workdir={}", volume.work().display()),
                    ],
                },
            ],
            ..Runtime::default()
        };
        let mut prepared = Prepared::new();
        if let Err(err) = prepared.apply_filesystem(&plan::filesystem(&volume.dir, &mounts, &[])) {
            // The steps are the volume's own, not a runtime.json's: name the action, not a field.
            eprintln!("volume {name}: {}: {}", err.action, err.cause);
            for problem in prepared.undo().await {
                eprintln!("volume {name}: {problem}");
            }
            failed.push(name);
        }
    }
    failed
}
