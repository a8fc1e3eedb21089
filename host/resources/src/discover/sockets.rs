//! The sockets of this network namespace, by inode: TCP and UDP through one
//! netlink dump each (`NETLINK_SOCK_DIAG`, see `warden_core::sock_diag`),
//! unix sockets from `/proc/net/unix`. A process's descriptors name socket
//! inodes; this table says what each one is.

use std::collections::HashMap;

use warden_core::sock_diag::{InetSocket, SockDiag, tcp_state_name};

use super::Socket;

/// What one socket is, without the descriptor that holds it.
#[derive(Debug, Clone)]
struct Found {
    protocol: &'static str,
    state: &'static str,
    local: String,
    peer: String,
    recv_queue: u32,
    send_queue: u32,
}

/// One reading of every socket.
#[derive(Debug, Default)]
pub struct Table {
    by_inode: HashMap<u64, Found>,
    /// Why part of the table could not be read, if so.
    pub problem: Option<String>,
}

fn inet(s: &InetSocket, tcp: bool) -> Found {
    let v6 = i32::from(s.family) == libc::AF_INET6;
    Found {
        protocol: match (tcp, v6) {
            (true, false) => "tcp",
            (true, true) => "tcp6",
            (false, false) => "udp",
            (false, true) => "udp6",
        },
        state: if tcp {
            tcp_state_name(s.state)
        } else if s.state == 1 {
            "connected"
        } else {
            "unconnected"
        },
        local: s.local.to_string(),
        peer: if s.peer.port() == 0 && s.peer.ip().is_unspecified() {
            String::new()
        } else {
            s.peer.to_string()
        },
        recv_queue: s.recv_queue,
        send_queue: s.send_queue,
    }
}

impl Table {
    /// Reads the sockets whose inodes are `wanted` (sorted): TCP first,
    /// then UDP, then unix, each table only while some are still unknown
    /// (a dump costs the kernel a walk of every socket of its kind).
    /// `diag` is kept between readings (made on first use; dropped after a
    /// failure, so the next reading starts on a fresh socket).
    pub fn read(diag: &mut Option<SockDiag>, wanted: &[u64]) -> Table {
        let mut t = Table::default();
        let want = |inode: u64| inode != 0 && wanted.binary_search(&inode).is_ok();
        let d = match diag {
            Some(d) => Ok(d),
            None => SockDiag::new().map(|d| diag.insert(d)),
        };
        let dumped = d.and_then(|d| {
            d.tcp(|s| {
                if want(s.inode) {
                    t.by_inode.insert(s.inode, inet(s, true));
                }
            })?;
            if t.by_inode.len() == wanted.len() {
                return Ok(());
            }
            d.udp(|s| {
                if want(s.inode) {
                    t.by_inode.insert(s.inode, inet(s, false));
                }
            })
        });
        if let Err(e) = dumped {
            *diag = None;
            t.problem = Some(format!(
                "sockets: the netlink dump of TCP and UDP sockets failed: {e}"
            ));
        }
        if t.by_inode.len() == wanted.len() {
            return t;
        }
        match procfs::net::unix() {
            Ok(entries) => {
                for u in entries.into_iter().filter(|u| want(u.inode)) {
                    t.by_inode.insert(
                        u.inode,
                        Found {
                            protocol: "unix",
                            state: match u.state {
                                procfs::net::UnixState::UNCONNECTED => "unconnected",
                                procfs::net::UnixState::CONNECTING => "connecting",
                                procfs::net::UnixState::CONNECTED => "connected",
                                procfs::net::UnixState::DISCONNECTING => "disconnecting",
                            },
                            local: u
                                .path
                                .map(|p| p.to_string_lossy().into_owned())
                                .unwrap_or_default(),
                            peer: String::new(),
                            recv_queue: 0,
                            send_queue: 0,
                        },
                    );
                }
            }
            Err(e) => {
                let why = format!("sockets: /proc/net/unix could not be read: {e}");
                t.problem = Some(match t.problem.take() {
                    Some(p) => format!("{p}; {why}"),
                    None => why,
                });
            }
        }
        t
    }

    /// Completes `sockets` (inodes known) with what the table says; a
    /// socket it does not know (raw, netlink, packet…) is `other`.
    pub fn fill(&self, sockets: &mut [Socket]) {
        for s in sockets {
            match self.by_inode.get(&s.inode) {
                Some(f) => {
                    s.protocol = f.protocol;
                    s.state = f.state;
                    s.local.clone_from(&f.local);
                    s.peer.clone_from(&f.peer);
                    s.recv_queue = f.recv_queue;
                    s.send_queue = f.send_queue;
                }
                None => {
                    s.protocol = "other";
                    s.state = "unknown";
                }
            }
        }
    }
}
