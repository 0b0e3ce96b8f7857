//! The container's seccomp filter, installed after the container's working directory is set.
//! Without `process.noNewPrivileges: true`, loading a filter needs CAP_SYS_ADMIN, so
//! libcontainer loads it before it drops capabilities, and then still changes to `process.cwd`
//! and checks it with getcwd(2): a profile that denies getcwd or chdir (as the OCI suite's does)
//! made every such container fail to start ("failed to verify cwd: EPERM"). Here such a profile
//! is taken out of the spec libcontainer sees and loaded by the executor's check, the step
//! libcontainer runs after the working directory and before it reports the container created
//! (where it loads a filter when noNewPrivileges is true). CAP_SYS_ADMIN is kept in the
//! permitted set until then, raised to load the filter and dropped again; the permitted set
//! never survives execve(2), whose sets come from the bounding, inheritable and ambient sets.
//! Runs in: the runtime at create and exec (the spec rewrite); the container's init after its
//! capabilities are set (loading).

use caps::CapSet;
use libcontainer::oci_spec::runtime::{Capability, LinuxSeccomp, Spec};

/// A filter to load in the container's init, and how to put its capabilities back afterwards.
#[derive(Debug, Clone)]
pub(crate) struct Deferred {
    profile: LinuxSeccomp,
    /// CAP_SYS_ADMIN was added to `process.capabilities.permitted` to load the filter.
    added_to_permitted: bool,
}

/// If `spec` has a seccomp profile that libcontainer would load before the working directory
/// is set (no `noNewPrivileges: true`), takes it out of `spec`, keeps CAP_SYS_ADMIN permitted
/// until it is loaded, and returns it. A profile with a notify action stays with libcontainer,
/// which passes the listener's fd on.
pub(crate) fn defer(spec: &mut Spec) -> Option<Deferred> {
    let no_new_privileges = spec
        .process()
        .as_ref()
        .and_then(|process| process.no_new_privileges())
        == Some(true);
    let mut linux = spec.linux().clone()?;
    let profile = linux.seccomp().clone()?;
    if no_new_privileges || libcontainer::seccomp::is_notify(&profile) {
        return None;
    }
    linux.set_seccomp(None);
    spec.set_linux(Some(linux));

    let mut added_to_permitted = false;
    if let Some(mut process) = spec.process().clone() {
        if let Some(mut capabilities) = process.capabilities().clone() {
            if let Some(mut permitted) = capabilities.permitted().clone() {
                added_to_permitted = permitted.insert(Capability::SysAdmin);
                capabilities.set_permitted(Some(permitted));
                process.set_capabilities(Some(capabilities));
                spec.set_process(Some(process));
            }
        }
    }
    Some(Deferred {
        profile,
        added_to_permitted,
    })
}

/// Loads the filter in the calling process (the container's init), with CAP_SYS_ADMIN
/// effective only while it loads; drops it from the permitted set when [`defer`] added it.
pub(crate) fn load(deferred: &Deferred) -> Result<(), String> {
    let admin = caps::Capability::CAP_SYS_ADMIN;
    let effective = caps::has_cap(None, CapSet::Effective, admin)
        .map_err(|err| format!("read the capabilities: {err}"))?;
    if !effective {
        caps::raise(None, CapSet::Effective, admin)
            .map_err(|err| format!("raise CAP_SYS_ADMIN to load the seccomp filter: {err}"))?;
    }
    let loaded = libcontainer::seccomp::initialize_seccomp(&deferred.profile)
        .map(|_| ())
        .map_err(|err| format!("linux.seccomp: load the filter: {err}"));
    // Back as the spec has them, whether or not the filter loaded.
    if !effective {
        caps::drop(None, CapSet::Effective, admin)
            .map_err(|err| format!("drop CAP_SYS_ADMIN after the seccomp filter: {err}"))?;
    }
    if deferred.added_to_permitted {
        caps::drop(None, CapSet::Permitted, admin)
            .map_err(|err| format!("drop CAP_SYS_ADMIN after the seccomp filter: {err}"))?;
    }
    loaded
}

#[cfg(test)]
mod tests {
    use super::*;
    use libcontainer::oci_spec::runtime::{
        LinuxBuilder, LinuxCapabilitiesBuilder, LinuxSeccompAction, LinuxSeccompBuilder,
        ProcessBuilder, SpecBuilder,
    };

    fn spec(no_new_privileges: Option<bool>, permitted: &[Capability]) -> Spec {
        let seccomp = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActAllow)
            .build()
            .unwrap();
        let set = permitted
            .iter()
            .copied()
            .collect::<std::collections::HashSet<_>>();
        let capabilities = LinuxCapabilitiesBuilder::default()
            .permitted(set.clone())
            .effective(set)
            .build()
            .unwrap();
        let mut process = ProcessBuilder::default()
            .capabilities(capabilities)
            .build()
            .unwrap();
        process.set_no_new_privileges(no_new_privileges);
        SpecBuilder::default()
            .process(process)
            .linux(LinuxBuilder::default().seccomp(seccomp).build().unwrap())
            .build()
            .unwrap()
    }

    fn permitted(spec: &Spec) -> Vec<String> {
        let mut names: Vec<String> = spec
            .process()
            .as_ref()
            .and_then(|p| p.capabilities().as_ref())
            .and_then(|c| c.permitted().as_ref())
            .into_iter()
            .flatten()
            .map(|cap| cap.to_string())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn without_no_new_privileges_the_profile_waits_for_the_executor() {
        for no_new_privileges in [None, Some(false)] {
            let mut spec = spec(no_new_privileges, &[Capability::Kill]);
            let deferred = defer(&mut spec).expect("deferred");
            assert!(deferred.added_to_permitted);
            assert!(spec.linux().as_ref().unwrap().seccomp().is_none());
            assert_eq!(permitted(&spec), ["KILL", "SYS_ADMIN"]);
        }
    }

    #[test]
    fn with_no_new_privileges_libcontainer_loads_it() {
        let mut spec = spec(Some(true), &[Capability::Kill]);
        assert!(defer(&mut spec).is_none());
        assert!(spec.linux().as_ref().unwrap().seccomp().is_some());
        assert_eq!(permitted(&spec), ["KILL"]);
    }

    #[test]
    fn a_permitted_cap_sys_admin_is_left_as_it_was() {
        let mut spec = spec(None, &[Capability::SysAdmin]);
        let deferred = defer(&mut spec).expect("deferred");
        assert!(
            !deferred.added_to_permitted,
            "the spec gave it: not dropped"
        );
    }
}
