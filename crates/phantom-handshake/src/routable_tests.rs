use std::collections::BTreeSet;
use std::sync::Arc;

use super::*;
use crate::conn_id::RandomConnIds;
use crate::fuzzing::FuzzRng;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The worked example of draft-ietf-quic-load-balancers' encrypted short algorithm
/// (its key as printed has a typo, "d30z"; the byte is 0x0a, the only value whose
/// first pass gives the draft's `dea73834…`).
const DRAFT_KEY: &str = "fdf726a9893ec05c0632d30a6680baf0";

#[test]
fn encrypted_ids_match_the_quic_lb_four_pass_example() {
    let key: [u8; 16] = hex(DRAFT_KEY).try_into().unwrap();
    let ids = RoutableConnIds::encrypted(8, 0, &hex("31441a"), &key).unwrap();
    let id = ids.encode(0x07, &hex("9c69c275"));
    assert_eq!(id.as_bytes(), hex("073705545a697be0").as_slice());
    let sid = ids.server_id_of(id.as_bytes()).unwrap();
    assert_eq!(sid.as_bytes(), hex("31441a").as_slice());
}

#[test]
fn the_first_feistel_pass_is_aes_of_the_expanded_left_half() {
    // Step 3 of the draft's example: AES(key, 31441a9 ‖ 0… ‖ 01).
    let key: [u8; 16] = hex(DRAFT_KEY).try_into().unwrap();
    let aes = aes::Aes128::new((&key).into());
    let mut right = [0xc, 0x6, 0x9, 0xc, 0x2, 0x7, 0x5];
    round(&aes, &[0x3, 0x1, 0x4, 0x4, 0x1, 0xa, 0x9], &mut right, 1);
    // right_1 = c69c275 ^ dea7383 = 183b1f6
    assert_eq!(right, [0x1, 0x8, 0x3, 0xb, 0x1, 0xf, 0x6]);
}

#[test]
fn plaintext_ids_carry_the_server_id_after_the_first_byte() {
    let ids = RoutableConnIds::plaintext(8, 2, &hex("0a0b")).unwrap();
    let id = ids.encode(0xff, &hex("01020304"));
    assert_eq!(id.as_bytes(), hex("5f0a0b0102030400").as_slice());
    assert_eq!(
        ids.server_id_of(id.as_bytes()).unwrap().as_bytes(),
        hex("0a0b").as_slice()
    );
}

#[test]
fn every_length_round_trips_the_server_id_under_both_schemes() {
    let mut rng = FuzzRng::new(11);
    let key = [0x5a; 16];
    let mut checked = 0;
    for sid_len in 1..=MAX_SERVER_ID_LEN {
        let sid: Vec<u8> = (1..=sid_len as u8).map(|b| b.wrapping_mul(37)).collect();
        for len in 1 + sid_len + MIN_NONCE_LEN..=MAX_CONN_ID_LEN {
            for rot in [0, 3, MAX_CONFIG_ROTATION] {
                let schemes = [
                    RoutableConnIds::plaintext(len, rot, &sid).unwrap(),
                    RoutableConnIds::encrypted(len, rot, &sid, &key).unwrap(),
                ];
                for ids in schemes {
                    for _ in 0..4 {
                        let id = ids.generate(&mut rng);
                        assert_eq!((id.len(), ids.id_len()), (len, len));
                        assert_eq!(id.as_bytes()[0] >> 5, rot);
                        let got = ids.server_id_of(id.as_bytes()).unwrap();
                        assert_eq!(got.as_bytes(), sid.as_slice());
                        checked += 1;
                    }
                }
            }
        }
    }
    // Server ids of 1..=6 bytes allow 15..=10 id lengths (6..=20 down to 11..=20),
    // each under 3 rotations, 2 schemes and 4 draws.
    assert_eq!(checked, (10..=15).map(|n| n * 3 * 2 * 4).sum::<usize>());
}

#[test]
fn the_decoder_refuses_other_lengths_and_rotations() {
    let ids = RoutableConnIds::encrypted(8, 1, &[7, 7], &[1; 16]).unwrap();
    let mut rng = FuzzRng::new(12);
    let id = ids.generate(&mut rng);
    let mut other_rot = id.as_bytes().to_vec();
    other_rot[0] ^= 0x60;
    assert_eq!(ids.server_id_of(&other_rot), None);
    assert_eq!(ids.server_id_of(&id.as_bytes()[..7]), None);
    assert_eq!(ids.server_id_of(&[]), None);
    assert_eq!(ids.server_id_of(&[0x20; 9]), None);
}

#[test]
fn configurations_outside_the_limits_are_refused() {
    assert!(RoutableConnIds::plaintext(8, 0, &[]).is_err());
    assert!(RoutableConnIds::plaintext(20, 0, &[0; 7]).is_err());
    assert!(RoutableConnIds::plaintext(8, 7, &[1]).is_err());
    // 1 + 4 + 4 = 9 > 8: the nonce would be 3 bytes.
    assert!(RoutableConnIds::plaintext(8, 0, &[1; 4]).is_err());
    assert!(RoutableConnIds::plaintext(21, 0, &[1]).is_err());
    assert!(RoutableConnIds::plaintext(8, 0, &[1; 3]).is_ok());
}

#[test]
fn encrypted_ids_of_one_server_are_distinct_and_hide_the_server_id() {
    let ids = RoutableConnIds::encrypted(8, 0, &[0xab, 0xcd, 0xef], &[3; 16]).unwrap();
    let mut rng = FuzzRng::new(13);
    let drawn: Vec<ConnId> = (0..2000).map(|_| ids.generate(&mut rng)).collect();
    let distinct: BTreeSet<_> = drawn.iter().collect();
    assert_eq!(distinct.len(), 2000);
    // The server id never shows in the clear bytes 1..4.
    let clear = drawn
        .iter()
        .filter(|id| id.as_bytes()[1..4] == [0xab, 0xcd, 0xef])
        .count();
    assert_eq!(clear, 0);
    // Each ciphertext byte position takes many values (not a constant prefix).
    for pos in 1..8 {
        let values: BTreeSet<u8> = drawn.iter().map(|id| id.as_bytes()[pos]).collect();
        assert!(values.len() > 200, "position {pos}: {}", values.len());
    }
}

#[test]
fn i8_routable_debug_output_never_shows_the_routing_key() {
    let key = [0xa7; 16];
    let ids = RoutableConnIds::encrypted(8, 0, &[1], &key).unwrap();
    let shown = format!("{ids:?}");
    assert!(!shown.contains("a7"), "{shown}");
    assert!(!shown.contains("167"), "{shown}");
}

#[test]
fn steered_ids_select_their_worker_by_the_last_byte() {
    let mut rng = FuzzRng::new(14);
    let inner: Arc<dyn ConnIdGenerator> = Arc::new(RandomConnIds::default());
    for workers in [1, 2, 3, 4, 7, 256] {
        for worker in [0, workers / 2, workers - 1] {
            let g = SteeredConnIds::new(Arc::clone(&inner), worker, workers).unwrap();
            for _ in 0..50 {
                let id = g.generate(&mut rng);
                assert_eq!(id.len(), 8);
                assert_eq!(
                    SteeredConnIds::worker_of(id.as_bytes(), workers),
                    Some(worker)
                );
            }
        }
    }
}

#[test]
fn steering_keeps_routable_ids_decodable() {
    let mut rng = FuzzRng::new(15);
    let inner: Arc<dyn ConnIdGenerator> =
        Arc::new(RoutableConnIds::encrypted(8, 1, &[9, 8], &[4; 16]).unwrap());
    let routable = RoutableConnIds::encrypted(8, 1, &[9, 8], &[4; 16]).unwrap();
    let g = SteeredConnIds::new(inner, 3, 4).unwrap();
    for _ in 0..100 {
        let id = g.generate(&mut rng);
        assert_eq!(id.as_bytes()[7] % 4, 3);
        assert_eq!(
            routable.server_id_of(id.as_bytes()).unwrap().as_bytes(),
            &[9, 8]
        );
    }
}

/// A generator that always returns one id: steering must give up, bounded.
#[derive(Debug)]
struct Constant;

impl ConnIdGenerator for Constant {
    fn id_len(&self) -> usize {
        4
    }
    fn generate(&self, _rng: &mut dyn Rng) -> ConnId {
        ConnId::from_slice(&[1, 2, 3, 4]).unwrap()
    }
}

#[test]
fn steering_a_degenerate_generator_stops_after_its_bound() {
    let mut rng = FuzzRng::new(16);
    let g = SteeredConnIds::new(Arc::new(Constant), 1, 2).unwrap();
    let id = g.generate(&mut rng);
    assert_eq!(id.as_bytes(), &[1, 2, 3, 4]);
}

#[test]
fn steering_refuses_bad_worker_indices() {
    let inner: Arc<dyn ConnIdGenerator> = Arc::new(RandomConnIds::default());
    assert!(SteeredConnIds::new(Arc::clone(&inner), 0, 0).is_err());
    assert!(SteeredConnIds::new(Arc::clone(&inner), 4, 4).is_err());
    assert!(SteeredConnIds::new(Arc::clone(&inner), 0, MAX_WORKERS + 1).is_err());
    assert!(SteeredConnIds::new(inner, 255, MAX_WORKERS).is_ok());
    assert_eq!(SteeredConnIds::worker_of(&[], 4), None);
    assert_eq!(SteeredConnIds::worker_of(&[0, 9], 0), None);
    assert_eq!(SteeredConnIds::worker_of(&[0, 9], 4), Some(1));
}
