//! The client state machine.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::{AeadInOut as _, KeyInit as _};
use phantom_crypto::{Suite, TrafficSecret};
use phantom_wire::SessionId;

use crate::Rng;
use crate::backend::{KemSecret, XSecret};
use crate::common::{
    Established, HANDSHAKE_VERSION, MAX_EARLY_DATA, Progress, ResumptionHint, ResumptionTicket,
    Time, default_suites,
};
use crate::conn_id::{ConnIdGenerator, IssuedConnId, LABEL_ID0_C, LABEL_ID0_S, RandomConnIds};
use crate::error::CodeList;
use crate::error::{Error, ensure};
use crate::fragment::{Datagram, ECHO_LEN, Flight, Inserted, Reassembler, hello_echo, pack};
use crate::keys::{HybridVerifyingKey, ServerCertificate, VerifiedCertificate};
use crate::msg::{
    ClientFinished, ClientHello, MISMATCH, MISMATCH_VERSION, Mismatch, PdkOffer, SH_EARLY, SH_PDK,
    SH_PSK, ServerFinished, ServerHello,
};
use crate::schedule::{
    HandshakeKeys, LABEL_EARLY, Secret, Shares, Transcript, early_secret, hmac, mac_eq,
    master_secret, mismatch_key, sha256,
};

/// A ClientHello shorter than this is padded up to it, so that the server's 3x
/// anti-amplification budget covers a full-mode answer (ServerHello with certificate).
pub const MIN_CLIENT_HELLO_LEN: usize = 2400;

#[cfg(test)]
thread_local! {
    /// Test hook: send an unpadded ClientHello (to exercise the amplification limit).
    pub(crate) static NO_PADDING: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
    /// Test hook: offer these versions instead of [`HANDSHAKE_VERSION`].
    pub(crate) static OFFER_VERSIONS: core::cell::RefCell<Option<Vec<u8>>> = const { core::cell::RefCell::new(None) };
}

/// What a client needs to connect.
///
/// Debug prints the early data's length, never its bytes (I8: it is application
/// plaintext, possibly a credential).
#[derive(Clone)]
pub struct ClientConfig {
    /// The server's pinned long-term key.
    pub server_key: HybridVerifyingKey,
    /// The server's certificate, verified earlier (from a previous connection, or shipped
    /// with the pinned key). With it the client encapsulates to the static key in its
    /// first flight (KEMTLS-PDK, 1-RTT); without it the handshake takes one more flight.
    pub certificate: Option<VerifiedCertificate>,
    /// AEAD suites to offer, most preferred first.
    pub suites: Vec<Suite>,
    /// A ticket from an earlier session with this server, for resumption.
    pub ticket: Option<ResumptionTicket>,
    /// Early (0-RTT) data to send with the ticket; ignored without one. The caller must
    /// only put data here that is safe to replay at the application level if the server
    /// loses its anti-replay state.
    pub early_data: Vec<u8>,
    /// Chooses the connection ids this client issues (default: random, 8 bytes).
    pub conn_ids: Arc<dyn ConnIdGenerator>,
}

impl core::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let Self {
            server_key,
            certificate,
            suites,
            ticket,
            early_data,
            conn_ids,
        } = self;
        f.debug_struct("ClientConfig")
            .field("server_key", server_key)
            .field("certificate", certificate)
            .field("suites", suites)
            .field("ticket", ticket)
            .field("early_data_len", &early_data.len())
            .field("conn_ids", conn_ids)
            .finish()
    }
}

impl ClientConfig {
    /// A config for `server_key` with the default suites and nothing cached.
    #[must_use]
    pub fn new(server_key: HybridVerifyingKey) -> Self {
        Self {
            server_key,
            certificate: None,
            suites: default_suites(),
            ticket: None,
            early_data: Vec::new(),
            conn_ids: Arc::new(RandomConnIds::default()),
        }
    }
}

#[cfg_attr(test, derive(Clone))]
struct ExpectServerHello {
    server_key: HybridVerifyingKey,
    cached_cert: Option<VerifiedCertificate>,
    versions: Vec<u8>,
    suites: Vec<u8>,
    eph_x: XSecret,
    eph_ml: KemSecret,
    /// PDK: the ephemeral-static shares computed for the ClientHello.
    pdk: Option<(Secret, Secret)>,
    psk: Option<Secret>,
    early_sent: bool,
    transcript: Transcript,
    conn_ids: Arc<dyn ConnIdGenerator>,
}

#[cfg_attr(test, derive(Clone))]
struct ExpectServerFinished {
    keys: HandshakeKeys,
    transcript: Transcript,
    version: u8,
    suite: Suite,
    session_id: SessionId,
    pdk: bool,
    resumed: bool,
    early_accepted: bool,
    server_key_id: [u8; 32],
    /// Our first connection id, sent masked in the ClientFinished.
    id0: IssuedConnId,
}

#[cfg_attr(test, derive(Clone))]
enum State {
    ExpectServerHello(Box<ExpectServerHello>),
    ExpectServerFinished(Box<ExpectServerFinished>),
    Complete(Box<Established>),
    Failed(Error),
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::ExpectServerHello(_) => "ExpectServerHello",
            State::ExpectServerFinished(_) => "ExpectServerFinished",
            State::Complete(_) => "Complete",
            State::Failed(_) => "Failed",
        }
    }
}

/// Side effects of one state transition.
#[derive(Default)]
struct Effects {
    send: Vec<(u64, Vec<u8>)>,
    expects_answer: bool,
    verified: Option<VerifiedCertificate>,
}

/// A handshake client (sans-IO).
///
/// Call protocol: [`Client::new`] builds the first flight; then after every input —
/// [`Client::handle`] for each datagram from the server and [`Client::handle_timeout`]
/// when [`Client::poll_timeout`] passes — drain [`Client::poll_transmit`]. When `handle`
/// returns [`Progress::Complete`], take the keys with [`Client::into_established`].
/// `now.instant` must not go backwards between calls.
///
/// Internally the handshake is a chain of consuming states (`ExpectServerHello` →
/// `ExpectServerFinished` → `Complete`); a message-level failure moves it to a terminal
/// `Failed` state and every later call returns the same error. A datagram that does not
/// parse, or that does not carry the echo of *this* client's ClientHello (the answer to
/// another ClientHello — a spoofer's, sent to our address — or a forgery by an off-path
/// attacker, who never saw the ClientHello), is dropped with [`Error::Malformed`] and
/// leaves the state untouched; only a flight bound to our ClientHello can fail the
/// handshake. Likewise a Retry must carry the echo of our ClientHello's first fragment,
/// and at most one Retry is followed.
#[cfg_attr(test, derive(Clone))]
pub struct Client {
    state: State,
    reasm: Reassembler,
    flight: Flight,
    out: VecDeque<Vec<u8>>,
    token: Vec<u8>,
    retried: bool,
    client_hello: Vec<u8>,
    /// The echo of `client_hello` every server datagram but a Retry must carry.
    echo: [u8; ECHO_LEN],
    /// The echo of the first fragment of `client_hello` a Retry must carry.
    retry_echo: [u8; ECHO_LEN],
    verified: Option<VerifiedCertificate>,
    /// Server datagrams taken (parsed, bound to our ClientHello, fed to the handshake).
    used: u32,
    /// Server datagrams dropped (damaged, malformed, or not bound to our ClientHello).
    dropped: u32,
}

impl core::fmt::Debug for Client {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Client")
            .field("state", &self.state.name())
            .field("retried", &self.retried)
            .finish_non_exhaustive()
    }
}

/// The suite codes to offer, in order, without duplicates (at least one).
fn suite_codes(suites: &[Suite]) -> Result<Vec<u8>, Error> {
    let mut codes: Vec<u8> = Vec::new();
    for s in suites {
        if !codes.contains(&s.code()) {
            codes.push(s.code());
        }
    }
    ensure!(!codes.is_empty(), Error::Misuse("no suites offered"));
    Ok(codes)
}

/// The cached certificate if it is for `server_key` (else `Misuse`) and still valid:
/// an expired one is simply not used (the server sends its new one).
fn usable_certificate(
    certificate: Option<VerifiedCertificate>,
    server_key: &HybridVerifyingKey,
    now: Time,
) -> Result<Option<VerifiedCertificate>, Error> {
    let Some(c) = certificate else {
        return Ok(None);
    };
    ensure!(
        c.server_key_id == server_key.key_id(),
        Error::Misuse("certificate for another server key")
    );
    Ok((now.unix_secs <= c.cert.not_after()).then_some(c))
}

/// Seals `early_data` under ticket `t` into `ch` (within the ticket's allowance),
/// authenticated with the ClientHello encoded before it.
fn add_early_data(
    ch: &mut ClientHello,
    t: &ResumptionTicket,
    early_data: &[u8],
) -> Result<(), Error> {
    ensure!(
        early_data.len() <= t.hint().max_early_data && early_data.len() <= MAX_EARLY_DATA,
        Error::LimitExceeded("early data above the ticket's allowance")
    );
    let (prefix, early_at) = ch.encode();
    let aad = prefix.get(..early_at).unwrap_or_default();
    let es = early_secret(Some(&t.secret));
    let key = crate::schedule::expand(&es, LABEL_EARLY, &sha256(aad));
    ch.early = seal_early(&key, aad, early_data)?;
    Ok(())
}

fn seal_early(key: &[u8; 32], aad: &[u8], data: &[u8]) -> Result<Vec<u8>, Error> {
    let aead = ChaCha20Poly1305::new(&(*key).into());
    let mut buf = data.to_vec();
    let tag = aead
        .encrypt_inout_detached(&[0u8; 12].into(), aad, buf.as_mut_slice().into())
        .map_err(|_| Error::LimitExceeded("early data"))?;
    buf.extend_from_slice(tag.as_slice());
    Ok(buf)
}

impl Client {
    /// Starts a handshake and queues the first flight (the ClientHello).
    ///
    /// Errors: `Misuse` for an empty suite list or a cached certificate for another key,
    /// `TicketInvalid`/`TicketExpired` for a ticket of another server or past its lifetime,
    /// `LimitExceeded` for early data above the ticket's allowance.
    pub fn new<R: Rng + ?Sized>(
        config: ClientConfig,
        rng: &mut R,
        now: Time,
    ) -> Result<Self, Error> {
        let ClientConfig {
            server_key,
            certificate,
            suites,
            ticket,
            early_data,
            conn_ids,
        } = config;
        let codes = suite_codes(&suites)?;
        let cached_cert = usable_certificate(certificate, &server_key, now)?;
        if let Some(t) = &ticket {
            ensure!(t.server_key_id == server_key.key_id(), Error::TicketInvalid);
            ensure!(now.unix_secs <= t.hint().expires_at, Error::TicketExpired);
        }

        // Fresh ephemeral keys for every handshake (forward secrecy; never reused).
        let eph_x = XSecret::generate(rng);
        let eph_x_pub = eph_x.public();
        let eph_ml = KemSecret::generate(rng);
        let mut random = [0u8; 32];
        rng.fill_bytes(&mut random);

        let (pdk_offer, pdk_shares) = match &cached_cert {
            Some(c) => {
                let kem = c.cert.static_kem_public();
                let es_x = eph_x.agree(&kem.x)?;
                let (ct, es_ml) = kem.ml.encapsulate(rng)?;
                (Some(PdkOffer { cert_id: c.id, ct }), Some((es_x, es_ml)))
            }
            None => (None, None),
        };

        #[allow(unused_mut)]
        let mut versions = vec![HANDSHAKE_VERSION];
        #[cfg(test)]
        if let Some(v) = OFFER_VERSIONS.with(|v| v.borrow().clone()) {
            versions = v;
        }
        let psk = ticket.as_ref().map(|t| t.secret.clone());
        let mut ch = ClientHello {
            versions: versions.clone(),
            suites: codes.clone(),
            random,
            x25519: eph_x_pub,
            mlkem_ek: eph_ml.public().as_bytes().to_vec(),
            pdk: pdk_offer,
            ticket: ticket.as_ref().map(|t| t.blob.clone()).unwrap_or_default(),
            early: Vec::new(),
            padding: 0,
        };
        let early_sent = match &ticket {
            Some(t) if !early_data.is_empty() => {
                add_early_data(&mut ch, t, &early_data)?;
                true
            }
            _ => false,
        };
        ch.padding = MIN_CLIENT_HELLO_LEN.saturating_sub(ch.encode().0.len());
        #[cfg(test)]
        if NO_PADDING.with(core::cell::Cell::get) {
            ch.padding = 0;
        }
        let (ch_bytes, _) = ch.encode();

        let mut transcript = Transcript::new();
        transcript.add(&ch_bytes);
        let mut client = Self {
            state: State::ExpectServerHello(Box::new(ExpectServerHello {
                server_key,
                cached_cert,
                versions,
                suites: codes,
                eph_x,
                eph_ml,
                pdk: pdk_shares,
                psk,
                early_sent,
                transcript,
                conn_ids,
            })),
            reasm: Reassembler::new(),
            flight: Flight::empty(),
            out: VecDeque::new(),
            token: Vec::new(),
            retried: false,
            echo: hello_echo(&ch_bytes),
            retry_echo: [0; ECHO_LEN],
            client_hello: ch_bytes,
            verified: None,
            used: 0,
            dropped: 0,
        };
        client.send_client_hello(now)?;
        Ok(client)
    }

    /// Queues the first flight (the ClientHello) and records the echo of its first
    /// fragment, which a Retry must carry.
    fn send_client_hello(&mut self, now: Time) -> Result<(), Error> {
        let dgs = pack(&[(0, &self.client_hello)], &self.token);
        // The first fragment as sent (a restart re-packs it unchanged: the token is
        // not part of the fragment budget).
        self.retry_echo = dgs
            .iter()
            .find_map(|d| Datagram::parse(d).ok()?.hello_head().map(hello_echo))
            .ok_or(Error::Misuse("ClientHello without a first fragment"))?;
        self.flight.set(dgs, now.instant, true, &mut self.out);
        Ok(())
    }

    /// Feeds one datagram from the server. `rng` is used in full (non-PDK) mode to
    /// encapsulate to the server's static key.
    ///
    /// A datagram that is dropped ([`Error::Damaged`], [`Error::Malformed`],
    /// [`Error::LimitExceeded`]) leaves the handshake as it was and is counted in
    /// [`Client::datagrams_dropped`]; only an error that ends the handshake is returned
    /// again by every later call.
    pub fn handle<R: Rng + ?Sized>(
        &mut self,
        now: Time,
        datagram: &[u8],
        rng: &mut R,
    ) -> Result<Progress, Error> {
        let failed = matches!(self.state, State::Failed(_));
        let r = self.handle_datagram(now, datagram, rng);
        if !failed {
            match (&r, &self.state) {
                (Err(_), State::Failed(_)) => {}
                (Err(_), _) => self.dropped = self.dropped.saturating_add(1),
                (Ok(_), _) => self.used = self.used.saturating_add(1),
            }
        }
        r
    }

    /// Server datagrams this handshake took (bound to its ClientHello and well formed).
    #[must_use]
    pub fn datagrams_used(&self) -> u32 {
        self.used
    }

    /// Server datagrams this handshake dropped: damaged (integrity tag), malformed, or
    /// not bound to its ClientHello.
    #[must_use]
    pub fn datagrams_dropped(&self) -> u32 {
        self.dropped
    }

    fn handle_datagram<R: Rng + ?Sized>(
        &mut self,
        now: Time,
        datagram: &[u8],
        rng: &mut R,
    ) -> Result<Progress, Error> {
        match &self.state {
            State::Failed(e) => return Err(*e),
            State::Complete(_) => return Ok(Progress::Complete),
            _ => {}
        }
        let dg = Datagram::parse(datagram)?;
        if dg.is_retry() {
            self.on_retry(&dg, now)?;
            return Ok(Progress::Pending);
        }
        // Bound to our ClientHello, or not for us: dropped before it reaches the
        // reassembler, so it can neither consume a message number nor plant bytes
        // ("first copy wins") in our ServerHello. Not secret; compared in constant time
        // anyway.
        ensure!(
            mac_eq(dg.token, &self.echo),
            Error::Malformed("datagram for another ClientHello")
        );
        // A Mismatch refusal comes whole in one fragment instead of the ServerHello. It
        // is checked before reassembly, so one that does not verify (forged, garbled,
        // for another ClientHello) is dropped like a datagram that does not parse and
        // the real ServerHello can still arrive. A verified one ends the handshake with
        // the typed error; the client never retries with other parameters by itself.
        if let State::ExpectServerHello(s) = &self.state
            && let Some(f) = dg.fragments.iter().find(|f| {
                f.msg_seq == 0
                    && f.offset == 0
                    && f.data.len() == f.total_len
                    && f.data.first() == Some(&MISMATCH)
            })
        {
            let e = check_mismatch(s, f.data, &self.client_hello)?;
            self.state = State::Failed(e);
            return Err(e);
        }
        let mut old = false;
        for f in &dg.fragments {
            if self.reasm.insert(f)? == Inserted::Old {
                old = true;
            }
        }
        if old {
            self.flight.resend(&mut self.out);
        }
        self.on_messages(now, rng)?;
        Ok(if self.is_complete() {
            Progress::Complete
        } else {
            Progress::Pending
        })
    }

    /// A Retry: bound to our ClientHello by the echo of its first fragment, or not for
    /// us (a forgery, or the answer to another ClientHello): dropped, so a forged token
    /// can never make us restart into a handshake the server refuses.
    fn on_retry(&mut self, dg: &Datagram<'_>, now: Time) -> Result<(), Error> {
        let (echo, token) = dg
            .retry_parts()
            .ok_or(Error::Malformed("Retry without a token"))?;
        ensure!(
            mac_eq(echo, &self.retry_echo),
            Error::Malformed("Retry for another ClientHello")
        );
        // At most one Retry, and only before the server has answered. A restart keeps
        // the ClientHello, so a later Retry (a duplicate, or the answer to a
        // retransmission of our first flight) is bound too, and ignored.
        if matches!(self.state, State::ExpectServerHello(_))
            && !self.retried
            && self.reasm.buffered() == 0
        {
            self.retried = true;
            self.token = token.to_vec();
            let dgs = pack(&[(0, &self.client_hello)], &self.token);
            self.flight.set(dgs, now.instant, true, &mut self.out);
        }
        Ok(())
    }

    /// Runs every reassembled message through the state machine and queues what it
    /// sends. An error ends the handshake.
    fn on_messages<R: Rng + ?Sized>(&mut self, now: Time, rng: &mut R) -> Result<(), Error> {
        while let Some(msg) = self.reasm.pop() {
            let state =
                core::mem::replace(&mut self.state, State::Failed(Error::Misuse("poisoned")));
            let mut fx = Effects::default();
            match step(state, &msg, now, rng, &mut fx) {
                Ok(next) => self.state = next,
                Err(e) => {
                    self.state = State::Failed(e);
                    return Err(e);
                }
            }
            // The server answered (the message verified, or the step would have failed).
            self.flight.acknowledge();
            if let Some(v) = fx.verified {
                self.verified = Some(v);
            }
            if !fx.send.is_empty() {
                let msgs: Vec<(u64, &[u8])> =
                    fx.send.iter().map(|(s, m)| (*s, m.as_slice())).collect();
                let dgs = pack(&msgs, &self.token);
                if let State::Complete(est) = &mut self.state {
                    est.pending_flight.clone_from(&dgs);
                }
                self.flight
                    .set(dgs, now.instant, fx.expects_answer, &mut self.out);
            }
        }
        Ok(())
    }

    /// Next datagram to send, if any.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    /// When [`Client::handle_timeout`] should be called next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::ExpectServerHello(_) | State::ExpectServerFinished(_) => self.flight.deadline(),
            _ => None,
        }
    }

    /// Retransmits the last flight if its timer expired; after
    /// [`crate::MAX_FLIGHT_RETRANSMITS`] unanswered retransmissions, `Err(Timeout)`, or
    /// `Err(UnusableAnswers)` if the server's datagrams did arrive but every one was
    /// dropped (damaged, or not for this ClientHello).
    pub fn handle_timeout(&mut self, now: Time) -> Result<(), Error> {
        match &self.state {
            State::Failed(e) => Err(*e),
            State::Complete(_) => Ok(()),
            _ => {
                let r = self
                    .flight
                    .on_timeout(now.instant, &mut self.out)
                    .map_err(|e| match e {
                        Error::Timeout if self.used == 0 && self.dropped > 0 => {
                            Error::UnusableAnswers {
                                dropped: self.dropped,
                            }
                        }
                        other => other,
                    });
                if let Err(e) = r {
                    self.state = State::Failed(e);
                }
                r
            }
        }
    }

    /// True once the server's Finished verified.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        matches!(self.state, State::Complete(_))
    }

    /// The server certificate verified during this handshake (full mode), to cache in
    /// [`ClientConfig::certificate`] for 1-RTT PDK handshakes later.
    #[must_use]
    pub fn verified_certificate(&self) -> Option<&VerifiedCertificate> {
        self.verified.as_ref()
    }

    /// What the ticket received in this handshake offers (after completion).
    #[must_use]
    pub fn resumption_hint(&self) -> Option<ResumptionHint> {
        match &self.state {
            State::Complete(e) => e.resumption_ticket.as_ref().map(ResumptionTicket::hint),
            _ => None,
        }
    }

    /// Hands the keys to the session. `Misuse` before completion; the failure if failed.
    pub fn into_established(self) -> Result<Established, Error> {
        match self.state {
            State::Complete(e) => Ok(*e),
            State::Failed(e) => Err(e),
            _ => Err(Error::Misuse("handshake not complete")),
        }
    }
}

/// Verifies a Mismatch refusal of our ClientHello and returns the typed error it stands
/// for. `Err(Malformed)` (the refusal is dropped, the state unchanged) if it does not
/// parse, is bound to another ClientHello, claims a MAC that does not verify, or
/// contradicts what we offered.
fn check_mismatch(s: &ExpectServerHello, msg: &[u8], client_hello: &[u8]) -> Result<Error, Error> {
    let (m, prefix_len) = Mismatch::decode(msg)?;
    ensure!(
        mac_eq(&m.ch_hash, &sha256(client_hello)),
        Error::Malformed("Mismatch for another ClientHello")
    );
    let authenticated = match (&m.mac, &s.pdk) {
        (Some(mac), Some((es_x, es_ml))) => {
            let key = mismatch_key(es_x, es_ml, &m.ch_hash);
            let expected = hmac(key.as_slice(), &[msg.get(..prefix_len).unwrap_or_default()]);
            // `Malformed`, like any dropped datagram: the state is unchanged.
            ensure!(
                mac_eq(&expected, mac),
                Error::Malformed("Mismatch MAC does not verify")
            );
            true
        }
        // Without a PDK offer we hold no key to check a MAC with: bound to the
        // ClientHello only.
        _ => false,
    };
    let common = |a: &[u8], b: &[u8]| a.iter().any(|x| b.contains(x));
    let version_ok = common(&s.versions, &m.versions);
    if m.reason == MISMATCH_VERSION {
        ensure!(
            !version_ok,
            Error::Malformed("Mismatch contradicts the offer")
        );
        Ok(Error::VersionMismatch {
            offered: CodeList::new(&s.versions),
            supported: CodeList::new(&m.versions),
            authenticated,
        })
    } else {
        ensure!(
            version_ok && !common(&s.suites, &m.suites),
            Error::Malformed("Mismatch contradicts the offer")
        );
        Ok(Error::SuiteMismatch {
            offered: CodeList::new(&s.suites),
            supported: CodeList::new(&m.suites),
            authenticated,
        })
    }
}

fn step<R: Rng + ?Sized>(
    state: State,
    msg: &[u8],
    now: Time,
    rng: &mut R,
    fx: &mut Effects,
) -> Result<State, Error> {
    match state {
        State::ExpectServerHello(s) => on_server_hello(*s, msg, now, rng, fx),
        State::ExpectServerFinished(s) => on_server_finished(*s, msg, now, fx),
        State::Complete(_) => Err(Error::UnexpectedMessage("after completion")),
        State::Failed(e) => Err(e),
    }
}

fn on_server_hello<R: Rng + ?Sized>(
    s: ExpectServerHello,
    msg: &[u8],
    now: Time,
    rng: &mut R,
    fx: &mut Effects,
) -> Result<State, Error> {
    let sh = ServerHello::decode(msg)?;
    let suite = check_choice(&s, &sh)?;
    let pdk = sh.flags & SH_PDK != 0;
    let resumed = sh.flags & SH_PSK != 0;
    let early_accepted = sh.flags & SH_EARLY != 0;
    ensure!(
        !pdk || s.pdk.is_some(),
        Error::UnexpectedMessage("PDK accepted but not offered")
    );
    ensure!(
        !resumed || s.psk.is_some(),
        Error::UnexpectedMessage("PSK accepted but not offered")
    );
    ensure!(
        !early_accepted || s.early_sent,
        Error::UnexpectedMessage("early data accepted but not sent")
    );

    let ee_x = s.eph_x.agree(&sh.x25519)?;
    let ee_ml: Secret = s.eph_ml.decapsulate(&sh.mlkem_ct)?;
    let es = early_secret(if resumed { s.psk.as_deref() } else { None });
    let mut transcript = s.transcript;
    transcript.add(msg);
    let server_key_id = s.server_key.key_id();

    let (es_x, es_ml, static_ct) = if pdk {
        let (es_x, es_ml) = s.pdk.ok_or(Error::UnexpectedMessage("PDK"))?;
        (es_x, es_ml, None)
    } else {
        let cached = s.cached_cert.as_ref();
        let (es_x, es_ml, ct) =
            full_mode_shares(cached, &s.server_key, &s.eph_x, &sh, now, rng, fx)?;
        (es_x, es_ml, Some(ct))
    };
    let shares = Shares {
        ee_x,
        ee_ml,
        es_x,
        es_ml,
    };
    let keys = HandshakeKeys::derive(master_secret(&es, &shares), &transcript.hash());
    let id0 = IssuedConnId::draw(rng, &*s.conn_ids);
    if let Some(ct) = static_ct {
        // Full KEMTLS: the ClientFinished carries the encapsulation to the static key.
        let cf = client_finished(&keys, &transcript, Some(ct), &id0)?;
        transcript.add(&cf);
        fx.send.push((1, cf));
        fx.expects_answer = true;
    }
    Ok(State::ExpectServerFinished(Box::new(
        ExpectServerFinished {
            keys,
            transcript,
            version: sh.version,
            suite,
            session_id: SessionId(sh.session_id),
            pdk,
            resumed,
            early_accepted,
            server_key_id,
            id0,
        },
    )))
}

/// The ClientFinished (with our masked id0), MACed over the transcript so far.
fn client_finished(
    keys: &HandshakeKeys,
    transcript: &Transcript,
    static_ct: Option<Vec<u8>>,
    id0: &IssuedConnId,
) -> Result<Vec<u8>, Error> {
    let id0 = id0.masked(&keys.ms, LABEL_ID0_C)?;
    let prefix = ClientFinished::encode_prefix(static_ct.as_deref(), &id0);
    let mac = hmac(
        keys.fk_c.as_slice(),
        &[&transcript.hash_with_prefix(&prefix)],
    );
    Ok(ClientFinished {
        static_ct,
        id0,
        mac,
    }
    .encode())
}

/// The server must choose among our offers (tampering is also caught by the MACs).
/// Returns the chosen suite.
fn check_choice(s: &ExpectServerHello, sh: &ServerHello) -> Result<Suite, Error> {
    ensure!(
        s.versions.contains(&sh.version),
        Error::VersionMismatch {
            offered: CodeList::new(&s.versions),
            supported: CodeList::new(&[sh.version]),
            authenticated: false,
        }
    );
    let suite_err = Error::SuiteMismatch {
        offered: CodeList::new(&s.suites),
        supported: CodeList::new(&[sh.suite]),
        authenticated: false,
    };
    ensure!(s.suites.contains(&sh.suite), suite_err);
    Suite::from_code(sh.suite).ok_or(suite_err)
}

/// Full KEMTLS: verifies the server's certificate (or reuses the cached verification),
/// then encapsulates to its static key. Returns the ephemeral-static shares and the
/// ciphertext for the ClientFinished.
fn full_mode_shares<R: Rng + ?Sized>(
    cached: Option<&VerifiedCertificate>,
    server_key: &HybridVerifyingKey,
    eph_x: &XSecret,
    sh: &ServerHello,
    now: Time,
    rng: &mut R,
    fx: &mut Effects,
) -> Result<(Secret, Secret, Vec<u8>), Error> {
    let verified = match cached {
        Some(c) if sha256(&sh.certificate) == c.id => c.clone(),
        _ => {
            let cert = ServerCertificate::from_bytes(&sh.certificate)?;
            let v = cert.verify(server_key, now.unix_secs)?;
            fx.verified = Some(v.clone());
            v
        }
    };
    let kem = verified.cert.static_kem_public();
    let es_x = eph_x.agree(&kem.x)?;
    let (ct, es_ml) = kem.ml.encapsulate(rng)?;
    Ok((es_x, es_ml, ct))
}

fn on_server_finished(
    s: ExpectServerFinished,
    msg: &[u8],
    now: Time,
    fx: &mut Effects,
) -> Result<State, Error> {
    let (sf, prefix_len) = ServerFinished::decode(msg)?;
    let mut transcript = s.transcript;
    let expected = hmac(
        s.keys.fk_s.as_slice(),
        &[&transcript.hash_with_prefix(msg.get(..prefix_len).unwrap_or_default())],
    );
    // Key confirmation: only the holder of the static KEM secret (and the ephemeral
    // one) derives fk_s (I1: nothing is established without it).
    ensure!(mac_eq(&expected, &sf.mac), Error::KeyConfirmation);
    let server_id0 = IssuedConnId::unmask(&s.keys.ms, LABEL_ID0_S, &sf.id0)?;
    transcript.add(msg);
    if s.pdk {
        let cf = client_finished(&s.keys, &transcript, None, &s.id0)?;
        transcript.add(&cf);
        fx.send.push((1, cf));
        fx.expects_answer = false;
    }
    let (c2s, s2c) = s.keys.traffic(&transcript.hash());
    let resumption_ticket = (!sf.ticket.is_empty()).then(|| ResumptionTicket {
        blob: sf.ticket.clone(),
        secret: s.keys.res.clone(),
        server_key_id: s.server_key_id,
        suite: s.suite,
        received_unix: now.unix_secs,
        lifetime: sf.ticket_lifetime,
        max_early_data: sf.max_early_data,
    });
    Ok(State::Complete(Box::new(Established {
        version: s.version,
        suite: s.suite,
        session_id: s.session_id,
        client_id0: s.id0,
        server_id0,
        c2s: TrafficSecret::from_bytes(*c2s),
        s2c: TrafficSecret::from_bytes(*s2c),
        resumption_ticket,
        resumed: s.resumed,
        pdk: s.pdk,
        early_data_accepted: s.early_accepted,
        early_data: None,
        pending_flight: Vec::new(),
    })))
}
