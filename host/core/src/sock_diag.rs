//! Sockets through `NETLINK_SOCK_DIAG`, as `ss` reads them: the process
//! collector counts TCP states with it, resource discovery lists each socket
//! a watched process holds.
//!
//! /proc/net/tcp and tcp6 cost the kernel a walk of the whole
//! established-socket hash table (262,144 buckets on a 24 GiB host, with a
//! reschedule check per bucket) for each read that reaches the end, and
//! reading to EOF takes two such reads: about 3.5 ms of CPU per file however
//! few sockets exist. A netlink dump walks the table once and skips empty
//! buckets cheaply (~0.3 ms). TCP is asked in the original `TCPDIAG_GETSOCK`
//! form (uapi, still served), because it dumps IPv4 and IPv6 in that one
//! walk, where `SOCK_DIAG_BY_FAMILY` needs a walk per family; UDP has only
//! the per-family form.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `TCPDIAG_GETSOCK` from linux/inet_diag.h; replies carry the same type.
const TCPDIAG_GETSOCK: u16 = 18;
/// `SOCK_DIAG_BY_FAMILY` from linux/sock_diag.h.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `struct nlmsghdr`.
const HEADER: usize = 16;
/// `struct nlmsghdr` + `struct inet_diag_req`.
const REQUEST: usize = HEADER + 60;
/// `struct nlmsghdr` + `struct inet_diag_req_v2`.
const REQUEST_V2: usize = HEADER + 56;
/// Offset of `idiag_states` in `struct inet_diag_req`.
const REQ_STATES: usize = 52;
/// `struct inet_diag_msg` is 72 bytes.
const MSG_LEN: usize = 72;
/// Dumps come in skbs of at most 32 KiB; a larger buffer never truncates.
const BUF_LEN: usize = 64 << 10;
/// TCP states (`include/net/tcp_states.h`) no process holds.
const TCP_TIME_WAIT: u32 = 6;
const TCP_NEW_SYN_RECV: u32 = 12;

/// One IPv4 or IPv6 socket, as `struct inet_diag_msg` tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InetSocket {
    /// `AF_INET` or `AF_INET6`.
    pub family: u8,
    /// The kernel's state number (`TCP_ESTABLISHED` = 1 … `TCP_NEW_SYN_RECV`
    /// = 12; UDP sockets report 7, `TCP_CLOSE`, unless connected).
    pub state: u8,
    /// Local address and port.
    pub local: SocketAddr,
    /// Peer address and port (unspecified, port 0, when none).
    pub peer: SocketAddr,
    /// Bytes queued to be read (TCP: not yet read by the process; a
    /// listener: connections waiting in its accept queue).
    pub recv_queue: u32,
    /// Bytes queued to be sent (a listener: its backlog).
    pub send_queue: u32,
    /// The owner's uid.
    pub uid: u32,
    /// The socket's inode: what `/proc/PID/fd` links name (`socket:[N]`).
    /// 0 for time-wait and request sockets, which no process holds.
    pub inode: u64,
}

/// Returns the name `ss` gives a TCP state number.
pub fn tcp_state_name(state: u8) -> &'static str {
    match state {
        1 => "established",
        2 => "syn_sent",
        3 => "syn_recv",
        4 => "fin_wait1",
        5 => "fin_wait2",
        6 => "time_wait",
        7 => "close",
        8 => "close_wait",
        9 => "last_ack",
        10 => "listen",
        11 => "closing",
        12 => "new_syn_recv",
        _ => "unknown",
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn cvt(rc: isize) -> io::Result<usize> {
    usize::try_from(rc).map_err(|_| io::Error::last_os_error())
}

/// Reads a `struct inet_diag_msg`.
fn parse(msg: &[u8]) -> InetSocket {
    let family = msg[0];
    // `struct inet_diag_sockid`: sport, dport (big-endian), src[4], dst[4].
    let addr = |at: usize| -> IpAddr {
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&msg[at..at + 16]);
        if i32::from(family) == libc::AF_INET6 {
            IpAddr::V6(Ipv6Addr::from(bytes))
        } else {
            IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
        }
    };
    InetSocket {
        family,
        state: msg[1],
        local: SocketAddr::new(addr(8), be16_at(msg, 4)),
        peer: SocketAddr::new(addr(24), be16_at(msg, 6)),
        recv_queue: u32_at(msg, 56),
        send_queue: u32_at(msg, 60),
        uid: u32_at(msg, 64),
        inode: u64::from(u32_at(msg, 68)),
    }
}

/// A `NETLINK_SOCK_DIAG` socket, kept between dumps.
#[derive(Debug)]
pub struct SockDiag {
    fd: OwnedFd,
    buf: Vec<u8>,
    seq: u32,
}

impl SockDiag {
    /// Opens the netlink socket.
    pub fn new() -> io::Result<Self> {
        // SAFETY: socket(2) takes no pointers; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // A dump answers at once; the timeout only guards a collector
        // thread against a kernel that never does.
        let timeout = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        // SAFETY: `timeout` is a valid timeval for the length given.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            fd,
            buf: vec![0; BUF_LEN],
            seq: 0,
        })
    }

    /// Calls `each` for every IPv4 and IPv6 TCP socket in this network
    /// namespace that a process can hold: time-wait and request sockets
    /// (`NEW_SYN_RECV`) have no inode and are left out by the kernel. A busy
    /// host has thousands in time-wait, which would cost the dump a message
    /// each (in the discovery bench, the dump took 5 ms beside 2,500 of
    /// them, and 2.6 ms once they were left out).
    pub fn tcp(&mut self, mut each: impl FnMut(&InetSocket)) -> io::Result<()> {
        let mut req = [0u8; REQUEST];
        // idiag_family is ignored for this dump: both families come back.
        req[HEADER] = libc::AF_INET as u8;
        let states = HEADER + REQ_STATES;
        let held: u32 = !(1 << TCP_TIME_WAIT) & !(1 << TCP_NEW_SYN_RECV);
        req[states..states + 4].copy_from_slice(&held.to_ne_bytes());
        self.dump(&mut req, TCPDIAG_GETSOCK, &mut each)
    }

    /// Calls `each` for every IPv4 and IPv6 UDP socket in this network
    /// namespace.
    pub fn udp(&mut self, mut each: impl FnMut(&InetSocket)) -> io::Result<()> {
        for family in [libc::AF_INET, libc::AF_INET6] {
            // `struct inet_diag_req_v2`: family, protocol, ext, pad, states.
            let mut req = [0u8; REQUEST_V2];
            req[HEADER] = family as u8;
            req[HEADER + 1] = libc::IPPROTO_UDP as u8;
            req[HEADER + 4..HEADER + 8].copy_from_slice(&u32::MAX.to_ne_bytes());
            match self.dump(&mut req, SOCK_DIAG_BY_FAMILY, &mut each) {
                // No IPv6 in this kernel: its UDP sockets are none.
                Err(e) if family == libc::AF_INET6 && e.raw_os_error() == Some(libc::ENOENT) => {}
                other => other?,
            }
        }
        Ok(())
    }

    /// Sends `req` (its header filled here) and calls `each` for every
    /// socket of the dump that answers it.
    fn dump(
        &mut self,
        req: &mut [u8],
        kind: u16,
        each: &mut dyn FnMut(&InetSocket),
    ) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let len = req.len();
        req[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
        req[4..6].copy_from_slice(&kind.to_ne_bytes());
        let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
        req[6..8].copy_from_slice(&flags.to_ne_bytes());
        req[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        loop {
            // SAFETY: `req` is valid for reads of its length.
            let rc = unsafe { libc::send(self.fd.as_raw_fd(), req.as_ptr().cast(), len, 0) };
            match cvt(rc) {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        loop {
            // SAFETY: `buf` is valid for writes of its length.
            let rc = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    0,
                )
            };
            let n = match cvt(rc) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "netlink closed",
                ));
            }
            let mut at = 0;
            while at + HEADER <= n {
                let b = &self.buf[at..n];
                let len = u32_at(b, 0) as usize;
                if len < HEADER || len > b.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "bad netlink length",
                    ));
                }
                let reply = u16::from_ne_bytes([b[4], b[5]]);
                let seq = u32_at(b, 8);
                at += (len + 3) & !3;
                if seq != self.seq {
                    continue; // left over from an earlier request
                }
                match i32::from(reply) {
                    libc::NLMSG_DONE => return Ok(()),
                    libc::NLMSG_ERROR => {
                        // struct nlmsgerr: a negative errno, or 0 for an ack,
                        // which a dump should not get.
                        let errno = if len >= HEADER + 4 {
                            -(u32_at(b, HEADER) as i32)
                        } else {
                            0
                        };
                        return Err(if errno > 0 {
                            io::Error::from_raw_os_error(errno)
                        } else {
                            io::Error::new(io::ErrorKind::InvalidData, "netlink ack to a dump")
                        });
                    }
                    _ if reply == kind && len >= HEADER + MSG_LEN => {
                        each(&parse(&b[HEADER..HEADER + MSG_LEN]));
                    }
                    _ => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_and_its_connection_show_with_addresses_states_and_inodes() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(addr).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let udp_addr = udp.local_addr().unwrap();

        let mut d = SockDiag::new().unwrap();
        let mut tcp = Vec::new();
        d.tcp(|s| tcp.push(*s)).unwrap();
        let listening = tcp
            .iter()
            .find(|s| s.local == addr && s.state == 10)
            .expect("the listener");
        assert_ne!(listening.inode, 0);
        assert_eq!(tcp_state_name(listening.state), "listen");
        let out = tcp
            .iter()
            // By both ends: an earlier connection on the same port may
            // linger in time-wait.
            .find(|s| s.local == client.local_addr().unwrap() && s.peer == addr)
            .expect("the client's side");
        assert_eq!((tcp_state_name(out.state), out.peer), ("established", addr));
        // SAFETY: getuid cannot fail.
        assert_eq!(out.uid, unsafe { libc::getuid() });

        let mut udps = Vec::new();
        d.udp(|s| udps.push(*s)).unwrap();
        assert!(
            udps.iter().any(|s| s.local == udp_addr && s.inode != 0),
            "{udps:?}"
        );
        // The same socket, asked again, answers the same.
        let mut again = Vec::new();
        d.tcp(|s| again.push(*s)).unwrap();
        assert!(again.contains(listening));
    }

    #[test]
    fn a_connection_in_time_wait_is_left_out_of_the_dump() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(addr).unwrap();
        let mine = client.local_addr().unwrap();
        let (server, _) = listener.accept().unwrap();
        // The side that closes first waits in time-wait.
        drop(client);
        let mut byte = [0u8; 1];
        assert_eq!(std::io::Read::read(&mut &server, &mut byte).unwrap(), 0);
        drop(server);
        let in_time_wait = || {
            std::fs::read_to_string("/proc/net/tcp")
                .unwrap()
                .lines()
                .any(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.len() > 3 && f[1].ends_with(&format!(":{:04X}", mine.port())) && f[3] == "06"
                })
        };
        for _ in 0..200 {
            if in_time_wait() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(in_time_wait(), "the client's side never reached time-wait");
        let mut d = SockDiag::new().unwrap();
        let mut tcp = Vec::new();
        d.tcp(|s| tcp.push(*s)).unwrap();
        assert!(
            !tcp.iter().any(|s| s.local == mine),
            "{:?}",
            tcp.iter().filter(|s| s.local == mine).collect::<Vec<_>>()
        );
        assert!(
            tcp.iter().any(|s| s.local == addr),
            "the listener is still there"
        );
    }
}
