//! `kiln build` pulling from a real registry (Debian's `docker-registry`, started on
//! 127.0.0.1 by each test, filled with `skopeo` from images Kiln's layout writer made): pull and
//! build, the second build from the cache with the registry gone, logins required, given and
//! refused, bearer tokens from a token service, a tampered blob, a multi-arch index, a resumed
//! download, and `kiln cache`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use kiln::oci::digest::sha256;
use kiln::oci::layout::{Layout, REF_NAME};
use kiln::tree::{Kind, Node, Tree};
use oci_spec::image::{Config, MediaType};
use serde_json::{json, Value};

const USER: &str = "alice";
const PASSWORD: &str = "open sesame";

/// A registry server on 127.0.0.1, stopped when dropped.
struct Server {
    child: Child,
    host: String,
    dir: tempfile::TempDir,
}

impl Server {
    /// Starts a registry; with `login`, every request needs basic auth as USER:PASSWORD.
    fn start(login: bool) -> Self {
        Self::start_with(login, false)
    }

    /// Starts a registry speaking https only, its certificate (for 127.0.0.1) signed by a
    /// CA made here: the CA's certificate is `ca.pem` in the server's folder.
    fn start_tls() -> Self {
        Self::start_with(false, true)
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn start_with(login: bool, tls: bool) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:0\n",
            dir.path().join("data").display()
        );
        if tls {
            certificates(dir.path());
            config += &format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                dir.path().join("cert.pem").display(),
                dir.path().join("key.pem").display()
            );
        }
        if login {
            let htpasswd = Command::new("htpasswd")
                .args(["-Bbn", USER, PASSWORD])
                .output()
                .expect("run htpasswd (apache2-utils)");
            assert!(htpasswd.status.success(), "htpasswd failed");
            fs::write(dir.path().join("htpasswd"), &htpasswd.stdout).expect("htpasswd file");
            config += &format!(
                "auth:\n  htpasswd:\n    realm: kiln-test\n    path: {}\n",
                dir.path().join("htpasswd").display()
            );
        }
        fs::write(dir.path().join("config.yml"), config).expect("config");
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start docker-registry");
        // The log is read to its end (a full pipe would stop the server); the address it
        // listens on comes from its "listening on" line.
        let stderr = child.stderr.take().expect("stderr");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let host = rest
                        .split(['"', ' ', ','])
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let _ = sender.send(host);
                }
            }
        });
        let host = receiver
            .recv_timeout(Duration::from_secs(30))
            .expect("the registry says where it listens");
        Self { child, host, dir }
    }

    /// The registry's stored copy of the blob `digest`.
    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = &digest[7..];
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Makes, in `dir`, a CA (`ca.pem`) and a server certificate for 127.0.0.1 it signed
/// (`cert.pem`, `key.pem`), with openssl.
fn certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &key,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=kiln test CA",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &key,
            &[
                "-keyout",
                "key.pem",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat(),
    );
    fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("extensions");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
}

/// USER:PASSWORD as an HTTP basic `Authorization` carries it (base64).
const BASIC: &str = "Basic YWxpY2U6b3BlbiBzZXNhbWU=";
/// The token the token service hands out.
const TOKEN: &str = "kiln-test-token";

/// A front for a registry that wants bearer tokens, as Docker Hub does: a request without
/// the token is answered 401 with a `Bearer` challenge naming the token service at `/token`,
/// which gives the token for USER:PASSWORD only; requests with it go on to the registry.
struct TokenFront {
    host: String,
    /// Requests that carried the token and were passed on.
    passed: Arc<AtomicUsize>,
}

impl TokenFront {
    fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the front");
        let host = listener.local_addr().expect("address").to_string();
        let passed = Arc::new(AtomicUsize::new(0));
        let (front, upstream, count) = (host.clone(), upstream.to_owned(), passed.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (front, upstream, count) = (front.clone(), upstream.clone(), count.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &front, &upstream, &count);
                });
            }
        });
        Self { host, passed }
    }
}

/// Answers one request on `client` (each response closes the connection).
fn serve(
    mut client: TcpStream,
    front: &str,
    upstream: &str,
    passed: &AtomicUsize,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte)? == 0 {
            return Ok(());
        }
        // A TLS handshake (https tried first) is turned away as a plain http server would.
        if head.is_empty() && byte[0] == 0x16 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let target = head.split(' ').nth(1).unwrap_or_default().to_owned();
    let authorization = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("authorization")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    let reply = |client: &mut TcpStream, status: &str, extra: &str, body: &str| {
        write!(
            client,
            "HTTP/1.1 {status}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    if target.starts_with("/token") {
        if authorization == BASIC {
            return reply(
                &mut client,
                "200 OK",
                "",
                &json!({"token": TOKEN}).to_string(),
            );
        }
        return reply(
            &mut client,
            "401 Unauthorized",
            "",
            r#"{"details":"bad login"}"#,
        );
    }
    if authorization != format!("Bearer {TOKEN}") {
        let challenge = format!(
            "WWW-Authenticate: Bearer realm=\"http://{front}/token\",service=\"kiln-test\"\r\n"
        );
        let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
        return reply(&mut client, "401 Unauthorized", &challenge, body);
    }
    passed.fetch_add(1, Ordering::SeqCst);
    let mut registry = TcpStream::connect(upstream)?;
    let request: String = head
        .lines()
        .filter(|line| {
            let name = line.split(':').next().unwrap_or_default();
            !name.eq_ignore_ascii_case("authorization") && !name.eq_ignore_ascii_case("connection")
        })
        .filter(|line| !line.is_empty())
        .map(|line| format!("{line}\r\n"))
        .collect();
    write!(registry, "{request}Connection: close\r\n\r\n")?;
    let mut response = Vec::new();
    registry.read_to_end(&mut response)?;
    client.write_all(&response)
}

/// Copies the image `name` of the layout at `layout` to `target` (`HOST/REPO:TAG`) with skopeo,
/// every platform of an index included.
fn push(layout: &Path, name: &str, target: &str, login: bool) {
    push_as(layout, name, target, login, &[]);
}

/// [`push`] with more skopeo flags (`--format v2s2` for Docker's media types).
fn push_as(layout: &Path, name: &str, target: &str, login: bool, flags: &[&str]) {
    let mut command = Command::new("timeout");
    command.args([
        "120",
        "skopeo",
        "copy",
        "--quiet",
        "--all",
        "--dest-tls-verify=false",
    ]);
    command.args(flags);
    if login {
        command.arg(format!("--dest-creds={USER}:{PASSWORD}"));
    }
    let output = command
        .arg(format!("oci:{}:{name}", layout.display()))
        .arg(format!("docker://{target}"))
        .output()
        .expect("run skopeo");
    assert!(
        output.status.success(),
        "skopeo copy to {target}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn file(tree: &mut Tree, path: &str, text: &str) {
    tree.put(path, Node::file(text.as_bytes(), 0o644));
}

/// A registry (wanting a login or not) holding an image whose `etc/hello` says `text` as
/// `kiln/REPOSITORY:v1`, pushed with skopeo's `flags`; a kiln world; the image's reference.
fn registry_with_hello(
    login: bool,
    text: &str,
    repository: &str,
    flags: &[&str],
) -> (Server, Kiln, String) {
    let server = Server::start(login);
    let kiln = Kiln::new();
    let layout = hello_layout(kiln.dir.path(), text);
    let reference = format!("{}/kiln/{repository}:v1", server.host);
    push_as(&layout, "hello", &reference, login, flags);
    (server, kiln, reference)
}

/// A layout holding one image named `hello`, its layer holding `etc/hello` with `text`.
fn hello_layout(dir: &Path, text: &str) -> PathBuf {
    let mut tree = Tree::new();
    file(&mut tree, "etc/hello", text);
    file(&mut tree, "bin/tool", "a tool");
    let mut config = Config::default();
    config.set_entrypoint(Some(vec!["/bin/tool".into()]));
    let layout = dir.join("hello-layout");
    Layout::create(&layout)
        .expect("layout")
        .put_image("hello", &[tree], config)
        .expect("image");
    layout
}

/// A layout holding an index named `multi`: one manifest per `(architecture, text)`, each
/// layer holding `etc/arch` with its text.
fn multi_layout(dir: &Path, platforms: &[(&str, &str)]) -> PathBuf {
    let path = dir.join("multi-layout");
    let layout = Layout::create(&path).expect("layout");
    let mut entries = Vec::new();
    for (architecture, text) in platforms {
        let mut tree = Tree::new();
        file(&mut tree, "etc/arch", text);
        let tar = kiln::tree::archive::write_tar(&tree, Vec::new()).expect("tar");
        let layer = layout.put_blob(&tar, MediaType::ImageLayer).expect("layer");
        let config = json!({
            "architecture": architecture,
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [sha256(&tar)]},
            "config": {"Entrypoint": ["/bin/sh"]},
        });
        let config = layout
            .put_blob(config.to_string().as_bytes(), MediaType::ImageConfig)
            .expect("config");
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config,
            "layers": [layer],
        });
        let manifest = layout
            .put_blob(manifest.to_string().as_bytes(), MediaType::ImageManifest)
            .expect("manifest");
        let mut entry = serde_json::to_value(&manifest).expect("descriptor");
        entry["platform"] = json!({"architecture": architecture, "os": "linux"});
        entries.push(entry);
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    });
    let mut index = layout
        .put_blob(index.to_string().as_bytes(), MediaType::ImageIndex)
        .expect("index");
    index.set_annotations(Some([(REF_NAME.to_owned(), "multi".to_owned())].into()));
    layout.name(index).expect("name the index");
    path
}

/// A build or cache command's world: its own cache and Docker config folder.
struct Kiln {
    dir: tempfile::TempDir,
    /// A CA certificate kiln trusts besides the system's (`SSL_CERT_FILE`).
    ca: Option<PathBuf>,
}

impl Kiln {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(dir.path().join("docker")).expect("docker config dir");
        Self { dir, ca: None }
    }

    fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut command = Command::new("timeout");
        command
            .arg("300")
            .arg(env!("CARGO_BIN_EXE_kiln"))
            .args(args)
            .current_dir(self.dir.path())
            .env("KILN_CACHE", self.cache())
            .env("DOCKER_CONFIG", self.dir.path().join("docker"));
        if let Some(ca) = &self.ca {
            command.env("SSL_CERT_FILE", ca);
        }
        command.output().expect("run kiln")
    }

    /// [`Kiln::run`] with standard error on a terminal (script(1)'s pseudo-terminal); what
    /// the terminal showed.
    fn run_on_terminal(&self, args: &[&str]) -> String {
        let line = std::iter::once(env!("CARGO_BIN_EXE_kiln"))
            .chain(args.iter().copied())
            .collect::<Vec<_>>()
            .join(" ");
        let output = Command::new("timeout")
            .args(["300", "script", "-qec", &line, "/dev/null"])
            .current_dir(self.dir.path())
            .env("KILN_CACHE", self.cache())
            .env("DOCKER_CONFIG", self.dir.path().join("docker"))
            .stdin(Stdio::null())
            .output()
            .expect("run kiln under script");
        let shown = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "{shown}");
        shown
    }

    /// Builds a tar from a manifest whose init is `image`, into `out`; `extra` are more flags.
    fn build(&self, image: &str, out: &str, extra: &[&str]) -> Output {
        fs::write(
            self.dir.path().join("image.yml"),
            format!("init:\n  - {image}\n"),
        )
        .expect("manifest");
        let mut args = vec!["build", "--format", "tar", "-o", out];
        args.extend_from_slice(extra);
        args.push("image.yml");
        self.run(&args)
    }

    /// The built tar's `path`.
    fn built_file(&self, out: &str, path: &str) -> String {
        let tar = fs::read(self.dir.path().join(out).join("image.tar")).expect("image.tar");
        let mut tree = Tree::new();
        kiln::tree::layer::apply(&mut tree, &tar[..]).expect("read the tar");
        match tree.get(path).map(|node| &node.kind) {
            Some(Kind::File { data, .. }) => {
                String::from_utf8_lossy(&data.to_vec().expect("read back")).into_owned()
            }
            other => panic!("{path} in the image: {other:?}"),
        }
    }

    /// Runs a build that must fail: its error, once checked that `out` holds nothing.
    fn build_fails(&self, image: &str, out: &str, extra: &[&str]) -> String {
        let output = self.build(image, out, extra);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        let written = fs::read_dir(self.dir.path().join(out)).map_or(0, |d| d.count());
        assert_eq!(written, 0, "nothing is written on failure: {stderr}");
        stderr
    }

    fn cache_blobs(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.cache().join("blobs/sha256"))
            .map(|listing| {
                listing
                    .map(|entry| {
                        entry
                            .expect("entry")
                            .file_name()
                            .to_string_lossy()
                            .into_owned()
                    })
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

fn succeeded(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    stderr
}

#[test]
fn a_pulled_image_builds_and_the_second_build_needs_no_registry() {
    let (mut server, kiln, reference) =
        registry_with_hello(false, "hello from the registry\n", "hello", &[]);

    let stderr = succeeded(&kiln.build(&reference, "out", &[]));
    assert!(stderr.contains(&format!("pulling {reference}")), "{stderr}");
    assert!(
        stderr.contains(&format!("pulled {reference} (sha256:")),
        "{stderr}"
    );
    assert_eq!(
        kiln.built_file("out", "etc/hello"),
        "hello from the registry\n"
    );

    let listed = kiln.run(&["cache", "ls"]);
    succeeded(&listed);
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(listed.starts_with("REFERENCE"), "{listed}");
    assert!(listed.contains(&reference), "{listed}");
    // --json: the same image, its whole digest and its size in bytes, which add up to the blobs.
    let json = kiln.run(&["cache", "ls", "--json"]);
    succeeded(&json);
    let entries: Value = serde_json::from_slice(&json.stdout).expect("a JSON list");
    let entries = entries.as_array().expect("a list");
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["reference"], reference.as_str());
    let digest = entries[0]["digest"].as_str().expect("digest");
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    assert!(listed.contains(&digest[..19]), "{listed}");
    let blobs: u64 = kiln
        .cache_blobs()
        .iter()
        .map(|name| {
            fs::metadata(kiln.cache().join("blobs/sha256").join(name))
                .expect("blob")
                .len()
        })
        .sum();
    assert_eq!(entries[0]["size"], blobs);

    // An unknown tag and an unknown repository, while the registry runs.
    let err = kiln.build_fails(&format!("{}/kiln/hello:v2", server.host), "missing", &[]);
    assert!(
        err.contains(&format!(
            "`{}/kiln/hello:v2` is not in the registry {}",
            server.host, server.host
        )),
        "{err}"
    );
    let err = kiln.build_fails(&format!("{}/kiln/nothing:v1", server.host), "missing", &[]);
    assert!(err.contains("is not in the registry"), "{err}");

    // With the registry gone, the cache is enough, and the bytes are the same.
    server.stop();
    let stderr = succeeded(&kiln.build(&reference, "again", &[]));
    assert!(!stderr.contains("pulling"), "{stderr}");
    assert_eq!(
        fs::read(kiln.dir.path().join("out/image.tar")).expect("first"),
        fs::read(kiln.dir.path().join("again/image.tar")).expect("second")
    );
    // --pull asks the registry, which is gone: the error names it, host and port.
    let err = kiln.build_fails(&reference, "pulled", &["--pull"]);
    assert!(
        err.contains(&format!(
            "cannot reach the registry {}: Connection refused",
            server.host
        )),
        "{err}"
    );
}

#[test]
fn pull_checks_the_tag_and_the_cache_can_be_listed_and_cleared() {
    let server = Server::start(false);
    let kiln = Kiln::new();
    let reference = format!("{}/kiln/hello:v1", server.host);
    let first = tempfile::tempdir().expect("tempdir");
    push(
        &hello_layout(first.path(), "first\n"),
        "hello",
        &reference,
        false,
    );
    succeeded(&kiln.build(&reference, "one", &[]));
    assert_eq!(kiln.built_file("one", "etc/hello"), "first\n");

    // The tag moves: without --pull the cache's image is used, with it the new one.
    let second = tempfile::tempdir().expect("tempdir");
    push(
        &hello_layout(second.path(), "second\n"),
        "hello",
        &reference,
        false,
    );
    succeeded(&kiln.build(&reference, "two", &[]));
    assert_eq!(kiln.built_file("two", "etc/hello"), "first\n");
    let stderr = succeeded(&kiln.build(&reference, "three", &["--pull"]));
    assert!(stderr.contains(&format!("pulled {reference}")), "{stderr}");
    assert_eq!(kiln.built_file("three", "etc/hello"), "second\n");
    let stderr = succeeded(&kiln.build(&reference, "checked", &["--pull"]));
    assert!(
        stderr.contains(&format!("{reference} is up to date (sha256:")),
        "{stderr}"
    );
    assert!(!stderr.contains("pulled"), "{stderr}");

    // The first image's blobs are no longer used: prune frees them, the second stays whole.
    let before = kiln.cache_blobs();
    let pruned = kiln.run(&["cache", "prune"]);
    let stderr = succeeded(&pruned);
    assert!(stderr.contains("freed 3 blobs"), "{stderr}");
    assert_eq!(kiln.cache_blobs().len(), before.len() - 3);
    succeeded(&kiln.build(&reference, "four", &[]));
    assert_eq!(kiln.built_file("four", "etc/hello"), "second\n");

    // rm forgets the image and frees its blobs; an unknown name changes nothing.
    let err = kiln.run(&["cache", "rm", "kiln/unknown:v1"]);
    assert_eq!(err.status.code(), Some(1));
    let err = String::from_utf8_lossy(&err.stderr);
    assert!(
        err.contains("`kiln/unknown:v1` is not in the cache"),
        "{err}"
    );
    succeeded(&kiln.run(&["cache", "rm", &reference]));
    assert!(kiln.cache_blobs().is_empty(), "{:?}", kiln.cache_blobs());
    let listed = kiln.run(&["cache", "ls"]);
    assert!(!String::from_utf8_lossy(&listed.stdout).contains(&reference));
}

#[test]
fn a_login_is_required_given_and_refused() {
    let (server, kiln, reference) = registry_with_hello(true, "secret\n", "private", &[]);

    let err = kiln.build_fails(&reference, "out", &[]);
    assert!(
        err.contains(&format!("the registry {} wants a login", server.host)),
        "{err}"
    );
    assert!(err.contains("--registry-auth"), "{err}");

    let wrong = format!("{}={USER}:wrong", server.host);
    let err = kiln.build_fails(&reference, "out", &["--registry-auth", &wrong]);
    assert!(
        err.contains(&format!(
            "the registry {} refused the login of `{USER}` (from --registry-auth)",
            server.host
        )),
        "{err}"
    );
    assert!(!err.contains("wrong"), "the password is never shown: {err}");

    let right = format!("{}={USER}:{PASSWORD}", server.host);
    succeeded(&kiln.build(&reference, "out", &["--registry-auth", &right]));
    assert_eq!(kiln.built_file("out", "etc/hello"), "secret\n");

    // The login `docker login` would have written, in a cache of its own.
    let other = Kiln::new();
    let config = json!({"auths": {server.host.clone(): {"username": USER, "password": PASSWORD}}});
    fs::write(
        other.dir.path().join("docker/config.json"),
        config.to_string(),
    )
    .expect("config.json");
    succeeded(&other.build(&reference, "out", &[]));
    assert_eq!(other.built_file("out", "etc/hello"), "secret\n");
}

/// The manifest the registry holds for `reference`, parsed.
fn registry_manifest(server: &Server, repository: &str, tag: &str) -> Value {
    let link = server
        .dir
        .path()
        .join("data/docker/registry/v2/repositories")
        .join(repository)
        .join("_manifests/tags")
        .join(tag)
        .join("current/link");
    let digest = fs::read_to_string(link).expect("tag link");
    serde_json::from_slice(&fs::read(server.blob_file(digest.trim())).expect("manifest"))
        .expect("manifest json")
}

#[test]
fn a_tampered_blob_is_rejected_and_never_cached() {
    let (server, kiln, reference) = registry_with_hello(false, "untouched\n", "hello", &[]);
    let manifest = registry_manifest(&server, "kiln/hello", "v1");
    let layer = manifest["layers"][0]["digest"].as_str().expect("layer");
    let data = server.blob_file(layer);
    let mut bytes = fs::read(&data).expect("layer data");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&data, bytes).expect("tamper");

    let err = kiln.build_fails(&reference, "out", &[]);
    assert!(
        err.contains(&format!("blob {layer} does not match its digest")),
        "{err}"
    );
    assert!(!kiln.cache_blobs().contains(&layer[7..].to_owned()));
    let listed = kiln.run(&["cache", "ls"]);
    assert!(!String::from_utf8_lossy(&listed.stdout).contains(&reference));
}

#[test]
fn a_multi_arch_index_gives_amd64_and_one_without_it_is_refused() {
    let server = Server::start(false);
    let kiln = Kiln::new();
    let both = multi_layout(
        kiln.dir.path(),
        &[("arm64", "arm64\n"), ("amd64", "amd64\n")],
    );
    let reference = format!("{}/kiln/multi:v1", server.host);
    push(&both, "multi", &reference, false);
    succeeded(&kiln.build(&reference, "out", &[]));
    assert_eq!(kiln.built_file("out", "etc/arch"), "amd64\n");
    // Only the amd64 image was fetched: index, manifest, config and layer.
    assert_eq!(kiln.cache_blobs().len(), 4, "{:?}", kiln.cache_blobs());

    let other = tempfile::tempdir().expect("tempdir");
    let arm_only = multi_layout(other.path(), &[("arm64", "arm64\n"), ("s390x", "s390x\n")]);
    let reference = format!("{}/kiln/arm:v1", server.host);
    push(&arm_only, "multi", &reference, false);
    let err = kiln.build_fails(&reference, "arm", &[]);
    assert!(
        err.contains("has no linux/amd64 version; its index offers linux/arm64, linux/s390x"),
        "{err}"
    );
}

#[test]
fn a_download_cut_off_resumes_and_a_wrong_partial_is_fetched_again() {
    let (server, first, reference) =
        registry_with_hello(false, &"a longer layer\n".repeat(4000), "hello", &[]);
    succeeded(&first.build(&reference, "out", &[]));

    // A second cache holds what cut-off downloads would leave: half of the layer, and a
    // config whose partial bytes are wrong.
    let manifest = registry_manifest(&server, "kiln/hello", "v1");
    let layer = manifest["layers"][0]["digest"].as_str().expect("layer");
    let config = manifest["config"]["digest"].as_str().expect("config");
    let second = Kiln::new();
    let ingest = second.cache().join("ingest");
    fs::create_dir_all(&ingest).expect("ingest");
    let bytes = fs::read(first.cache().join("blobs/sha256").join(&layer[7..])).expect("layer");
    fs::write(ingest.join(&layer[7..]), &bytes[..bytes.len() / 2]).expect("half");
    fs::write(ingest.join(&config[7..]), b"{\"wrong\":").expect("wrong");
    succeeded(&second.build(&reference, "out", &[]));
    assert_eq!(
        second.built_file("out", "etc/hello"),
        "a longer layer\n".repeat(4000)
    );
    assert!(
        fs::read_dir(&ingest).expect("ingest").next().is_none(),
        "no partial file is left"
    );
}

#[test]
fn a_registry_that_hands_out_bearer_tokens_is_followed() {
    let (server, kiln, direct) = registry_with_hello(false, "behind a token\n", "hello", &[]);
    let front = TokenFront::start(&server.host);
    let reference = direct.replace(&server.host, &front.host);

    let err = kiln.build_fails(&reference, "out", &[]);
    assert!(
        err.contains(&format!(
            "the registry {}'s token service refused an anonymous login",
            front.host
        )),
        "{err}"
    );
    let wrong = format!("{}={USER}:wrong", front.host);
    let err = kiln.build_fails(&reference, "out", &["--registry-auth", &wrong]);
    assert!(
        err.contains(&format!(
            "token service refused the login of `{USER}` (from --registry-auth)"
        )),
        "{err}"
    );
    assert_eq!(front.passed.load(Ordering::SeqCst), 0);

    let right = format!("{}={USER}:{PASSWORD}", front.host);
    succeeded(&kiln.build(&reference, "out", &["--registry-auth", &right]));
    assert_eq!(kiln.built_file("out", "etc/hello"), "behind a token\n");
    // Manifest, config and layer went through with the token.
    assert!(front.passed.load(Ordering::SeqCst) >= 3);
}

#[test]
fn docker_media_types_pull_and_a_terminal_shows_progress() {
    let (server, kiln, reference) = registry_with_hello(
        false,
        "in docker's format\n",
        "docker",
        &["--format", "v2s2"],
    );
    let manifest = registry_manifest(&server, "kiln/docker", "v1");
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );

    fs::write(
        kiln.dir.path().join("image.yml"),
        format!("init:\n  - {reference}\n"),
    )
    .expect("manifest");
    let shown = kiln.run_on_terminal(&["build", "--format", "tar", "-o", "out", "image.yml"]);
    // One line for the image, redrawn in place, ending with every layer and byte there.
    assert!(
        shown.contains(&format!("\r\x1b[K{reference}: 0/1 layers")),
        "{shown:?}"
    );
    assert!(
        shown.contains(&format!("\r\x1b[K{reference}: 1/1 layers")),
        "{shown:?}"
    );
    assert!(!shown.contains("pulling"), "{shown:?}");
    assert_eq!(kiln.built_file("out", "etc/hello"), "in docker's format\n");
}

#[test]
fn https_is_spoken_and_an_untrusted_certificate_is_told() {
    let server = Server::start_tls();
    let mut kiln = Kiln::new();
    let layout = hello_layout(kiln.dir.path(), "over tls\n");
    let reference = format!("{}/kiln/hello:v1", server.host);
    // skopeo, told not to verify, speaks https without checking the certificate.
    push(&layout, "hello", &reference, false);

    let err = kiln.build_fails(&reference, "out", &[]);
    assert!(
        err.contains(&format!(
            "cannot speak to the registry {}: over https: ",
            server.host
        )),
        "{err}"
    );
    assert!(err.contains("UnknownIssuer"), "{err}");
    assert!(
        err.contains("over http it answers 400 Bad Request, not as a registry"),
        "{err}"
    );

    kiln.ca = Some(server.ca());
    succeeded(&kiln.build(&reference, "out", &[]));
    assert_eq!(kiln.built_file("out", "etc/hello"), "over tls\n");
}
