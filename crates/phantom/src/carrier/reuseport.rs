//! Worker sockets: N UDP sockets bound to one address with `SO_REUSEPORT`, and the
//! classic BPF program the kernel runs to pick one for each datagram
//! (`SO_ATTACH_REUSEPORT_CBPF`, docs/DEPLOYMENT.md "Workers on one machine").
//!
//! The program sees the UDP payload from its first byte. A short packet (byte 0 &
//! 0xc0 == 0x40) long enough to hold byte 0 and an id of `id_len` bytes goes to socket
//! `payload[id_len] mod N` — the id's last byte, which `SteeredConnIds` made equal to
//! the worker index mod N. Anything else (handshake datagrams, garbage, runts)
//! returns 0xffffffff, an index past the group, and the kernel falls back to its
//! 4-tuple hash: one handshake's datagrams, all from one client address, reach one
//! worker. A socket's index in the group is its bind order, which is the worker index.

use std::net::SocketAddr;

use phantom_wire::{FORM_MASK, SHORT_FORM};

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    pub(crate) code: u16,
    pub(crate) jt: u8,
    pub(crate) jf: u8,
    pub(crate) k: u32,
}

// Opcodes of classic BPF (linux/filter.h, linux/bpf_common.h).
/// `BPF_LD | BPF_W | BPF_LEN`: A = packet length.
pub(crate) const LD_W_LEN: u16 = 0x80;
/// `BPF_LD | BPF_B | BPF_ABS`: A = packet\[k\].
pub(crate) const LD_B_ABS: u16 = 0x30;
/// `BPF_ALU | BPF_AND | BPF_K`.
pub(crate) const ALU_AND_K: u16 = 0x54;
/// `BPF_ALU | BPF_MOD | BPF_K`.
pub(crate) const ALU_MOD_K: u16 = 0x94;
/// `BPF_JMP | BPF_JGT | BPF_K`.
pub(crate) const JMP_JGT_K: u16 = 0x25;
/// `BPF_JMP | BPF_JEQ | BPF_K`.
pub(crate) const JMP_JEQ_K: u16 = 0x15;
/// `BPF_RET | BPF_A`.
pub(crate) const RET_A: u16 = 0x16;
/// `BPF_RET | BPF_K`.
pub(crate) const RET_K: u16 = 0x06;

/// What the program returns for "no choice": an index past any group, so the kernel
/// uses its 4-tuple hash.
pub(crate) const HASH: u32 = u32::MAX;

/// The steering program for ids of `id_len` bytes over `workers` sockets.
pub(crate) fn program(id_len: usize, workers: usize) -> [Insn; 9] {
    let l = id_len as u32;
    let n = workers.max(1) as u32;
    let i = |code, jt, jf, k| Insn { code, jt, jf, k };
    [
        // 0: A = payload length; shorter than byte 0 + the id: hash.
        i(LD_W_LEN, 0, 0, 0),
        i(JMP_JGT_K, 0, 6, l),
        // 2: not a short packet (a handshake datagram or garbage): hash.
        i(LD_B_ABS, 0, 0, 0),
        i(ALU_AND_K, 0, 0, u32::from(FORM_MASK)),
        i(JMP_JEQ_K, 0, 3, u32::from(SHORT_FORM)),
        // 5: the id's last byte mod N is the worker.
        i(LD_B_ABS, 0, 0, l),
        i(ALU_MOD_K, 0, 0, n),
        i(RET_A, 0, 0, 0),
        // 8:
        i(RET_K, 0, 0, HASH),
    ]
}

/// Why the sockets of a group could not be set up for steering (the caller logs it
/// once and runs one worker).
#[derive(Debug)]
pub(crate) struct Refused(pub(crate) std::io::Error);

/// Binds `workers` (≥ 2) sockets to `addr` with `SO_REUSEPORT` (the first one picks
/// the port if `addr`'s is 0) and attaches the steering program for ids of `id_len`
/// bytes. Errors binding the first socket are the caller's (`Err(Ok(e))`); anything
/// the kernel refuses after that is `Err(Err(Refused))`.
pub(crate) fn bind_group(
    addr: SocketAddr,
    workers: usize,
    id_len: usize,
) -> Result<Vec<std::net::UdpSocket>, Result<std::io::Error, Refused>> {
    let first = reuse_socket(addr).map_err(|e| match e {
        Step::Option(e) => Err(Refused(e)),
        Step::Bind(e) => Ok(e),
    })?;
    let local = first.local_addr().map_err(Ok)?;
    let mut group = vec![first];
    for _ in 1..workers {
        let s = reuse_socket(local).map_err(|e| match e {
            Step::Option(e) | Step::Bind(e) => Err(Refused(e)),
        })?;
        group.push(s);
    }
    if let Some(first) = group.first() {
        attach(first, &program(id_len, workers)).map_err(|e| Err(Refused(e)))?;
    }
    Ok(group)
}

/// Which step of making a socket failed.
enum Step {
    Option(std::io::Error),
    Bind(std::io::Error),
}

fn reuse_socket(addr: SocketAddr) -> Result<std::net::UdpSocket, Step> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .map_err(Step::Bind)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false).map_err(Step::Bind)?;
    }
    set_reuse_port(&socket).map_err(Step::Option)?;
    socket.bind(&addr.into()).map_err(Step::Bind)?;
    Ok(socket.into())
}

#[cfg(target_os = "linux")]
fn set_reuse_port(socket: &socket2::Socket) -> std::io::Result<()> {
    socket.set_reuse_port(true)
}

#[cfg(not(target_os = "linux"))]
fn set_reuse_port(_socket: &socket2::Socket) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "reuseport steering needs Linux",
    ))
}

/// Attaches `prog` to `socket`'s reuseport group (`SO_ATTACH_REUSEPORT_CBPF`).
#[cfg(target_os = "linux")]
fn attach(socket: &std::net::UdpSocket, prog: &[Insn]) -> std::io::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt::AttachReusePortCbpf};
    let mut filters: Vec<libc::sock_filter> = prog
        .iter()
        .map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect();
    let len = u16::try_from(filters.len()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let fprog = libc::sock_fprog {
        len,
        filter: filters.as_mut_ptr(),
    };
    setsockopt(socket, AttachReusePortCbpf, &fprog).map_err(std::io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn attach(_socket: &std::net::UdpSocket, _prog: &[Insn]) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "reuseport steering needs Linux",
    ))
}

#[cfg(test)]
mod tests;
