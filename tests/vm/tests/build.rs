//! An image made by `kiln build` boots: init images unpacked into `/`, an onboot bundle on its
//! overlay root and a service bundle whose image label makes it read-only and binds a host
//! directory at a path the image lacks (the build makes that mount point, as the image root is
//! read-only at run time), each run by the supervisor from the config.json and runtime.json
//! the build wrote.
//! Runs on the host as any user that can run qemu. The images are OCI layouts made in a
//! temporary directory; a probe in the init image reports `PROBE` lines on the console.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::time::Duration;

use kiln::oci::layout::Layout;
use oci_spec::image::Config;
use vm::{Image, Kernel, Outcome, Vm};

const PROBE: &str = r#"#!/bin/sh
say() { echo "PROBE $*"; }
while [ ! -s /run/probe/service ]; do sleep 0.1; done
say "onboot $(tr '\n\t' '  ' < /run/probe/onboot)"
say "service $(cat /run/probe/service)"
poweroff
"#;

const MANIFEST: &str = r#"init:
  - oci:init
onboot:
  - name: hello
    image: oci:busybox
    command: [/bin/sh, -c, "echo uid=$(id -u) > /probe/onboot; grep CapEff /proc/self/status >> /probe/onboot"]
    binds: [/run/probe:/probe]
    runtime:
      mkdir: [/run/probe]
services:
  - name: writer
    image: oci:labelled
    command:
      - /bin/sh
      - -c
      - |
        trap 'exit 0' TERM
        echo "up root=$(awk '$5 == "/" {split($6, o, ","); print o[1]}' /proc/self/mountinfo)" > /probe/service
        while :; do sleep 1; done
"#;

#[test]
fn a_built_image_boots_and_runs_its_bundles() {
    let kernel = Kernel::find();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut init = Image::new();
    init.busybox()
        .kiln()
        .modules(&kernel, &["overlay"])
        .script(
            "etc/init.d/010-probe",
            "#!/bin/sh\n/probe > /dev/console 2>&1 &\n",
        )
        .script("probe", PROBE);
    Layout::create(&dir.path().join("init"))
        .expect("layout")
        .put_image("init", &[init.tree().clone()], Config::default())
        .expect("init image");
    let mut busybox = Image::default();
    busybox.busybox();
    Layout::create(&dir.path().join("busybox"))
        .expect("layout")
        .put_image("busybox", &[busybox.tree().clone()], Config::default())
        .expect("busybox image");
    let mut labelled = Config::default();
    labelled.set_labels(Some(
        [(
            "org.mobyproject.config".to_owned(),
            r#"{"readonly": true, "binds": ["/run/probe:/probe"]}"#.to_owned(),
        )]
        .into(),
    ));
    Layout::create(&dir.path().join("labelled"))
        .expect("layout")
        .put_image("labelled", &[busybox.tree().clone()], labelled)
        .expect("labelled image");
    let manifest = dir.path().join("image.yml");
    std::fs::write(&manifest, MANIFEST).expect("manifest");

    let (parsed, report) = kiln::load(&[kiln::Input {
        name: manifest.display().to_string(),
        text: MANIFEST.to_owned(),
    }]);
    assert!(report.diagnostics.is_empty(), "{:?}", report.diagnostics);
    let assembly = kiln::build::assemble::assemble(
        &parsed,
        &report,
        &dir.path().join("cache"),
        None,
        kiln::images::local::DEFAULT_MAX_LAYER,
        &mut |_, _, _| {},
    )
    .expect("assemble");
    let initrd = dir.path().join("initrd.img");
    let out = std::fs::File::create(&initrd).expect("create initrd");
    kiln::tree::initrd::write_initrd(
        &assembly.rootfs,
        None,
        kiln::tree::compression::Compression::default(),
        out,
    )
    .expect("write initrd");

    let mut vm = Vm::new(&kernel);
    vm.timeout(Duration::from_secs(120));
    let run = vm.boot_initrd(&initrd);
    let onboot = run.lines_after("PROBE onboot ");
    assert_eq!(onboot.len(), 1, "{}", run.console);
    assert!(
        onboot[0].starts_with("uid=0 CapEff: 0000000000000000"),
        "LinuxKit's defaults: root, no capabilities: {}",
        run.console
    );
    run.assert_printed("PROBE service up root=ro");
    assert_eq!(
        run.outcome,
        Outcome::PoweredOff,
        "poweroff ends the VM: {}",
        run.console
    );
}
