//! The server's settings ([`ServerConfig`]).

use std::sync::Arc;
use std::time::Duration;

use phantom_crypto::Suite;

use crate::common::{MAX_EARLY_DATA, default_suites};
use crate::conn_id::{ConnIdGenerator, RandomConnIds, ResetKey};
use crate::fleet::FleetKey;
use crate::keys::ServerIdentity;
#[cfg(doc)]
use crate::{Established, Server};

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Certificate and static KEM secret.
    pub identity: ServerIdentity,
    /// Suites the server accepts (the client's preference order decides among them).
    pub suites: Vec<Suite>,
    /// Always answer a first flight without a valid token with a Retry.
    pub require_retry: bool,
    /// Cap on concurrent half-open handshakes (superseded ones included, see
    /// [`Server::handle_datagram`]); beyond it, new peers must present a token, and one
    /// that does takes the place of the oldest half-open handshake whose address is not
    /// validated (it is refused only when all of them are).
    pub max_half_open: usize,
    /// A half-open handshake is dropped this long after its first datagram.
    pub handshake_timeout: Duration,
    /// Lifetime of issued tickets, seconds (0: issue none).
    pub ticket_lifetime: u32,
    /// Most early data accepted per ticket (0: never accept 0-RTT).
    pub max_early_data: u32,
    /// 0-RTT is refused for tickets older than this many seconds (anti-replay window).
    pub anti_replay_window: u64,
    /// Capacity of the anti-replay store; when full, 0-RTT is refused.
    pub anti_replay_capacity: usize,
    /// The ticket and retry keys rotate this often ([`Server::rotate_keys_if_due`]);
    /// the previous key of each stays valid for one more period, so a ticket is
    /// accepted for between one and two periods after it was issued (and never beyond
    /// its lifetime). Zero: never rotate. With a fleet key the periods are those of
    /// the wall clock, `unix_secs / key_rotation` in whole seconds, the same for every
    /// member (PROTOCOL.md §4.6).
    pub key_rotation: Duration,
    /// Release accepted early data when the ClientHello is accepted
    /// ([`Server::poll_early_data`]) instead of in the [`Established`] of the completed
    /// handshake, so that the application can act on it a round trip sooner. Such data
    /// has passed its AEAD, the ticket-age window and the anti-replay store (I10), but
    /// the handshake may still fail and the client then send it again (as TLS 1.3
    /// 0-RTT; only the server instance that issued the ticket accepts early data on
    /// it): only replay-safe requests belong in it.
    /// At most `max_half_open` releases wait to be polled; beyond that, early data goes
    /// into the `Established` as without this setting. Default false.
    pub release_early_data_on_hello: bool,
    /// The key of the stateless-reset tokens of the connection ids this server issues
    /// (PROTOCOL.md §5.10). Default: derived from `identity`, so a server restarted from
    /// the same key files answers its predecessor's ids with the tokens it gave.
    /// Replaced by the fleet's reset key when `fleet` is set.
    pub reset_key: ResetKey,
    /// The secret shared by a fleet of servers (PROTOCOL.md §4.6): when set, the reset
    /// key, the retry-token keys and the ticket keys derive from it (the latter two
    /// per `key_rotation` period of the wall clock), so that fleet members with the
    /// same identity accept each other's tokens and tickets. 0-RTT stays per server:
    /// early data is accepted only on tickets this server instance issued. Default:
    /// none (keys drawn from the RNG).
    pub fleet: Option<FleetKey>,
    /// Chooses the connection ids this server issues (default: random, 8 bytes).
    pub conn_ids: Arc<dyn ConnIdGenerator>,
}

impl ServerConfig {
    /// Defaults: all suites, retry only under load, 1024 half-open, 10 s timeout, one-day
    /// tickets, 4 KiB 0-RTT within a 10-minute window, 65536 anti-replay entries, keys
    /// rotated every half ticket lifetime (12 h).
    #[must_use]
    pub fn new(identity: ServerIdentity) -> Self {
        Self {
            reset_key: ResetKey::from_identity(&identity),
            fleet: None,
            conn_ids: Arc::new(RandomConnIds::default()),
            identity,
            suites: default_suites(),
            require_retry: false,
            max_half_open: 1024,
            handshake_timeout: Duration::from_secs(10),
            ticket_lifetime: 86_400,
            max_early_data: MAX_EARLY_DATA as u32,
            anti_replay_window: 600,
            anti_replay_capacity: 65_536,
            key_rotation: Duration::from_secs(86_400 / 2),
            release_early_data_on_hello: false,
        }
    }

    /// This config as a member of the fleet of `key`: sets `fleet` and the reset key
    /// it derives.
    #[must_use]
    pub fn with_fleet_key(mut self, key: FleetKey) -> Self {
        self.reset_key = key.reset_key();
        self.fleet = Some(key);
        self
    }
}
