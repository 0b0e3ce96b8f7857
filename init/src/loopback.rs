//! The loopback interface brought up through rtnetlink, so an image needs no `ip` binary. The
//! kernel gives `lo` 127.0.0.1/8 and its route when it comes up.
//! Runs in: PID 1 as the system's init, before any service; one request, one acknowledgement.
//! Mirrors LinuxKit rc.init's doLoopback (`ip link set lo up` and the 127.0.0.1/8 address).

use std::io;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST,
};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// Sets `lo` up.
pub fn bring_up() -> io::Result<()> {
    set_up("lo")
}

fn set_up(name: &str) -> io::Result<()> {
    let mut link = LinkMessage::default();
    link.header.flags = LinkFlags::Up;
    link.header.change_mask = LinkFlags::Up;
    link.attributes.push(LinkAttribute::IfName(name.to_owned()));
    let mut request = NetlinkMessage::new(
        NetlinkHeader::default(),
        NetlinkPayload::from(RouteNetlinkMessage::SetLink(link)),
    );
    request.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    request.header.sequence_number = 1;
    request.finalize();
    let mut buffer = vec![0; request.buffer_len()];
    request.serialize(&mut buffer);

    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    socket.send(&buffer, 0)?;
    let mut reply = vec![0; 8192];
    let len = socket.recv(&mut &mut reply[..], 0)?;
    let answer = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply[..len])
        .map_err(|err| io::Error::other(format!("read the kernel's answer: {err}")))?;
    match answer.payload {
        NetlinkPayload::Error(error) => match error.code {
            None => Ok(()),
            Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
        },
        other => Err(io::Error::other(format!(
            "unexpected answer from the kernel: {other:?}"
        ))),
    }
}
