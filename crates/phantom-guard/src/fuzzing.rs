//! The `guard_ops` fuzz driver: decodes bytes into a sequence of replay-window and
//! path-registry operations, runs them, and asserts after every step that
//!
//! * the window agrees with the reference model (`BTreeSet` + window rule) on every
//!   check and commit, and never changes on `check`;
//! * no path that was never validated has sent more than 3x what it received (I7);
//! * a wrong response changes nothing, and only a right one validates (I7);
//! * every state change is a legal transition, the registry stays within
//!   `max_paths`, and timeout polling terminates.
//!
//! Panics (assertion failures) are the point here: this module runs only under the
//! fuzzer and the crate's tests.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use phantom_wire::{MAX_SEQUENCE, PathId};

use crate::model::ReplayModel;
use crate::{
    AMPLIFICATION_FACTOR, CHALLENGE_LEN, Error, FailReason, PathConfig, PathEvent, PathRegistry,
    PathState, ReplayWindow,
};

/// A deterministic splitmix64 generator that claims to be a CSPRNG. **Not secure**:
/// it exists so the fuzzer controls challenge bytes reproducibly.
#[derive(Debug, Clone)]
pub struct FuzzRng(u64);

impl FuzzRng {
    /// A generator seeded with `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn step(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl rand_core::TryRng for FuzzRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok((self.step() >> 32) as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.step())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(8) {
            let word = self.step().to_le_bytes();
            for (d, s) in chunk.iter_mut().zip(word) {
                *d = s;
            }
        }
        Ok(())
    }
}

impl rand_core::TryCryptoRng for FuzzRng {}

/// A byte cursor that yields zeros once the input is exhausted.
struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn u32(&mut self) -> u32 {
        u32::from(self.u16()) | (u32::from(self.u16()) << 16)
    }

    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }
}

/// What the driver remembers about a registered path.
#[derive(Debug)]
struct Tracked {
    challenge: Option<[u8; CHALLENGE_LEN]>,
    ever_validated: bool,
    state: PathState,
}

fn legal(from: PathState, to: PathState) -> bool {
    use PathState::{Failed, Unvalidated, Validated, Validating};
    from == to
        || matches!(
            (from, to),
            (Unvalidated, Validating | Failed(_))
                | (Validating, Validated | Failed(_))
                | (Validated, Failed(_))
        )
}

/// Picks a sequence number near the interesting places of the sequence space.
fn decode_seq(input: &mut Input<'_>, top: Option<u64>, width: u64) -> u64 {
    let top = top.unwrap_or(0);
    match input.u8() % 8 {
        0 => input.u64(),
        1 => top.saturating_add(u64::from(input.u8() % 192)),
        2 => top.saturating_sub(u64::from(input.u16()) % (width + 70)),
        3 => MAX_SEQUENCE.saturating_sub(u64::from(input.u8())),
        4 => MAX_SEQUENCE.saturating_add(u64::from(input.u8())),
        5 => top.saturating_add(u64::from(input.u32()) << 8),
        6 => top
            .saturating_sub(width)
            .saturating_add(u64::from(input.u8() % 3))
            .saturating_sub(1),
        _ => u64::from(input.u16()),
    }
}

/// What one run exercised, so tests can show a script reaches what it claims.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Sequence numbers the window accepted.
    pub replay_accepted: u32,
    /// Sequence numbers the window refused (duplicate, too old, beyond max).
    pub replay_rejected: u32,
    /// Paths validated by a right response.
    pub validated: u32,
    /// Wrong responses refused.
    pub wrong_refused: u32,
    /// Challenges retransmitted.
    pub retransmits: u32,
    /// Paths failed by running out of retries.
    pub retries_exhausted: u32,
    /// Paths failed by idle timeout.
    pub idle_failures: u32,
    /// Responses refused because the path had failed.
    pub late_refused: u32,
    /// Failed paths evicted to make room.
    pub evictions: u32,
    /// Inserts refused because the registry was full.
    pub full_refused: u32,
    /// Sends refused by the anti-amplification limit.
    pub amplification_refused: u32,
}

/// Runs one fuzz input. `base` is the time origin (the fuzz target reads the clock
/// once; this crate never does).
///
/// # Panics
///
/// When a checked property fails — that is a bug found.
#[expect(
    clippy::too_many_lines,
    reason = "one flat interpreter loop reads best"
)]
#[expect(clippy::panic, reason = "fuzz driver: a failed property must abort")]
pub fn guard_ops(base: Instant, data: &[u8]) -> Coverage {
    let mut input = Input { data };
    let mut cov = Coverage::default();
    let count = |c: &mut u32| *c = c.saturating_add(1);

    let width_req = (u64::from(input.u8()) + 1) * 16;
    let Ok(mut window) = ReplayWindow::with_width(width_req) else {
        panic!("width {width_req} is in range");
    };
    let mut model = ReplayModel::new(window.width());

    let config = PathConfig {
        max_paths: usize::from(input.u8() % 8) + 1,
        challenge_timeout: Duration::from_millis(u64::from(input.u8()) + 1),
        max_retransmits: u32::from(input.u8() % 5),
        idle_timeout: Duration::from_millis(u64::from(input.u16()) + 1),
    };
    let Ok(mut reg) = PathRegistry::new(config) else {
        panic!("config {config:?} is valid");
    };
    let mut rng = FuzzRng::new(input.u64());
    let mut now = base;
    let mut tracked: BTreeMap<u8, Tracked> = BTreeMap::new();

    // Bounded by the input length: every step consumes at least one byte.
    while !input.is_empty() {
        let op = input.u8();
        let id = input.u8() % 10;
        let path = PathId(id);
        let mut validated_by = None;
        match op % 12 {
            0 => {
                let seq = decode_seq(&mut input, model.highest(), window.width());
                let got = window.commit(seq);
                assert_eq!(got, model.commit(seq), "commit({seq})");
                count(if got.is_ok() {
                    &mut cov.replay_accepted
                } else {
                    &mut cov.replay_rejected
                });
            }
            1 => {
                let seq = decode_seq(&mut input, model.highest(), window.width());
                let before = window.highest();
                assert_eq!(window.check(seq), model.check(seq), "check({seq})");
                assert_eq!(window.highest(), before);
                let ok = window.accept_authenticated(seq);
                assert_eq!(ok, model.commit(seq).is_ok(), "accept({seq})");
                count(if ok {
                    &mut cov.replay_accepted
                } else {
                    &mut cov.replay_rejected
                });
            }
            2 => {
                let remote = SocketAddr::from((Ipv4Addr::LOCALHOST, input.u16()));
                let validated = input.u8() & 1 == 1;
                let len_before = reg.len();
                let result = if validated {
                    reg.insert_validated(path, remote, now)
                } else {
                    reg.insert(path, remote, now)
                };
                match result {
                    Ok(()) => {
                        if reg.len() == len_before {
                            count(&mut cov.evictions);
                        }
                        let state = if validated {
                            PathState::Validated
                        } else {
                            PathState::Unvalidated
                        };
                        tracked.insert(
                            id,
                            Tracked {
                                challenge: None,
                                ever_validated: validated,
                                state,
                            },
                        );
                    }
                    Err(Error::PathExists(p)) => assert!(tracked.contains_key(&p.0)),
                    Err(Error::TooManyPaths { max }) => {
                        count(&mut cov.full_refused);
                        assert_eq!(reg.len(), max);
                        assert!(
                            reg.iter().all(|p| !matches!(p.state, PathState::Failed(_))),
                            "a failed path should have been evicted"
                        );
                    }
                    Err(e) => panic!("insert: unexpected {e}"),
                }
            }
            3 => {
                if let Ok(c) = reg.issue_challenge(path, now, &mut rng)
                    && let Some(t) = tracked.get_mut(&id)
                {
                    t.challenge = Some(*c.as_bytes());
                }
            }
            4 => {
                let response = tracked
                    .get(&id)
                    .and_then(|t| t.challenge)
                    .unwrap_or([0u8; CHALLENGE_LEN]);
                match reg.verify_response(path, now, &response) {
                    Ok(()) => {
                        validated_by = Some(id);
                        count(&mut cov.validated);
                    }
                    Err(Error::PathFailed(_)) => count(&mut cov.late_refused),
                    Err(_) => {}
                }
            }
            5 => {
                // A wrong response (one bit off the outstanding challenge) changes nothing.
                let pos = usize::from(input.u8()) % CHALLENGE_LEN;
                let mask = input.u8() | 1;
                let mut response = tracked
                    .get(&id)
                    .and_then(|t| t.challenge)
                    .unwrap_or([0x5a; CHALLENGE_LEN]);
                if let Some(b) = response.get_mut(pos) {
                    *b ^= mask;
                }
                // Apply due expiry first, so the only possible change would be the
                // response's.
                let mut guard = 0usize;
                while reg.sweep(now).is_some() {
                    guard += 1;
                    assert!(guard <= 256, "sweep does not terminate");
                }
                let before = reg.info(path);
                let result = reg.verify_response(path, now, &response);
                assert!(result.is_err(), "wrong response accepted");
                if result == Err(Error::WrongResponse) {
                    count(&mut cov.wrong_refused);
                }
                assert_eq!(reg.info(path), before, "wrong response changed state");
            }
            6 => {
                let _ = reg.mark_seen(path, now);
            }
            7 => {
                let delta = Duration::from_millis(u64::from(input.u16()));
                now = now.checked_add(delta).unwrap_or(now);
            }
            8 => {
                let bound = 2 * reg.len() + 1;
                let mut n = 0usize;
                while let Some(ev) = reg.poll_retransmit(now) {
                    n += 1;
                    assert!(n <= bound, "poll_retransmit does not terminate");
                    match ev {
                        PathEvent::Retransmit { path, challenge } => {
                            count(&mut cov.retransmits);
                            let t = tracked.get(&path.0);
                            assert_eq!(t.and_then(|t| t.challenge), Some(*challenge.as_bytes()));
                        }
                        PathEvent::Failed { reason, .. } => {
                            assert_eq!(reason, FailReason::RetriesExhausted);
                            count(&mut cov.retries_exhausted);
                        }
                    }
                }
                let mut m = 0usize;
                while let Some(ev) = reg.sweep(now) {
                    if let PathEvent::Failed {
                        reason: FailReason::IdleTimeout,
                        ..
                    } = ev
                    {
                        count(&mut cov.idle_failures);
                    }
                    m += 1;
                    assert!(m <= bound, "sweep does not terminate");
                }
                assert!(
                    reg.next_timeout().is_none_or(|t| t > now),
                    "a timeout is still due after polling"
                );
            }
            9 => {
                let _ = reg.on_received(path, u64::from(input.u16()));
            }
            10 => {
                let bytes = u64::from(input.u16());
                let can = reg.can_send(path, bytes);
                let result = reg.on_sent(path, bytes);
                assert_eq!(can, result.is_ok(), "can_send disagrees with on_sent");
                if matches!(result, Err(Error::AmplificationLimit { .. })) {
                    count(&mut cov.amplification_refused);
                }
            }
            _ => {
                let removed = reg.remove(path);
                assert_eq!(removed, tracked.remove(&id).is_some());
            }
        }

        // Properties that hold after every step.
        assert!(reg.len() <= config.max_paths);
        assert_eq!(window.highest(), model.highest());
        // Paths evicted to make room must have failed.
        tracked.retain(|&id, t| {
            let present = reg.state(PathId(id)).is_some();
            assert!(
                present || matches!(t.state, PathState::Failed(_)),
                "live path evicted"
            );
            present
        });
        for info in reg.iter() {
            let Some(t) = tracked.get_mut(&info.id.0) else {
                panic!("untracked path {:?}", info.id);
            };
            assert!(
                legal(t.state, info.state),
                "{:?} -> {:?}",
                t.state,
                info.state
            );
            if info.state == PathState::Validated && t.state != PathState::Validated {
                assert_eq!(validated_by, Some(info.id.0), "validated without response");
            }
            t.state = info.state;
            t.ever_validated |= info.state == PathState::Validated;
            if !t.ever_validated {
                // I7.
                assert!(
                    info.bytes_sent <= info.bytes_received.saturating_mul(AMPLIFICATION_FACTOR),
                    "amplification bound broken: {info:?}"
                );
            }
        }
    }
    cov
}

#[cfg(test)]
mod tests;
