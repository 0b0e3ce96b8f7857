//! How the runtime runs a bundle's hooks, where libcontainer alone would not keep to config.md
//! and runtime.md.
//! - The state a create-time hook reads on stdin. libcontainer runs the prestart,
//!   createRuntime and createContainer hooks with the state of the container it is building:
//!   its bundle is the runtime's prepared copy of the spec (under the state root) and its status
//!   `creating`. Each such hook is therefore run through this runtime's own `hook` command,
//!   which reads that state, names the bundle the caller gave and the status `created` (the
//!   create operation's environment is made before these hooks run), and execs the hook with
//!   the corrected state on its stdin, keeping its pid, arguments, environment and timeout.
//! - The poststart and poststop hooks. A failing one is a warning and the others still run,
//!   and the operation succeeds; libcontainer stops at the first and fails the operation, so a
//!   failing poststop hook left a container that no delete could remove. They are taken out of
//!   the spec libcontainer sees and run here from the spec kept at create, one at a time.
//!
//! Runs in: the runtime (the spec rewrites, create; poststart after start; poststop after
//! delete); the `hook` process, in the runtime's namespaces (prestart, createRuntime) or the
//! container's before pivot_root (createContainer).

use std::ffi::{CString, OsString};
use std::io::{self, Read, Seek, Write};
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

use libcontainer::container::State as ContainerState;
use libcontainer::oci_spec::runtime::{Hook, Spec};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};

use crate::diagnostics;
use crate::error::{self, Error};

/// The hidden `service runtime` command a create-time hook runs through.
pub const COMMAND: &str = "hook";

/// The most state read from stdin: far above any real state (annotations included), so that a
/// runaway writer cannot fill memory.
const MAX_STATE: u64 = 16 << 20;

/// Has every prestart, createRuntime and createContainer hook of `spec` run as
/// `exe runtime hook --bundle BUNDLE -- PATH ARG0 ARGS...`.
pub(crate) fn wrap(spec: &mut Spec, bundle: &Path, exe: &Path) {
    let Some(mut hooks) = spec.hooks().clone() else {
        return;
    };
    let through = |list: &Option<Vec<Hook>>| -> Option<Vec<Hook>> {
        list.as_ref()
            .map(|list| list.iter().map(|hook| rewrite(hook, bundle, exe)).collect())
    };
    #[allow(deprecated, reason = "prestart is deprecated in the spec, still run")]
    let prestart = through(hooks.prestart());
    let create_runtime = through(hooks.create_runtime());
    let create_container = through(hooks.create_container());
    #[allow(deprecated, reason = "prestart is deprecated in the spec, still run")]
    hooks.set_prestart(prestart);
    hooks.set_create_runtime(create_runtime);
    hooks.set_create_container(create_container);
    spec.set_hooks(Some(hooks));
}

/// `hook` run through `exe runtime hook --bundle BUNDLE -- PATH ARG0 ARGS...`.
fn rewrite(hook: &Hook, bundle: &Path, exe: &Path) -> Hook {
    let path = hook.path().display().to_string();
    let mut original = hook.args().clone().unwrap_or_default();
    if original.is_empty() {
        original.push(path.clone());
    }
    let args = [
        exe.display().to_string(),
        "runtime".to_owned(),
        COMMAND.to_owned(),
        "--bundle".to_owned(),
        bundle.display().to_string(),
        "--".to_owned(),
        path,
    ]
    .into_iter()
    .chain(original)
    .collect::<Vec<_>>();
    let mut wrapped = hook.clone();
    wrapped.set_path(exe.to_owned());
    wrapped.set_args(Some(args));
    wrapped
}

/// Takes the poststart and poststop hooks out of the spec libcontainer is given; [`run_each`]
/// runs them from the spec kept at create.
pub(crate) fn take_post_hooks(spec: &mut Spec) {
    if let Some(mut hooks) = spec.hooks().clone() {
        hooks.set_poststart(None);
        hooks.set_poststop(None);
        spec.set_hooks(Some(hooks));
    }
}

/// Which hooks [`run_each`] runs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum After {
    Start,
    Stop,
}

/// Runs the poststart or poststop hooks of `spec` (the spec kept at create) in order with
/// `state` on stdin; a failure is a warning (runtime.md: "the remaining hooks and lifecycle
/// continue as if the hook had succeeded").
pub(crate) fn run_each(spec: &Spec, after: After, state: &ContainerState, cwd: Option<&Path>) {
    let Some(hooks) = spec.hooks() else {
        return;
    };
    let (kind, list) = match after {
        After::Start => ("poststart", hooks.poststart()),
        After::Stop => ("poststop", hooks.poststop()),
    };
    for (i, hook) in list.iter().flatten().enumerate() {
        let one = vec![hook.clone()];
        if let Err(err) = libcontainer::hooks::run_hooks(Some(&one), Some(state), cwd, None, None) {
            let message = format!(
                "container `{}`: hooks.{kind}[{i}] ({}) failed: {err}",
                state.id,
                hook.path().display()
            );
            let message = error::with_causes(message, &err);
            diagnostics::warn(&format!("{message}; carrying on, as runtime.md asks"));
        }
    }
}

/// The `hook` command: reads the state from stdin, corrects it for `bundle`, and execs
/// `program` (`path`, then argv) with it on stdin. Returns only on failure.
pub fn run(bundle: &Path, program: &[OsString]) -> Error {
    let [path, argv @ ..] = program else {
        return Error::Unsupported("hook: no program given (hook --bundle DIR -- PATH ARG0...)");
    };
    match exec_with_state(bundle, path, argv) {
        Ok(never) => match never {},
        Err(err) => err,
    }
}

fn exec_with_state(
    bundle: &Path,
    path: &OsString,
    argv: &[OsString],
) -> Result<std::convert::Infallible, Error> {
    let mut text = Vec::new();
    io::stdin()
        .take(MAX_STATE)
        .read_to_end(&mut text)
        .map_err(|err| Error::io("read the container state from", "stdin", err))?;
    let state = corrected(&text, bundle)
        .map_err(|err| Error::io("read the container state from", "stdin", err))?;

    let name = c"kiln-hook-state";
    let file = memfd_create(name, MemFdCreateFlag::empty())
        .map_err(|err| Error::io("create", "a memfd for the hook's state", err.into()))?;
    let mut file = std::fs::File::from(file);
    file.write_all(&state)
        .and_then(|()| file.rewind())
        .map_err(|err| Error::io("write the state to", "the hook's stdin", err))?;
    nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(&file), libc::STDIN_FILENO)
        .map_err(|err| Error::io("make the state the stdin of", path, err.into()))?;
    drop(file);

    let c_string = |arg: &OsString| {
        CString::new(arg.clone().into_vec())
            .map_err(|err| Error::io("exec", path, io::Error::other(err)))
    };
    let program = c_string(path)?;
    let argv = argv.iter().map(c_string).collect::<Result<Vec<_>, _>>()?;
    let err = nix::unistd::execv(&program, &argv).unwrap_err();
    Err(Error::io("exec the hook", path, err.into()))
}

/// The state with `bundle` as its bundle and `created` where it said `creating`.
fn corrected(text: &[u8], bundle: &Path) -> io::Result<Vec<u8>> {
    let mut state: serde_json::Value = serde_json::from_slice(text).map_err(io::Error::other)?;
    let object = state
        .as_object_mut()
        .ok_or_else(|| io::Error::other("the state is not a JSON object"))?;
    object.insert(
        "bundle".to_owned(),
        serde_json::Value::String(bundle.display().to_string()),
    );
    if object.get("status").and_then(|status| status.as_str()) == Some("creating") {
        object.insert("status".to_owned(), "created".into());
    }
    serde_json::to_vec(&state).map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;
    use libcontainer::oci_spec::runtime::{HookBuilder, Hooks, HooksBuilder, SpecBuilder};

    /// Whether `hooks` holds any hook this module runs through the `hook` command.
    fn wrapped_kinds(hooks: &Hooks) -> usize {
        #[allow(deprecated, reason = "prestart is deprecated in the spec, still run")]
        let prestart = hooks.prestart();
        [prestart, hooks.create_runtime(), hooks.create_container()]
            .into_iter()
            .flatten()
            .flatten()
            .filter(|hook| {
                hook.args()
                    .as_ref()
                    .is_some_and(|args| args.get(2).is_some_and(|arg| arg == COMMAND))
            })
            .count()
    }

    #[test]
    fn the_state_names_the_callers_bundle_and_created() {
        let text = br#"{"ociVersion":"1.2.0","id":"c","status":"creating","pid":7,"bundle":"/run/kiln/runtime/.prepared/c","annotations":{"a":"b"}}"#;
        let state: serde_json::Value =
            serde_json::from_slice(&corrected(text, Path::new("/srv/bundle")).unwrap()).unwrap();
        assert_eq!(state["bundle"], "/srv/bundle");
        assert_eq!(state["status"], "created");
        assert_eq!(state["pid"], 7);
        assert_eq!(state["annotations"]["a"], "b");

        let running = br#"{"id":"c","status":"running","bundle":"/x"}"#;
        let state: serde_json::Value =
            serde_json::from_slice(&corrected(running, Path::new("/b")).unwrap()).unwrap();
        assert_eq!(state["status"], "running", "only `creating` is corrected");
        assert!(corrected(b"[1]", Path::new("/b")).is_err());
    }

    #[test]
    fn create_time_hooks_run_through_the_command_and_others_are_kept() {
        let hook = |path: &str, args: Option<Vec<&str>>| {
            let mut builder = HookBuilder::default().path(path).timeout(5);
            if let Some(args) = args {
                builder = builder.args(args.into_iter().map(str::to_owned).collect::<Vec<_>>());
            }
            builder.build().unwrap()
        };
        let hooks = HooksBuilder::default()
            .create_runtime(vec![
                hook("/bin/a", Some(vec!["a0", "x"])),
                hook("/bin/b", None),
            ])
            .create_container(vec![hook("/bin/c", Some(vec!["c"]))])
            .poststart(vec![hook("/bin/p", None)])
            .build()
            .unwrap();
        let mut spec = SpecBuilder::default().hooks(hooks).build().unwrap();
        wrap(
            &mut spec,
            Path::new("/srv/b"),
            Path::new("/usr/bin/service"),
        );
        let hooks = spec.hooks().clone().unwrap();
        assert_eq!(wrapped_kinds(&hooks), 3);
        let first = &hooks.create_runtime().as_ref().unwrap()[0];
        assert_eq!(first.path(), Path::new("/usr/bin/service"));
        assert_eq!(
            first.args().as_ref().unwrap(),
            &[
                "/usr/bin/service",
                "runtime",
                "hook",
                "--bundle",
                "/srv/b",
                "--",
                "/bin/a",
                "a0",
                "x"
            ]
        );
        assert_eq!(first.timeout(), Some(5), "the timeout is kept");
        let second = &hooks.create_runtime().as_ref().unwrap()[1];
        assert_eq!(
            &second.args().as_ref().unwrap()[5..],
            &["--", "/bin/b", "/bin/b"],
            "without args, argv[0] is the path"
        );
        let poststart = &hooks.poststart().as_ref().unwrap()[0];
        assert_eq!(
            poststart.path(),
            Path::new("/bin/p"),
            "poststart is not wrapped"
        );
    }
}
