//! Socket buffers made equal, and the kernel's per-socket drop counter.
//!
//! Phantom's runtime asks for [`RUNTIME_SOCKET_BUFFER`] of send and receive buffer on every
//! UDP socket (`SO_SNDBUF`/`SO_RCVBUF`; the kernel caps the request at
//! `net.core.{w,r}mem_max` and doubles it). quinn leaves the kernel default
//! (`net.core.{w,r}mem_default`). [`Buffers`] puts both on one footing: either quinn's
//! sockets get Phantom's request ([`Buffers::Equal`]), or Phantom's sockets are set back to
//! the kernel default after the runtime made them ([`Buffers::KernelDefault`]).
//!
//! The bench reaches a runtime's socket without touching the runtime: it finds the file
//! descriptor in `/proc/self/fd` whose socket is bound to the endpoint's address and takes a
//! duplicate of it with `pidfd_getfd` on its own process (Linux 5.6+; a process may always
//! do this to itself). Options set on the duplicate apply to the one socket both refer to.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use rustix::net::SocketType;
use rustix::net::sockopt;
use rustix::process::{PidfdFlags, PidfdGetfdFlags, getpid, pidfd_getfd, pidfd_open};

/// What Phantom's runtime requests for each UDP socket's send and receive buffer
/// (`SOCKET_BUFFER` in crates/phantom/src/carrier/udp.rs).
pub const RUNTIME_SOCKET_BUFFER: usize = 4 << 20;

/// The socket buffers every implementation of a round runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Buffers {
    /// Everyone requests Phantom's [`RUNTIME_SOCKET_BUFFER`].
    Equal,
    /// Everyone on the kernel default (`net.core.rmem_default` / `wmem_default`).
    KernelDefault,
}

impl Buffers {
    /// Short label for tables.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Buffers::Equal => "4MiB",
            Buffers::KernelDefault => "kdefault",
        }
    }
}

fn sysctl(name: &str) -> Option<usize> {
    std::fs::read_to_string(format!("/proc/sys/net/core/{name}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The kernel's buffer settings, for the report: `rmem_default`, `rmem_max`,
/// `wmem_default`, `wmem_max`.
#[must_use]
pub fn kernel_buffer_settings() -> String {
    let v = |n: &str| sysctl(n).map_or("?".into(), |b| b.to_string());
    format!(
        "net.core.rmem_default {} rmem_max {} wmem_default {} wmem_max {}",
        v("rmem_default"),
        v("rmem_max"),
        v("wmem_default"),
        v("wmem_max")
    )
}

fn io(what: &str) -> impl Fn(rustix::io::Errno) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// Sets `fd`'s buffers as `buffers` asks. `SO_RCVBUF`/`SO_SNDBUF` store twice the value
/// given, and a fresh socket starts at the `*_default` sysctl itself, so the kernel default
/// is restored by asking for half of it.
fn apply(fd: impl std::os::fd::AsFd, buffers: Buffers) -> Result<(), String> {
    let (rcv, snd) = match buffers {
        Buffers::Equal => (RUNTIME_SOCKET_BUFFER, RUNTIME_SOCKET_BUFFER),
        Buffers::KernelDefault => (
            sysctl("rmem_default").ok_or("rmem_default unreadable")? / 2,
            sysctl("wmem_default").ok_or("wmem_default unreadable")? / 2,
        ),
    };
    sockopt::set_socket_recv_buffer_size(&fd, rcv).map_err(io("SO_RCVBUF"))?;
    sockopt::set_socket_send_buffer_size(&fd, snd).map_err(io("SO_SNDBUF"))?;
    Ok(())
}

/// A UDP socket bound to `addr` with `buffers` applied (for quinn's endpoints).
///
/// # Errors
/// If binding or setting an option fails.
pub fn bind_udp(addr: SocketAddr, buffers: Buffers) -> Result<std::net::UdpSocket, String> {
    let socket = std::net::UdpSocket::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
    apply(&socket, buffers)?;
    Ok(socket)
}

/// A duplicate of this process's UDP socket bound to `local`.
///
/// # Errors
/// If no such socket is found or `pidfd_getfd` is refused.
pub fn own_udp_socket(local: SocketAddr) -> Result<OwnedFd, String> {
    let pidfd = pidfd_open(getpid(), PidfdFlags::empty()).map_err(io("pidfd_open"))?;
    let dir = std::fs::read_dir("/proc/self/fd").map_err(|e| format!("/proc/self/fd: {e}"))?;
    for entry in dir.flatten() {
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|t| t.to_string_lossy().starts_with("socket:"));
        let Some(n) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if !is_socket {
            continue;
        }
        let Ok(fd) = pidfd_getfd(&pidfd, n, PidfdGetfdFlags::empty()) else {
            continue;
        };
        let udp = sockopt::socket_type(&fd).is_ok_and(|t| t == SocketType::DGRAM);
        let bound = rustix::net::getsockname(&fd)
            .ok()
            .and_then(|a| SocketAddr::try_from(a).ok());
        if udp && bound == Some(local) {
            return Ok(fd);
        }
    }
    Err(format!("no UDP socket bound to {local} in this process"))
}

/// Applies `buffers` to the UDP socket of this process bound to `local` (an endpoint the
/// runtime made): nothing for [`Buffers::Equal`] (the runtime already asked for it).
///
/// The runtime sets its buffers when its driver task starts, which may be after the
/// endpoint is returned; so this first waits (up to a second, yielding to the runtime)
/// until both buffers have left the kernel default, lest the runtime's request overwrite
/// this one.
///
/// # Errors
/// If the socket is not found or an option cannot be set.
pub async fn apply_to_own(local: SocketAddr, buffers: Buffers) -> Result<(), String> {
    if buffers == Buffers::Equal {
        return Ok(());
    }
    let fd = own_udp_socket(local)?;
    let defaults = (sysctl("rmem_default"), sysctl("wmem_default"));
    for _ in 0..1000 {
        let now = (
            sockopt::socket_recv_buffer_size(&fd).ok(),
            sockopt::socket_send_buffer_size(&fd).ok(),
        );
        if now.0 != defaults.0 && now.1 != defaults.1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    apply(&fd, buffers)
}

/// The effective receive buffer (`SO_RCVBUF` read back) of this process's UDP socket bound
/// to `local`.
#[must_use]
pub fn rcvbuf(local: SocketAddr) -> Option<usize> {
    sockopt::socket_recv_buffer_size(own_udp_socket(local).ok()?).ok()
}

/// Datagrams the kernel dropped on the UDP sockets bound to `locals` (the `drops` column
/// of /proc/net/udp and /proc/net/udp6: receive buffer full, or a filter), summed.
#[must_use]
pub fn socket_drops(locals: &[SocketAddr]) -> Option<u64> {
    let mut text = std::fs::read_to_string("/proc/net/udp").ok()?;
    text.push_str(&std::fs::read_to_string("/proc/net/udp6").unwrap_or_default());
    Some(drops_in(&text, locals))
}

/// [`socket_drops`] over a /proc/net/udp text. Sockets are matched by port (the bench binds
/// one address family per run, and ports are unique per family and address).
#[must_use]
pub fn drops_in(proc_net_udp: &str, locals: &[SocketAddr]) -> u64 {
    proc_net_udp
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let port = f
                .get(1)?
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())?;
            let drops = f.get(12)?.parse::<u64>().ok()?;
            locals.iter().any(|a| a.port() == port).then_some(drops)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_are_summed_over_the_given_ports_only() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
             1: 0100007F:1F90 00000000:0000 07 00000000:00000000 00:00000000 00000000  0  0 111 2 0000000000000000 5\n\
             2: 0100007F:1F91 00000000:0000 07 00000000:00000000 00:00000000 00000000  0  0 112 2 0000000000000000 7\n\
             3: 0100007F:1F92 00000000:0000 07 00000000:00000000 00:00000000 00000000  0  0 113 2 0000000000000000 11\n";
        let a = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        assert_eq!(drops_in(text, &[a(0x1F90), a(0x1F92)]), 16);
        assert_eq!(drops_in(text, &[a(1)]), 0);
    }

    #[tokio::test]
    async fn kernel_default_and_equal_buffers_read_back_as_set() {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let dflt = bind_udp(any, Buffers::KernelDefault).unwrap();
        let local = dflt.local_addr().unwrap();
        assert_eq!(rcvbuf(local), sysctl("rmem_default"));
        let equal = bind_udp(any, Buffers::Equal).unwrap();
        let max = sysctl("rmem_max").unwrap();
        assert_eq!(
            rcvbuf(equal.local_addr().unwrap()),
            Some(2 * RUNTIME_SOCKET_BUFFER.min(max))
        );
        // Back to the default on a socket found by its address, as for the runtime's.
        apply_to_own(equal.local_addr().unwrap(), Buffers::KernelDefault)
            .await
            .unwrap();
        assert_eq!(rcvbuf(equal.local_addr().unwrap()), sysctl("rmem_default"));
        assert_eq!(socket_drops(&[local]), Some(0));
    }
}
