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

fn count(c: &mut u32) {
    *c = c.saturating_add(1);
}

/// Runs one fuzz input. `base` is the time origin (the fuzz target reads the clock
/// once; this crate never does).
///
/// # Panics
///
/// When a checked property fails — that is a bug found.
pub fn guard_ops(base: Instant, data: &[u8]) -> Coverage {
    let mut driver = Driver::new(base, Input { data });
    // Bounded by the input length: every step consumes at least one byte.
    while !driver.input.is_empty() {
        driver.step();
    }
    driver.cov
}

/// The state under test, the reference model, and what the driver tracks.
struct Driver<'a> {
    input: Input<'a>,
    cov: Coverage,
    window: ReplayWindow,
    model: ReplayModel,
    config: PathConfig,
    reg: PathRegistry,
    rng: FuzzRng,
    now: Instant,
    tracked: BTreeMap<u8, Tracked>,
}

impl<'a> Driver<'a> {
    /// Decodes the header: window width, path configuration, challenge seed.
    #[expect(clippy::panic, reason = "fuzz driver: a failed property must abort")]
    fn new(base: Instant, mut input: Input<'a>) -> Self {
        let width_req = (u64::from(input.u8()) + 1) * 16;
        let Ok(window) = ReplayWindow::with_width(width_req) else {
            panic!("width {width_req} is in range");
        };
        let model = ReplayModel::new(window.width());
        let config = PathConfig {
            max_paths: usize::from(input.u8() % 8) + 1,
            challenge_timeout: Duration::from_millis(u64::from(input.u8()) + 1),
            max_retransmits: u32::from(input.u8() % 5),
            idle_timeout: Duration::from_millis(u64::from(input.u16()) + 1),
        };
        let Ok(reg) = PathRegistry::new(config) else {
            panic!("config {config:?} is valid");
        };
        let rng = FuzzRng::new(input.u64());
        Self {
            input,
            cov: Coverage::default(),
            window,
            model,
            config,
            reg,
            rng,
            now: base,
            tracked: BTreeMap::new(),
        }
    }

    /// Decodes and runs one operation, then checks the properties that hold
    /// after every step.
    fn step(&mut self) {
        let op = self.input.u8();
        let id = self.input.u8() % 10;
        let path = PathId(id);
        let mut validated_by = None;
        match op % 12 {
            0 => self.commit(),
            1 => self.check_then_accept(),
            2 => self.insert(id),
            3 => self.issue_challenge(id),
            4 => validated_by = self.right_response(id),
            5 => self.wrong_response(id),
            6 => {
                let _ = self.reg.mark_seen(path, self.now);
            }
            7 => self.advance_clock(),
            8 => self.poll_timers(),
            9 => {
                let _ = self.reg.on_received(path, u64::from(self.input.u16()));
            }
            10 => self.send(path),
            _ => {
                let removed = self.reg.remove(path);
                assert_eq!(removed, self.tracked.remove(&id).is_some());
            }
        }
        self.check_properties(validated_by);
    }

    fn count_replay(&mut self, accepted: bool) {
        count(if accepted {
            &mut self.cov.replay_accepted
        } else {
            &mut self.cov.replay_rejected
        });
    }

    /// `commit` agrees with the reference model.
    fn commit(&mut self) {
        let seq = decode_seq(&mut self.input, self.model.highest(), self.window.width());
        let got = self.window.commit(seq);
        assert_eq!(got, self.model.commit(seq), "commit({seq})");
        self.count_replay(got.is_ok());
    }

    /// `check` agrees with the model and changes nothing; the authenticated
    /// accept that follows agrees with the model's commit.
    fn check_then_accept(&mut self) {
        let seq = decode_seq(&mut self.input, self.model.highest(), self.window.width());
        let before = self.window.highest();
        assert_eq!(
            self.window.check(seq),
            self.model.check(seq),
            "check({seq})"
        );
        assert_eq!(self.window.highest(), before);
        let ok = self.window.accept_authenticated(seq);
        assert_eq!(ok, self.model.commit(seq).is_ok(), "accept({seq})");
        self.count_replay(ok);
    }

    /// Inserts a path (validated or not); a full registry refuses only when no
    /// failed path could be evicted.
    #[expect(clippy::panic, reason = "fuzz driver: a failed property must abort")]
    fn insert(&mut self, id: u8) {
        let path = PathId(id);
        let remote = SocketAddr::from((Ipv4Addr::LOCALHOST, self.input.u16()));
        let validated = self.input.u8() & 1 == 1;
        let len_before = self.reg.len();
        let result = if validated {
            self.reg.insert_validated(path, remote, self.now)
        } else {
            self.reg.insert(path, remote, self.now)
        };
        match result {
            Ok(()) => {
                if self.reg.len() == len_before {
                    count(&mut self.cov.evictions);
                }
                let state = if validated {
                    PathState::Validated
                } else {
                    PathState::Unvalidated
                };
                self.tracked.insert(
                    id,
                    Tracked {
                        challenge: None,
                        ever_validated: validated,
                        state,
                    },
                );
            }
            Err(Error::PathExists(p)) => assert!(self.tracked.contains_key(&p.0)),
            Err(Error::TooManyPaths { max }) => {
                count(&mut self.cov.full_refused);
                assert_eq!(self.reg.len(), max);
                assert!(
                    self.reg
                        .iter()
                        .all(|p| !matches!(p.state, PathState::Failed(_))),
                    "a failed path should have been evicted"
                );
            }
            Err(e) => panic!("insert: unexpected {e}"),
        }
    }

    /// Issues a challenge and remembers its bytes.
    fn issue_challenge(&mut self, id: u8) {
        if let Ok(c) = self
            .reg
            .issue_challenge(PathId(id), self.now, &mut self.rng)
            && let Some(t) = self.tracked.get_mut(&id)
        {
            t.challenge = Some(*c.as_bytes());
        }
    }

    /// Answers with the outstanding challenge (zeros if none); returns the path
    /// it validated.
    fn right_response(&mut self, id: u8) -> Option<u8> {
        let response = self
            .tracked
            .get(&id)
            .and_then(|t| t.challenge)
            .unwrap_or([0u8; CHALLENGE_LEN]);
        match self.reg.verify_response(PathId(id), self.now, &response) {
            Ok(()) => {
                count(&mut self.cov.validated);
                return Some(id);
            }
            Err(Error::PathFailed(_)) => count(&mut self.cov.late_refused),
            Err(_) => {}
        }
        None
    }

    /// A wrong response (one bit off the outstanding challenge) changes nothing.
    fn wrong_response(&mut self, id: u8) {
        let path = PathId(id);
        let pos = usize::from(self.input.u8()) % CHALLENGE_LEN;
        let mask = self.input.u8() | 1;
        let mut response = self
            .tracked
            .get(&id)
            .and_then(|t| t.challenge)
            .unwrap_or([0x5a; CHALLENGE_LEN]);
        if let Some(b) = response.get_mut(pos) {
            *b ^= mask;
        }
        // Apply due expiry first, so the only possible change would be the
        // response's.
        let mut guard = 0usize;
        while self.reg.sweep(self.now).is_some() {
            guard += 1;
            assert!(guard <= 256, "sweep does not terminate");
        }
        let before = self.reg.info(path);
        let result = self.reg.verify_response(path, self.now, &response);
        assert!(result.is_err(), "wrong response accepted");
        if result == Err(Error::WrongResponse) {
            count(&mut self.cov.wrong_refused);
        }
        assert_eq!(self.reg.info(path), before, "wrong response changed state");
    }

    fn advance_clock(&mut self) {
        let delta = Duration::from_millis(u64::from(self.input.u16()));
        self.now = self.now.checked_add(delta).unwrap_or(self.now);
    }

    /// Drains retransmits and expiries; both terminate and leave nothing due.
    fn poll_timers(&mut self) {
        let now = self.now;
        let bound = 2 * self.reg.len() + 1;
        let mut n = 0usize;
        while let Some(ev) = self.reg.poll_retransmit(now) {
            n += 1;
            assert!(n <= bound, "poll_retransmit does not terminate");
            match ev {
                PathEvent::Retransmit { path, challenge } => {
                    count(&mut self.cov.retransmits);
                    let t = self.tracked.get(&path.0);
                    assert_eq!(t.and_then(|t| t.challenge), Some(*challenge.as_bytes()));
                }
                PathEvent::Failed { reason, .. } => {
                    assert_eq!(reason, FailReason::RetriesExhausted);
                    count(&mut self.cov.retries_exhausted);
                }
            }
        }
        let mut m = 0usize;
        while let Some(ev) = self.reg.sweep(now) {
            if let PathEvent::Failed {
                reason: FailReason::IdleTimeout,
                ..
            } = ev
            {
                count(&mut self.cov.idle_failures);
            }
            m += 1;
            assert!(m <= bound, "sweep does not terminate");
        }
        assert!(
            self.reg.next_timeout().is_none_or(|t| t > now),
            "a timeout is still due after polling"
        );
    }

    /// `can_send` agrees with `on_sent`.
    fn send(&mut self, path: PathId) {
        let bytes = u64::from(self.input.u16());
        let can = self.reg.can_send(path, bytes);
        let result = self.reg.on_sent(path, bytes);
        assert_eq!(can, result.is_ok(), "can_send disagrees with on_sent");
        if matches!(result, Err(Error::AmplificationLimit { .. })) {
            count(&mut self.cov.amplification_refused);
        }
    }

    /// Properties that hold after every step: the registry's bound, the
    /// window against the model, legal transitions, validation only by a right
    /// response, and the amplification bound (I7).
    #[expect(clippy::panic, reason = "fuzz driver: a failed property must abort")]
    fn check_properties(&mut self, validated_by: Option<u8>) {
        assert!(self.reg.len() <= self.config.max_paths);
        assert_eq!(self.window.highest(), self.model.highest());
        // Paths evicted to make room must have failed.
        let reg = &self.reg;
        self.tracked.retain(|&id, t| {
            let present = reg.state(PathId(id)).is_some();
            assert!(
                present || matches!(t.state, PathState::Failed(_)),
                "live path evicted"
            );
            present
        });
        for info in self.reg.iter() {
            let Some(t) = self.tracked.get_mut(&info.id.0) else {
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
}

#[cfg(test)]
mod tests;
