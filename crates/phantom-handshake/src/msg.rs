//! Handshake message layouts (see docs/PROTOCOL.md, `handshake` section).
//!
//! Every message is `type (u8) ‖ body`; its length is given by the fragments that carry
//! it. Fixed-size fields are raw bytes, variable ones are prefixed by a u8 or u16 length.

use phantom_wire::Reader;

use crate::error::{Error, ensure};
use crate::keys::{ML_KEM_768_CIPHERTEXT_LEN, ML_KEM_768_PUBLIC_LEN, ServerCertificate};

/// Message type: ClientHello.
pub(crate) const CLIENT_HELLO: u8 = 1;
/// Message type: ServerHello.
pub(crate) const SERVER_HELLO: u8 = 2;
/// Message type: ClientFinished.
pub(crate) const CLIENT_FINISHED: u8 = 3;
/// Message type: ServerFinished.
pub(crate) const SERVER_FINISHED: u8 = 4;
/// Message type: Mismatch (the server refuses a ClientHello: no common version or suite).
pub(crate) const MISMATCH: u8 = 5;

/// Mismatch reason: no common protocol version.
pub(crate) const MISMATCH_VERSION: u8 = 1;
/// Mismatch reason: no common AEAD suite.
pub(crate) const MISMATCH_SUITE: u8 = 2;

/// Most versions or suites a ClientHello may list.
pub(crate) const MAX_OFFERS: usize = 16;
/// Largest ticket blob.
pub(crate) const MAX_TICKET_LEN: usize = 256;
/// Largest sealed early-data blob (plaintext limit + AEAD tag).
pub(crate) const MAX_SEALED_EARLY: usize = crate::MAX_EARLY_DATA + 16;
/// Largest ClientHello padding.
pub(crate) const MAX_PADDING: usize = 4096;

/// ServerHello flag: the server decapsulated the client's PDK ciphertext.
pub(crate) const SH_PDK: u8 = 0x01;
/// ServerHello flag: the ticket's resumption secret is mixed in.
pub(crate) const SH_PSK: u8 = 0x02;
/// ServerHello flag: the early data was accepted.
pub(crate) const SH_EARLY: u8 = 0x04;
const SH_KNOWN: u8 = SH_PDK | SH_PSK | SH_EARLY;

/// A client's pre-distributed-key offer: it encapsulated to this certificate's static key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PdkOffer {
    pub(crate) cert_id: [u8; 32],
    pub(crate) ct: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ClientHello {
    pub(crate) versions: Vec<u8>,
    pub(crate) suites: Vec<u8>,
    pub(crate) random: [u8; 32],
    pub(crate) x25519: [u8; 32],
    pub(crate) mlkem_ek: Vec<u8>,
    pub(crate) pdk: Option<PdkOffer>,
    pub(crate) ticket: Vec<u8>,
    pub(crate) early: Vec<u8>,
    pub(crate) padding: usize,
}

impl ClientHello {
    /// Encodes the message; returns it with the offset where the early-data field begins
    /// (the prefix before it is the early data's associated data).
    pub(crate) fn encode(&self) -> (Vec<u8>, usize) {
        let mut v =
            Vec::with_capacity(1400 + ML_KEM_768_CIPHERTEXT_LEN + self.padding + self.early.len());
        v.push(CLIENT_HELLO);
        v.push(self.versions.len() as u8);
        v.extend_from_slice(&self.versions);
        v.push(self.suites.len() as u8);
        v.extend_from_slice(&self.suites);
        v.extend_from_slice(&self.random);
        v.extend_from_slice(&self.x25519);
        v.extend_from_slice(&self.mlkem_ek);
        match &self.pdk {
            None => v.push(0),
            Some(p) => {
                v.push(1);
                v.extend_from_slice(&p.cert_id);
                v.extend_from_slice(&p.ct);
            }
        }
        v.extend_from_slice(&(self.ticket.len() as u16).to_be_bytes());
        v.extend_from_slice(&self.ticket);
        let early_at = v.len();
        v.extend_from_slice(&(self.early.len() as u16).to_be_bytes());
        v.extend_from_slice(&self.early);
        v.extend_from_slice(&(self.padding as u16).to_be_bytes());
        v.resize(v.len() + self.padding, 0);
        (v, early_at)
    }

    /// Parses a whole message (type byte included); also returns the early-data offset.
    pub(crate) fn decode(msg: &[u8]) -> Result<(Self, usize), Error> {
        let total = msg.len();
        let mut r = Reader::new(msg);
        ensure!(
            r.u8()? == CLIENT_HELLO,
            Error::UnexpectedMessage("expected ClientHello")
        );
        let versions = list(&mut r)?;
        let suites = list(&mut r)?;
        let random = *r.array::<32>()?;
        let x25519 = *r.array::<32>()?;
        let mlkem_ek = r.bytes(ML_KEM_768_PUBLIC_LEN)?.to_vec();
        let pdk = match r.u8()? {
            0 => None,
            1 => Some(PdkOffer {
                cert_id: *r.array::<32>()?,
                ct: r.bytes(ML_KEM_768_CIPHERTEXT_LEN)?.to_vec(),
            }),
            _ => return Err(Error::Malformed("PDK flag")),
        };
        let ticket = bytes16(&mut r, MAX_TICKET_LEN)?.to_vec();
        let early_at = total - r.remaining();
        let early = bytes16(&mut r, MAX_SEALED_EARLY)?.to_vec();
        ensure!(
            early.is_empty() || !ticket.is_empty(),
            Error::Malformed("early data without ticket")
        );
        let pad = bytes16(&mut r, MAX_PADDING)?;
        ensure!(
            pad.iter().all(|b| *b == 0),
            Error::Malformed("non-zero padding")
        );
        r.finish()?;
        Ok((
            Self {
                versions,
                suites,
                random,
                x25519,
                mlkem_ek,
                pdk,
                ticket,
                early,
                padding: pad.len(),
            },
            early_at,
        ))
    }
}

fn list(r: &mut Reader<'_>) -> Result<Vec<u8>, Error> {
    let n = usize::from(r.u8()?);
    ensure!(
        (1..=MAX_OFFERS).contains(&n),
        Error::Malformed("offer list length")
    );
    Ok(r.bytes(n)?.to_vec())
}

fn bytes16<'a>(r: &mut Reader<'a>, max: usize) -> Result<&'a [u8], Error> {
    let n = usize::from(r.u16()?);
    ensure!(n <= max, Error::Malformed("field too long"));
    Ok(r.bytes(n)?)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServerHello {
    pub(crate) version: u8,
    pub(crate) suite: u8,
    pub(crate) session_id: [u8; 32],
    pub(crate) random: [u8; 32],
    pub(crate) x25519: [u8; 32],
    pub(crate) mlkem_ct: Vec<u8>,
    pub(crate) flags: u8,
    pub(crate) certificate: Vec<u8>,
}

impl ServerHello {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(1300 + self.certificate.len());
        v.push(SERVER_HELLO);
        v.push(self.version);
        v.push(self.suite);
        v.extend_from_slice(&self.session_id);
        v.extend_from_slice(&self.random);
        v.extend_from_slice(&self.x25519);
        v.extend_from_slice(&self.mlkem_ct);
        v.push(self.flags);
        v.extend_from_slice(&(self.certificate.len() as u16).to_be_bytes());
        v.extend_from_slice(&self.certificate);
        v
    }

    pub(crate) fn decode(msg: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(msg);
        ensure!(
            r.u8()? == SERVER_HELLO,
            Error::UnexpectedMessage("expected ServerHello")
        );
        let version = r.u8()?;
        let suite = r.u8()?;
        let session_id = *r.array::<32>()?;
        let random = *r.array::<32>()?;
        let x25519 = *r.array::<32>()?;
        let mlkem_ct = r.bytes(ML_KEM_768_CIPHERTEXT_LEN)?.to_vec();
        let flags = r.u8()?;
        ensure!(
            flags & !SH_KNOWN == 0,
            Error::Malformed("ServerHello flags")
        );
        ensure!(
            flags & SH_EARLY == 0 || flags & SH_PSK != 0,
            Error::Malformed("early without PSK")
        );
        let certificate = bytes16(&mut r, ServerCertificate::LEN)?.to_vec();
        let pdk = flags & SH_PDK != 0;
        ensure!(
            certificate.len() == if pdk { 0 } else { ServerCertificate::LEN },
            Error::Malformed("certificate presence")
        );
        r.finish()?;
        Ok(Self {
            version,
            suite,
            session_id,
            random,
            x25519,
            mlkem_ct,
            flags,
            certificate,
        })
    }
}

/// ClientFinished: in full (non-PDK) mode it carries the ciphertext to the server's
/// static ML-KEM key; then the client's masked first connection id; always ends with
/// the client's Finished MAC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ClientFinished {
    pub(crate) static_ct: Option<Vec<u8>>,
    /// `u8 len ‖ masked (id ‖ reset token)` (see `conn_id`).
    pub(crate) id0: Vec<u8>,
    pub(crate) mac: [u8; 32],
}

impl ClientFinished {
    /// The encoding without the trailing MAC (what the MAC covers).
    pub(crate) fn encode_prefix(static_ct: Option<&[u8]>, id0: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(2 + ML_KEM_768_CIPHERTEXT_LEN + id0.len() + 32);
        v.push(CLIENT_FINISHED);
        match static_ct {
            None => v.push(0),
            Some(ct) => {
                v.push(1);
                v.extend_from_slice(ct);
            }
        }
        v.extend_from_slice(id0);
        v
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut v = Self::encode_prefix(self.static_ct.as_deref(), &self.id0);
        v.extend_from_slice(&self.mac);
        v
    }

    /// Parses; returns the message and the length of its MAC-covered prefix.
    pub(crate) fn decode(msg: &[u8]) -> Result<(Self, usize), Error> {
        let mut r = Reader::new(msg);
        ensure!(
            r.u8()? == CLIENT_FINISHED,
            Error::UnexpectedMessage("expected ClientFinished")
        );
        let static_ct = match r.u8()? {
            0 => None,
            1 => Some(r.bytes(ML_KEM_768_CIPHERTEXT_LEN)?.to_vec()),
            _ => return Err(Error::Malformed("ClientFinished flag")),
        };
        let id0 = crate::conn_id::read_masked(&mut r)?.to_vec();
        let prefix = msg.len() - r.remaining();
        let mac = *r.array::<32>()?;
        r.finish()?;
        Ok((
            Self {
                static_ct,
                id0,
                mac,
            },
            prefix,
        ))
    }
}

/// ServerFinished: a resumption ticket (possibly empty), the server's masked first
/// connection id and the server's Finished MAC, which covers both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServerFinished {
    pub(crate) ticket_lifetime: u32,
    pub(crate) max_early_data: u32,
    pub(crate) ticket: Vec<u8>,
    /// `u8 len ‖ masked (id ‖ reset token)` (see `conn_id`).
    pub(crate) id0: Vec<u8>,
    pub(crate) mac: [u8; 32],
}

impl ServerFinished {
    pub(crate) fn encode_prefix(
        ticket_lifetime: u32,
        max_early_data: u32,
        ticket: &[u8],
        id0: &[u8],
    ) -> Vec<u8> {
        let mut v = Vec::with_capacity(11 + ticket.len() + id0.len() + 32);
        v.push(SERVER_FINISHED);
        v.extend_from_slice(&ticket_lifetime.to_be_bytes());
        v.extend_from_slice(&max_early_data.to_be_bytes());
        v.extend_from_slice(&(ticket.len() as u16).to_be_bytes());
        v.extend_from_slice(ticket);
        v.extend_from_slice(id0);
        v
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut v = Self::encode_prefix(
            self.ticket_lifetime,
            self.max_early_data,
            &self.ticket,
            &self.id0,
        );
        v.extend_from_slice(&self.mac);
        v
    }

    pub(crate) fn decode(msg: &[u8]) -> Result<(Self, usize), Error> {
        let mut r = Reader::new(msg);
        ensure!(
            r.u8()? == SERVER_FINISHED,
            Error::UnexpectedMessage("expected ServerFinished")
        );
        let ticket_lifetime = r.u32()?;
        let max_early_data = r.u32()?;
        let ticket = bytes16(&mut r, MAX_TICKET_LEN)?.to_vec();
        let id0 = crate::conn_id::read_masked(&mut r)?.to_vec();
        let prefix = msg.len() - r.remaining();
        let mac = *r.array::<32>()?;
        r.finish()?;
        Ok((
            Self {
                ticket_lifetime,
                max_early_data,
                ticket,
                id0,
                mac,
            },
            prefix,
        ))
    }
}

/// Mismatch: the server's explicit refusal of a ClientHello, sent as message 0 instead of
/// a ServerHello. Bound to the ClientHello by its hash; MACed under a key from the
/// ephemeral-static shares when the client offered PDK for the current certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Mismatch {
    pub(crate) reason: u8,
    pub(crate) versions: Vec<u8>,
    pub(crate) suites: Vec<u8>,
    pub(crate) ch_hash: [u8; 32],
    pub(crate) mac: Option<[u8; 32]>,
}

impl Mismatch {
    /// The encoding up to (without) the MAC: what the MAC covers.
    pub(crate) fn encode_prefix(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(4 + self.versions.len() + self.suites.len() + 65);
        v.push(MISMATCH);
        v.push(self.reason);
        v.push(self.versions.len() as u8);
        v.extend_from_slice(&self.versions);
        v.push(self.suites.len() as u8);
        v.extend_from_slice(&self.suites);
        v.extend_from_slice(&self.ch_hash);
        v.push(u8::from(self.mac.is_some()));
        v
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut v = self.encode_prefix();
        if let Some(mac) = &self.mac {
            v.extend_from_slice(mac);
        }
        v
    }

    /// Parses; returns the message and the length of its MAC-covered prefix.
    pub(crate) fn decode(msg: &[u8]) -> Result<(Self, usize), Error> {
        let mut r = Reader::new(msg);
        ensure!(
            r.u8()? == MISMATCH,
            Error::UnexpectedMessage("expected Mismatch")
        );
        let reason = r.u8()?;
        ensure!(
            reason == MISMATCH_VERSION || reason == MISMATCH_SUITE,
            Error::Malformed("mismatch reason")
        );
        let versions = list(&mut r)?;
        let suites = list(&mut r)?;
        let ch_hash = *r.array::<32>()?;
        let auth = r.u8()?;
        let prefix = msg.len() - r.remaining();
        let mac = match auth {
            0 => None,
            1 => Some(*r.array::<32>()?),
            _ => return Err(Error::Malformed("mismatch auth flag")),
        };
        r.finish()?;
        Ok((
            Self {
                reason,
                versions,
                suites,
                ch_hash,
                mac,
            },
            prefix,
        ))
    }
}

/// Parses any handshake message by its type byte (for the fuzzer).
pub(crate) fn decode_any(msg: &[u8]) -> Result<u8, Error> {
    match msg.first() {
        Some(&CLIENT_HELLO) => ClientHello::decode(msg).map(|_| CLIENT_HELLO),
        Some(&SERVER_HELLO) => ServerHello::decode(msg).map(|_| SERVER_HELLO),
        Some(&CLIENT_FINISHED) => ClientFinished::decode(msg).map(|_| CLIENT_FINISHED),
        Some(&SERVER_FINISHED) => ServerFinished::decode(msg).map(|_| SERVER_FINISHED),
        Some(&MISMATCH) => Mismatch::decode(msg).map(|_| MISMATCH),
        _ => Err(Error::Malformed("message type")),
    }
}
