//! I5, I8 observed in memory: after a secret-holding value is dropped or replaced, its
//! bytes are gone from the memory it occupied.
//!
//! This binary installs a global allocator that zero-fills every allocation and, when a
//! block is freed, scans it for the secret patterns a test registered before handing
//! it back. A hit means key material reached the allocator unwiped: a dropped value that
//! did not zeroize, a value moved out of a heap box (the box is freed with the bytes
//! still in it), or a buffer that grew and left its old copy behind. Values that live
//! inside a live object (an `Opener` in a `Box`) are checked by scanning the object's
//! own bytes after a replacement.
//!
//! What this covers: heap blocks freed by the crypto types and by this test, and the
//! bytes of the objects themselves. It does not cover copies left on the stack by
//! moves (Rust moves are memcpy; no zeroize scheme wipes those).
//!
//! The controls prove the detector can fail: a plain `Vec<u8>` holding a pattern is
//! found when freed, and a plain array is found after `drop_in_place`.
#![allow(
    missing_docs,
    unsafe_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

use phantom_crypto::kdf::{LABEL_IV, LABEL_KEY};
use phantom_crypto::{Opener, Prk, Sealer, Suite, TAG_LEN, TrafficSecret};
use phantom_wire::{ConnId, Epoch, Flags, Header, SeqLen, StreamId};

const SLOTS: usize = 128;
const MAX_PATTERN: usize = 32;

/// One registered pattern and the number of freed blocks it was found in.
struct Slot {
    active: AtomicBool,
    len: AtomicUsize,
    bytes: [AtomicU8; MAX_PATTERN],
    hits: AtomicUsize,
}

#[expect(
    clippy::declare_interior_mutable_const,
    reason = "array initialiser for the static table"
)]
const EMPTY_SLOT: Slot = Slot {
    active: AtomicBool::new(false),
    len: AtomicUsize::new(0),
    bytes: [const { AtomicU8::new(0) }; MAX_PATTERN],
    hits: AtomicUsize::new(0),
};

static TABLE: [Slot; SLOTS] = [EMPTY_SLOT; SLOTS];
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

/// Reads `len` bytes at `ptr` through volatile loads (the optimiser may not assume
/// anything about freed or dropped memory).
unsafe fn volatile_bytes(ptr: *const u8, len: usize, out: &mut [u8]) {
    for (i, o) in out.iter_mut().enumerate().take(len) {
        *o = unsafe { core::ptr::read_volatile(ptr.add(i)) };
    }
}

/// True if the `len` bytes at `ptr` contain `pattern`. Allocation-free.
unsafe fn contains(ptr: *const u8, len: usize, pattern: &[u8]) -> bool {
    if pattern.is_empty() || len < pattern.len() {
        return false;
    }
    let mut window = [0u8; MAX_PATTERN];
    for start in 0..=len - pattern.len() {
        if unsafe { core::ptr::read_volatile(ptr.add(start)) } != pattern[0] {
            continue;
        }
        unsafe { volatile_bytes(ptr.add(start), pattern.len(), &mut window) };
        if &window[..pattern.len()] == pattern {
            return true;
        }
    }
    false
}

/// Loads `slot`'s pattern, if active.
fn pattern(slot: &Slot, out: &mut [u8; MAX_PATTERN]) -> Option<usize> {
    if !slot.active.load(Ordering::Acquire) {
        return None;
    }
    let len = slot.len.load(Ordering::Relaxed);
    for (o, b) in out.iter_mut().zip(&slot.bytes) {
        *o = b.load(Ordering::Relaxed);
    }
    Some(len)
}

struct Scanning;

unsafe impl GlobalAlloc for Scanning {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // Zero-filled, so a scan never reads bytes nobody wrote.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let used = NEXT_SLOT.load(Ordering::Acquire).min(SLOTS);
        let mut buf = [0u8; MAX_PATTERN];
        for slot in TABLE.iter().take(used) {
            if let Some(len) = pattern(slot, &mut buf)
                && unsafe { contains(ptr, layout.size(), &buf[..len]) }
            {
                slot.hits.fetch_add(1, Ordering::Relaxed);
            }
        }
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Scanning = Scanning;

/// Registers `bytes` (at most 32) and returns its slot.
fn watch(bytes: &[u8]) -> usize {
    assert!(bytes.len() >= 12 && bytes.len() <= MAX_PATTERN);
    let i = NEXT_SLOT.fetch_add(1, Ordering::AcqRel);
    assert!(i < SLOTS, "too many patterns");
    let slot = &TABLE[i];
    slot.len.store(bytes.len(), Ordering::Relaxed);
    for (s, b) in slot.bytes.iter().zip(bytes) {
        s.store(*b, Ordering::Relaxed);
    }
    slot.active.store(true, Ordering::Release);
    i
}

fn hits(slot: usize) -> usize {
    TABLE[slot].hits.load(Ordering::Relaxed)
}

/// True if the bytes of `value` contain the pattern of `slot`.
fn inside<T>(value: &T, slot: usize) -> bool {
    let mut buf = [0u8; MAX_PATTERN];
    let len = pattern(&TABLE[slot], &mut buf).unwrap();
    unsafe {
        contains(
            (value as *const T).cast::<u8>(),
            size_of::<T>(),
            &buf[..len],
        )
    }
}

/// A distinct secret for each call site.
fn secret_bytes(tag: u8) -> [u8; 32] {
    core::array::from_fn(|i| tag ^ (i as u8).wrapping_mul(29).wrapping_add(0x5b))
}

/// Registers the secret, AEAD key and IV of the epoch whose secret is `secret`.
fn watch_epoch(secret: &TrafficSecret) -> [usize; 3] {
    let mut key = [0u8; 32];
    let mut iv = [0u8; 12];
    secret.expand_label(LABEL_KEY, &mut key).unwrap();
    secret.expand_label(LABEL_IV, &mut iv).unwrap();
    [watch(secret.dangerously_expose()), watch(&key), watch(&iv)]
}

/// Offset of the protected meta byte (epoch low bits) in the header.
const META: usize = 9;
/// Length of the test header: byte 0, 8-byte id, meta, 1-byte stream, 6-byte sequence.
const HEADER_LEN: usize = 17;

fn header(epoch: u32, sequence: u64) -> Header {
    Header {
        flags: Flags::ACK_ELICITING,
        epoch: Epoch(epoch),
        conn_id: ConnId::from_slice(&[0x21; 8]).unwrap(),
        stream_id: StreamId(1),
        sequence,
        seq_len: SeqLen::FULL,
    }
}

fn seal(sealer: &mut Sealer, sequence: u64) -> Vec<u8> {
    let mut buf = vec![0x33u8; HEADER_LEN + 8 + TAG_LEN];
    let n = sealer
        .seal_packet(&header(0, sequence), &mut buf, 8)
        .unwrap();
    assert_eq!(n, buf.len());
    buf
}

#[test]
fn i8_detector_finds_an_unwiped_heap_buffer_and_array() {
    let raw = secret_bytes(0x01);
    let slot = watch(&raw);
    let plain: Vec<u8> = raw.to_vec();
    drop(plain);
    assert_eq!(hits(slot), 1, "a freed Vec holding the pattern is detected");

    let mut cell = MaybeUninit::<[u8; 32]>::uninit();
    cell.write(raw);
    unsafe { core::ptr::drop_in_place(cell.as_mut_ptr()) };
    assert!(inside(&cell, slot), "an array is not wiped by drop");
}

#[test]
fn i8_traffic_secret_and_prk_bytes_are_gone_after_drop() {
    let raw = secret_bytes(0x02);
    let slot = watch(&raw);
    drop(Box::new(TrafficSecret::from_bytes(raw)));
    drop(Box::new(Prk::from_bytes(raw)));
    let cloned = Box::new(TrafficSecret::from_bytes(raw));
    drop(Box::new((*cloned).clone()));
    drop(cloned);
    assert_eq!(
        hits(slot),
        0,
        "a freed TrafficSecret or Prk still held its bytes"
    );

    // Inline: drop in place, then read the slot back.
    let mut cell = MaybeUninit::<TrafficSecret>::uninit();
    cell.write(TrafficSecret::from_bytes(raw));
    assert!(inside(&cell, slot));
    unsafe { core::ptr::drop_in_place(cell.as_mut_ptr()) };
    assert!(!inside(&cell, slot), "TrafficSecret not wiped by drop");
    let mut cell = MaybeUninit::<Prk>::uninit();
    cell.write(Prk::from_bytes(raw));
    unsafe { core::ptr::drop_in_place(cell.as_mut_ptr()) };
    assert!(!inside(&cell, slot), "Prk not wiped by drop");
}

#[test]
fn i5_sealer_rekey_wipes_the_old_epoch_and_drop_wipes_all() {
    for (n, suite) in Suite::ALL.into_iter().enumerate() {
        let secret0 = TrafficSecret::from_bytes(secret_bytes(0x10 + n as u8));
        let secret1 = secret0.next_epoch().unwrap();
        let epoch0 = watch_epoch(&secret0);
        let epoch1 = watch_epoch(&secret1);
        drop(secret1);

        let mut sealer = Box::new(Sealer::new(suite, secret0).unwrap());
        // The scan sees the live object: the sealer holds its secret inline.
        assert!(inside(&*sealer, epoch0[0]));
        drop(seal(&mut sealer, 0));
        sealer.rekey().unwrap();
        for slot in epoch0 {
            assert!(
                !inside(&*sealer, slot),
                "{suite:?}: old epoch left in the sealer"
            );
        }
        drop(seal(&mut sealer, 1));
        drop(sealer);
        for (epoch, slots) in [epoch0, epoch1].iter().enumerate() {
            for (what, slot) in ["secret", "key", "iv"].iter().zip(slots) {
                assert_eq!(
                    hits(*slot),
                    0,
                    "{suite:?}: epoch {epoch} {what} reached the allocator"
                );
            }
        }
    }
}

#[test]
fn i5_opener_catch_up_and_retire_wipe_replaced_epochs() {
    for (n, suite) in Suite::ALL.into_iter().enumerate() {
        let raw = secret_bytes(0x40 + n as u8);
        let mut chain = vec![TrafficSecret::from_bytes(raw)];
        for _ in 0..6 {
            let next = chain.last().unwrap().next_epoch().unwrap();
            chain.push(next);
        }
        let watched: Vec<[usize; 3]> = chain.iter().map(watch_epoch).collect();
        drop(chain);

        let mut sealer = Sealer::new(suite, TrafficSecret::from_bytes(raw)).unwrap();
        let mut opener = Box::new(Opener::new(suite, TrafficSecret::from_bytes(raw)).unwrap());
        let mut p = seal(&mut sealer, 0);
        opener.open_packet(&mut p, 8, |_| None).unwrap();
        // A forged packet five epochs ahead: trial keys are derived and thrown away.
        let mut forged = seal(&mut sealer, 1);
        forged[HEADER_LEN] ^= 1;
        forged[META] ^= 5 << 3; // protected epoch bits: 0 -> 5
        assert!(opener.open_packet(&mut forged, 8, |_| None).is_err());
        // A genuine jump of three epochs commits; epoch 2 becomes the previous key.
        for _ in 0..3 {
            sealer.rekey().unwrap();
        }
        let mut p = seal(&mut sealer, 2);
        assert!(
            opener
                .open_packet(&mut p, 8, |_| None)
                .unwrap()
                .advanced_epoch()
        );
        assert_eq!(opener.epoch(), Epoch(3));
        for slot in watched[0] {
            assert!(
                !inside(&*opener, slot),
                "{suite:?}: epoch 0 left in the opener"
            );
        }
        assert!(opener.retire_previous());
        for (what, slot) in ["secret", "key", "iv"].iter().zip(watched[2]) {
            assert!(
                !inside(&*opener, slot),
                "{suite:?}: retired epoch's {what} left in the opener"
            );
        }
        drop(opener);
        drop(sealer);
        drop(p);
        for (epoch, slots) in watched.iter().enumerate() {
            for (what, slot) in ["secret", "key", "iv"].iter().zip(slots) {
                assert_eq!(
                    hits(*slot),
                    0,
                    "{suite:?}: epoch {epoch} {what} reached the allocator"
                );
            }
        }
    }
}
