//! The clouds' metadata servers LinuxKit's metadata asks, each at its own address, with the
//! paths, headers and file names LinuxKit uses: AWS, GCP, Hetzner, OpenStack, Vultr,
//! DigitalOcean and metaldata. A provider answers when its probe path gives 200 within
//! [`TIMEOUT`]; then the hostname (which must come), the other facts, the ssh keys and the
//! user data (each logged and left out when missing) are fetched and written.
//! Runs in: the metadata program.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::config::Config;

/// How long one request may take, as LinuxKit's (2 s).
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// How a server lists ssh keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    /// authorized_keys text, as is.
    Text,
    /// GCP's `user:key` lines: the keys, their users left out (all are root's).
    UserPrefixed,
    /// Hetzner's JSON list of keys.
    JsonList,
}

/// A cloud's metadata server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cloud {
    /// The name a command line gives (`aws`).
    pub arg: &'static str,
    /// The name /run/config/provider and the log say (`AWS`), LinuxKit's.
    pub name: &'static str,
    /// Where its server is: `http://169.254.169.254`.
    pub origin: &'static str,
    /// The path that answers 200 when this is the provider.
    pub probe: &'static str,
    /// Headers every request sends.
    pub headers: &'static [(&'static str, &'static str)],
    pub hostname: &'static str,
    /// Other facts: (path, file name under /run/config).
    pub facts: &'static [(&'static str, &'static str)],
    pub keys: Option<(&'static str, Keys)>,
    pub userdata: Option<&'static str>,
}

const LINK_LOCAL: &str = "http://169.254.169.254";

/// EC2's instance metadata, which OpenStack serves the same way.
const EC2_FACTS: &[(&str, &str)] = &[
    ("/latest/meta-data/public-ipv4", "public_ipv4"),
    ("/latest/meta-data/local-ipv4", "local_ipv4"),
    (
        "/latest/meta-data/placement/availability-zone",
        "availability_zone",
    ),
    ("/latest/meta-data/instance-type", "instance_type"),
    ("/latest/meta-data/instance-id", "instance_id"),
    ("/latest/meta-data/local-hostname", "local_hostname"),
];

const EC2_HOSTNAME: &str = "/latest/meta-data/hostname";

/// A cloud that serves EC2's instance metadata (AWS, OpenStack).
const fn ec2(arg: &'static str, name: &'static str) -> Cloud {
    Cloud {
        arg,
        name,
        origin: LINK_LOCAL,
        probe: EC2_HOSTNAME,
        headers: &[],
        hostname: EC2_HOSTNAME,
        facts: EC2_FACTS,
        keys: Some(("/latest/meta-data/public-keys/0/openssh-key", Keys::Text)),
        userdata: Some("/latest/user-data"),
    }
}

/// Every cloud, in LinuxKit's order.
pub const CLOUDS: &[Cloud] = &[
    ec2("aws", "AWS"),
    Cloud {
        arg: "gcp",
        name: "GCP",
        origin: "http://metadata.google.internal",
        probe: "/computeMetadata/v1/instance/hostname",
        headers: &[("Metadata-Flavor", "Google")],
        hostname: "/computeMetadata/v1/instance/hostname",
        facts: &[],
        keys: Some((
            "/computeMetadata/v1/project/attributes/ssh-keys",
            Keys::UserPrefixed,
        )),
        userdata: Some("/computeMetadata/v1/instance/attributes/user-data"),
    },
    Cloud {
        arg: "hetzner",
        name: "Hetzner",
        origin: LINK_LOCAL,
        probe: EC2_HOSTNAME,
        headers: &[],
        hostname: EC2_HOSTNAME,
        facts: &[
            ("/latest/meta-data/public-ipv4", "public_ipv4"),
            ("/latest/meta-data/local-ipv4", "local_ipv4"),
            ("/latest/meta-data/instance-id", "instance_id"),
        ],
        keys: Some(("/latest/meta-data/public-keys", Keys::JsonList)),
        userdata: Some("/latest/user-data"),
    },
    ec2("openstack", "openstack"),
    Cloud {
        arg: "vultr",
        name: "Vultr",
        origin: LINK_LOCAL,
        probe: "/v1/",
        headers: &[],
        hostname: "/v1/hostname",
        facts: &[
            ("/v1/interfaces/0/ipv4/address", "public_ipv4"),
            ("/v1/interfaces/1/ipv4/address", "private_ipv4"),
            ("/v1/interfaces/1/ipv4/netmask", "private_netmask"),
            ("/v1/region/regioncode", "region_code"),
            ("/v1/instanceid", "instance_id"),
        ],
        keys: Some(("/v1/public-keys", Keys::Text)),
        userdata: None,
    },
    Cloud {
        arg: "digitalocean",
        name: "DigitalOcean",
        origin: LINK_LOCAL,
        probe: "/metadata/v1/",
        headers: &[],
        hostname: "/metadata/v1/hostname",
        facts: &[
            (
                "/metadata/v1/interfaces/public/0/ipv4/address",
                "public_ipv4",
            ),
            (
                "/metadata/v1/interfaces/private/0/ipv4/address",
                "private_ipv4",
            ),
            ("/metadata/v1/region", "region"),
            ("/metadata/v1/id", "id"),
        ],
        keys: Some(("/metadata/v1/public-keys", Keys::Text)),
        userdata: Some("/metadata/v1/user-data"),
    },
    Cloud {
        arg: "metaldata",
        name: "metaldata",
        origin: "http://metaldata",
        probe: "/get/meta/hostname",
        headers: &[],
        hostname: "/get/meta/hostname",
        facts: &[
            ("/get/meta/public-ipv4", "public_ipv4"),
            ("/get/meta/private-ipv4", "private_ipv4"),
            ("/get/meta/failure-domain", "failure_domain"),
            ("/get/meta/machine-id", "machine_id"),
            ("/get/meta/machine-type", "machine_type"),
        ],
        keys: Some(("/get/meta/authorized-keys", Keys::Text)),
        userdata: Some("/get/user"),
    },
];

/// A cloud's server at an origin: its own, or one a test serves.
#[derive(Debug, Clone)]
pub struct Server {
    pub cloud: &'static Cloud,
    pub origin: String,
    agent: ureq::Agent,
}

impl Server {
    /// `cloud`'s server at its own address.
    pub fn of(cloud: &'static Cloud) -> Self {
        Self::at(cloud, cloud.origin)
    }

    /// `cloud`'s protocol spoken to `origin` (`http://127.0.0.1:PORT`).
    pub fn at(cloud: &'static Cloud, origin: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            .build()
            .into();
        Self {
            cloud,
            origin: origin.to_owned(),
            agent,
        }
    }

    /// GETs `path`: the body of a 200 answer.
    pub fn get(&self, path: &str) -> Result<Vec<u8>> {
        let url = format!("{}{path}", self.origin);
        let mut request = self.agent.get(&url);
        for (name, value) in self.cloud.headers {
            request = request.header(*name, *value);
        }
        let mut response = request.call().map_err(|err| anyhow!("GET {url}: {err}"))?;
        if response.status() != 200 {
            bail!("GET {url}: status {}", response.status());
        }
        response
            .body_mut()
            .read_to_vec()
            .map_err(|err| anyhow!("GET {url}: reading the answer: {err}"))
    }

    /// Whether this is the machine's provider.
    pub fn probe(&self) -> bool {
        self.get(self.cloud.probe).is_ok()
    }

    /// Writes the hostname, facts and ssh keys into `config`; returns the user data, if the
    /// server has any. A fact, the keys or the user data that cannot be had is said on
    /// `log` and left out; no hostname is an error.
    pub fn extract(&self, config: &Config, log: &mut dyn FnMut(String)) -> Result<Option<Vec<u8>>> {
        let hostname = self.get(self.cloud.hostname).context("no hostname")?;
        config.write("hostname", &hostname, 0o644)?;
        for (path, file) in self.cloud.facts {
            match self.get(path) {
                Ok(value) => config.write(file, &value, 0o644)?,
                Err(err) => log(format!("{file} left out: {err:#}")),
            }
        }
        if let Some((path, form)) = self.cloud.keys {
            match self.get(path).and_then(|body| keys(&body, form)) {
                Ok(keys) => config.authorized_keys(&keys)?,
                Err(err) => log(format!("ssh keys left out: {err:#}")),
            }
        }
        let Some(path) = self.cloud.userdata else {
            return Ok(None);
        };
        match self.get(path) {
            Ok(data) => Ok(Some(data)),
            Err(err) => {
                log(format!("no user data: {err:#}"));
                Ok(None)
            }
        }
    }
}

/// The keys in a server's answer `body`.
pub fn keys(body: &[u8], form: Keys) -> Result<Vec<String>> {
    let text = String::from_utf8_lossy(body);
    Ok(match form {
        Keys::Text => text
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(str::to_owned)
            .collect(),
        Keys::UserPrefixed => text
            .lines()
            .filter_map(|line| line.split_once(':'))
            .map(|(_, key)| key.to_owned())
            .collect(),
        Keys::JsonList => {
            serde_json::from_slice(body).context("the keys are not a JSON list of strings")?
        }
    })
}

/// The cloud a command line names.
pub fn cloud(arg: &str) -> Option<&'static Cloud> {
    CLOUDS.iter().find(|cloud| cloud.arg == arg)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::fs;
    use std::io::{BufRead as _, BufReader, Write as _};
    use std::net::TcpListener;
    use std::path::Path;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A metadata server of the test's own on the loopback: each path's answer, and the
    /// requests it was sent (path and headers).
    struct Fake {
        origin: String,
        requests: Arc<Mutex<Vec<Request>>>,
    }

    /// A request's path and its headers (lower case).
    type Request = (String, Vec<String>);

    fn serve(answers: &[(&str, &str)]) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let origin = format!(
            "http://{}",
            listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
        );
        let answers: BTreeMap<String, String> = answers
            .iter()
            .map(|(path, body)| ((*path).to_owned(), (*body).to_owned()))
            .collect();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(&stream);
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let path = line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned();
                let mut headers = Vec::new();
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
                        break;
                    }
                    headers.push(header.trim().to_lowercase());
                }
                seen.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((path.clone(), headers));
                let reply = match answers.get(&path) {
                    Some(body) => format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    ),
                    None => {
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_owned()
                    }
                };
                let _ = (&stream).write_all(reply.as_bytes());
            }
        });
        Fake { origin, requests }
    }

    fn config() -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let config = Config::at(&dir.path().join("config")).unwrap_or_else(|e| panic!("{e}"));
        (dir, config)
    }

    fn read(root: &Path, name: &str) -> String {
        fs::read_to_string(root.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn extract(server: &Server, config: &Config) -> (Option<Vec<u8>>, Vec<String>) {
        let mut said = Vec::new();
        let data = server
            .extract(config, &mut |line| said.push(line))
            .unwrap_or_else(|e| panic!("{e:#}"));
        (data, said)
    }

    #[test]
    fn aws_hostname_facts_key_and_user_data_land_where_linuxkit_puts_them() {
        let fake = serve(&[
            ("/latest/meta-data/hostname", "ip-10-0-0-5.ec2.internal"),
            ("/latest/meta-data/local-ipv4", "10.0.0.5"),
            ("/latest/meta-data/instance-id", "i-0123"),
            (
                "/latest/meta-data/placement/availability-zone",
                "eu-west-1a",
            ),
            (
                "/latest/meta-data/public-keys/0/openssh-key",
                "ssh-ed25519 AAAA me@laptop\n",
            ),
            ("/latest/user-data", "{\"motd\": {\"content\": \"hi\"}}"),
        ]);
        let server = Server::at(cloud("aws").unwrap_or_else(|| panic!("aws")), &fake.origin);
        assert!(server.probe());
        let (_dir, config) = config();
        let (data, said) = extract(&server, &config);
        let root = config.root();
        assert_eq!(read(root, "hostname"), "ip-10-0-0-5.ec2.internal");
        assert_eq!(read(root, "local_ipv4"), "10.0.0.5");
        assert_eq!(read(root, "instance_id"), "i-0123");
        assert_eq!(read(root, "availability_zone"), "eu-west-1a");
        assert_eq!(
            read(root, "ssh/authorized_keys"),
            "ssh-ed25519 AAAA me@laptop\n"
        );
        assert!(!root.join("public_ipv4").exists(), "the server has none");
        assert_eq!(
            data.as_deref(),
            Some(&b"{\"motd\": {\"content\": \"hi\"}}"[..])
        );
        assert!(
            said.iter()
                .any(|line| line.starts_with("public_ipv4 left out: GET ")
                    && line.contains("/latest/meta-data/public-ipv4: ")
                    && line.contains("404")),
            "{said:?}"
        );
    }

    #[test]
    fn gcp_sends_its_header_and_keeps_the_keys_without_their_users() {
        let fake = serve(&[
            (
                "/computeMetadata/v1/instance/hostname",
                "vm-1.c.project.internal",
            ),
            (
                "/computeMetadata/v1/project/attributes/ssh-keys",
                "alice:ssh-ed25519 AAAA alice\nbob:ssh-rsa BBBB bob\nnot a key line",
            ),
        ]);
        let server = Server::at(cloud("gcp").unwrap_or_else(|| panic!("gcp")), &fake.origin);
        let (_dir, config) = config();
        let (data, _) = extract(&server, &config);
        assert_eq!(read(config.root(), "hostname"), "vm-1.c.project.internal");
        assert_eq!(
            read(config.root(), "ssh/authorized_keys"),
            "ssh-ed25519 AAAA alice\nssh-rsa BBBB bob\n"
        );
        assert_eq!(data, None, "no user-data attribute");
        let requests = fake.requests.lock().unwrap_or_else(|e| e.into_inner());
        assert!(!requests.is_empty());
        for (path, headers) in requests.iter() {
            assert!(
                headers.iter().any(|h| h == "metadata-flavor: google"),
                "{path}: {headers:?}"
            );
        }
    }

    #[test]
    fn hetzners_json_key_list_becomes_one_key_a_line() {
        let fake = serve(&[
            ("/latest/meta-data/hostname", "hz-1"),
            (
                "/latest/meta-data/public-keys",
                "[\"ssh-ed25519 AAAA a\", \"ssh-ed25519 BBBB b\"]",
            ),
        ]);
        let server = Server::at(
            cloud("hetzner").unwrap_or_else(|| panic!("hetzner")),
            &fake.origin,
        );
        let (_dir, config) = config();
        extract(&server, &config);
        assert_eq!(
            read(config.root(), "ssh/authorized_keys"),
            "ssh-ed25519 AAAA a\nssh-ed25519 BBBB b\n"
        );
    }

    #[test]
    fn vultr_and_digitalocean_probe_their_directories() {
        let fake = serve(&[("/v1/", "hostname\n"), ("/v1/hostname", "vultr-1")]);
        let vultr = Server::at(
            cloud("vultr").unwrap_or_else(|| panic!("vultr")),
            &fake.origin,
        );
        let digitalocean = Server::at(
            cloud("digitalocean").unwrap_or_else(|| panic!("do")),
            &fake.origin,
        );
        assert!(vultr.probe());
        assert!(!digitalocean.probe(), "/metadata/v1/ is not served");
        let (_dir, config) = config();
        let (data, _) = extract(&vultr, &config);
        assert_eq!(read(config.root(), "hostname"), "vultr-1");
        assert_eq!(data, None, "Vultr gives no user data");
    }

    #[test]
    fn a_server_without_a_hostname_fails_and_one_that_is_not_there_does_not_answer() {
        let fake = serve(&[("/latest/meta-data/instance-id", "i-1")]);
        let server = Server::at(
            cloud("openstack").unwrap_or_else(|| panic!("os")),
            &fake.origin,
        );
        assert!(!server.probe());
        let (_dir, config) = config();
        let err = server
            .extract(&config, &mut |_| {})
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(
            err.starts_with("no hostname: GET http://127.0.0.1:"),
            "{err}"
        );
        // A port nothing listens on: refused at once.
        let closed = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let origin = format!(
            "http://{}",
            closed.local_addr().unwrap_or_else(|e| panic!("{e}"))
        );
        drop(closed);
        assert!(!Server::at(cloud("aws").unwrap_or_else(|| panic!("aws")), &origin).probe());
    }

    #[test]
    fn key_forms() {
        assert_eq!(
            keys(b"ssh-ed25519 A a\n\nssh-rsa B b\n", Keys::Text).unwrap_or_default(),
            ["ssh-ed25519 A a", "ssh-rsa B b"]
        );
        let err = keys(b"not json", Keys::JsonList)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("the keys are not a JSON list of strings")
        );
    }
}
