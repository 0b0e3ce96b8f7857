//! `kiln build` end to end on local images: the layout of the root filesystem, the bundles'
//! config.json and runtime.json, image sharing, volumes, files, kernel+initrd, reproducible
//! bytes, and failures that write nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln::oci::layout::Layout;
use kiln::tree::{Kind, Node, Tree};
use oci_spec::image::Config;
use serde_json::{json, Value};

fn file(tree: &mut Tree, path: &str, text: &str) {
    tree.put(path, Node::file(text.as_bytes(), 0o644));
}

fn config(entrypoint: &[&str], label: Option<Value>) -> Config {
    let mut config = Config::default();
    config.set_entrypoint(Some(entrypoint.iter().map(|s| (*s).to_owned()).collect()));
    config.set_env(Some(vec!["PATH=/bin".into()]));
    if let Some(label) = label {
        config.set_labels(Some(
            [("org.mobyproject.config".to_owned(), label.to_string())].into(),
        ));
    }
    config
}

/// Writes the images a test manifest uses into `dir`.
fn images(dir: &Path) {
    let mut init = Tree::new();
    file(&mut init, "bin/busybox", "busybox");
    assert!(init.link("bin/sh", "bin/busybox"));
    file(&mut init, "etc/resolv.conf", "nameserver 1.1.1.1\n");
    file(&mut init, "etc/hostname", "builder\n");
    file(&mut init, "etc/profile", "umask 022\n");
    file(&mut init, ".dockerenv", "");
    file(&mut init, "lib/apk/db/installed", "P:busybox\n");
    init.put(
        "dev/console",
        Node::new(Kind::Char { major: 5, minor: 1 }, 0o600),
    );
    Layout::create(&dir.join("init"))
        .expect("layout")
        .put_image("init", &[init], config(&["/bin/sh"], None))
        .expect("init image");

    let mut other_init = Tree::new();
    file(&mut other_init, "lib/apk/db/installed", "P:musl\n");
    file(&mut other_init, "etc/motd", "welcome\n");
    Layout::create(&dir.join("init2"))
        .expect("layout")
        .put_image("init2", &[other_init], Config::default())
        .expect("init2 image");

    let mut modules = Tree::new();
    for (path, text) in [
        ("kernel/fs/ext4.ko", "module"),
        ("kernel/fs/overlay.ko", "module"),
        ("kernel/drivers/gpu/drm.ko", "a big module nothing needs"),
        (
            "modules.dep",
            "kernel/fs/ext4.ko:\nkernel/fs/overlay.ko:\nkernel/drivers/gpu/drm.ko:\n",
        ),
        ("modules.alias", "alias fs-overlay overlay\n"),
    ] {
        file(&mut modules, &format!("lib/modules/6.1.0/{path}"), text);
    }
    let modules = kiln::tree::archive::write_tar(&modules, Vec::new()).expect("modules tar");
    let mut kernel = Tree::new();
    file(&mut kernel, "kernel", "vmlinux bytes");
    file(&mut kernel, "vmlinux", "\x7fELF kernel");
    kernel.put("kernel.tar", Node::file(modules, 0o644));
    Layout::create(&dir.join("kernel"))
        .expect("layout")
        .put_image("kernel", &[kernel], Config::default())
        .expect("kernel image");
    let mut bzimage_only = Tree::new();
    file(&mut bzimage_only, "kernel", "bzImage");
    Layout::create(&dir.join("bzimage"))
        .expect("layout")
        .put_image("bzimage", &[bzimage_only], Config::default())
        .expect("bzimage image");

    let mut tool = Tree::new();
    file(&mut tool, "bin/tool", "tool");
    file(&mut tool, "etc/hosts", "10.0.0.1 builder\n");
    Layout::create(&dir.join("tool"))
        .expect("layout")
        .put_image("tool", &[tool], config(&["/bin/tool"], None))
        .expect("tool image");

    let mut getty = Tree::new();
    file(&mut getty, "sbin/getty", "getty");
    let label = json!({
        "pid": "host",
        "binds": ["/dev:/dev", "/etc/profile:/etc/profile:ro"],
        "capabilities": ["CAP_SYS_ADMIN"],
        "readonly": true,
    });
    Layout::create(&dir.join("getty"))
        .expect("layout")
        .put_image("getty", &[getty], config(&["/sbin/getty"], Some(label)))
        .expect("getty image");
}

const MANIFEST: &str = r#"kernel:
  image: oci:kernel
  cmdline: "console=ttyS0 quiet"
  modules: [ext*]
init:
  - oci:init
  - oci:init2
volumes:
  - name: data
    image: oci:tool
  - name: blank
onboot:
  - name: first
    image: oci:tool
    binds: [data:/data]
  - name: second
    image: oci:tool
    command: [/bin/tool, again]
    readonly: true
services:
  - name: getty
    image: oci:getty
    capabilities.add: [CAP_NET_ADMIN]
    runtime:
      ready: {notify: true}
      init: true
  - name: worker
    image: oci:tool
    uid: getty
files:
  - path: etc/kiln/motd
    contents: "hello\n"
    mode: "0640"
    uid: worker
  - path: var/empty
    directory: true
  - path: etc/link
    symlink: /etc/motd
  - path: etc/kiln.json
    metadata: json
"#;

fn kiln(dir: &Path, args: &[&str]) -> Output {
    kiln_with(dir, args, &[])
}

/// [`kiln`] with `env` set besides.
fn kiln_with(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .current_dir(dir)
        .args(args)
        .env("KILN_CACHE", dir.join("cache"))
        .envs(env.iter().copied())
        .output()
        .expect("run kiln")
}

fn workspace() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    images(dir.path());
    let manifest = dir.path().join("image.yml");
    fs::write(&manifest, MANIFEST).expect("manifest");
    let path = dir.path().to_owned();
    (dir, path)
}

fn succeed(output: Output) {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn data(tree: &Tree, key: &str) -> Vec<u8> {
    match tree.get(key).map(|node| &node.kind) {
        Some(Kind::File { data, .. }) => data.to_vec().expect("read back"),
        other => panic!("{key}: {other:?}"),
    }
}

fn json_file(tree: &Tree, key: &str) -> Value {
    serde_json::from_slice(&data(tree, key)).unwrap_or_else(|err| panic!("{key}: {err}"))
}

#[test]
fn the_tar_holds_linuxkits_layout() {
    let (_guard, dir) = workspace();
    let built = kiln(
        &dir,
        &["build", "--format", "tar", "-o", "out", "image.yml"],
    );
    succeed(built.clone());
    assert!(
        String::from_utf8_lossy(&built.stderr).contains("kernel 6.1.0: kept 2 of 3 modules"),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let bytes = fs::read(dir.join("out/image.tar")).expect("image.tar");
    let mut root = Tree::new();
    kiln::tree::layer::apply(&mut root, &bytes[..]).expect("a tar");

    // Kernel: boot files and the modules at /.
    assert_eq!(data(&root, "boot/kernel"), b"vmlinux bytes");
    assert_eq!(data(&root, "boot/cmdline"), b"console=ttyS0 quiet");
    // Only the modules the image needs: ext4 named in kernel.modules, overlay for the
    // volumes; the tables stay.
    assert!(root.contains("lib/modules/6.1.0/kernel/fs/ext4.ko"));
    assert!(root.contains("lib/modules/6.1.0/kernel/fs/overlay.ko"));
    assert!(root.contains("lib/modules/6.1.0/modules.dep"));
    assert!(!root.contains("lib/modules/6.1.0/kernel/drivers/gpu/drm.ko"));
    assert!(
        !root.contains("lib/modules/6.1.0/kernel/drivers"),
        "emptied"
    );
    // Init images in order, filtered, the APK database concatenated.
    assert!(root.contains("bin/busybox") && root.contains("etc/motd"));
    assert!(!root.contains(".dockerenv") && !root.contains("etc/hostname"));
    assert!(
        !root.contains("dev/console"),
        "dropped like LinuxKit; the initrd adds its own"
    );
    assert_eq!(
        root.get("etc/resolv.conf").map(|n| &n.kind),
        Some(&Kind::Symlink("/run/resolvconf/resolv.conf".into()))
    );
    assert_eq!(data(&root, "lib/apk/db/installed"), b"P:busybox\nP:musl\n");
    for dir in ["dev/pts", "dev/shm", "proc", "sys"] {
        assert!(root.get(dir).is_some_and(Node::is_dir), "{dir}");
    }

    // Volumes.
    let volume = "containers/volumes/data";
    assert!(root.contains(&format!("{volume}/lower/bin/tool")));
    assert!(root
        .get(&format!("{volume}/merged"))
        .is_some_and(Node::is_dir));
    for dir in ["lower", "tmp", "merged"] {
        assert!(root
            .get(&format!("containers/volumes/blank/{dir}"))
            .is_some_and(Node::is_dir));
    }

    // A writable onboot bundle: lower/ with the image, tmp/ and rootfs/, and the overlay in
    // runtime.json; its volume bind rewritten.
    let first = "containers/onboot/000-first";
    assert!(root.contains(&format!("{first}/lower/bin/tool")));
    assert!(
        data(&root, &format!("{first}/lower/etc/hosts")).starts_with(b"127.0.0.1       localhost"),
        "etc/hosts replaced"
    );
    assert_eq!(
        data(&root, &format!("{first}/lower/etc/resolv.conf")),
        b"\n# no resolv.conf configured\n"
    );
    assert!(root.get(&format!("{first}/tmp")).is_some_and(Node::is_dir));
    assert!(root
        .get(&format!("{first}/rootfs"))
        .is_some_and(Node::is_dir));
    let runtime = json_file(&root, &format!("{first}/runtime.json"));
    assert_eq!(
        runtime["mounts"],
        json!([
            {"destination": "/containers/onboot/000-first/tmp", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/containers/onboot/000-first/tmp", "options": ["remount", "private"]},
            {"destination": "/containers/onboot/000-first/rootfs", "type": "overlay",
             "source": "overlay", "options": [
                "lowerdir=/containers/onboot/000-first/lower",
                "upperdir=/containers/onboot/000-first/tmp/upper",
                "workdir=/containers/onboot/000-first/tmp/work"]},
        ])
    );
    let spec = json_file(&root, &format!("{first}/config.json"));
    assert!(spec["mounts"].as_array().expect("mounts").contains(
        &json!({"destination": "/data", "type": "bind",
                          "source": "/containers/volumes/data/merged",
                          "options": ["rw", "rbind", "rshared"]})
    ));

    // The same image again, read-only: not unpacked twice, bound from the first copy.
    let second = "containers/onboot/001-second";
    assert_eq!(root.below(&format!("{second}/rootfs")).count(), 0, "shared");
    let runtime = json_file(&root, &format!("{second}/runtime.json"));
    assert_eq!(
        runtime["mounts"],
        json!([{"destination": "/containers/onboot/001-second/rootfs",
                "source": "/containers/onboot/000-first/lower", "options": ["bind"]}])
    );
    let spec = json_file(&root, &format!("{second}/config.json"));
    assert_eq!(spec["process"]["args"], json!(["/bin/tool", "again"]));
    assert_eq!(spec["root"], json!({"path": "rootfs", "readonly": true}));

    // A service whose label makes it read-only: rootfs/ holds the image, label settings
    // apply, `.add` extends the label, and the notify directory exists.
    let getty = "containers/services/getty";
    assert!(root.contains(&format!("{getty}/rootfs/sbin/getty")));
    // Its runtime.init binds the container init on a file the read-only root must hold.
    assert_eq!(
        data(&root, &format!("{getty}/rootfs/sbin/kiln-init")),
        b"",
        "the container init's mount point"
    );
    assert!(root
        .get(&format!("{getty}/rootfs/run/notify"))
        .is_some_and(Node::is_dir));
    assert!(!root.contains(&format!("{getty}/lower")));
    // The image lacks /etc/profile, which the label binds from the init image's file: the
    // read-only root gets an empty file to mount it on.
    let profile = root.get(&format!("{getty}/rootfs/etc/profile"));
    assert!(
        matches!(profile.map(|node| &node.kind), Some(Kind::File { data, .. }) if data.is_empty()),
        "{profile:?}"
    );
    let spec = json_file(&root, &format!("{getty}/config.json"));
    assert_eq!(spec["linux"]["namespaces"], json!([{"type": "mount"}]));
    assert_eq!(
        spec["process"]["capabilities"]["effective"],
        json!(["CAP_NET_ADMIN", "CAP_SYS_ADMIN"])
    );
    assert_eq!(
        spec["mounts"].as_array().map(|m| m.len()),
        Some(6),
        "five defaults, /dev replaced by the label's bind, and /etc/profile"
    );
    assert_eq!(
        spec["mounts"][0],
        json!({"destination": "/dev", "type": "bind", "source": "/dev",
               "options": ["rw", "rbind", "rshared"]})
    );
    let runtime = json_file(&root, &format!("{getty}/runtime.json"));
    assert_eq!(runtime["ready"], json!({"notify": true}));
    assert_eq!(
        runtime["mounts"][0],
        json!({"destination": "/containers/services/getty/rootfs",
               "source": "/containers/services/getty/rootfs", "options": ["bind"]})
    );
    // uid names: onboot first (100, 101), then services (getty 102, worker 103).
    let spec = json_file(&root, "containers/services/worker/config.json");
    assert_eq!(spec["process"]["user"], json!({"uid": 102, "gid": 0}));

    // Files: mode, owner by name, parents, directories, symlinks, metadata.
    let motd = root.get("etc/kiln/motd").expect("motd");
    assert_eq!((motd.mode, motd.uid, motd.gid), (0o640, 103, 0));
    assert_eq!(data(&root, "etc/kiln/motd"), b"hello\n");
    let parent = root.get("etc/kiln").expect("parent");
    assert_eq!(
        (parent.mode, parent.uid),
        (0o750, 103),
        "x added where r or w is set"
    );
    assert_eq!(
        root.get("etc").map(|n| n.mode),
        Some(0o755),
        "existing directories kept"
    );
    assert_eq!(
        root.get("var/empty").map(|n| (n.is_dir(), n.mode)),
        Some((true, 0o700))
    );
    assert_eq!(
        root.get("etc/link").map(|n| &n.kind),
        Some(&Kind::Symlink("/etc/motd".into()))
    );
    let metadata = json_file(&root, "etc/kiln.json");
    assert_eq!(metadata["services"][0]["name"], json!("getty"));
    // No host owner leaks: everything is owned by ids the manifest gave.
    assert!(root.iter().all(|(_, node)| [0, 103].contains(&node.uid)));
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("gunzip");
    out
}

#[test]
fn builds_are_reproducible_and_kernel_initrd_is_written() {
    let (_guard, dir) = workspace();
    succeed(kiln(&dir, &["build", "-o", "a", "image.yml"]));
    succeed(kiln(
        &dir,
        &["build", "-o", "b", "--name", "image", "image.yml"],
    ));
    succeed(kiln(&dir, &["build", "-f", "tar", "-o", "a", "image.yml"]));
    succeed(kiln(&dir, &["build", "-f", "tar", "-o", "b", "image.yml"]));
    for file in [
        "image-kernel",
        "image-initrd.img",
        "image-cmdline",
        "image-vmlinux",
        "image.tar",
    ] {
        let a = fs::read(dir.join("a").join(file)).expect(file);
        let b = fs::read(dir.join("b").join(file)).expect(file);
        assert!(a == b, "{file} differs between two builds");
    }
    assert_eq!(
        fs::read(dir.join("a/image-kernel")).expect("kernel"),
        b"vmlinux bytes"
    );
    assert_eq!(
        fs::read_to_string(dir.join("a/image-cmdline")).expect("cmdline"),
        "console=ttyS0 quiet"
    );
    let initrd = fs::read(dir.join("a/image-initrd.img")).expect("initrd");
    let cpio = zstd::decode_all(&initrd[..]).expect("zstd, the default");
    // The other compressions hold the same archive.
    for (compression, decode) in [
        ("gzip", gunzip as fn(&[u8]) -> Vec<u8>),
        ("lz4", kiln::tree::compression::unlz4_legacy),
        ("none", <[u8]>::to_vec),
    ] {
        let out = format!("c-{compression}");
        succeed(kiln(
            &dir,
            &[
                "build",
                "--compression",
                compression,
                "-o",
                &out,
                "image.yml",
            ],
        ));
        let bytes = fs::read(dir.join(out).join("image-initrd.img")).expect("initrd");
        assert!(decode(&bytes) == cpio, "{compression}: another archive");
    }
    let refused = kiln(&dir, &["build", "--compression", "xz", "image.yml"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr)
        .contains("unknown compression `xz`; the compressions are zstd, gzip, lz4, none"));
    let mut names = Vec::new();
    let mut rest = &cpio[..];
    loop {
        let reader = cpio::newc::Reader::new(rest).expect("cpio entry");
        if reader.entry().is_trailer() {
            break;
        }
        names.push(reader.entry().name().to_owned());
        rest = reader.finish().expect("next entry");
    }
    assert!(names
        .iter()
        .any(|n| n == "containers/services/getty/config.json"));
    assert!(names.iter().any(|n| n == "dev/console"));
    assert!(
        !names.iter().any(|n| n.starts_with("boot")),
        "boot/ is not in the initrd"
    );
    // Only the build's own outputs are in the directory: no temporary leftovers.
    let mut listed: Vec<String> = fs::read_dir(dir.join("a"))
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            "image-cmdline",
            "image-initrd.img",
            "image-kernel",
            "image-vmlinux",
            "image.tar"
        ]
    );
    assert_eq!(
        fs::read(dir.join("a/image-vmlinux")).expect("vmlinux"),
        b"\x7fELF kernel",
        "the kernel image's ELF, for a quick boot"
    );
    // Built again unchanged: every file is left in place (same inode); a changed file alone is
    // replaced.
    let inode = |file: &str| {
        std::os::unix::fs::MetadataExt::ino(&fs::metadata(dir.join("a").join(file)).expect(file))
    };
    let files = ["image-kernel", "image-initrd.img", "image-cmdline"];
    let before: Vec<u64> = files.iter().map(|file| inode(file)).collect();
    succeed(kiln(&dir, &["build", "-o", "a", "image.yml"]));
    let after: Vec<u64> = files.iter().map(|file| inode(file)).collect();
    assert_eq!(after, before, "nothing changed, nothing written");
    let manifest = fs::read_to_string(dir.join("image.yml")).expect("manifest");
    fs::write(
        dir.join("image.yml"),
        manifest.replace("console=ttyS0 quiet", "console=ttyS0"),
    )
    .expect("manifest");
    succeed(kiln(&dir, &["build", "-o", "a", "image.yml"]));
    assert_ne!(inode("image-cmdline"), before[2], "the cmdline changed");
    assert_eq!(inode("image-kernel"), before[0], "the kernel did not");
    assert_eq!(
        fs::read_to_string(dir.join("a/image-cmdline")).expect("cmdline"),
        "console=ttyS0"
    );
    fs::write(dir.join("image.yml"), manifest).expect("manifest");
    // A later build whose kernel image has no ELF removes the old one: `kiln run` would boot it.
    fs::write(
        dir.join("bz.yml"),
        "kernel:\n  image: oci:bzimage\ninit: [oci:init]\n",
    )
    .expect("manifest");
    succeed(kiln(
        &dir,
        &["build", "-o", "a", "--name", "image", "bz.yml"],
    ));
    assert_eq!(
        fs::read(dir.join("a/image-kernel")).expect("kernel"),
        b"bzImage"
    );
    assert!(!dir.join("a/image-vmlinux").exists());
}

/// The bytes of `path` in the FAT file system `image`.
fn fat_file(image: &[u8], path: &str) -> Vec<u8> {
    let fs = fatfs::FileSystem::new(
        std::io::Cursor::new(image.to_vec()),
        fatfs::FsOptions::new(),
    )
    .expect("a FAT file system");
    let mut bytes = Vec::new();
    fs.root_dir()
        .open_file(path)
        .unwrap_or_else(|err| panic!("{path}: {err}"))
        .read_to_end(&mut bytes)
        .expect(path);
    bytes
}

#[test]
fn every_disk_and_iso_format_is_reproducible_and_holds_what_boots() {
    let (_guard, dir) = workspace();
    let formats = "raw-efi,qcow2-efi,raw-bios,iso-efi,iso-efi-initrd";
    for out in ["a", "b"] {
        succeed(kiln(
            &dir,
            &[
                "build",
                "-o",
                out,
                "-f",
                formats,
                "-f",
                "iso-bios",
                "-f",
                "kernel+initrd",
                "image.yml",
            ],
        ));
    }
    let files = [
        "image-bios.img",
        "image-cmdline",
        "image-efi-initrd.iso",
        "image-efi.img",
        "image-efi.iso",
        "image-efi.qcow2",
        "image-initrd.img",
        "image-kernel",
        "image-vmlinux",
        "image.iso",
    ];
    let mut listed: Vec<String> = fs::read_dir(dir.join("a"))
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    listed.sort();
    assert_eq!(listed, files, "each format's files and nothing else");
    for file in files {
        let a = fs::read(dir.join("a").join(file)).expect(file);
        let b = fs::read(dir.join("b").join(file)).expect(file);
        assert!(a == b, "{file} differs between two builds");
    }
    let initrd = fs::read(dir.join("a/image-initrd.img")).expect("initrd");
    assert!(
        fs::read(dir.join("a/image-efi-initrd.iso")).expect("iso")
            == fs::read(dir.join("a/image-efi.iso")).expect("iso"),
        "iso-efi-initrd is LinuxKit's name for iso-efi"
    );

    // raw-efi: a GPT whose one partition is the EFI system partition, systemd-boot on it.
    let disk = dir.join("a/image-efi.img");
    let table = gpt::GptConfig::new().open(&disk).expect("a valid GPT");
    let esp = &table.partitions()[&1];
    assert_eq!(esp.part_type_guid, gpt::partition_types::EFI);
    let bytes = fs::read(&disk).expect("disk");
    let start = usize::try_from(esp.first_lba * 512).expect("offset");
    let end = usize::try_from((esp.last_lba + 1) * 512).expect("offset");
    let esp = &bytes[start..end];
    assert_eq!(
        fat_file(esp, "EFI/BOOT/BOOTX64.EFI"),
        fs::read("/usr/lib/systemd/boot/efi/systemd-bootx64.efi").expect("systemd-boot")
    );
    assert_eq!(fat_file(esp, "kernel"), b"vmlinux bytes");
    assert_eq!(fat_file(esp, "initrd.img"), initrd);
    let entry = String::from_utf8(fat_file(esp, "loader/entries/kiln.conf")).expect("text");
    assert!(entry.contains("\noptions console=ttyS0 quiet\n"), "{entry}");
    assert!(String::from_utf8(fat_file(esp, "loader/loader.conf"))
        .expect("text")
        .contains("timeout 0"));

    // qcow2-efi: the same disk.
    let raw = dir.join("from-qcow2.img");
    let converted = Command::new("qemu-img")
        .args(["convert", "-f", "qcow2", "-O", "raw"])
        .arg(dir.join("a/image-efi.qcow2"))
        .arg(&raw)
        .status()
        .expect("qemu-img");
    assert!(converted.success());
    assert!(
        fs::read(&raw).expect("raw") == bytes,
        "qcow2-efi is raw-efi"
    );

    // raw-bios: syslinux's boot code, one active FAT partition with syslinux installed.
    let bios = fs::read(dir.join("a/image-bios.img")).expect("bios");
    assert_eq!(
        &bios[..440],
        &fs::read("/usr/lib/syslinux/mbr/mbr.bin").expect("mbr.bin")[..440]
    );
    assert_eq!(bios[446], 0x80, "active");
    let start = u32::from_le_bytes(bios[454..458].try_into().unwrap()) as usize * 512;
    let part = &bios[start..];
    let cfg = String::from_utf8(fat_file(part, "syslinux.cfg")).expect("text");
    assert!(cfg.contains("APPEND console=ttyS0 quiet"), "{cfg}");
    assert_eq!(fat_file(part, "initrd.img"), initrd);
    assert!(
        !fat_file(part, "ldlinux.sys").is_empty(),
        "syslinux installed"
    );
    let fs = fatfs::FileSystem::new(std::io::Cursor::new(part.to_vec()), fatfs::FsOptions::new())
        .expect("FAT");
    for entry in fs.root_dir().iter() {
        let entry = entry.expect("entry");
        assert_eq!(entry.modified().date.year, 1980, "{}", entry.file_name());
    }

    // The ISOs: ISO 9660 volumes named KILN with a boot record, hybrid.
    for iso in ["image.iso", "image-efi.iso", "image-efi-initrd.iso"] {
        let bytes = fs::read(dir.join("a").join(iso)).expect(iso);
        assert_eq!(&bytes[0x8001..0x8006], b"CD001", "{iso}");
        assert!(bytes[0x8028..0x8030].starts_with(b"KILN"), "{iso}");
        assert_eq!(
            &bytes[0x8801..0x8806],
            b"CD001",
            "{iso}: El Torito's record"
        );
        assert_eq!(&bytes[510..512], &[0x55, 0xaa], "{iso}: hybrid");
        // The volume's creation and modification dates are the epoch, not the build's time.
        assert_eq!(
            &bytes[0x8000 + 813..0x8000 + 847],
            b"1970010100000000\x001970010100000000\x00",
            "{iso}"
        );
    }
    let efi_iso = fs::read(dir.join("a/image-efi.iso")).expect("iso");
    let window = esp.len().min(1 << 16);
    assert!(
        efi_iso.windows(window).any(|w| w == &esp[..window]),
        "the EFI ISO's boot image is the EFI system partition"
    );

    // A build host without a tool a format needs is told which Debian package has it.
    let output = kiln_with(
        &dir,
        &["build", "-o", "c", "-f", "iso-bios,qcow2-efi", "image.yml"],
        &[("PATH", "/nonexistent")],
    );
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--format iso-bios: xorriso (writes ISO 9660 images) is missing: install Debian's package xorriso"),
        "{err}"
    );
    assert!(err.contains("install Debian's package qemu-utils"), "{err}");
    assert!(!dir.join("c").exists(), "nothing written");

    // A tool that fails half-way through: the formats written before it are not left either.
    let tools = dir.join("tools");
    fs::create_dir(&tools).expect("tools");
    let fake = tools.join("syslinux");
    fs::write(&fake, "#!/bin/sh\necho 'cannot install' >&2\nexit 3\n").expect("fake");
    fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("mode");
    let path = format!(
        "{}:{}",
        tools.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = kiln_with(
        &dir,
        &[
            "build",
            "-o",
            "d",
            "-f",
            "kernel+initrd,raw-efi,raw-bios",
            "image.yml",
        ],
        &[("PATH", &path)],
    );
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(
        err.contains("syslinux --install (the BIOS boot loader) failed"),
        "{err}"
    );
    assert!(err.contains("cannot install"), "{err}");
    let left: Vec<_> = fs::read_dir(dir.join("d")).expect("d").collect();
    assert!(left.is_empty(), "nothing left behind: {left:?}");
}

/// Runs a failing build into `out` and returns its error output; `out` must stay empty.
fn fails(dir: &Path, manifest: &str) -> String {
    fails_as(dir, manifest, "kernel+initrd")
}

/// `fails` in the output format `format`.
fn fails_as(dir: &Path, manifest: &str, format: &str) -> String {
    fs::write(dir.join("bad.yml"), manifest).expect("manifest");
    let output = kiln(dir, &["build", "-o", "out", "--format", format, "bad.yml"]);
    assert_eq!(output.status.code(), Some(1));
    let written = fs::read_dir(dir.join("out")).map_or(0, |d| d.count());
    assert_eq!(written, 0, "nothing is written on failure");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_bad_digest_a_missing_image_and_a_bad_manifest_write_nothing() {
    let (_guard, dir) = workspace();
    // Change the tool image's layer blob.
    let index: Value =
        serde_json::from_slice(&fs::read(dir.join("tool/index.json")).expect("index"))
            .expect("json");
    let manifest_digest = index["manifests"][0]["digest"].as_str().expect("digest");
    let manifest: Value = serde_json::from_slice(
        &fs::read(dir.join("tool/blobs/sha256").join(&manifest_digest[7..])).expect("manifest"),
    )
    .expect("json");
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .expect("layer")
        .to_owned();
    fs::write(dir.join("tool/blobs/sha256").join(&layer[7..]), b"changed").expect("tamper");
    let err = fails(&dir, MANIFEST);
    assert!(err.contains("image `oci:tool`"), "{err}");
    assert!(
        err.contains(&format!("blob {layer} does not match its digest")),
        "{err}"
    );

    let err = fails_as(
        &dir,
        "onboot:\n  - name: x\n    image: oci:nowhere\n",
        "tar",
    );
    assert!(
        err.contains("bad.yml:3: onboot[0].image: image `oci:nowhere`: cannot read"),
        "{err}"
    );
    // A registry image the cache lacks is pulled; here nothing listens on its port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port");
    let err = fails_as(
        &dir,
        &format!("onboot:\n  - name: x\n    image: {closed}/alpine:3.20\n"),
        "tar",
    );
    assert!(
        err.contains(&format!(
            "cannot pull `{closed}/alpine:3.20`: cannot reach the registry {closed}"
        )),
        "{err}"
    );

    let err = fails(
        &dir,
        "onboot:\n  - name: x\n    image: oci:init\n    capabilities: [CAP_FLY]\n",
    );
    assert!(
        err.contains("bad.yml:4: onboot[0].capabilities[0]: unknown capability `CAP_FLY`"),
        "{err}"
    );
    assert!(err.contains("nothing was built"), "{err}");

    // kernel+initrd, or a disk, without a kernel.
    let err = fails(&dir, "init: [oci:init]\n");
    assert!(err.contains("needs a `kernel` section"), "{err}");
    let err = fails_as(&dir, "init: [oci:init]\n", "tar,raw-bios");
    assert!(
        err.contains("the raw-bios format needs a `kernel` section"),
        "{err}"
    );
}

#[test]
fn a_build_reports_every_problem_it_can_find_before_fetching_in_one_run() {
    let (_guard, dir) = workspace();
    std::os::unix::fs::symlink("/nonexistent", dir.join("dangling")).expect("symlink");
    nix::unistd::mkfifo(
        &dir.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .expect("fifo");
    fs::create_dir(dir.join("notes")).expect("dir");
    // A registry nothing listens on: were anything fetched before the checks, the build would
    // say it cannot reach it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port");
    let manifest = format!(
        "init:
  - oci:init
  - \"@pkg:./nopkg\"
onboot:
  - name: ok
    image: oci:tool
  - name: unnamed
  - name: archived
    image: oci-archive:missing.tar
    capabilities: [CAP_FLY]
services:
  - name: pulled
    image: {closed}/alpine:3.20
files:
  - path: etc/a
    source: missing.txt
  - path: etc/b
    source: fifo
  - path: etc/c
    source: notes
  - path: ../../etc/d
    contents: x
  - path: etc/e
    source: dangling
  - path: etc/f
    source: absent
    optional: true
"
    );
    let err = fails(&dir, &manifest);
    let lines: Vec<&str> = err.lines().collect();
    let expected = [
        "bad.yml: the kernel+initrd format needs a `kernel` section",
        "bad.yml:3: init[1]: image `@pkg:./nopkg`: ././nopkg/build.yml: cannot read the package definition",
        "bad.yml:7: onboot[1]: missing `image`",
        "bad.yml:9: onboot[2].image: image `oci-archive:missing.tar`: cannot read ./missing.tar: No such file",
        "bad.yml:10: onboot[2].capabilities[0]: unknown capability `CAP_FLY`",
        "bad.yml:16: files[0].source: cannot read ./missing.txt: No such file",
        "bad.yml:18: files[1].source: ./fifo is a FIFO: a source must be a regular file",
        "bad.yml:20: files[2].source: ./notes is a directory",
        "bad.yml:21: files[3].path: path `../../etc/d` leaves its tree with `..`",
        "bad.yml:24: files[4].source: cannot read ./dangling: No such file",
        "kiln: 10 problems found; nothing was built",
    ];
    assert_eq!(lines.len(), expected.len(), "{err}");
    for (line, expected) in lines.iter().zip(&expected) {
        assert!(
            line.starts_with(expected),
            "{line}\n  is not\n{expected}\n\n{err}"
        );
    }
    assert!(!err.contains("pull"), "{err}");
}

#[test]
fn a_builds_memory_does_not_grow_with_the_files_it_holds() {
    // One file far larger than the address space kiln is given: its bytes must pass through
    // the spill on disk, never whole in memory (an earlier kiln held a file several times).
    const BIG: u64 = 512 << 20;
    const LIMIT: u64 = 256 << 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let big = kiln::tree::Content::read_from(std::io::repeat(b'z').take(BIG)).expect("spill");
    let mut layer = Tree::new();
    layer.put("big", Node::file(big, 0o644));
    Layout::create(&dir.path().join("big"))
        .expect("layout")
        .put_image("v1", &[layer], Config::default())
        .expect("put");
    fs::write(dir.path().join("big.yml"), "init:\n  - oci:big\n").expect("manifest");
    let output = Command::new("prlimit")
        .arg(format!("--as={LIMIT}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_kiln"))
        .current_dir(dir.path())
        .args(["build", "--format", "tar", "big.yml"])
        .env("KILN_CACHE", dir.path().join("cache"))
        .output()
        .expect("run kiln under prlimit");
    succeed(output);
    let mut archive = tar::Archive::new(fs::File::open(dir.path().join("big.tar")).expect("tar"));
    let mut entry = archive
        .entries()
        .expect("entries")
        .map(|entry| entry.expect("entry"))
        .find(|entry| entry.path().expect("path").as_os_str() == "big")
        .expect("the file is in the image");
    assert_eq!(entry.size(), BIG);
    let mut buf = vec![0; 1 << 20];
    let mut seen = 0;
    loop {
        let n = entry.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        assert!(buf[..n].iter().all(|&b| b == b'z'), "the bytes are kept");
        seen += n as u64;
    }
    assert_eq!(seen, BIG);
}
