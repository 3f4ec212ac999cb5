//! Handshake datagrams, fragments, reassembly and retransmission.
//!
//! A handshake datagram is `0xc3 (phantom_wire::HANDSHAKE_MARKER) ‖ token_len (varint) ‖
//! token ‖ fragment* ‖ tag`; the marker lets a receiver tell it from a protected packet
//! by its first byte. The tag ([`INTEGRITY_TAG_LEN`] bytes) is the first bytes of
//! HMAC-SHA256 under a public key (HKDF-Extract of the label `phantom handshake
//! integrity` and the version byte) over everything before it: anyone can compute it,
//! so it proves nothing about the sender, but a datagram damaged on the way fails it
//! and is dropped before any of its bytes are used (like QUIC's Initial protection,
//! RFC 9001 §5.2). A fragment is laid
//! out like phantom-wire's HANDSHAKE frame: `0x0c ‖ msg_seq (varint) ‖ total_len (varint)
//! ‖ offset (varint) ‖ len (varint) ‖ data`. Client→server datagrams echo the retry token
//! (empty before a Retry); a server→client datagram with a token field and no fragment is
//! a Retry, whose token field is `head echo (ECHO_LEN) ‖ token`: the head echo is the
//! echo of the ClientHello's first fragment (offset 0, which the server has when it
//! answers the first datagram, before the rest of the ClientHello). Every other server
//! datagram carries in the token field the [`ECHO_LEN`]-byte echo of the ClientHello it
//! answers (the first bytes of its SHA-256). The client drops a Retry or a datagram that
//! answers another ClientHello (or is forged) before it changes anything.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use phantom_wire::{Reader, VarInt};

use crate::error::{Error, ensure};

/// Frame type byte of a fragment (phantom-wire's HANDSHAKE frame type).
pub const FRAGMENT_TYPE: u8 = 0x0c;
/// Largest fragment payload.
pub const MAX_FRAGMENT_DATA: usize = 1200;
/// Largest handshake message (a fragment's `total_len` above this is refused).
pub const MAX_MESSAGE_LEN: usize = 16 * 1024;
/// Hard cap on the bytes buffered for reassembly by one handshake (one direction).
pub const REASSEMBLY_CAP: usize = 16 * 1024;
/// Largest retry token accepted in a datagram.
pub const MAX_TOKEN_LEN: usize = 64;
/// Length of the ClientHello echo that every server datagram other than a Retry
/// carries in its token field: the first bytes of SHA-256(ClientHello).
pub const ECHO_LEN: usize = 16;

/// The echo of a ClientHello message (see [`ECHO_LEN`]); applied to the ClientHello's
/// first fragment, the head echo a Retry carries.
pub(crate) fn hello_echo(client_hello: &[u8]) -> [u8; ECHO_LEN] {
    let h = crate::schedule::sha256(client_hello);
    let mut e = [0u8; ECHO_LEN];
    for (d, s) in e.iter_mut().zip(h) {
        *d = s;
    }
    e
}

/// Length of the integrity tag that ends every handshake datagram.
pub const INTEGRITY_TAG_LEN: usize = 16;

/// Label of the public integrity key (extracted with the version byte).
const LABEL_INTEGRITY: &[u8] = b"phantom handshake integrity";

/// The integrity tag of a datagram's bytes (everything before the tag).
fn integrity_tag(body: &[u8]) -> [u8; INTEGRITY_TAG_LEN] {
    let key = crate::schedule::extract(LABEL_INTEGRITY, &[crate::HANDSHAKE_VERSION]);
    let mac = crate::schedule::hmac(key.as_slice(), &[body]);
    let mut t = [0u8; INTEGRITY_TAG_LEN];
    for (d, s) in t.iter_mut().zip(mac) {
        *d = s;
    }
    t
}

/// Appends the integrity tag to a datagram built without one.
pub(crate) fn seal(datagram: &mut Vec<u8>) {
    let tag = integrity_tag(datagram);
    datagram.extend_from_slice(&tag);
}

/// Most fragments one datagram may carry.
pub const MAX_FRAGMENTS_PER_DATAGRAM: usize = 16;
/// Budget for fragments in one datagram built here (excluding the token).
pub const DATAGRAM_BUDGET: usize = MAX_FRAGMENT_DATA + 16;
/// Highest message sequence number: a handshake has at most two messages per direction.
pub(crate) const MAX_MSG_SEQ: u64 = 1;

/// One fragment of a handshake message, borrowed from a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment<'a> {
    /// Message sequence number within its direction (0, 1).
    pub msg_seq: u64,
    /// Length of the whole message.
    pub total_len: usize,
    /// Where this fragment's data starts in the message.
    pub offset: usize,
    /// The fragment's bytes.
    pub data: &'a [u8],
}

impl<'a> Fragment<'a> {
    /// Parses one fragment (its type byte included). Checks every bound: sequence,
    /// total length, payload size and that the fragment lies inside its message.
    pub fn decode(r: &mut Reader<'a>) -> Result<Self, Error> {
        ensure!(r.u8()? == FRAGMENT_TYPE, Error::Malformed("fragment type"));
        let msg_seq = r.varint()?.into_inner();
        ensure!(msg_seq <= MAX_MSG_SEQ, Error::Malformed("message sequence"));
        let total_len = r
            .varint_len(MAX_MESSAGE_LEN)
            .map_err(|_| Error::LimitExceeded("message length"))?;
        ensure!(total_len > 0, Error::Malformed("empty message"));
        let offset = r.varint_len(MAX_MESSAGE_LEN)?;
        let len = r
            .varint_len(MAX_FRAGMENT_DATA)
            .map_err(|_| Error::LimitExceeded("fragment length"))?;
        ensure!(len > 0, Error::Malformed("empty fragment"));
        ensure!(
            offset.checked_add(len).is_some_and(|end| end <= total_len),
            Error::Malformed("fragment outside message")
        );
        let data = r.bytes(len)?;
        Ok(Self {
            msg_seq,
            total_len,
            offset,
            data,
        })
    }

    /// Bytes [`Fragment::encode`] writes.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        1 + vlen(self.msg_seq as usize)
            + vlen(self.total_len)
            + vlen(self.offset)
            + vlen(self.data.len())
            + self.data.len()
    }

    /// Appends the encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(FRAGMENT_TYPE);
        put_varint(out, self.msg_seq as usize);
        put_varint(out, self.total_len);
        put_varint(out, self.offset);
        put_varint(out, self.data.len());
        out.extend_from_slice(self.data);
    }
}

fn vlen(v: usize) -> usize {
    VarInt::try_from(v).map_or(8, VarInt::encoded_len)
}

fn put_varint(out: &mut Vec<u8>, v: usize) {
    let x = v as u64;
    match vlen(v) {
        1 => out.push(x as u8),
        2 => out.extend_from_slice(&(0x4000 | x as u16).to_be_bytes()),
        4 => out.extend_from_slice(&(0x8000_0000 | x as u32).to_be_bytes()),
        _ => out.extend_from_slice(&(0xc000_0000_0000_0000 | x).to_be_bytes()),
    }
}

/// A parsed handshake datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// The retry token (empty if none).
    pub token: &'a [u8],
    /// The fragments, in datagram order.
    pub fragments: Vec<Fragment<'a>>,
}

impl<'a> Datagram<'a> {
    /// Parses a whole datagram: checks its integrity tag first ([`Error::Damaged`] if it
    /// does not match), then rejects trailing garbage and more than
    /// [`MAX_FRAGMENTS_PER_DATAGRAM`] fragments.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        ensure!(
            bytes.first() == Some(&phantom_wire::HANDSHAKE_MARKER),
            Error::Malformed("not a handshake datagram")
        );
        let split = bytes
            .len()
            .checked_sub(INTEGRITY_TAG_LEN)
            .ok_or(Error::Malformed("truncated"))?;
        let (body, tag) = bytes.split_at(split);
        // Public key, no secret involved: a plain compare would do; constant time anyway.
        ensure!(
            crate::schedule::mac_eq(&integrity_tag(body), tag),
            Error::Damaged
        );
        let mut r = Reader::new(body);
        ensure!(
            r.u8()? == phantom_wire::HANDSHAKE_MARKER,
            Error::Malformed("not a handshake datagram")
        );
        let token_len = r
            .varint_len(MAX_TOKEN_LEN)
            .map_err(|_| Error::Malformed("token length"))?;
        let token = r.bytes(token_len)?;
        let mut fragments = Vec::new();
        while !r.is_empty() {
            ensure!(
                fragments.len() < MAX_FRAGMENTS_PER_DATAGRAM,
                Error::LimitExceeded("fragments per datagram")
            );
            fragments.push(Fragment::decode(&mut r)?);
        }
        ensure!(
            !fragments.is_empty() || !token.is_empty(),
            Error::Malformed("empty datagram")
        );
        Ok(Self { token, fragments })
    }

    /// True if this is a Retry (a token field and no fragment).
    #[must_use]
    pub fn is_retry(&self) -> bool {
        self.fragments.is_empty() && !self.token.is_empty()
    }

    /// A Retry's two parts: the head echo (the echo of the first fragment of the
    /// ClientHello it answers, [`ECHO_LEN`] bytes) and the retry token after it. `None`
    /// if this is not a Retry or its token field holds no token after the echo.
    #[must_use]
    pub fn retry_parts(&self) -> Option<(&'a [u8], &'a [u8])> {
        if !self.is_retry() || self.token.len() <= ECHO_LEN {
            return None;
        }
        Some(self.token.split_at(ECHO_LEN))
    }

    /// The data of the datagram's ClientHello fragment at offset 0, if it has one.
    #[must_use]
    pub fn hello_head(&self) -> Option<&'a [u8]> {
        self.fragments
            .iter()
            .find(|f| f.msg_seq == 0 && f.offset == 0)
            .map(|f| f.data)
    }
}

/// Builds a Retry datagram: `head_echo ‖ token` in the token field.
pub(crate) fn retry_datagram(head_echo: &[u8; ECHO_LEN], token: &[u8]) -> Vec<u8> {
    let field = ECHO_LEN + token.len();
    let mut v = Vec::with_capacity(2 + field + INTEGRITY_TAG_LEN);
    v.push(phantom_wire::HANDSHAKE_MARKER);
    put_varint(&mut v, field);
    v.extend_from_slice(head_echo);
    v.extend_from_slice(token);
    seal(&mut v);
    v
}

/// Splits messages `(seq, bytes)` into fragments and packs them greedily into datagrams.
pub(crate) fn pack(messages: &[(u64, &[u8])], token: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    let mut cur_frag = 0usize; // fragment bytes in `cur`
    let new_dg = |v: &mut Vec<u8>| {
        v.clear();
        v.push(phantom_wire::HANDSHAKE_MARKER);
        put_varint(v, token.len());
        v.extend_from_slice(token);
    };
    new_dg(&mut cur);
    for &(seq, msg) in messages {
        let mut offset = 0;
        while offset < msg.len() {
            let header = 1 + 1 + vlen(msg.len()) + vlen(offset) + 2;
            let room = DATAGRAM_BUDGET.saturating_sub(cur_frag + header);
            if room < 64 && cur_frag > 0 {
                seal(&mut cur);
                out.push(core::mem::take(&mut cur));
                new_dg(&mut cur);
                cur_frag = 0;
                continue;
            }
            let take = room.min(MAX_FRAGMENT_DATA).min(msg.len() - offset);
            let frag = Fragment {
                msg_seq: seq,
                total_len: msg.len(),
                offset,
                data: msg.get(offset..offset + take).unwrap_or_default(),
            };
            cur_frag += frag.encoded_len();
            frag.encode(&mut cur);
            offset += take;
        }
    }
    if cur_frag > 0 {
        seal(&mut cur);
        out.push(cur);
    }
    out
}

#[cfg_attr(test, derive(Clone))]
struct Partial {
    seq: u64,
    buf: Vec<u8>,
    bitmap: Vec<u64>,
    have: usize,
}

impl Partial {
    /// Copies the bytes of `data` (at `offset`) that are not yet held; the first copy of
    /// a byte wins. Works a bitmap word (64 bytes) at a time: runs of new bytes are
    /// copied whole, only words that overlap earlier fragments go byte by byte.
    fn insert(&mut self, offset: usize, data: &[u8]) {
        let end = offset.saturating_add(data.len()).min(self.buf.len());
        let mut pos = offset;
        while pos < end {
            let (word, bit) = (pos / 64, pos % 64);
            let n = (64 - bit).min(end - pos);
            let mask = if n == 64 {
                u64::MAX
            } else {
                ((1u64 << n) - 1) << bit
            };
            let Some(w) = self.bitmap.get_mut(word) else {
                break;
            };
            let new = mask & !*w;
            let src = data.get(pos - offset..pos - offset + n).unwrap_or_default();
            let dst = self.buf.get_mut(pos..pos + n).unwrap_or_default();
            if new == mask && src.len() == n && dst.len() == n {
                dst.copy_from_slice(src);
            } else if new != 0 {
                for (i, (d, s)) in dst.iter_mut().zip(src).enumerate() {
                    if new & (1u64 << (bit + i)) != 0 {
                        *d = *s;
                    }
                }
            }
            *w |= new;
            self.have += new.count_ones() as usize;
            pos += n;
        }
    }

    fn complete(&self) -> bool {
        self.have == self.buf.len()
    }

    /// True if `data` (at `offset`) disagrees with a byte already held.
    fn conflicts(&self, offset: usize, data: &[u8]) -> bool {
        data.iter().enumerate().any(|(i, b)| {
            let pos = offset.saturating_add(i);
            let held = self
                .bitmap
                .get(pos / 64)
                .is_some_and(|w| w & (1u64 << (pos % 64)) != 0);
            held && self.buf.get(pos).is_some_and(|x| x != b)
        })
    }

    /// Forgets every byte held.
    fn reset(&mut self) {
        self.bitmap.fill(0);
        self.have = 0;
    }
}

/// What inserting a fragment did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inserted {
    /// New or partly new bytes of a pending message.
    Buffered,
    /// The fragment belongs to a message already delivered (the peer retransmitted:
    /// our answer may have been lost).
    Old,
}

/// Reassembles one direction's messages in order, within [`REASSEMBLY_CAP`] bytes.
#[cfg_attr(test, derive(Clone))]
pub(crate) struct Reassembler {
    next: u64,
    partial: Vec<Partial>,
    buffered: usize,
}

impl Reassembler {
    pub(crate) fn new() -> Self {
        Self {
            next: 0,
            partial: Vec::new(),
            buffered: 0,
        }
    }

    /// Inserts a fragment. Never allocates more than the cap.
    ///
    /// Nothing buffered is authenticated, so a spoofed fragment must never make the
    /// real message wrong: a fragment that holds the whole message replaces whatever
    /// is buffered for it; one whose bytes disagree with bytes already held resets the
    /// partial message to itself (the peer's retransmission brings the rest again); one
    /// claiming another total length replaces the partial message too.
    pub(crate) fn insert(&mut self, f: &Fragment<'_>) -> Result<Inserted, Error> {
        if f.msg_seq < self.next {
            return Ok(Inserted::Old);
        }
        let whole = f.offset == 0 && f.data.len() == f.total_len;
        if let Some(i) = self
            .partial
            .iter()
            .position(|p| p.seq == f.msg_seq && (p.buf.len() != f.total_len || whole))
        {
            // Another length for a message not yet complete: nothing of it is
            // authenticated, so the partial gives way to the newer fragment (else a
            // spoofed fragment would block the real message for good; a real one
            // lost this way comes back with the peer's retransmission).
            let old = self.partial.swap_remove(i);
            self.buffered -= old.buf.len();
        }
        let idx = match self.partial.iter().position(|p| p.seq == f.msg_seq) {
            Some(i) => i,
            None => {
                let new_total = self
                    .buffered
                    .checked_add(f.total_len)
                    .filter(|t| *t <= REASSEMBLY_CAP)
                    .ok_or(Error::LimitExceeded("reassembly memory"))?;
                self.buffered = new_total;
                self.partial.push(Partial {
                    seq: f.msg_seq,
                    buf: vec![0; f.total_len],
                    bitmap: vec![0; f.total_len.div_ceil(64)],
                    have: 0,
                });
                self.partial.len() - 1
            }
        };
        let p = self
            .partial
            .get_mut(idx)
            .ok_or(Error::Malformed("reassembly"))?;
        ensure!(
            p.buf.len() == f.total_len,
            Error::Malformed("inconsistent message length")
        );
        if p.conflicts(f.offset, f.data) {
            p.reset();
        }
        p.insert(f.offset, f.data);
        Ok(Inserted::Buffered)
    }

    /// The next in-order message, if complete.
    pub(crate) fn pop(&mut self) -> Option<Vec<u8>> {
        let idx = self
            .partial
            .iter()
            .position(|p| p.seq == self.next && p.complete())?;
        let p = self.partial.swap_remove(idx);
        self.buffered -= p.buf.len();
        self.next += 1;
        Some(p.buf)
    }

    /// Takes back the last [`Self::pop`] (its message did not verify), so that the
    /// message can be received again.
    pub(crate) fn unpop(&mut self) {
        self.next = self.next.saturating_sub(1);
    }

    /// Bytes currently held.
    pub(crate) fn buffered(&self) -> usize {
        self.buffered
    }
}

/// Initial retransmission timeout.
pub const INITIAL_RTO: Duration = Duration::from_millis(250);
/// Retransmissions of one flight before giving up.
pub const MAX_RETRANSMITS: u32 = 6;

/// The last flight a side sent, kept for retransmission with exponential backoff.
#[cfg_attr(test, derive(Clone))]
pub(crate) struct Flight {
    datagrams: Vec<Vec<u8>>,
    rto: Duration,
    deadline: Option<Instant>,
    retransmits: u32,
}

impl Flight {
    pub(crate) fn empty() -> Self {
        Self {
            datagrams: Vec::new(),
            rto: INITIAL_RTO,
            deadline: None,
            retransmits: 0,
        }
    }

    /// Replaces the flight, queues it for sending and arms the timer if it expects an answer.
    pub(crate) fn set(
        &mut self,
        datagrams: Vec<Vec<u8>>,
        now: Instant,
        expects_answer: bool,
        out: &mut VecDeque<Vec<u8>>,
    ) {
        out.extend(datagrams.iter().cloned());
        self.datagrams = datagrams;
        self.rto = INITIAL_RTO;
        self.retransmits = 0;
        self.deadline = expects_answer.then(|| now + self.rto);
    }

    /// Stops the timer (the peer answered).
    pub(crate) fn acknowledge(&mut self) {
        self.deadline = None;
    }

    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Re-queues the flight now (the peer's retransmission shows ours was lost).
    pub(crate) fn resend(&self, out: &mut VecDeque<Vec<u8>>) {
        out.extend(self.datagrams.iter().cloned());
    }

    /// Timer expiry: re-queue with backoff; `Err(Timeout)` once the budget is spent.
    pub(crate) fn on_timeout(
        &mut self,
        now: Instant,
        out: &mut VecDeque<Vec<u8>>,
    ) -> Result<(), Error> {
        match self.deadline {
            Some(d) if d <= now => {
                ensure!(self.retransmits < MAX_RETRANSMITS, Error::Timeout);
                self.retransmits += 1;
                self.rto = self.rto.saturating_mul(2);
                self.deadline = Some(now + self.rto);
                self.resend(out);
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::Partial;

    /// The byte-at-a-time definition `Partial::insert` must match: first copy wins.
    fn reference(buf: &mut [u8], held: &mut [bool], offset: usize, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            if let (Some(h), Some(slot)) = (held.get_mut(offset + i), buf.get_mut(offset + i))
                && !*h
            {
                *h = true;
                *slot = *b;
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn word_wise_insert_matches_first_copy_wins(
            total in 1usize..400,
            frags in proptest::collection::vec((0usize..400, 0usize..200, any::<u8>()), 1..12),
        ) {
            let mut p = Partial { seq: 0, buf: vec![0; total], bitmap: vec![0; total.div_ceil(64)], have: 0 };
            let mut buf = vec![0u8; total];
            let mut held = vec![false; total];
            for (off, len, fill) in frags {
                let off = off % total;
                let len = len.min(total - off);
                // Distinct data per fragment, so "first copy wins" is observable.
                let data: Vec<u8> = (0..len).map(|i| fill.wrapping_add(i as u8)).collect();
                p.insert(off, &data);
                reference(&mut buf, &mut held, off, &data);
                prop_assert_eq!(&p.buf, &buf);
                prop_assert_eq!(p.have, held.iter().filter(|h| **h).count());
            }
            prop_assert_eq!(p.complete(), held.iter().all(|h| *h));
        }
    }
}
