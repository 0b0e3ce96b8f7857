//! A booted image's network: `--networking` (qemu's user-mode network, optionally restricted,
//! or none), `--publish` (host ports forwarded into the guest, LinuxKit's `-publish`) and
//! `--mac`, turned into qemu's `-netdev`/`-device` arguments.
//! Runs in: `kiln run` and the VM tests, on the build host.
//! The user-mode network is qemu's own (libslirp): the guest is 10.0.2.15 by DHCP, its router
//! 10.0.2.2 and its DNS server 10.0.2.3. With `restrict=on` the guest can open no connection
//! to the host or beyond, while published ports and DHCP still work.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, TcpListener, UdpSocket};
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// How the guest is networked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Networking {
    /// No network device at all.
    None,
    /// qemu's user-mode network on a virtio-net device; `restrict` isolates the guest.
    User { restrict: bool },
}

impl FromStr for Networking {
    type Err = String;

    /// `user`, `user,restrict=on|off` or `none`, as LinuxKit spells them; LinuxKit's `tap,IF`
    /// and `bridge,BR` are named and refused.
    fn from_str(text: &str) -> Result<Self, String> {
        let mut parts = text.split(',');
        let mode = parts.next().unwrap_or_default();
        let options: Vec<&str> = parts.collect();
        match mode {
            "none" if options.is_empty() => Ok(Self::None),
            "none" => Err(format!("`{text}`: `none` takes no options")),
            "user" => {
                let mut restrict = false;
                for option in options {
                    restrict = match option {
                        "restrict=on" | "restrict=yes" => true,
                        "restrict=off" | "restrict=no" => false,
                        _ => {
                            return Err(format!(
                                "`{text}`: unknown option `{option}` (user takes restrict=on or restrict=off)"
                            ))
                        }
                    };
                }
                Ok(Self::User { restrict })
            }
            "tap" | "bridge" => Err(format!(
                "`{text}`: {mode} networking is not supported by kiln run; use user (with --publish) or none"
            )),
            _ => Err(format!(
                "`{text}`: unknown networking `{mode}` (user, user,restrict=on or none)"
            )),
        }
    }
}

impl fmt::Display for Networking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("none"),
            Self::User { restrict: false } => f.write_str("user"),
            Self::User { restrict: true } => f.write_str("user,restrict=on"),
        }
    }
}

/// A published port's transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

/// A host port forwarded to a guest port: `[IP:]HOST:GUEST[/tcp|/udp]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish {
    /// The host address listened on: 127.0.0.1 unless one is given.
    pub host_ip: IpAddr,
    pub host_port: u16,
    pub guest_port: u16,
    pub protocol: Protocol,
}

impl FromStr for Publish {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (ports, protocol) = match text.rsplit_once('/') {
            Some((ports, "tcp")) => (ports, Protocol::Tcp),
            Some((ports, "udp")) => (ports, Protocol::Udp),
            Some((_, other)) => {
                return Err(format!("`{text}`: unknown protocol `{other}` (tcp or udp)"))
            }
            None => (text, Protocol::Tcp),
        };
        let port = |part: &str, what: &str| -> Result<u16, String> {
            match part.parse::<u16>() {
                Ok(0) | Err(_) => Err(format!(
                    "`{text}`: the {what} port `{part}` is not a port number (1-65535)"
                )),
                Ok(port) => Ok(port),
            }
        };
        let parts: Vec<&str> = ports.split(':').collect();
        let (host_ip, host, guest) = match parts.as_slice() {
            [_] => {
                return Err(format!(
                    "`{text}`: the guest port is missing (HOST:GUEST, e.g. 8080:80)"
                ))
            }
            [host, guest] => (IpAddr::V4(Ipv4Addr::LOCALHOST), *host, *guest),
            [ip, host, guest] => {
                let ip = ip
                    .parse::<Ipv4Addr>()
                    .map_err(|_| format!("`{text}`: `{ip}` is not an IPv4 address to listen on"))?;
                (IpAddr::V4(ip), *host, *guest)
            }
            _ => {
                return Err(format!(
                    "`{text}`: too many parts ([IP:]HOST:GUEST[/tcp|/udp])"
                ))
            }
        };
        if host.is_empty() {
            return Err(format!("`{text}`: the host port is missing"));
        }
        if guest.is_empty() {
            return Err(format!("`{text}`: the guest port is missing"));
        }
        Ok(Self {
            host_ip,
            host_port: port(host, "host")?,
            guest_port: port(guest, "guest")?,
            protocol,
        })
    }
}

impl fmt::Display for Publish {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}/{}",
            self.host_ip,
            self.host_port,
            self.guest_port,
            self.protocol.name()
        )
    }
}

impl Publish {
    /// qemu's `hostfwd=` rule.
    fn hostfwd(&self) -> String {
        format!(
            "hostfwd={}:{}:{}-:{}",
            self.protocol.name(),
            self.host_ip,
            self.host_port,
            self.guest_port
        )
    }

    /// Fails, naming the port, when the host port cannot be listened on (in use, or an
    /// address this machine does not have); qemu would only say that a rule failed.
    fn check_free(&self) -> Result<(), String> {
        let address = (self.host_ip, self.host_port);
        let bound = match self.protocol {
            Protocol::Tcp => TcpListener::bind(address).map(drop),
            Protocol::Udp => UdpSocket::bind(address).map(drop),
        };
        bound.map_err(|err| {
            format!(
                "--publish {self}: cannot listen on {}:{} ({}): {err}",
                self.host_ip,
                self.host_port,
                self.protocol.name()
            )
        })
    }
}

/// An Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// A stable, locally administered unicast address derived from `name`: the same image
    /// gets the same address (and so the same DHCP lease) on every boot.
    pub fn derived(name: &str) -> Self {
        let hash = Sha256::digest(name.as_bytes());
        let mut bytes = [0u8; 6];
        bytes.copy_from_slice(&hash[..6]);
        // Locally administered (bit 1 set), unicast (bit 0 clear).
        bytes[0] = (bytes[0] & 0xfc) | 0x02;
        Self(bytes)
    }
}

impl FromStr for Mac {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let invalid =
            || format!("`{text}` is not a MAC address (six hex bytes, 02:00:00:12:34:56)");
        let parts: Vec<&str> = text.split(':').collect();
        if parts.len() != 6 {
            return Err(invalid());
        }
        let mut bytes = [0u8; 6];
        for (byte, part) in bytes.iter_mut().zip(parts) {
            if part.len() != 2 {
                return Err(invalid());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| invalid())?;
        }
        if bytes[0] & 1 == 1 {
            return Err(format!(
                "`{text}` is a multicast address; a NIC needs a unicast one"
            ));
        }
        Ok(Self(bytes))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// A guest's network: the mode, the published ports and the NIC's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub networking: Networking,
    pub publish: Vec<Publish>,
    pub mac: Mac,
}

impl Network {
    /// No network device.
    pub fn none() -> Self {
        Self {
            networking: Networking::None,
            publish: Vec::new(),
            mac: Mac::derived(""),
        }
    }

    /// Fails when ports are published without a user-mode network to publish them from, or
    /// when a published host port is taken (said before qemu starts, naming the port).
    pub fn check(&self) -> Result<(), String> {
        if let (Networking::None, Some(publish)) = (&self.networking, self.publish.first()) {
            return Err(format!(
                "--publish {publish} needs a user-mode network; it cannot be used with --networking none"
            ));
        }
        self.publish.iter().try_for_each(Publish::check_free)
    }

    /// qemu's arguments for the network: a user-mode backend and a virtio-net `device`
    /// (`virtio-net-device` on microvm, `virtio-net-pci` on q35), or none.
    pub fn qemu_args(&self, device: &str) -> Vec<String> {
        let Networking::User { restrict } = self.networking else {
            return Vec::new();
        };
        let mut netdev = "user,id=net0".to_owned();
        if restrict {
            netdev.push_str(",restrict=on");
        }
        for publish in &self.publish {
            netdev.push(',');
            netdev.push_str(&publish.hostfwd());
        }
        vec![
            "-netdev".to_owned(),
            netdev,
            "-device".to_owned(),
            format!("{device},netdev=net0,mac={}", self.mac),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networking_modes_parse_as_linuxkit_spells_them() {
        assert_eq!("none".parse(), Ok(Networking::None));
        assert_eq!("user".parse(), Ok(Networking::User { restrict: false }));
        assert_eq!(
            "user,restrict=on".parse(),
            Ok(Networking::User { restrict: true })
        );
        assert_eq!(
            "user,restrict=off".parse(),
            Ok(Networking::User { restrict: false })
        );
        let err = "tap,tap0".parse::<Networking>().unwrap_err();
        assert!(err.contains("tap networking is not supported"), "{err}");
        let err = "bridge,br0".parse::<Networking>().unwrap_err();
        assert!(err.contains("bridge networking is not supported"), "{err}");
        let err = "user,hostfwd=x".parse::<Networking>().unwrap_err();
        assert!(err.contains("unknown option `hostfwd=x`"), "{err}");
        let err = "vde".parse::<Networking>().unwrap_err();
        assert!(err.contains("unknown networking `vde`"), "{err}");
        let err = "none,restrict=on".parse::<Networking>().unwrap_err();
        assert!(err.contains("takes no options"), "{err}");
    }

    #[test]
    fn publish_takes_an_optional_address_and_protocol() {
        let publish: Publish = "8080:80".parse().unwrap();
        assert_eq!(
            publish,
            Publish {
                host_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                host_port: 8080,
                guest_port: 80,
                protocol: Protocol::Tcp
            }
        );
        assert_eq!(publish.hostfwd(), "hostfwd=tcp:127.0.0.1:8080-:80");
        let publish: Publish = "0.0.0.0:5353:53/udp".parse().unwrap();
        assert_eq!(publish.host_ip, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(publish.protocol, Protocol::Udp);
        assert_eq!(publish.hostfwd(), "hostfwd=udp:0.0.0.0:5353-:53");
        assert_eq!("22:22/tcp".parse::<Publish>().unwrap().guest_port, 22);
    }

    #[test]
    fn a_bad_publish_names_the_part_that_is_wrong() {
        let err = |text: &str| text.parse::<Publish>().unwrap_err();
        assert!(
            err("80").contains("the guest port is missing"),
            "{}",
            err("80")
        );
        assert!(
            err(":80").contains("the host port is missing"),
            "{}",
            err(":80")
        );
        assert!(
            err("80:").contains("the guest port is missing"),
            "{}",
            err("80:")
        );
        assert!(err("8080:80/sctp").contains("unknown protocol `sctp`"));
        assert!(err("70000:80").contains("the host port `70000`"));
        assert!(err("8080:0").contains("the guest port `0`"));
        assert!(err("host:8080:80").contains("`host` is not an IPv4 address"));
        assert!(err("1:2:3:4").contains("too many parts"));
    }

    #[test]
    fn a_port_in_use_is_named() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let network = Network {
            networking: Networking::User { restrict: true },
            publish: vec![format!("{port}:80").parse().unwrap()],
            mac: Mac::derived("test"),
        };
        let err = network.check().unwrap_err();
        assert!(
            err.contains(&format!("cannot listen on 127.0.0.1:{port} (tcp)")),
            "{err}"
        );
        drop(listener);
        network.check().unwrap();
    }

    #[test]
    fn the_derived_mac_is_stable_local_and_unicast() {
        let mac = Mac::derived("example");
        assert_eq!(mac, Mac::derived("example"));
        assert_ne!(mac, Mac::derived("other"));
        assert_eq!(mac.0[0] & 0x03, 0x02, "{mac}");
        assert_eq!(mac.to_string().parse::<Mac>(), Ok(mac));
        assert_eq!(
            "52:54:00:12:34:56".parse::<Mac>().unwrap().to_string(),
            "52:54:00:12:34:56"
        );
        assert!("52:54:00:12:34".parse::<Mac>().is_err());
        assert!("01:00:5e:00:00:01"
            .parse::<Mac>()
            .unwrap_err()
            .contains("multicast"));
    }

    #[test]
    fn qemu_gets_a_user_netdev_with_its_forwards_on_a_virtio_nic() {
        let mut network = Network {
            networking: Networking::User { restrict: true },
            publish: vec!["8080:80".parse().unwrap(), "5353:53/udp".parse().unwrap()],
            mac: "02:00:00:00:00:01".parse().unwrap(),
        };
        assert_eq!(
            network.qemu_args("virtio-net-device"),
            [
                "-netdev",
                "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=udp:127.0.0.1:5353-:53",
                "-device",
                "virtio-net-device,netdev=net0,mac=02:00:00:00:00:01"
            ]
        );
        network.networking = Networking::None;
        assert!(network.qemu_args("virtio-net-device").is_empty());
        assert!(network.check().unwrap_err().contains("--networking none"));
    }
}
