//! Lines with file descriptors attached (SCM_RIGHTS) on the control socket: `service exec`
//! hands its stdin, stdout and stderr to the supervisor with its request, and gets a
//! pseudo-terminal's master back with the first answer. Received descriptors are close-on-exec
//! and owned; at most [`MAX_FDS`] are kept for a line (others are closed at once), and a
//! message with more than there is room for is refused (the kernel closes the rest).
//! Runs in: the supervisor (on tokio's UnixStream) and the `service` CLI (blocking).

use std::io::{self, IoSlice, IoSliceMut, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use tokio::io::Interest;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

/// The most descriptors one message carries (stdin, stdout, stderr).
pub const MAX_FDS: usize = 3;

/// Sends `bytes` with `fds` attached to the first of them; the rest (if the socket took only
/// part) follows plainly. `socket` must be blocking.
pub fn send(socket: &UnixStream, bytes: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let sent = send_some(socket.as_raw_fd(), bytes, fds)?;
    (&*socket).write_all(&bytes[sent..])
}

fn send_some(socket: RawFd, bytes: &[u8], fds: &[RawFd]) -> io::Result<usize> {
    let iov = [IoSlice::new(bytes)];
    let rights = [ControlMessage::ScmRights(fds)];
    let control = if fds.is_empty() { &[][..] } else { &rights[..] };
    loop {
        match sendmsg::<()>(socket, &iov, control, MsgFlags::MSG_NOSIGNAL, None) {
            Err(nix::errno::Errno::EINTR) => continue,
            result => return result.map_err(io::Error::from),
        }
    }
}

/// Receives what is there (at most `buf.len()` bytes) and the descriptors that came with it.
fn recv(socket: RawFd, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    // Initialised, so that what the kernel wrote can be read back as bytes (nix writes into
    // the capacity).
    space.resize(space.capacity(), 0);
    let mut iov = [IoSliceMut::new(buf)];
    let message = recvmsg::<()>(
        socket,
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let bytes = message.bytes;
    if message.flags.contains(MsgFlags::MSG_CTRUNC) {
        close_truncated(&space);
        return Err(io::Error::other(format!(
            "more than {MAX_FDS} file descriptors in one message"
        )));
    }
    let mut fds = Vec::new();
    for control in message.cmsgs()? {
        if let ControlMessageOwned::ScmRights(received) = control {
            for fd in received {
                // SAFETY: the kernel just installed `fd` in this process for this message;
                // nothing else owns it.
                #[allow(unsafe_code, reason = "taking ownership of a received fd; see SAFETY")]
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Ok((bytes, fds))
}

/// Closes the descriptors of a truncated SCM_RIGHTS message: the kernel installed those that
/// fit in `space` (and closed the rest), and nix will not iterate a truncated buffer.
fn close_truncated(space: &[u8]) {
    let header = std::mem::size_of::<nix::libc::cmsghdr>();
    let Some(head) = space.get(..header) else {
        return;
    };
    let int = std::mem::size_of::<nix::libc::c_int>();
    let field = |at: usize, size: usize| head.get(at..at + size).unwrap_or_default();
    let length = usize::from_ne_bytes(field(0, 8).try_into().unwrap_or_default());
    let level = i32::from_ne_bytes(field(8, int).try_into().unwrap_or_default());
    let kind = i32::from_ne_bytes(field(8 + int, int).try_into().unwrap_or_default());
    if level != nix::libc::SOL_SOCKET || kind != nix::libc::SCM_RIGHTS {
        return;
    }
    let data = space
        .get(header..length.min(space.len()))
        .unwrap_or_default();
    for chunk in data.chunks_exact(int) {
        let fd = i32::from_ne_bytes(chunk.try_into().unwrap_or_default());
        // SAFETY: the kernel installed `fd` in this process for this message and nothing
        // else knows of it; it is closed once, here.
        #[allow(unsafe_code, reason = "closing a received fd; see SAFETY")]
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
}

/// Bytes received and not yet split into lines, with the descriptors that came with them.
#[derive(Debug, Default)]
struct Pending {
    bytes: Vec<u8>,
    fds: Vec<OwnedFd>,
    ended: bool,
}

impl Pending {
    /// The next whole line (newline included) and every descriptor received up to it; at the
    /// end of the stream, what is left.
    fn line(&mut self) -> Option<(Vec<u8>, Vec<OwnedFd>)> {
        let end = match self.bytes.iter().position(|byte| *byte == b'\n') {
            Some(newline) => newline + 1,
            None if self.ended && !self.bytes.is_empty() => self.bytes.len(),
            None => return None,
        };
        let line = self.bytes.drain(..end).collect();
        Some((line, std::mem::take(&mut self.fds)))
    }

    fn push(&mut self, bytes: &[u8], fds: Vec<OwnedFd>) {
        if bytes.is_empty() {
            self.ended = true;
        }
        self.bytes.extend_from_slice(bytes);
        // Descriptors beyond what any request uses are closed at once.
        self.fds
            .extend(fds.into_iter().take(MAX_FDS.saturating_sub(self.fds.len())));
    }
}

/// Reads lines and their descriptors from the supervisor's side of a connection.
#[derive(Debug)]
pub struct Lines {
    read: OwnedReadHalf,
    pending: Pending,
}

impl Lines {
    pub fn new(read: OwnedReadHalf) -> Self {
        Self {
            read,
            pending: Pending::default(),
        }
    }

    /// The next line and its descriptors; `None` at the end of the connection. A line longer
    /// than `limit` is an `InvalidData` error.
    pub async fn next(&mut self, limit: usize) -> io::Result<Option<(Vec<u8>, Vec<OwnedFd>)>> {
        loop {
            if let Some(line) = self.pending.line() {
                return Ok(Some(line));
            }
            if self.pending.ended {
                return Ok(None);
            }
            if self.pending.bytes.len() > limit {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("longer than {limit} bytes"),
                ));
            }
            let stream = self.read.as_ref();
            let mut chunk = [0_u8; 4096];
            let (count, fds) = loop {
                stream.readable().await?;
                match stream.try_io(Interest::READABLE, || recv(stream.as_raw_fd(), &mut chunk)) {
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                    result => break result?,
                }
            };
            self.pending.push(&chunk[..count], fds);
        }
    }
}

/// Sends `bytes` with `fd` attached on the supervisor's side of a connection.
pub async fn send_async(write: &OwnedWriteHalf, bytes: &[u8], fd: RawFd) -> io::Result<()> {
    let stream = write.as_ref();
    let mut sent = 0;
    while sent < bytes.len() {
        stream.writable().await?;
        let fds: &[RawFd] = if sent == 0 { &[fd] } else { &[] };
        match stream.try_io(Interest::WRITABLE, || {
            send_some(stream.as_raw_fd(), &bytes[sent..], fds)
        }) {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
            result => sent += result?,
        }
    }
    Ok(())
}

/// Reads lines and their descriptors on the client's (blocking) side.
#[derive(Debug)]
pub struct BlockingLines {
    pending: Pending,
}

impl BlockingLines {
    pub fn new() -> Self {
        Self {
            pending: Pending::default(),
        }
    }

    /// A line already received, if any (after [`BlockingLines::receive`]).
    pub fn line(&mut self) -> Option<(Vec<u8>, Vec<OwnedFd>)> {
        self.pending.line()
    }

    /// Whether the other side has closed the connection.
    pub fn ended(&self) -> bool {
        self.pending.ended
    }

    /// Receives once (blocking unless `socket` is ready).
    pub fn receive(&mut self, socket: &UnixStream) -> io::Result<()> {
        let mut chunk = [0_u8; 4096];
        let (count, fds) = loop {
            match recv(socket.as_raw_fd(), &mut chunk) {
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                result => break result?,
            }
        };
        self.pending.push(&chunk[..count], fds);
        Ok(())
    }

    /// The next line, receiving until one is whole; `None` at the end of the connection.
    pub fn next(&mut self, socket: &UnixStream) -> io::Result<Option<(Vec<u8>, Vec<OwnedFd>)>> {
        loop {
            if let Some(line) = self.line() {
                return Ok(Some(line));
            }
            if self.ended() {
                return Ok(None);
            }
            self.receive(socket)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests count this process's open descriptors: one at a time.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn descriptors_come_with_their_line_and_lines_split_anywhere() -> io::Result<()> {
        let _serial = SERIAL.lock();
        let (left, right) = UnixStream::pair()?;
        let file = std::fs::File::open("/proc/self/status")?;
        send(&left, b"{\"a\":1}\n{\"b\"", &[file.as_raw_fd()])?;
        send(&left, b":2}\n", &[])?;
        drop(left);
        let mut lines = BlockingLines::new();
        let (first, fds) = lines.next(&right)?.expect("a line");
        assert_eq!(first, b"{\"a\":1}\n");
        assert_eq!(fds.len(), 1);
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut std::fs::File::from(fds.into_iter().next().expect("fd")),
            &mut text,
        )?;
        assert!(text.contains("Name:"), "the same file: {text}");
        let (second, fds) = lines.next(&right)?.expect("a line");
        assert_eq!(second, b"{\"b\":2}\n");
        assert!(fds.is_empty());
        assert!(lines.next(&right)?.is_none());
        Ok(())
    }

    #[test]
    fn more_descriptors_than_a_request_uses_are_refused() -> io::Result<()> {
        let _serial = SERIAL.lock();
        let (left, right) = UnixStream::pair()?;
        let files: Vec<std::fs::File> = (0..6)
            .map(|_| std::fs::File::open("/dev/null"))
            .collect::<io::Result<_>>()?;
        let raw: Vec<RawFd> = files.iter().map(AsRawFd::as_raw_fd).collect();
        // Counted by what they are: other tests of this process open descriptors meanwhile.
        let open_null = || -> io::Result<usize> {
            Ok(std::fs::read_dir("/proc/self/fd")?
                .filter_map(Result::ok)
                .filter(|entry| {
                    std::fs::read_link(entry.path())
                        .is_ok_and(|target| target == std::path::Path::new("/dev/null"))
                })
                .count())
        };
        let open_before = open_null()?;
        send(&left, b"x\n", &raw)?;
        let err = BlockingLines::new().next(&right).expect_err("too many");
        assert!(
            err.to_string().contains("more than 3 file descriptors"),
            "{err}"
        );
        let open_after = open_null()?;
        assert_eq!(open_after, open_before, "none of them kept open");
        Ok(())
    }
}
