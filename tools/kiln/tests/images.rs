//! Reading local images: OCI layouts, OCI archives, `docker save` archives and the cache, with
//! layers applied in order and every digest checked.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::fs;
use std::path::Path;

use kiln::build::source::Sources;
use kiln::images::local::LocalImage;
use kiln::oci::digest::sha256;
use kiln::oci::layout::Layout;
use kiln::tree::{Kind, Node, Tree};
use oci_spec::image::Config;

fn base_layer() -> Tree {
    let mut tree = Tree::new();
    tree.put(
        "etc/passwd",
        Node::file(&b"root:x:0:0::/root:/bin/sh\n"[..], 0o644),
    );
    tree.put("etc/group", Node::file(&b"root:x:0:\n"[..], 0o644));
    tree.put("bin/busybox", Node::file(&b"elf"[..], 0o755));
    assert!(tree.link("bin/sh", "bin/busybox"));
    tree
}

fn top_layer() -> Tree {
    let mut tree = Tree::new();
    tree.put("etc/.wh.group", Node::file(&b""[..], 0o644));
    tree.put("etc/motd", Node::file(&b"hello\n"[..], 0o644));
    tree
}

fn config() -> Config {
    let mut config = Config::default();
    config
        .set_entrypoint(Some(vec!["/bin/sh".into()]))
        .set_cmd(Some(vec!["-c".into(), "true".into()]))
        .set_env(Some(vec!["PATH=/bin".into()]))
        .set_labels(Some(
            [(
                "org.mobyproject.config".to_owned(),
                r#"{"pid":"host"}"#.to_owned(),
            )]
            .into(),
        ));
    config
}

fn sources(base: &Path) -> Sources<'static> {
    Sources {
        base: base.to_owned(),
        cache: base.join("cache"),
        registry: None,
        max_layer: kiln::images::local::DEFAULT_MAX_LAYER,
    }
}

fn read(sources: &Sources, text: &str) -> anyhow::Result<LocalImage> {
    sources.read(text, &mut |_, _| {})
}

fn check_image(image: &LocalImage) {
    assert!(!image.rootfs.contains("etc/group"), "whited out");
    assert!(!image.rootfs.contains("etc/.wh.group"));
    assert!(image.rootfs.contains("etc/motd"));
    let inode = |key: &str| match image.rootfs.get(key).map(|node| &node.kind) {
        Some(Kind::File { inode, .. }) => *inode,
        other => panic!("{key}: {other:?}"),
    };
    assert_eq!(inode("bin/sh"), inode("bin/busybox"), "hard link kept");
    assert_eq!(
        image.config.entrypoint().as_deref(),
        Some(&["/bin/sh".to_owned()][..])
    );
    assert_eq!(
        image
            .config
            .labels()
            .as_ref()
            .and_then(|labels| labels.get("org.mobyproject.config"))
            .map(String::as_str),
        Some(r#"{"pid":"host"}"#)
    );
}

/// Packs the directory `dir` into a tar archive at `archive`.
fn pack(dir: &Path, archive: &Path) {
    let mut builder = tar::Builder::new(fs::File::create(archive).expect("create archive"));
    builder.append_dir_all(".", dir).expect("pack");
    builder.finish().expect("finish");
}

#[test]
fn an_oci_layout_and_an_oci_archive_read_with_layers_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout::create(&dir.path().join("img")).expect("layout");
    layout
        .put_image("v1", &[base_layer(), top_layer()], config())
        .expect("put");
    let sources = sources(dir.path());
    let mut seen = Vec::new();
    let image = sources
        .read("oci:img", &mut |done, total| seen.push((done, total)))
        .expect("read layout");
    check_image(&image);
    assert_eq!(seen, [(1, 2), (2, 2)], "progress per layer");

    pack(&dir.path().join("img"), &dir.path().join("img.tar"));
    check_image(&read(&sources, "oci-archive:img.tar").expect("read archive"));

    // A second image in the layout: the text must name one.
    layout
        .put_image("v2", &[base_layer()], Config::default())
        .expect("put");
    let err = read(&sources, "oci:img").expect_err("ambiguous");
    assert!(
        format!("{err:#}")
            .contains("holds 2 images; name one with `oci:PATH:NAME` (names: v1, v2)"),
        "{err:#}"
    );
    check_image(&read(&sources, "oci:img:v1").expect("named"));
    assert!(read(&sources, "oci:img:v2")
        .expect("named")
        .rootfs
        .contains("etc/group"));
}

#[test]
fn a_docker_save_archive_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("save");
    fs::create_dir_all(root.join("l1")).expect("mkdir");
    fs::create_dir_all(root.join("l2")).expect("mkdir");
    let base = kiln::tree::archive::write_tar(&base_layer(), Vec::new()).expect("tar");
    let top = kiln::tree::archive::write_tar(&top_layer(), Vec::new()).expect("tar");
    fs::write(root.join("l1/layer.tar"), &base).expect("write");
    fs::write(root.join("l2/layer.tar"), &top).expect("write");
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": serde_json::to_value(config()).expect("config"),
        "rootfs": {"type": "layers", "diff_ids": [sha256(&base), sha256(&top)]},
        "container_config": {"Hostname": "ignored"},
        "docker_version": "20.10.24",
    });
    let config = serde_json::to_vec(&config).expect("json");
    let config_name = format!("{}.json", sha256(&config).trim_start_matches("sha256:"));
    fs::write(root.join(&config_name), &config).expect("write");
    let manifest = serde_json::json!([{
        "Config": config_name,
        "RepoTags": ["example/app:1"],
        "Layers": ["l1/layer.tar", "l2/layer.tar"],
    }]);
    fs::write(root.join("manifest.json"), manifest.to_string()).expect("write");
    pack(&root, &dir.path().join("app.tar"));
    let sources = sources(dir.path());
    check_image(&read(&sources, "docker-archive:app.tar").expect("read"));

    // A layer whose content is not what the config says is refused.
    fs::write(root.join("l2/layer.tar"), &base).expect("write");
    pack(&root, &dir.path().join("bad.tar"));
    let err = read(&sources, "docker-archive:bad.tar").expect_err("bad diff id");
    let text = format!("{err:#}");
    assert!(
        text.starts_with(
            "image `docker-archive:bad.tar`: layer l2/layer.tar: the uncompressed layer is sha256:"
        ),
        "{text}"
    );
    assert!(
        text.contains(&format!("the config's diff id is {}", sha256(&top))),
        "{text}"
    );
}

#[test]
fn a_changed_blob_a_missing_image_and_the_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout::create(&dir.path().join("img")).expect("layout");
    let manifest = layout
        .put_image("v1", &[base_layer()], config())
        .expect("put");
    let sources = sources(dir.path());
    let manifest_path = dir
        .path()
        .join(format!("img/blobs/sha256/{}", manifest.digest().digest()));
    let manifest_json: serde_json::Value =
        serde_json::from_slice(&fs::read(&manifest_path).expect("manifest")).expect("json");
    let layer = manifest_json["layers"][0]["digest"]
        .as_str()
        .expect("layer digest")
        .to_owned();
    let layer_path = dir
        .path()
        .join("img/blobs/sha256")
        .join(layer.trim_start_matches("sha256:"));
    fs::write(&layer_path, b"tampered").expect("tamper");
    let err = read(&sources, "oci:img").expect_err("bad digest");
    let text = format!("{err:#}");
    assert!(
        text.starts_with(&format!(
            "image `oci:img`: layer 0 ({layer}): blob {layer} does not match its digest"
        )),
        "{text}"
    );

    let err = read(&sources, "oci:missing").expect_err("missing");
    assert!(
        format!("{err:#}").starts_with("image `oci:missing`: cannot read "),
        "{err:#}"
    );
    let err = read(&sources, "alpine:3.20").expect_err("not cached");
    assert!(
        format!("{err:#}").contains("`docker.io/library/alpine:3.20` is not in the local cache"),
        "{err:#}"
    );

    // The cache is a layout whose images are named by full reference.
    let cache = Layout::create(&dir.path().join("cache")).expect("cache");
    cache
        .put_image(
            "docker.io/library/alpine:3.20",
            &[base_layer(), top_layer()],
            config(),
        )
        .expect("put");
    check_image(&read(&sources, "alpine:3.20").expect("from the cache"));
    let err = read(&sources, "alpine:3.21").expect_err("other tag");
    assert!(
        format!("{err:#}").contains("no image named `docker.io/library/alpine:3.21`"),
        "{err:#}"
    );
}

#[test]
fn a_layer_past_the_limit_is_refused_by_name_and_large_files_read_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout::create(&dir.path().join("img")).expect("layout");
    // 4 MiB of one byte: gzip makes it a few KiB; it unpacks far past a 1 MiB limit.
    let big: Vec<u8> = vec![b'k'; 4 << 20];
    let mut layer = Tree::new();
    layer.put("data/big", Node::file(big.clone(), 0o644));
    layer.put("data/small", Node::file(&b"small"[..], 0o644));
    let manifest = layout
        .put_image("v1", &[base_layer(), layer], config())
        .expect("put");
    let manifest_path = dir
        .path()
        .join(format!("img/blobs/sha256/{}", manifest.digest().digest()));
    let manifest_json: serde_json::Value =
        serde_json::from_slice(&fs::read(&manifest_path).expect("manifest")).expect("json");
    let second = manifest_json["layers"][1]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        manifest_json["layers"][1]["size"].as_u64().unwrap() < 64 << 10,
        "the layer is small compressed"
    );

    let mut limited = sources(dir.path());
    limited.max_layer = 1 << 20;
    let err = read(&limited, "oci:img").expect_err("past the limit");
    let text = format!("{err:#}");
    assert!(
        text.starts_with(&format!("image `oci:img`: layer 1 ({second}): ")),
        "{text}"
    );
    assert!(
        text.contains("unpacks to more than 1048576 bytes") && text.contains("--max-layer-size"),
        "{text}"
    );

    // Under the default limit it reads, the large file (on disk, in the spill) whole.
    let image = read(&sources(dir.path()), "oci:img").expect("read");
    let data = |key: &str| match image.rootfs.get(key).map(|node| &node.kind) {
        Some(Kind::File { data, .. }) => data.to_vec().expect("read back"),
        other => panic!("{key}: {other:?}"),
    };
    assert_eq!(data("data/big"), big);
    assert_eq!(data("data/small"), b"small");
}
