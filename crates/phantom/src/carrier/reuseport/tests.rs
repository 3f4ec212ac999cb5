use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::time::Duration;

use super::*;

/// A classic BPF interpreter for the opcodes the program uses, with the kernel's
/// semantics: a load past the end of the packet ends the program with 0.
fn run(prog: &[Insn], pkt: &[u8]) -> u32 {
    let mut a: u32 = 0;
    let mut pc = 0usize;
    for _ in 0..64 {
        let insn = prog[pc];
        pc += 1;
        match insn.code {
            LD_W_LEN => a = pkt.len() as u32,
            LD_B_ABS => match pkt.get(insn.k as usize) {
                Some(b) => a = u32::from(*b),
                None => return 0,
            },
            ALU_AND_K => a &= insn.k,
            ALU_MOD_K => a %= insn.k,
            JMP_JGT_K => pc += usize::from(if a > insn.k { insn.jt } else { insn.jf }),
            JMP_JEQ_K => pc += usize::from(if a == insn.k { insn.jt } else { insn.jf }),
            RET_A => return a,
            RET_K => return insn.k,
            other => panic!("opcode {other:#x} not in the program"),
        }
    }
    panic!("program did not return within 64 steps");
}

fn short_packet(id_len: usize, last: u8, total: usize) -> Vec<u8> {
    let mut p = vec![0u8; total];
    p[0] = 0x40 | 0x15;
    p[id_len] = last;
    p
}

#[test]
fn short_packets_go_to_their_ids_last_byte_mod_n() {
    for (id_len, workers) in [(8, 4), (8, 3), (4, 2), (20, 7), (8, 1)] {
        let prog = program(id_len, workers);
        for last in 0..=255u8 {
            let got = run(&prog, &short_packet(id_len, last, id_len + 28));
            assert_eq!(got, u32::from(last) % workers as u32);
        }
    }
}

#[test]
fn handshakes_garbage_and_runts_fall_back_to_the_hash() {
    let prog = program(8, 4);
    let mut handshake = short_packet(8, 3, 1200);
    handshake[0] = phantom_wire::HANDSHAKE_MARKER;
    assert_eq!(run(&prog, &handshake), HASH);
    for b0 in [0x00u8, 0x3f, 0x80, 0xff] {
        let mut p = short_packet(8, 3, 40);
        p[0] = b0;
        assert_eq!(run(&prog, &p), HASH, "byte 0 {b0:#x}");
    }
    // Byte 0 and 7 of the 8 id bytes: too short to carry the steering byte.
    assert_eq!(run(&prog, &short_packet(8, 3, 9)[..8]), HASH);
    assert_eq!(run(&prog, &[]), HASH);
    // Exactly byte 0 and the id: steered.
    assert_eq!(run(&prog, &short_packet(8, 7, 9)), 3);
}

/// The kernel runs the program: datagrams carrying ids whose last byte is 0..16
/// reach socket `last mod 4`; one client's handshake datagrams reach one socket.
#[cfg(target_os = "linux")]
#[test]
fn the_kernel_steers_a_group_of_four_by_the_last_id_byte() {
    let group = match bind_group("127.0.0.1:0".parse().unwrap(), 4, 8) {
        Ok(g) => g,
        Err(Err(Refused(e))) => {
            // Kernels without SO_ATTACH_REUSEPORT_CBPF (before 4.5) cannot run this.
            eprintln!("reuseport steering refused here: {e}");
            return;
        }
        Err(Ok(e)) => panic!("bind: {e}"),
    };
    assert_eq!(group.len(), 4);
    let addr = group[0].local_addr().unwrap();
    for s in &group {
        assert_eq!(s.local_addr().unwrap(), addr);
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
    }
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    for last in 0..16u8 {
        client.send_to(&short_packet(8, last, 40), addr).unwrap();
    }
    let mut hs = short_packet(8, 0, 100);
    hs[0] = phantom_wire::HANDSHAKE_MARKER;
    for n in 0..8u8 {
        hs[1] = n;
        client.send_to(&hs, addr).unwrap();
    }
    let mut buf = [0u8; 200];
    let mut steered = 0;
    let mut handshake_sockets = BTreeSet::new();
    let mut handshakes = 0;
    for (i, s) in group.iter().enumerate() {
        while let Ok(n) = s.recv(&mut buf) {
            if buf[0] == phantom_wire::HANDSHAKE_MARKER {
                handshakes += 1;
                handshake_sockets.insert(i);
            } else {
                assert_eq!(n, 40);
                assert_eq!(usize::from(buf[8]) % 4, i, "id last byte {}", buf[8]);
                steered += 1;
            }
        }
    }
    assert_eq!((steered, handshakes), (16, 8));
    assert_eq!(handshake_sockets.len(), 1);
}
