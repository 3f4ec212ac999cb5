//! The path registry: validation by challenge/response, liveness, and the
//! anti-amplification budget of unvalidated paths.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use phantom_wire::PathId;
use rand_core::CryptoRng;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::Error;

/// Length of a path challenge and of its response, in bytes.
pub const CHALLENGE_LEN: usize = 32;

/// An unvalidated path may be sent at most this many times the bytes received on it
/// (I7). Defined once, in `phantom-wire`, for the path registry and the handshake alike.
pub use phantom_wire::AMPLIFICATION_FACTOR;

/// The largest number of path-challenge retransmissions
/// [`PathConfig::max_retransmits`] may ask for (an upper bound on a setting, not
/// the handshake's fixed flight retransmission count).
pub const MAX_CHALLENGE_RETRANSMITS: u32 = 16;

/// 32 unpredictable bytes sent on a path; the peer proves it receives on that path
/// by echoing them.
///
/// The bytes travel only inside AEAD-sealed packets, so an off-path attacker never
/// sees them. They are zeroized on drop, compared in constant time, and `Debug`
/// prints `<redacted>`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Challenge([u8; CHALLENGE_LEN]);

impl Challenge {
    /// Wraps received bytes (the responder echoes a challenge it got).
    #[must_use]
    pub fn from_bytes(bytes: [u8; CHALLENGE_LEN]) -> Self {
        Self(bytes)
    }

    /// The bytes to put in a PATH_CHALLENGE (or, echoed, a PATH_RESPONSE) frame.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; CHALLENGE_LEN] {
        &self.0
    }

    /// Constant-time comparison with a received response.
    #[must_use]
    pub fn matches(&self, response: &[u8; CHALLENGE_LEN]) -> bool {
        bool::from(self.0.ct_eq(response))
    }

    fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; CHALLENGE_LEN];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }
}

impl PartialEq for Challenge {
    fn eq(&self, other: &Self) -> bool {
        self.matches(&other.0)
    }
}

impl Eq for Challenge {}

impl core::fmt::Debug for Challenge {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Challenge(<redacted>)")
    }
}

/// Tuning of a [`PathRegistry`]. [`PathConfig::default`] gives sensible values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathConfig {
    /// How many paths may be registered at once (1..=256; default 8). Failed paths
    /// count until removed, but a full registry evicts a failed path to make room.
    pub max_paths: usize,
    /// How long to wait for a response before the first retransmission (default
    /// 500 ms). Each retransmission doubles the wait.
    pub challenge_timeout: Duration,
    /// How many times a challenge is retransmitted before the path fails
    /// (0..=[`MAX_CHALLENGE_RETRANSMITS`]; default 3, i.e. four sends over 7.5 s by default).
    pub max_retransmits: u32,
    /// A path from which nothing was seen for this long fails (default 30 s).
    pub idle_timeout: Duration,
}

impl Default for PathConfig {
    fn default() -> Self {
        Self {
            max_paths: 8,
            challenge_timeout: Duration::from_millis(500),
            max_retransmits: 3,
            idle_timeout: Duration::from_secs(30),
        }
    }
}

impl PathConfig {
    /// Checks every field's range.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the first field out of range.
    pub fn validate(&self) -> Result<(), Error> {
        if self.max_paths == 0 || self.max_paths > 256 {
            return Err(Error::InvalidConfig("max_paths must be in 1..=256"));
        }
        if self.challenge_timeout.is_zero() {
            return Err(Error::InvalidConfig("challenge_timeout must be positive"));
        }
        if self.max_retransmits > MAX_CHALLENGE_RETRANSMITS {
            return Err(Error::InvalidConfig(
                "max_retransmits above MAX_CHALLENGE_RETRANSMITS",
            ));
        }
        if self.idle_timeout.is_zero() {
            return Err(Error::InvalidConfig("idle_timeout must be positive"));
        }
        Ok(())
    }

    /// Wait after the `n`-th send (0 = the first) before retransmitting or failing.
    fn backoff(&self, n: u32) -> Duration {
        // n <= MAX_CHALLENGE_RETRANSMITS, so the shift is small; saturate rather than
        // overflow.
        self.challenge_timeout
            .saturating_mul(1u32 << n.min(MAX_CHALLENGE_RETRANSMITS))
    }
}

/// Why a path failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailReason {
    /// No matching response arrived after every retransmission.
    RetriesExhausted,
    /// Nothing was seen from the path for [`PathConfig::idle_timeout`].
    IdleTimeout,
}

/// The validation state of a path.
///
/// ```text
/// Unvalidated --issue_challenge--> Validating --right response--> Validated
///      |                              |   ^ retransmit                 |
///      +--------- idle ---------------+---+------ idle ----------------+--> Failed
///                          retries exhausted ------------------------------^
/// ```
/// `Failed` is terminal: to probe the address again the session removes the path
/// and registers it anew.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathState {
    /// Known, no challenge sent yet; bound by the amplification budget.
    Unvalidated,
    /// A challenge is outstanding; bound by the amplification budget.
    Validating,
    /// The peer echoed a challenge: application data may use the path (I7).
    Validated,
    /// Terminal.
    Failed(FailReason),
}

/// Something the session must act on, returned by [`PathRegistry::poll_retransmit`]
/// and [`PathRegistry::sweep`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum PathEvent {
    /// Send `challenge` (again) in a PATH_CHALLENGE frame on `path`.
    Retransmit {
        /// The path to probe.
        path: PathId,
        /// The outstanding challenge (the same bytes every time for one validation).
        challenge: Challenge,
    },
    /// The path failed; stop using it and tell the application.
    Failed {
        /// The path.
        path: PathId,
        /// Why.
        reason: FailReason,
    },
}

/// How much a path may still send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SendBudget {
    /// The path is validated: no anti-amplification limit.
    Unlimited,
    /// At most this many bytes until more are received (0 on a failed path).
    Limited(u64),
}

impl SendBudget {
    /// Whether `bytes` fit in the budget.
    #[must_use]
    pub fn allows(self, bytes: u64) -> bool {
        match self {
            SendBudget::Unlimited => true,
            SendBudget::Limited(n) => bytes <= n,
        }
    }
}

/// A read-only snapshot of one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathInfo {
    /// The path id.
    pub id: PathId,
    /// The remote address the session associated with the path.
    pub remote: SocketAddr,
    /// Validation state.
    pub state: PathState,
    /// When a packet was last seen on the path (or when it was registered).
    pub last_seen: Instant,
    /// Bytes received on the path (saturating).
    pub bytes_received: u64,
    /// Bytes sent on the path (saturating).
    pub bytes_sent: u64,
}

/// The outstanding challenge of a validating path.
struct Probe {
    challenge: Challenge,
    /// Retransmissions done so far (0 after the first send).
    retransmits: u32,
    /// When to retransmit, or fail once `retransmits == max_retransmits`. `None` only
    /// if the deadline is beyond what `Instant` can represent.
    deadline: Option<Instant>,
}

enum Phase {
    Unvalidated,
    Validating(Probe),
    Validated,
    Failed {
        reason: FailReason,
        /// Whether `poll_retransmit`/`sweep` already returned the failure.
        reported: bool,
    },
}

struct Path {
    id: PathId,
    remote: SocketAddr,
    phase: Phase,
    last_seen: Instant,
    received: u64,
    sent: u64,
}

impl Path {
    fn state(&self) -> PathState {
        match self.phase {
            Phase::Unvalidated => PathState::Unvalidated,
            Phase::Validating(_) => PathState::Validating,
            Phase::Validated => PathState::Validated,
            Phase::Failed { reason, .. } => PathState::Failed(reason),
        }
    }

    fn idle_deadline(&self, config: &PathConfig) -> Option<Instant> {
        self.last_seen.checked_add(config.idle_timeout)
    }

    /// Bytes this path may still send.
    fn budget(&self) -> SendBudget {
        match self.phase {
            Phase::Validated => SendBudget::Unlimited,
            Phase::Failed { .. } => SendBudget::Limited(0),
            // I7: at most three times what was received, minus what was sent.
            Phase::Unvalidated | Phase::Validating(_) => SendBudget::Limited(
                self.received
                    .saturating_mul(AMPLIFICATION_FACTOR)
                    .saturating_sub(self.sent),
            ),
        }
    }

    /// Applies the failures that are due at `now`, so that every operation sees the
    /// same state whether or not the session polled in between (I9).
    fn expire(&mut self, now: Instant, config: &PathConfig) {
        if matches!(self.phase, Phase::Failed { .. }) {
            return;
        }
        if let Phase::Validating(probe) = &self.phase
            && probe.retransmits >= config.max_retransmits
            && probe.deadline.is_some_and(|d| d <= now)
        {
            self.fail(FailReason::RetriesExhausted);
            return;
        }
        if self.idle_deadline(config).is_some_and(|d| d <= now) {
            self.fail(FailReason::IdleTimeout);
        }
    }

    fn fail(&mut self, reason: FailReason) {
        // Dropping the probe zeroizes its challenge.
        self.phase = Phase::Failed {
            reason,
            reported: false,
        };
    }
}

/// Every path of one session: its remote address, validation state, liveness and
/// anti-amplification budget.
///
/// The registry is sans-IO: it is handed the time and the RNG, returns challenges
/// and events, and sends nothing itself. A session drives it like this:
///
/// * A packet authenticated on a new path: [`PathRegistry::insert`], then
///   [`PathRegistry::issue_challenge`] and send the challenge on that path.
/// * Every authenticated packet on a path: [`PathRegistry::mark_seen`] and
///   [`PathRegistry::on_received`]; a PATH_RESPONSE frame:
///   [`PathRegistry::verify_response`] (`Ok` means "path validated").
/// * Before sending on a path: [`PathRegistry::can_send`] / [`PathRegistry::on_sent`];
///   application data only where [`PathRegistry::is_validated`].
/// * Timers: arm [`PathRegistry::next_timeout`]; when it fires, call
///   [`PathRegistry::poll_retransmit`] and [`PathRegistry::sweep`] until each returns
///   `None`.
///
/// Paths are kept in a small vector (at most [`PathConfig::max_paths`] entries) in
/// registration order, so every iteration order is deterministic.
///
/// # Invariants
///
/// **I7.** While a path is not validated, the bytes it may send never exceed
/// [`AMPLIFICATION_FACTOR`] times the bytes received on it: [`PathRegistry::on_sent`]
/// refuses, without recording, any send beyond the budget. A path becomes validated
/// only through [`PathRegistry::verify_response`] with the exact challenge bytes
/// (constant-time compare); a wrong response changes nothing, and a response after
/// the path failed is refused. [`PathRegistry::is_validated`] is the gate for
/// application data.
///
/// **I9.** Challenges come from the caller's RNG and all time from the caller's
/// `now`; lazily applied expiry makes results independent of polling frequency.
///
/// **I1.** Counters saturate; time arithmetic is checked; the number of paths is
/// bounded; no input panics.
pub struct PathRegistry {
    config: PathConfig,
    paths: Vec<Path>,
}

impl PathRegistry {
    /// An empty registry.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] if `config` fails [`PathConfig::validate`].
    pub fn new(config: PathConfig) -> Result<Self, Error> {
        config.validate()?;
        Ok(Self {
            config,
            // Grown one path at a time: most sessions keep one path for life, and
            // `max_paths` slots would cost ~1 KiB per session at the default of 8.
            paths: Vec::new(),
        })
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &PathConfig {
        &self.config
    }

    /// Registers `path` to `remote` as [`PathState::Unvalidated`].
    ///
    /// # Errors
    ///
    /// [`Error::PathExists`] if the id is taken; [`Error::TooManyPaths`] if the
    /// registry is full and holds no failed path to evict.
    pub fn insert(&mut self, path: PathId, remote: SocketAddr, now: Instant) -> Result<(), Error> {
        self.insert_with(path, remote, now, Phase::Unvalidated)
    }

    /// Registers `path` as already [`PathState::Validated`] — for the path the
    /// handshake ran over, whose reachability the handshake proved.
    ///
    /// # Errors
    ///
    /// As [`PathRegistry::insert`].
    pub fn insert_validated(
        &mut self,
        path: PathId,
        remote: SocketAddr,
        now: Instant,
    ) -> Result<(), Error> {
        self.insert_with(path, remote, now, Phase::Validated)
    }

    fn insert_with(
        &mut self,
        path: PathId,
        remote: SocketAddr,
        now: Instant,
        phase: Phase,
    ) -> Result<(), Error> {
        if self.find(path).is_some() {
            return Err(Error::PathExists(path));
        }
        if self.paths.len() >= self.config.max_paths {
            // Make room by evicting the oldest failed path, if there is one.
            let failed = self
                .paths
                .iter()
                .position(|p| matches!(p.phase, Phase::Failed { .. }));
            match failed {
                Some(i) => {
                    self.paths.remove(i);
                }
                None => {
                    return Err(Error::TooManyPaths {
                        max: self.config.max_paths,
                    });
                }
            }
        }
        if self.paths.len() == self.paths.capacity() {
            self.paths.reserve_exact(1);
        }
        self.paths.push(Path {
            id: path,
            remote,
            phase,
            last_seen: now,
            received: 0,
            sent: 0,
        });
        Ok(())
    }

    /// Forgets `path`; `true` if it was registered.
    pub fn remove(&mut self, path: PathId) -> bool {
        match self.find(path) {
            Some(i) => {
                self.paths.remove(i);
                true
            }
            None => false,
        }
    }

    /// Starts validating `path`: draws a fresh 32-byte challenge from `rng`, which
    /// the session sends on the path. Calling it again while validating draws a new
    /// challenge, restarts the retry budget, and forgets the old one.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownPath`], [`Error::PathFailed`], [`Error::AlreadyValidated`].
    pub fn issue_challenge<R: CryptoRng + ?Sized>(
        &mut self,
        path: PathId,
        now: Instant,
        rng: &mut R,
    ) -> Result<Challenge, Error> {
        let config = self.config;
        let p = self.live_path(path, now)?;
        if matches!(p.phase, Phase::Validated) {
            return Err(Error::AlreadyValidated(path));
        }
        let challenge = Challenge::generate(rng);
        p.phase = Phase::Validating(Probe {
            challenge: challenge.clone(),
            retransmits: 0,
            deadline: now.checked_add(config.backoff(0)),
        });
        Ok(challenge)
    }

    /// Checks a PATH_RESPONSE received on `path` against its outstanding challenge,
    /// in constant time. `Ok(())` means the path is now [`PathState::Validated`]:
    /// emit "path validated".
    ///
    /// # Errors
    ///
    /// [`Error::WrongResponse`] (nothing changes), [`Error::PathFailed`] for a late
    /// response, [`Error::NotValidating`] if no challenge is outstanding,
    /// [`Error::AlreadyValidated`], [`Error::UnknownPath`].
    pub fn verify_response(
        &mut self,
        path: PathId,
        now: Instant,
        response: &[u8; CHALLENGE_LEN],
    ) -> Result<(), Error> {
        let p = self.live_path(path, now)?;
        match &p.phase {
            Phase::Validating(probe) => {
                // I7: only the exact challenge bytes validate; compared in constant time.
                if probe.challenge.matches(response) {
                    p.phase = Phase::Validated;
                    Ok(())
                } else {
                    Err(Error::WrongResponse)
                }
            }
            Phase::Validated => Err(Error::AlreadyValidated(path)),
            Phase::Unvalidated | Phase::Failed { .. } => Err(Error::NotValidating(path)),
        }
    }

    /// Records that an authenticated packet arrived on `path` at `now`.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownPath`]; [`Error::PathFailed`] — a failed path is not revived.
    pub fn mark_seen(&mut self, path: PathId, now: Instant) -> Result<(), Error> {
        let p = self.live_path(path, now)?;
        if now > p.last_seen {
            p.last_seen = now;
        }
        Ok(())
    }

    /// [`PathRegistry::on_received`] then [`PathRegistry::mark_seen`] in one step (one
    /// lookup of the path): adds `bytes` to its amplification budget unless it had
    /// failed, then applies due expiry and records `now` as last seen unless it has
    /// failed by then. Call it for every authenticated datagram on `path`.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownPath`]; [`Error::PathFailed`] if the path had failed or fails
    /// now (the bytes are counted in the second case, as the two calls would).
    pub fn on_authenticated(
        &mut self,
        path: PathId,
        bytes: u64,
        now: Instant,
    ) -> Result<(), Error> {
        let Self { config, paths } = self;
        let p = paths
            .iter_mut()
            .find(|p| p.id == path)
            .ok_or(Error::UnknownPath(path))?;
        if matches!(p.phase, Phase::Failed { .. }) {
            return Err(Error::PathFailed(path));
        }
        p.received = p.received.saturating_add(bytes);
        if matches!(p.phase, Phase::Validated) && now <= p.last_seen {
            // Another datagram of a burst already seen at this time: a validated
            // path has no probe to expire, and its idle deadline (`last_seen` plus a
            // positive timeout) is still ahead, so nothing changes.
            return Ok(());
        }
        p.expire(now, config);
        if matches!(p.phase, Phase::Failed { .. }) {
            return Err(Error::PathFailed(path));
        }
        if now > p.last_seen {
            p.last_seen = now;
        }
        Ok(())
    }

    /// Adds `bytes` received on `path` to its amplification budget. The session
    /// counts only datagrams it authenticated on this path.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownPath`], [`Error::PathFailed`].
    pub fn on_received(&mut self, path: PathId, bytes: u64) -> Result<(), Error> {
        let p = self.path_mut(path)?;
        if matches!(p.phase, Phase::Failed { .. }) {
            return Err(Error::PathFailed(path));
        }
        p.received = p.received.saturating_add(bytes);
        Ok(())
    }

    /// Whether `bytes` more may be sent on `path` now: always on a validated path,
    /// within three times the bytes received on an unvalidated one, never on a
    /// failed or unknown one.
    #[must_use]
    pub fn can_send(&self, path: PathId, bytes: u64) -> bool {
        self.get(path)
            .is_some_and(|p| !matches!(p.phase, Phase::Failed { .. }) && p.budget().allows(bytes))
    }

    /// How many bytes `path` may still send (`None` for an unknown path). Size
    /// packets on an unvalidated path to fit it.
    #[must_use]
    pub fn send_budget(&self, path: PathId) -> Option<SendBudget> {
        self.get(path).map(Path::budget)
    }

    /// Records `bytes` sent on `path`, refusing (and recording nothing) if that
    /// would break the anti-amplification bound (I7).
    ///
    /// # Errors
    ///
    /// [`Error::AmplificationLimit`], [`Error::PathFailed`], [`Error::UnknownPath`].
    pub fn on_sent(&mut self, path: PathId, bytes: u64) -> Result<(), Error> {
        let p = self.path_mut(path)?;
        if matches!(p.phase, Phase::Failed { .. }) {
            return Err(Error::PathFailed(path));
        }
        match p.budget() {
            SendBudget::Unlimited => {
                p.sent = p.sent.saturating_add(bytes);
                Ok(())
            }
            // I7: never beyond 3x received while unvalidated.
            SendBudget::Limited(available) if bytes <= available => {
                p.sent = p.sent.saturating_add(bytes);
                debug_assert!(p.sent <= p.received.saturating_mul(AMPLIFICATION_FACTOR));
                Ok(())
            }
            SendBudget::Limited(available) => Err(Error::AmplificationLimit { path, available }),
        }
    }

    /// The earliest time at which [`PathRegistry::poll_retransmit`] or
    /// [`PathRegistry::sweep`] has something to do, if any. A failure not yet
    /// reported makes this return the path's last-seen time (already past).
    #[must_use]
    pub fn next_timeout(&self) -> Option<Instant> {
        self.paths
            .iter()
            .filter_map(|p| match &p.phase {
                Phase::Failed { reported: true, .. } => None,
                Phase::Failed {
                    reported: false, ..
                } => Some(p.last_seen),
                Phase::Validating(probe) => min_opt(probe.deadline, p.idle_deadline(&self.config)),
                Phase::Unvalidated | Phase::Validated => p.idle_deadline(&self.config),
            })
            .min()
    }

    /// Returns the next due validation action: a challenge to retransmit (its wait
    /// doubles each time) or a path that failed with [`FailReason::RetriesExhausted`].
    /// Call until it returns `None`; it returns at most two events per path per call
    /// sequence, so the loop is bounded.
    pub fn poll_retransmit(&mut self, now: Instant) -> Option<PathEvent> {
        let config = self.config;
        for p in &mut self.paths {
            p.expire(now, &config);
            match &mut p.phase {
                Phase::Failed {
                    reason: FailReason::RetriesExhausted,
                    reported,
                } if !*reported => {
                    *reported = true;
                    return Some(PathEvent::Failed {
                        path: p.id,
                        reason: FailReason::RetriesExhausted,
                    });
                }
                Phase::Validating(probe) if probe.deadline.is_some_and(|d| d <= now) => {
                    // expire() failed the path if the budget were spent.
                    debug_assert!(probe.retransmits < config.max_retransmits);
                    probe.retransmits = probe.retransmits.saturating_add(1);
                    probe.deadline = now.checked_add(config.backoff(probe.retransmits));
                    return Some(PathEvent::Retransmit {
                        path: p.id,
                        challenge: probe.challenge.clone(),
                    });
                }
                _ => {}
            }
        }
        None
    }

    /// Fails every path silent for [`PathConfig::idle_timeout`] and returns the next
    /// failure not yet reported (of any reason). Call until it returns `None`.
    pub fn sweep(&mut self, now: Instant) -> Option<PathEvent> {
        let config = self.config;
        for p in &mut self.paths {
            p.expire(now, &config);
            if let Phase::Failed { reason, reported } = &mut p.phase
                && !*reported
            {
                *reported = true;
                return Some(PathEvent::Failed {
                    path: p.id,
                    reason: *reason,
                });
            }
        }
        None
    }

    /// The state of `path`, `None` if unknown. Does not apply due expiry; call
    /// [`PathRegistry::sweep`] first for an up-to-date answer.
    #[must_use]
    pub fn state(&self, path: PathId) -> Option<PathState> {
        self.get(path).map(Path::state)
    }

    /// Whether application data may use `path` (I7).
    #[must_use]
    pub fn is_validated(&self, path: PathId) -> bool {
        matches!(self.state(path), Some(PathState::Validated))
    }

    /// The validated paths, in registration order.
    pub fn validated_paths(&self) -> impl Iterator<Item = PathId> + '_ {
        self.paths
            .iter()
            .filter(|p| matches!(p.phase, Phase::Validated))
            .map(|p| p.id)
    }

    /// A snapshot of `path`.
    #[must_use]
    pub fn info(&self, path: PathId) -> Option<PathInfo> {
        self.get(path).map(|p| PathInfo {
            id: p.id,
            remote: p.remote,
            state: p.state(),
            last_seen: p.last_seen,
            bytes_received: p.received,
            bytes_sent: p.sent,
        })
    }

    /// Snapshots of every path, in registration order.
    pub fn iter(&self) -> impl Iterator<Item = PathInfo> + '_ {
        self.paths.iter().filter_map(|p| self.info(p.id))
    }

    /// The remote address of `path`.
    #[must_use]
    pub fn remote(&self, path: PathId) -> Option<SocketAddr> {
        self.get(path).map(|p| p.remote)
    }

    /// Number of registered paths, failed ones included.
    #[must_use]
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// `true` if no path is registered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    fn find(&self, path: PathId) -> Option<usize> {
        self.paths.iter().position(|p| p.id == path)
    }

    fn get(&self, path: PathId) -> Option<&Path> {
        self.paths.iter().find(|p| p.id == path)
    }

    fn path_mut(&mut self, path: PathId) -> Result<&mut Path, Error> {
        self.paths
            .iter_mut()
            .find(|p| p.id == path)
            .ok_or(Error::UnknownPath(path))
    }

    /// The path, after applying due expiry; an error if unknown or failed.
    fn live_path(&mut self, path: PathId, now: Instant) -> Result<&mut Path, Error> {
        let config = self.config;
        let p = self.path_mut(path)?;
        p.expire(now, &config);
        if matches!(p.phase, Phase::Failed { .. }) {
            return Err(Error::PathFailed(path));
        }
        Ok(p)
    }
}

impl core::fmt::Debug for PathRegistry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PathRegistry")
            .field("config", &self.config)
            .field("paths", &self.iter().collect::<Vec<_>>())
            .finish()
    }
}

fn min_opt(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

#[cfg(test)]
mod tests;
