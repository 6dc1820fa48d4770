//! The socket's receive low-water mark (`SO_RCVLOWAT`): how many bytes
//! must have arrived before the kernel calls the socket readable.
//!
//! Why a connection sets it: a destination answers a pipeline in small
//! pieces (Redis reads 16 KB of commands at a time and writes their
//! replies after each read), and every piece woke this process: measured
//! on a full copy of 1M keys, 16,000 reads of about 290 bytes each, each
//! one a wake-up of a runtime thread; with the mark, about 2,000. With
//! the mark at the bytes the replies still due must at least take, the
//! kernel holds those wake-ups back without ever holding back the last
//! reply (see [`Connection`](super::Connection)'s use of it).
//!
//! The source link raises it too while a snapshot arrives: a master writes
//! one in pieces of 16 KiB, each a wake-up of a parked runtime thread (see
//! `source::replication`'s `RDB_LOW_WATER`).
//!
//! No crate this project uses wraps this option (socket2 and nix have the
//! other buffer options but not this one), so it is the one place where
//! the code calls the C library directly; the rest of the crate keeps
//! `unsafe` denied.

use std::io;
use std::os::fd::AsRawFd;

/// The most the mark is set to; more only grows the kernel's receive
/// buffer without saving wake-ups that matter.
pub const MAX_LOW_WATER: usize = 64 * 1024;

/// Sets the receive low-water mark of `socket` to `bytes` (at least 1,
/// at most [`MAX_LOW_WATER`]). On Linux a lowered mark that the queued
/// bytes already meet makes the socket readable at once.
pub fn set_low_water(socket: &impl AsRawFd, bytes: usize) -> io::Result<()> {
    set_low_water_up_to(socket, bytes, MAX_LOW_WATER)
}

/// As [`set_low_water`], at most `cap` bytes (the kernel caps the mark at
/// half its largest receive buffer, and grows the buffer to hold it).
#[allow(unsafe_code)]
pub fn set_low_water_up_to(socket: &impl AsRawFd, bytes: usize, cap: usize) -> io::Result<()> {
    let value: libc::c_int = bytes.clamp(1, cap.min(libc::c_int::MAX as usize)) as libc::c_int;
    // SAFETY: the kernel reads `size_of::<c_int>()` bytes from `value`, a
    // live `c_int` on this stack frame, and writes nothing. The descriptor
    // is the caller's open socket; a wrong one could only make the call
    // fail (EBADF, ENOTSOCK), which is returned, never touch memory.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            std::ptr::from_ref(&value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A connected pair of loopback sockets (writer, reader) whose receive
/// window has grown, for tests of the mark. A fresh connection's receive
/// window is about one segment, and Linux calls a socket readable
/// regardless of the mark while its window is that small: some megabytes
/// first let it grow, as on any connection a pipeline or a snapshot has
/// used.
#[cfg(test)]
pub(crate) async fn grown_pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut writer = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
    let (mut reader, _) = listener.accept().await.unwrap();
    let warm = vec![1u8; 8 << 20];
    let (sent, got) = tokio::join!(writer.write_all(&warm), async {
        let mut sink = vec![0u8; 1 << 20];
        let mut got = 0;
        while got < warm.len() {
            got += reader.read(&mut sink).await.unwrap();
        }
        got
    });
    sent.unwrap();
    assert_eq!(got, warm.len());
    (writer, reader)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    /// What the connection relies on: below the mark the socket does not
    /// become readable, and lowering the mark to what is queued makes it
    /// readable at once (no more bytes needed).
    #[tokio::test]
    async fn a_socket_is_not_readable_below_its_mark_and_is_once_lowered() {
        let (mut writer, reader) = grown_pair().await;
        set_low_water(&reader, 100).unwrap();
        writer.write_all(&[7u8; 10]).await.unwrap();
        let early = tokio::time::timeout(Duration::from_millis(300), reader.readable()).await;
        assert!(early.is_err(), "readable with 10 bytes queued under a mark of 100");
        set_low_water(&reader, 10).unwrap();
        tokio::time::timeout(Duration::from_secs(5), reader.readable()).await.unwrap().unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(reader.try_read(&mut buf).unwrap(), 10);
        // Out-of-range asks are clamped, not refused.
        set_low_water(&reader, 0).unwrap();
        set_low_water(&reader, usize::MAX).unwrap();
    }
}
