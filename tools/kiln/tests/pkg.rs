//! `kiln pkg build` and `show-tag` through the binary: a package made of its own files, a
//! binary of this workspace and a Debian package lands in the cache under its tag with exactly
//! those contents and its label; building again changes nothing; a changed file changes the
//! tag; a missing file or an unknown Debian package fails clearly without a cache entry; and
//! two builds at once make a package once. A package's binary is the workspace's release
//! build, not compiled again; a package whose inputs did not change is found without cargo,
//! and one whose sources changed gets a new tag and, without cargo, a message naming the
//! change.
//! Then the packages in pkg/ and the examples in yml/: each example builds from them, and the
//! kernel package holds modules.dep and an ELF kernel.
//! Runs on a Debian build host with apt's index (`tools/dev setup`); fetched `.deb` files are
//! kept in the user's cache, so only the first run downloads.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln::build::source::Sources;
use kiln::tree::{Kind, Tree};

/// `kiln ARGS` with `cache` as its image cache.
fn kiln_command(cache: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
    command.args(args).env("KILN_CACHE", cache);
    command
}

fn kiln(cache: &Path, args: &[&str]) -> Output {
    kiln_command(cache, args).output().expect("run kiln")
}

/// `kiln pkg COMMAND PACKAGE`, which must fail; its stderr.
fn pkg_fails(cache: &Path, command: &str, package: &tempfile::TempDir) -> String {
    let path = package.path().to_str().expect("utf-8");
    let output = kiln(cache, &["pkg", command, path]);
    assert!(
        !output.status.success(),
        "kiln pkg {command} {path} succeeded"
    );
    text(&output.stderr)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// Reads `reference` from `cache` as a build would.
fn image(cache: &Path, reference: &str) -> kiln::images::local::LocalImage {
    Sources {
        base: PathBuf::from("."),
        cache: cache.to_owned(),
        registry: None,
        max_layer: kiln::images::local::DEFAULT_MAX_LAYER,
    }
    .read(reference, &mut |_, _| {})
    .unwrap_or_else(|err| panic!("{reference}: {err:#}"))
}

fn data(tree: &Tree, key: &str) -> Vec<u8> {
    match tree.get(key).map(|node| &node.kind) {
        Some(Kind::File { data, .. }) => data.to_vec().expect("read back"),
        other => panic!("{key}: {other:?}"),
    }
}

fn index_names(cache: &Path) -> String {
    fs::read_to_string(cache.join("index.json")).unwrap_or_default()
}

/// A package folder inside the workspace (so it may take the workspace's binaries).
fn package(name: &str, build: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(&format!(".test-pkg-{name}-"))
        .tempdir_in(workspace().join("target"))
        .expect("package dir");
    fs::write(dir.path().join("build.yml"), build).expect("build.yml");
    dir
}

const TOOL: &str = r#"image: tool
config:
  pid: host
  binds: ["/etc/tool:/etc/tool:ro"]
entrypoint: [/init, --help]
env: [MODE=test]
contents:
  - deb: busybox-static
    keep: [/bin/busybox]
  - applets: /bin/busybox
  - binary: init
    to: /init
  - files: etc
    to: /etc/tool
  - files: run.sh
    to: /usr/bin/
  - directory: /var/empty
    mode: "0555"
  - symlink: /bin/tool
    target: /usr/bin/run.sh
"#;

#[test]
fn a_package_of_files_a_binary_and_a_deb_is_cached_under_its_tag() {
    let cache = tempfile::tempdir().expect("cache");
    let pkg = package("tool", TOOL);
    fs::create_dir_all(pkg.path().join("etc")).expect("etc");
    fs::write(pkg.path().join("etc/tool.conf"), "level=3\n").expect("conf");
    fs::write(pkg.path().join("run.sh"), "#!/bin/sh\necho run\n").expect("run.sh");
    fs::set_permissions(
        pkg.path().join("run.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let dir = pkg.path().to_str().expect("utf-8");

    let shown = kiln(cache.path(), &["pkg", "show-tag", dir]);
    assert!(shown.status.success(), "{}", text(&shown.stderr));
    let reference = text(&shown.stdout).trim().to_owned();
    assert!(reference.starts_with("kiln/tool:"), "{reference}");
    assert!(
        !index_names(cache.path()).contains("kiln/tool"),
        "show-tag builds nothing"
    );

    // The workspace's release build, as `tools/dev` makes it, is taken as it is.
    let release_init = workspace().join("target/x86_64-unknown-linux-gnu/release/init");
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--locked",
            "--workspace",
            "--bin",
            "init",
        ])
        .current_dir(workspace())
        .status()
        .expect("run cargo");
    assert!(status.success(), "the workspace's release build");
    let built_init = fs::read(&release_init).expect("the release init");
    let modified = fs::metadata(&release_init)
        .and_then(|m| m.modified())
        .expect("mtime");
    let built = kiln(cache.path(), &["pkg", "build", dir]);
    assert!(built.status.success(), "{}", text(&built.stderr));
    assert_eq!(text(&built.stdout).trim(), reference);
    assert!(
        text(&built.stderr)
            .contains("the binary init is the workspace's release build, which was up to date"),
        "{}",
        text(&built.stderr)
    );
    assert_eq!(
        fs::metadata(&release_init)
            .and_then(|m| m.modified())
            .expect("mtime"),
        modified,
        "not linked again"
    );
    let first = index_names(cache.path());
    assert!(first.contains(&format!("docker.io/{reference}")), "{first}");

    let image = image(cache.path(), &reference);
    let root = &image.rootfs;
    let busybox = &data(root, "bin/busybox")[..];
    assert!(busybox.starts_with(b"\x7fELF"));
    assert!(
        matches!(&root.get("bin/sh").expect("sh").kind, Kind::Symlink(t) if t == "/bin/busybox")
    );
    assert!(
        !root.contains("usr/share/doc/busybox-static"),
        "only kept paths"
    );
    let init = root.get("init").expect("init");
    assert_eq!(init.mode, 0o755);
    assert_eq!(data(root, "init"), built_init.as_slice(), "byte for byte");
    assert_eq!(data(root, "etc/tool/tool.conf"), b"level=3\n");
    assert_eq!(root.get("usr/bin/run.sh").map(|n| n.mode), Some(0o755));
    assert_eq!(root.get("var/empty").map(|n| n.mode), Some(0o555));
    assert!(root.iter().all(|(_, node)| node.uid == 0 && node.gid == 0));
    let config = &image.config;
    assert_eq!(
        config.entrypoint().clone(),
        Some(vec!["/init".to_owned(), "--help".to_owned()])
    );
    assert_eq!(config.env().clone(), Some(vec!["MODE=test".to_owned()]));
    let label = config
        .labels()
        .as_ref()
        .and_then(|labels| labels.get("org.mobyproject.config"))
        .expect("label");
    let label: serde_json::Value = serde_json::from_str(label).expect("label JSON");
    assert_eq!(
        label,
        serde_json::json!({"pid": "host", "binds": ["/etc/tool:/etc/tool:ro"]})
    );

    // Unchanged: not built again. Forced: the same bytes again.
    let again = kiln(cache.path(), &["pkg", "build", dir]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(
        text(&again.stderr).contains("is up to date"),
        "{}",
        text(&again.stderr)
    );
    let forced = kiln(cache.path(), &["pkg", "build", "--force", dir]);
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    assert_eq!(index_names(cache.path()), first, "same digest");

    // A changed file is a new tag.
    fs::write(pkg.path().join("etc/tool.conf"), "level=4\n").expect("conf");
    let changed = kiln(cache.path(), &["pkg", "show-tag", dir]);
    assert_ne!(text(&changed.stdout).trim(), reference);
}

/// `kiln ARGS` with `cache` as its image cache and no cargo to run: not on PATH, not named by
/// `$CARGO`.
fn kiln_without_cargo(cache: &Path, args: &[&str]) -> Output {
    let mut command = kiln_command(cache, args);
    command.env_remove("CARGO").env(
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    );
    let output = command.output().expect("run kiln");
    let cargo = Command::new("cargo")
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .output();
    assert!(
        cargo.is_err(),
        "cargo is on the system's PATH: the test needs it not to be"
    );
    output
}

/// A Cargo workspace of its own (outside this one, so nothing of this one applies): a binary
/// crate `hello` using the library crate `greet` by path, and `pkg/hello` taking the binary.
fn hello_workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("workspace");
    let files = [
        (
            "Cargo.toml",
            "[workspace]\nresolver = \"2\"\nmembers = [\"hello\", \"greet\"]\n",
        ),
        (
            "hello/Cargo.toml",
            "[package]\nname = \"hello\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
             [dependencies]\ngreet = { path = \"../greet\" }\n",
        ),
        (
            "hello/src/main.rs",
            "fn main() {\n    println!(\"{}\", greet::greeting());\n}\n",
        ),
        (
            "greet/Cargo.toml",
            "[package]\nname = \"greet\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
        ),
        (
            "greet/src/lib.rs",
            "pub fn greeting() -> &'static str {\n    \"hello\"\n}\n",
        ),
        (
            "pkg/hello/build.yml",
            "image: hello\ncontents:\n  - binary: hello\n    to: /usr/bin/hello\n",
        ),
    ];
    for (path, text) in files {
        let path = dir.path().join(path);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, text).expect("write");
    }
    let status = Command::new(env!("CARGO"))
        .args(["generate-lockfile", "--offline"])
        .current_dir(dir.path())
        .status()
        .expect("run cargo");
    assert!(status.success(), "cargo generate-lockfile");
    dir
}

#[test]
fn an_unchanged_package_is_found_without_cargo_and_a_changed_one_says_why() {
    let cache = tempfile::tempdir().expect("cache");
    let workspace = hello_workspace();
    let pkg = workspace.path().join("pkg/hello");
    let pkg = pkg.to_str().expect("utf-8");

    let built = kiln(cache.path(), &["pkg", "build", pkg]);
    assert!(built.status.success(), "{}", text(&built.stderr));
    let first = text(&built.stdout).trim().to_owned();
    let hello = fs::read(workspace.path().join("target/release/hello")).expect("built");
    assert_eq!(
        data(&image(cache.path(), &first).rootfs, "usr/bin/hello"),
        hello
    );

    // Nothing changed: the tag and the image, without cargo.
    let shown = kiln_without_cargo(cache.path(), &["pkg", "show-tag", pkg]);
    assert!(shown.status.success(), "{}", text(&shown.stderr));
    assert_eq!(text(&shown.stdout).trim(), first);
    let again = kiln_without_cargo(cache.path(), &["pkg", "build", pkg]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(
        text(&again.stderr).contains("is up to date"),
        "{}",
        text(&again.stderr)
    );

    // A changed source: a new tag, still without cargo, and a build that says what changed
    // and what it needs.
    fs::write(
        workspace.path().join("greet/src/lib.rs"),
        "pub fn greeting() -> &'static str {\n    \"hello again\"\n}\n",
    )
    .expect("edit");
    let shown = kiln_without_cargo(cache.path(), &["pkg", "show-tag", pkg]);
    assert!(shown.status.success(), "{}", text(&shown.stderr));
    let second = text(&shown.stdout).trim().to_owned();
    assert!(second.starts_with("kiln/hello:"), "{second}");
    assert_ne!(second, first);
    let failed = kiln_without_cargo(cache.path(), &["pkg", "build", pkg]);
    assert!(!failed.status.success());
    let err = text(&failed.stderr);
    for part in [
        format!("building {second}, since {first} was built: greet/src/lib.rs changed"),
        "contents[0].binary".to_owned(),
        "cannot run cargo".to_owned(),
    ] {
        assert!(err.contains(&part), "`{part}` in: {err}");
    }
    assert!(!index_names(cache.path()).contains(&second));

    // A changed Cargo.toml: the crate list must be read again, which needs cargo.
    let manifest = workspace.path().join("hello/Cargo.toml");
    let mut toml = fs::read_to_string(&manifest).expect("read");
    toml.push_str("# edited\n");
    fs::write(&manifest, toml).expect("edit");
    let failed = kiln_without_cargo(cache.path(), &["pkg", "show-tag", pkg]);
    assert!(!failed.status.success());
    let err = text(&failed.stderr);
    for part in [
        "the binary `hello` (crate hello)",
        "a Cargo.toml changed",
        "cannot run cargo metadata",
    ] {
        assert!(err.contains(part), "`{part}` in: {err}");
    }

    // With cargo, the changed package builds.
    let rebuilt = kiln(cache.path(), &["pkg", "build", pkg]);
    assert!(rebuilt.status.success(), "{}", text(&rebuilt.stderr));
    let third = text(&rebuilt.stdout).trim().to_owned();
    assert_ne!(third, second, "the Cargo.toml is an input too");
    let output = Command::new(workspace.path().join("target/release/hello"))
        .output()
        .expect("run hello");
    assert_eq!(text(&output.stdout), "hello again\n");
    assert_eq!(
        data(&image(cache.path(), &third).rootfs, "usr/bin/hello"),
        fs::read(workspace.path().join("target/release/hello")).expect("built")
    );
}

/// `deb: e2fsprogs` alone gives programs that run: the image holds what they load from the
/// packages e2fsprogs depends on (libc6, libext2fs2, ...) and nothing of those it needs
/// nothing from (logsave). mke2fs is run through the image's own loader with only the image's
/// library directories, so a library left out fails the run.
#[test]
fn a_debian_package_brings_the_libraries_its_programs_load() {
    let cache = tempfile::tempdir().expect("cache");
    let pkg = package("e2fs", "image: e2fs\ncontents:\n  - deb: e2fsprogs\n");
    let dir = pkg.path().to_str().expect("utf-8");
    let built = kiln(cache.path(), &["pkg", "build", dir]);
    let said = text(&built.stderr);
    assert!(built.status.success(), "{said}");
    assert!(
        said.contains("the libraries its programs load come from")
            && said.contains("libc6")
            && said.contains("libext2fs2"),
        "{said}"
    );
    assert!(!said.contains("logsave"), "logsave adds nothing: {said}");
    let reference = text(&built.stdout).trim().to_owned();
    let tree = image(cache.path(), &reference).rootfs;
    for key in [
        "sbin/mke2fs",
        "sbin/e2fsck",
        "etc/mke2fs.conf",
        "lib64/ld-linux-x86-64.so.2",
        "lib/x86_64-linux-gnu/libc.so.6",
        "lib/x86_64-linux-gnu/libext2fs.so.2",
    ] {
        assert!(tree.contains(key), "{key} is in the image");
    }
    assert!(!tree.contains("sbin/logsave"), "logsave's program is not");
    assert!(
        !tree.contains("usr/share/doc/libc6"),
        "only what is loaded is taken from a dependency"
    );

    let root = unpacked(&tree);
    let output = through_loader(root.path(), &[], "sbin/mke2fs", &["-V"]);
    let said = text(&output.stderr);
    assert!(output.status.success(), "mke2fs -V: {said}");
    assert!(said.contains("Using EXT2FS Library"), "{said}");
}

/// The files of `tree`, written into a new directory.
fn unpacked(tree: &Tree) -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("root");
    let tar = kiln::tree::archive::write_tar(tree, Vec::new()).expect("tar");
    tar::Archive::new(tar.as_slice())
        .unpack(root.path())
        .expect("unpack the image");
    root
}

/// Runs the program at `program` in the image unpacked at `root` through the image's own
/// loader, with only the image's library directories and no cache: a library the image lacks
/// fails the run. `loader` takes the loader's own options (`--list`).
fn through_loader(root: &Path, loader: &[&str], program: &str, args: &[&str]) -> Output {
    let lib = |dir: &str| root.join(dir).display().to_string();
    Command::new(root.join("lib64/ld-linux-x86-64.so.2"))
        .arg("--inhibit-cache")
        .arg("--library-path")
        .arg(format!(
            "{}:{}",
            lib("lib/x86_64-linux-gnu"),
            lib("usr/lib/x86_64-linux-gnu")
        ))
        .args(loader)
        .arg(root.join(program))
        .args(args)
        .env_clear()
        .output()
        .unwrap_or_else(|err| panic!("run {program}: {err}"))
}

/// pkg/sshd as it is: every program in it that is not busybox finds each library it loads in
/// the image, and they run: sshd says its version, ssh-keygen makes a host key the way the
/// package's script does. (The VM suite logs in through it.)
#[test]
fn every_program_of_the_sshd_package_finds_its_libraries_in_the_image() {
    let cache = tempfile::tempdir().expect("cache");
    let dir = workspace().join("pkg/sshd");
    let built = kiln(
        cache.path(),
        &["pkg", "build", dir.to_str().expect("utf-8")],
    );
    assert!(built.status.success(), "{}", text(&built.stderr));
    let reference = text(&built.stdout).trim().to_owned();
    let tree = image(cache.path(), &reference).rootfs;
    let root = unpacked(&tree);
    let programs = [
        "usr/sbin/sshd",
        "usr/bin/ssh-keygen",
        "usr/lib/openssh/sftp-server",
    ];
    for program in programs {
        assert!(tree.contains(program), "{program} is in the image");
        let listed = through_loader(root.path(), &["--list"], program, &[]);
        let said = format!("{}{}", text(&listed.stdout), text(&listed.stderr));
        assert!(listed.status.success(), "{program}: {said}");
        assert!(!said.contains("not found"), "{program}: {said}");
        assert!(
            said.contains("libc.so.6 => "),
            "{program} is dynamic: {said}"
        );
    }
    let version = through_loader(root.path(), &[], "usr/sbin/sshd", &["-V"]);
    assert!(
        text(&version.stderr).starts_with("OpenSSH_9"),
        "{}",
        text(&version.stderr)
    );

    let key = root.path().join("host_ed25519_key");
    let keygen = through_loader(
        root.path(),
        &[],
        "usr/bin/ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-f",
            key.to_str().expect("utf-8"),
        ],
    );
    assert!(keygen.status.success(), "{}", text(&keygen.stderr));
    let public = fs::read_to_string(key.with_extension("pub")).unwrap_or_default();
    assert!(public.starts_with("ssh-ed25519 "), "{public}");
}

#[test]
fn a_missing_file_or_an_unknown_deb_fails_without_a_cache_entry() {
    let cache = tempfile::tempdir().expect("cache");
    let missing = package(
        "missing",
        "image: missing\ncontents:\n  - files: nowhere\n    to: /etc/\n",
    );
    let err = pkg_fails(cache.path(), "build", &missing);
    assert!(
        err.contains("contents[0].files: `nowhere` is not in"),
        "{err}"
    );
    assert!(!index_names(cache.path()).contains("kiln/missing"));

    let unknown = package(
        "unknown",
        "image: unknown\ncontents:\n  - deb: no-such-package-in-debian\n",
    );
    let err = pkg_fails(cache.path(), "build", &unknown);
    assert!(
        err.contains("Debian package `no-such-package-in-debian` is not known to apt"),
        "{err}"
    );
    assert!(!index_names(cache.path()).contains("kiln/unknown"));

    let invalid = package("invalid", "image: Bad\ncontents: []\n");
    let err = pkg_fails(cache.path(), "show-tag", &invalid);
    assert!(
        err.contains("build.yml:1: image: `Bad` is not an image name"),
        "{err}"
    );
    assert!(err.contains("contents: a package needs contents"), "{err}");
}

#[test]
fn two_builds_at_once_make_a_package_once() {
    let cache = tempfile::tempdir().expect("cache");
    let twice = package(
        "twice",
        "image: twice\ncontents:\n  - deb: busybox-static\n    keep: [/bin/busybox]\n  - applets: /bin/busybox\n",
    );
    let start = || {
        kiln_command(
            cache.path(),
            &["pkg", "build", twice.path().to_str().expect("utf-8")],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run kiln")
    };
    let (first, second) = (start(), start());
    let outputs = [first, second].map(|child| child.wait_with_output().expect("wait for kiln"));
    for output in &outputs {
        assert!(output.status.success(), "{}", text(&output.stderr));
    }
    assert_eq!(outputs[0].stdout, outputs[1].stdout, "the same reference");
    let built = outputs
        .iter()
        .filter(|output| text(&output.stderr).contains("building kiln/twice:"))
        .count();
    assert_eq!(
        built,
        1,
        "the second waits for the first and finds its image: {}\n{}",
        text(&outputs[0].stderr),
        text(&outputs[1].stderr)
    );
    assert_eq!(index_names(cache.path()).matches("kiln/twice:").count(), 1);
}

#[test]
fn every_example_builds_from_the_packages() {
    let cache = tempfile::tempdir().expect("cache");
    let out = tempfile::tempdir().expect("out");
    let root = workspace();
    let mut examples: Vec<PathBuf> = fs::read_dir(root.join("yml"))
        .expect("yml/")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yml"))
        .collect();
    examples.sort();
    assert!(examples.len() >= 3, "{examples:?}");
    for example in &examples {
        // A manifest without a kernel is an addition to the example (tour.yml).
        let manifest = fs::read_to_string(example).expect("example");
        let mut files = vec![example.to_str().expect("utf-8").to_owned()];
        if !manifest.lines().any(|line| line.starts_with("kernel:")) {
            files.insert(0, root.join("yml/example.yml").display().to_string());
        }
        let name = example.file_stem().expect("stem").to_string_lossy();
        let mut args = vec![
            "build",
            "-o",
            out.path().to_str().expect("utf-8"),
            "--name",
            &name,
        ];
        args.extend(files.iter().map(String::as_str));
        let output = kiln(cache.path(), &args);
        assert!(
            output.status.success(),
            "{}: {}",
            example.display(),
            text(&output.stderr)
        );
        for suffix in ["kernel", "initrd.img", "cmdline"] {
            assert!(
                out.path().join(format!("{name}-{suffix}")).is_file(),
                "{name}-{suffix}"
            );
        }
    }

    // The kernel package: the bzImage, modules with modules.dep, and the ELF.
    let shown = kiln(
        cache.path(),
        &[
            "pkg",
            "show-tag",
            root.join("pkg/kernel").to_str().expect("utf-8"),
        ],
    );
    let reference = text(&shown.stdout).trim().to_owned();
    let kernel = image(cache.path(), &reference);
    assert!(data(&kernel.rootfs, "vmlinux").starts_with(b"\x7fELF"));
    assert_eq!(
        &data(&kernel.rootfs, "kernel")[0x202..0x206],
        b"HdrS",
        "a bzImage"
    );
    let mut modules = Tree::new();
    kiln::tree::layer::apply(&mut modules, &data(&kernel.rootfs, "kernel.tar")[..])
        .expect("kernel.tar");
    let dep = modules
        .iter()
        .find(|(key, _)| key.starts_with("lib/modules/") && key.ends_with("/modules.dep"))
        .map(|(key, _)| key.to_owned())
        .expect("modules.dep");
    assert!(
        text(&data(&modules, &dep)).contains("overlay.ko"),
        "modules.dep lists overlay"
    );
}
