//! Fleet keys: servers sharing a fleet key accept each other's retry tokens and
//! tickets, agree on their keys across a rotation boundary, and keep 0-RTT per server.

use super::*;

fn fleet_key(seed: u8) -> FleetKey {
    FleetKey::from_bytes([seed; 32])
}

/// A server of the fleet of `key` (same identity as every test server).
fn member(key: Option<u8>, rotation_secs: u64, seed: u64) -> (Server, ChaCha20Rng) {
    let mut r = rng(seed);
    let mut scfg = server_config();
    scfg.key_rotation = Duration::from_secs(rotation_secs);
    if let Some(k) = key {
        scfg = scfg.with_fleet_key(fleet_key(k));
    }
    (Server::new(scfg, &mut r), r)
}

/// A ticket `server` issues at `now`.
fn ticket_at(server: &mut Server, r: &mut ChaCha20Rng, now: Time) -> ResumptionTicket {
    let mut client = Client::new(client_config(true), r, now).unwrap();
    drive(&mut client, server, addr(1), now, r).unwrap();
    client
        .into_established()
        .unwrap()
        .resumption_ticket
        .unwrap()
}

/// Resumes `ticket` with `early` data on `server` at `now`; returns (server, client)
/// views of the result.
fn resume(
    server: &mut Server,
    r: &mut ChaCha20Rng,
    ticket: &ResumptionTicket,
    early: &[u8],
    now: Time,
    from: u16,
) -> (Box<Established>, Established) {
    let mut cfg = client_config(true);
    cfg.ticket = Some(ticket.clone());
    cfg.early_data = early.to_vec();
    let mut client = Client::new(cfg, r, now).unwrap();
    let (est, _) = drive(&mut client, server, addr(from), now, r).unwrap();
    (est.unwrap(), client.into_established().unwrap())
}

#[test]
fn fleet_retry_token_of_one_member_is_accepted_by_another_and_refused_by_another_fleet() {
    let (a, _) = member(Some(1), 43_200, 600);
    let token = a.issue_token(&addr(1), t(0));
    let d = tokened_hello(&token, 601);
    // B: same fleet key, requires a token: the datagram starts a handshake.
    let (mut b, mut r) = member(Some(1), 43_200, 602);
    b.handle_datagram(t(2), addr(1), &d, &mut r, |_| false)
        .unwrap();
    assert_eq!(b.half_open(), 1);
    assert_eq!(b.stats().tokens.invalid, 0);
    assert_eq!(b.stats().retries_sent, 0);
    // Another fleet, and a server without a fleet key: refused.
    for other in [Some(2), None] {
        let (mut c, mut r) = member(other, 43_200, 603);
        assert_eq!(
            c.handle_datagram(t(2), addr(1), &d, &mut r, |_| false)
                .unwrap_err(),
            Error::TokenInvalid
        );
        assert_eq!(c.stats().tokens.invalid, 1);
        assert_eq!(c.half_open(), 0);
    }
}

#[test]
fn i10_fleet_ticket_resumes_on_another_member_which_refuses_its_early_data() {
    let (mut a, mut r) = member(Some(1), 43_200, 610);
    let ticket = ticket_at(&mut a, &mut r, t(0));
    // B resumes A's ticket, without 0-RTT: its anti-replay store never saw it.
    let (mut b, mut rb) = member(Some(1), 43_200, 611);
    let (s, c) = resume(&mut b, &mut rb, &ticket, b"GET /a", t(5), 2);
    assert!(s.resumed && c.resumed);
    assert!(!s.early_data_accepted && !c.early_data_accepted);
    assert!(s.early_data.is_none());
    assert_eq!(b.stats().early.other_instance, 1);
    assert_eq!(b.stats().early.accepted, 0);
    assert_eq!(b.stats().tickets.invalid, 0);
    assert_eq!(c.c2s.dangerously_expose(), s.c2s.dangerously_expose());
    // A, which issued it, accepts the same early data once.
    let (s, c) = resume(&mut a, &mut r, &ticket, b"GET /a", t(6), 3);
    assert!(s.resumed && s.early_data_accepted && c.early_data_accepted);
    assert_eq!(
        s.early_data.as_deref().map(Vec::as_slice),
        Some(&b"GET /a"[..])
    );
    assert_eq!(a.stats().early.accepted, 1);
    assert_eq!(a.stats().early.other_instance, 0);
    // A server of another fleet does not even resume it.
    let (mut c2, mut rc) = member(Some(2), 43_200, 612);
    let (s, _) = resume(&mut c2, &mut rc, &ticket, b"", t(7), 4);
    assert!(!s.resumed);
    assert_eq!(c2.stats().tickets.invalid, 1);
}

/// Rotation every 100 s (UNIX0 is a multiple of 100, so periods start at t(0),
/// t(100), t(200)): a ticket A issued at 90 s resumes on B in the next period (150 s)
/// but not two periods on (250 s), although its lifetime (a day) has not run out.
#[test]
fn fleet_members_agree_across_a_rotation_boundary_previous_period_only() {
    let (mut a, mut r) = member(Some(1), 100, 620);
    let ticket = ticket_at(&mut a, &mut r, t(90));
    let (mut b, mut rb) = member(Some(1), 100, 621);
    let (s, _) = resume(&mut b, &mut rb, &ticket, b"", t(150), 2);
    assert!(s.resumed);
    assert_eq!(b.stats().tickets.invalid, 0);
    let (s, _) = resume(&mut b, &mut rb, &ticket, b"", t(250), 3);
    assert!(!s.resumed);
    assert_eq!(b.stats().tickets.invalid, 1);
}

/// Retry tokens live 10 s; with 4-second periods a token from period P is accepted in
/// P + 1 (5 s old) and refused as invalid, not expired, in P + 2 (9 s old).
#[test]
fn fleet_retry_token_is_valid_one_period_on_and_invalid_two_periods_on() {
    let (a, _) = member(Some(1), 4, 630);
    let token = a.issue_token(&addr(1), t(0));
    let d = tokened_hello(&token, 631);
    let (mut b, mut r) = member(Some(1), 4, 632);
    b.handle_datagram(t(5), addr(1), &d, &mut r, |_| false)
        .unwrap();
    assert_eq!(b.stats().tokens.invalid, 0);
    let (mut c, mut r) = member(Some(1), 4, 633);
    assert_eq!(
        c.handle_datagram(t(9), addr(1), &d, &mut r, |_| false)
            .unwrap_err(),
        Error::TokenInvalid
    );
    assert_eq!(c.stats().tokens.invalid, 1);
}

#[test]
fn fleet_rotation_deadline_is_the_next_period_boundary() {
    let (mut a, mut r) = member(Some(1), 100, 640);
    assert!(!a.rotate_keys_if_due(t(30), &mut r));
    assert_eq!(a.poll_key_rotation(), Some(t(100).instant));
    assert!(!a.rotate_keys_if_due(t(99), &mut r));
    assert!(a.rotate_keys_if_due(t(100), &mut r));
    assert_eq!(a.poll_key_rotation(), Some(t(200).instant));
    // Manual rotation does not leave the fleet's schedule: a token B issues for the
    // current period is still accepted.
    a.rotate_retry_key(&mut r);
    a.rotate_ticket_key(&mut r);
    let (b, _) = member(Some(1), 100, 641);
    let d = tokened_hello(&b.issue_token(&addr(1), t(101)), 642);
    a.handle_datagram(t(102), addr(1), &d, &mut r, |_| false)
        .unwrap();
    assert_eq!(a.stats().tokens.invalid, 0);
}

#[test]
fn fleet_servers_share_stateless_reset_tokens_and_differ_from_the_identity_default() {
    let (a, _) = member(Some(1), 100, 650);
    let (b, _) = member(Some(1), 100, 651);
    let (c, _) = member(Some(2), 100, 652);
    let (d, _) = member(None, 100, 653);
    let id = [7u8; 8];
    assert_eq!(a.reset_token(&id), b.reset_token(&id));
    assert_eq!(a.reset_token(&id), fleet_key(1).reset_key().token(&id));
    assert_ne!(a.reset_token(&id), c.reset_token(&id));
    assert_ne!(a.reset_token(&id), d.reset_token(&id));
    // Setting the field alone (without `with_fleet_key`) gives the same reset key.
    let mut scfg = server_config();
    scfg.fleet = Some(fleet_key(1));
    let e = Server::new(scfg, &mut rng(654));
    assert_eq!(a.reset_token(&id), e.reset_token(&id));
}

#[test]
fn fleet_labels_derive_distinct_keys_per_label_period_and_fleet() {
    let mut all: Vec<[u8; 32]> = Vec::new();
    for k in [1u8, 2] {
        for period in [0u64, 1] {
            all.extend(fleet_key(k).derived_for_tests(period).iter().map(|d| **d));
        }
    }
    // 2 fleets x 2 periods x 4 keys, of which reset and routing repeat across periods.
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 2 * (2 + 2 * 2));
    assert_eq!(
        fleet_key(1).routing_key().as_bytes().as_slice(),
        &fleet_key(1).derived_for_tests(0)[1][..16]
    );
}

#[test]
fn i8_fleet_and_routing_keys_debug_is_redacted() {
    let key = fleet_key(0xab);
    let hex = "abababab";
    for s in [
        format!("{key:?}"),
        format!("{:?}", key.routing_key()),
        format!("{:?}", server_config().with_fleet_key(key.clone())),
    ] {
        assert!(!s.contains(hex) && !s.contains("171, 171"), "{s}");
        assert!(s.contains("<redacted>"), "{s}");
    }
    assert_eq!(format!("{key:?}"), "FleetKey(<redacted>)");
}
