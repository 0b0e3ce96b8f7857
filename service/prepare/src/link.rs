//! Network links over rtnetlink: create a veth pair or a link of any kind the kernel knows, in the
//! root network namespace or directly in a container's, move a link into a container's network
//! namespace, delete a link.
//! Runs in: the supervisor (root network namespace), inside a tokio runtime; the netlink
//! connection is a task of that runtime and lives as long as the [`Netlink`] value.
//! Mirrors the vishvananda/netlink calls of LinuxKit's `prepareProcess` (LinkAdd with `NsPid`,
//! LinkSetNsPid, LinkByName).

use std::io;

use nix::unistd::Pid;
use rtnetlink::packet_route::link::{InfoKind, LinkMessage};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth};
use tokio::task::JoinHandle;

/// A route-netlink connection in the caller's network namespace.
#[derive(Debug)]
pub(crate) struct Netlink {
    handle: Handle,
    connection: JoinHandle<()>,
}

impl Netlink {
    /// Opens the connection. Must be called inside a tokio runtime.
    pub(crate) fn connect() -> io::Result<Self> {
        let (connection, handle, _) = rtnetlink::new_connection()?;
        Ok(Self {
            handle,
            connection: tokio::spawn(connection),
        })
    }

    /// Creates the veth pair `name` / `peer` in this namespace.
    pub(crate) async fn add_veth(&self, name: &str, peer: &str) -> io::Result<()> {
        self.add(LinkVeth::new(name, peer).build()).await
    }

    /// Creates link `name` of type `kind`: in this namespace, or in the network namespace of
    /// process `netns_of` (the kernel creates it there directly, as `ip link add ... netns PID`).
    pub(crate) async fn add_link(
        &self,
        name: &str,
        kind: &str,
        netns_of: Option<Pid>,
    ) -> io::Result<()> {
        let mut link =
            LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Other(kind.to_owned()))
                .name(name.to_owned());
        if let Some(pid) = netns_of {
            link = link.setns_by_pid(pid_number(pid)?);
        }
        self.add(link.build()).await.map_err(|err| {
            if err.raw_os_error() == Some(nix::errno::Errno::EOPNOTSUPP as i32) {
                io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("the kernel has no link type `{kind}`"),
                )
            } else {
                err
            }
        })
    }

    /// Moves link `name` from this namespace into the network namespace of process `pid`.
    pub(crate) async fn move_link(&self, name: &str, pid: Pid) -> io::Result<()> {
        let message = LinkUnspec::new_with_name(name)
            .setns_by_pid(pid_number(pid)?)
            .build();
        self.handle
            .link()
            .set(message)
            .execute()
            .await
            .map_err(to_io)
    }

    /// Deletes link `name` from this namespace (for a veth, both ends go).
    pub(crate) async fn delete_link(&self, name: &str) -> io::Result<()> {
        self.handle
            .link()
            .del_with_message(LinkUnspec::new_with_name(name).build())
            .execute()
            .await
            .map_err(to_io)
    }

    async fn add(&self, message: LinkMessage) -> io::Result<()> {
        self.handle
            .link()
            .add(message)
            .execute()
            .await
            .map_err(to_io)
    }
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

fn pid_number(pid: Pid) -> io::Result<u32> {
    u32::try_from(pid.as_raw())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("invalid pid {pid}")))
}

/// The kernel's answer as an errno, so messages read like `ip`'s ("File exists").
fn to_io(err: rtnetlink::Error) -> io::Error {
    match err {
        rtnetlink::Error::NetlinkError(message) => message.to_io(),
        other => io::Error::other(other.to_string()),
    }
}
