use phantom_wire::{MAX_SEQUENCE, StreamId};
use proptest::prelude::*;

use super::{ReplayError, ReplayWindow, StreamWindows};
use crate::Error;
use crate::model::ReplayModel;

/// What a session does with a received packet: the window is reached only if the
/// AEAD verified it (I4).
fn receive(window: &mut ReplayWindow, seq: u64, aead_verified: bool) -> bool {
    if !aead_verified {
        return false;
    }
    window.accept_authenticated(seq)
}

#[test]
fn default_width_is_2048() {
    let w = ReplayWindow::new();
    assert_eq!(w.width(), 2048);
    assert_eq!(ReplayWindow::default().width(), 2048);
    assert_eq!(w.highest(), None);
}

#[test]
fn width_rounds_up_to_a_multiple_of_64() {
    assert_eq!(ReplayWindow::with_width(1).unwrap().width(), 64);
    assert_eq!(ReplayWindow::with_width(64).unwrap().width(), 64);
    assert_eq!(ReplayWindow::with_width(65).unwrap().width(), 128);
    assert_eq!(ReplayWindow::with_width(3000).unwrap().width(), 3008);
    assert_eq!(
        ReplayWindow::with_width(ReplayWindow::MAX_WIDTH)
            .unwrap()
            .width(),
        ReplayWindow::MAX_WIDTH
    );
}

#[test]
fn width_out_of_range_is_a_config_error() {
    assert!(matches!(
        ReplayWindow::with_width(0),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        ReplayWindow::with_width(ReplayWindow::MAX_WIDTH + 1),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        StreamWindows::with_width(0),
        Err(Error::InvalidConfig(_))
    ));
}

#[test]
fn i4_forged_sequence_never_reaches_window() {
    let mut w = ReplayWindow::new();
    for seq in 0..10 {
        assert!(receive(&mut w, seq, true));
    }
    // A forged packet carrying a fresh, very high sequence number fails the AEAD.
    let forged = MAX_SEQUENCE - 1;
    let before = w.clone();
    assert!(!receive(&mut w, forged, false));
    assert_eq!(w, before, "a forged packet changed the window");
    // Even a read-only pre-check with the forged number mutates nothing.
    assert_eq!(w.check(forged), Ok(()));
    assert_eq!(w, before, "check() changed the window");
    // The genuine next packet, and a reordered in-window one, are still accepted.
    assert!(receive(&mut w, 10, true));
    assert!(receive(&mut w, 12, true));
    assert!(receive(&mut w, 11, true));
    assert_eq!(w.highest(), Some(12));
}

#[test]
fn i4_replayed_sequence_rejected() {
    let mut w = ReplayWindow::new();
    assert!(w.accept_authenticated(7));
    assert!(!w.accept_authenticated(7));
    assert_eq!(w.check(7), Err(ReplayError::Duplicate));
    assert_eq!(w.commit(7), Err(ReplayError::Duplicate));
    assert!(w.accept_authenticated(3));
    assert!(
        !w.accept_authenticated(3),
        "an older in-window replay is refused"
    );
}

#[test]
fn i4_commit_of_rejected_sequence_changes_nothing() {
    let mut w = ReplayWindow::with_width(64).unwrap();
    assert!(w.accept_authenticated(1000));
    let before = w.clone();
    assert_eq!(w.commit(1000), Err(ReplayError::Duplicate));
    assert_eq!(w.commit(900), Err(ReplayError::TooOld));
    assert_eq!(w.commit(MAX_SEQUENCE + 1), Err(ReplayError::BeyondMax));
    assert_eq!(w, before);
}

#[test]
fn first_sequence_may_be_anything_up_to_max() {
    for seq in [0, 1, 4095, MAX_SEQUENCE - 1, MAX_SEQUENCE] {
        let mut w = ReplayWindow::new();
        assert!(w.accept_authenticated(seq), "{seq}");
        assert_eq!(w.highest(), Some(seq));
    }
}

#[test]
fn window_edge_is_exact() {
    let mut w = ReplayWindow::new();
    let top = 10_000;
    assert!(w.accept_authenticated(top));
    assert_eq!(w.check(top - 2048), Err(ReplayError::TooOld));
    assert_eq!(w.check(top - 2047), Ok(()));
    assert!(w.accept_authenticated(top - 2047));
    assert!(!w.accept_authenticated(top - 2047));
    // Every position of `top` inside its block keeps the full window.
    for offset in 0..64 {
        let mut w = ReplayWindow::with_width(128).unwrap();
        let top = 64 * 100 + offset;
        for seq in top - 127..=top {
            assert!(w.accept_authenticated(seq), "{seq}");
        }
        for seq in top - 127..=top {
            assert_eq!(w.check(seq), Err(ReplayError::Duplicate), "{seq}");
        }
        assert_eq!(w.check(top - 128), Err(ReplayError::TooOld));
    }
}

#[test]
fn beyond_max_rejected_and_max_does_not_wrap() {
    let mut w = ReplayWindow::new();
    assert_eq!(w.check(MAX_SEQUENCE + 1), Err(ReplayError::BeyondMax));
    assert_eq!(w.check(u64::MAX), Err(ReplayError::BeyondMax));
    assert!(!w.accept_authenticated(u64::MAX));
    assert_eq!(w.highest(), None);
    assert!(w.accept_authenticated(MAX_SEQUENCE));
    assert!(!w.accept_authenticated(MAX_SEQUENCE));
    assert_eq!(w.check(MAX_SEQUENCE + 1), Err(ReplayError::BeyondMax));
    // Nothing maps back onto small numbers.
    assert_eq!(w.check(0), Err(ReplayError::TooOld));
    assert_eq!(w.check(5), Err(ReplayError::TooOld));
    assert!(w.accept_authenticated(MAX_SEQUENCE - 1));
    assert!(w.accept_authenticated(MAX_SEQUENCE - 2047));
    assert_eq!(w.check(MAX_SEQUENCE - 2048), Err(ReplayError::TooOld));
}

#[test]
fn huge_jump_clears_the_whole_ring() {
    let mut w = ReplayWindow::new();
    for seq in 0..3000 {
        assert!(w.accept_authenticated(seq));
    }
    let far = 1_000_000_000_000;
    assert!(w.accept_authenticated(far));
    // Old numbers are now too old; numbers just below the new top are fresh, even
    // where their ring slot held bits from before the jump.
    assert_eq!(w.check(2999), Err(ReplayError::TooOld));
    for seq in far - 2047..far {
        assert!(w.accept_authenticated(seq), "{seq}");
    }
}

#[test]
fn partial_slide_clears_only_reused_blocks() {
    // Width 128: a ring of 4 blocks.
    let mut w = ReplayWindow::with_width(128).unwrap();
    for seq in 0..192 {
        assert!(w.accept_authenticated(seq));
    }
    // Slide by two blocks: the slot of block 0 is reused for block 4.
    assert!(w.accept_authenticated(4 * 64 + 10));
    for seq in 192..4 * 64 + 10 {
        assert!(w.accept_authenticated(seq), "{seq}");
    }
    // Block 2 (seq 128..192) left the window exactly as far as the rule says.
    let top = 4 * 64 + 10;
    for seq in 128..192 {
        let expected = if top - seq >= 128 {
            Err(ReplayError::TooOld)
        } else {
            Err(ReplayError::Duplicate)
        };
        assert_eq!(w.check(seq), expected, "{seq}");
    }
}

#[test]
fn reordered_packets_each_accepted_once() {
    let mut w = ReplayWindow::new();
    let order = [5u64, 1, 4, 2, 3, 0, 9, 6, 8, 7];
    for &seq in &order {
        assert!(w.accept_authenticated(seq));
    }
    for &seq in &order {
        assert!(!w.accept_authenticated(seq));
    }
}

#[test]
fn stream_windows_are_independent_and_count_rejections() {
    let mut s = StreamWindows::new();
    assert!(s.is_empty());
    assert_eq!(s.accept_authenticated(StreamId(1), 5), Ok(()));
    assert_eq!(s.accept_authenticated(StreamId(2), 5), Ok(()));
    assert_eq!(
        s.accept_authenticated(StreamId(1), 5),
        Err(ReplayError::Duplicate)
    );
    assert_eq!(s.check(StreamId(3), 5), Ok(()));
    assert_eq!(s.len(), 2);
    assert_eq!(s.rejected_total(), 1);
    // A sequence beyond MAX creates no window.
    assert_eq!(
        s.accept_authenticated(StreamId(9), MAX_SEQUENCE + 1),
        Err(ReplayError::BeyondMax)
    );
    assert_eq!(s.check(StreamId(9), u64::MAX), Err(ReplayError::BeyondMax));
    assert!(s.get(StreamId(9)).is_none());
    assert_eq!(s.rejected_total(), 2);
    assert_eq!(s.get(StreamId(1)).map(ReplayWindow::highest), Some(Some(5)));
    assert!(s.remove(StreamId(2)));
    assert!(!s.remove(StreamId(2)));
    assert_eq!(s.len(), 1);
    let narrow = StreamWindows::with_width(100).unwrap();
    assert_eq!(narrow.width(), 128);
    assert_eq!(StreamWindows::default().width(), 2048);
}

#[test]
fn debug_shows_no_bitmap() {
    let mut w = ReplayWindow::new();
    assert!(w.accept_authenticated(3));
    let s = format!("{w:?}");
    assert!(s.contains("width: 2048") && s.contains("Some(3)"), "{s}");
}

/// One operation of the model check: how to pick the next sequence number.
#[derive(Debug, Clone)]
enum Pick {
    Raw(u64),
    /// A small step ahead (0..192): crosses zero, one, two or three blocks.
    Ahead(u16),
    /// Somewhere in or just below the window.
    Behind(u32),
    NearMax(u16),
    BeyondMax(u16),
    HugeJump(u64),
    Edge(u8),
    Repeat(usize),
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        1 => any::<u64>().prop_map(Pick::Raw),
        6 => any::<u16>().prop_map(Pick::Ahead),
        6 => any::<u32>().prop_map(Pick::Behind),
        1 => any::<u16>().prop_map(Pick::NearMax),
        1 => any::<u16>().prop_map(Pick::BeyondMax),
        1 => any::<u64>().prop_map(Pick::HugeJump),
        2 => any::<u8>().prop_map(Pick::Edge),
        2 => any::<usize>().prop_map(Pick::Repeat),
    ]
}

fn resolve(p: &Pick, top: Option<u64>, width: u64, history: &[u64]) -> u64 {
    let top = top.unwrap_or(0);
    match *p {
        Pick::Raw(v) => v,
        Pick::Ahead(d) => top.saturating_add(u64::from(d % 192)),
        Pick::Behind(d) => top.saturating_sub(u64::from(d) % (width + 70)),
        Pick::NearMax(d) => MAX_SEQUENCE.saturating_sub(u64::from(d % 4096)),
        Pick::BeyondMax(d) => MAX_SEQUENCE.saturating_add(1 + u64::from(d)),
        Pick::HugeJump(d) => top.saturating_add(d % (1 << 40)),
        Pick::Edge(d) => top
            .saturating_sub(width)
            .saturating_add(u64::from(d % 4))
            .saturating_sub(1),
        Pick::Repeat(i) => match history.len() {
            0 => top,
            n => history.get(i % n).copied().unwrap_or(top),
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn i4_window_matches_reference_model(
        width in prop_oneof![Just(64u64), Just(100), Just(128), Just(256), Just(2048), 1u64..5000],
        ops in proptest::collection::vec((pick(), any::<bool>()), 1..400),
    ) {
        let mut w = ReplayWindow::with_width(width).unwrap();
        let mut m = ReplayModel::new(w.width());
        let mut history = Vec::new();
        for (p, check_first) in &ops {
            let seq = resolve(p, m.highest(), w.width(), &history);
            history.push(seq);
            if *check_first {
                let before = w.clone();
                prop_assert_eq!(w.check(seq), m.check(seq), "check({})", seq);
                prop_assert_eq!(&w, &before);
            }
            prop_assert_eq!(w.commit(seq), m.commit(seq), "commit({})", seq);
            prop_assert_eq!(w.highest(), m.highest());
        }
    }
}

#[test]
fn ring_grows_with_the_stream_and_keeps_every_mark() {
    let mut w = ReplayWindow::new();
    for seq in (0..40).step_by(2) {
        assert!(w.accept_authenticated(seq));
    }
    assert_eq!(w.bitmap_bytes(), 8, "a short stream keeps one block");
    // Growing to 2, 4, ... blocks keeps what was seen below.
    for seq in (40..1500).step_by(2) {
        assert!(w.accept_authenticated(seq));
    }
    assert_eq!(w.bitmap_bytes(), 32 * 8);
    for seq in (0..1500).step_by(2) {
        assert_eq!(w.check(seq), Err(ReplayError::Duplicate), "{seq}");
    }
    for seq in (1..1500).step_by(2) {
        assert!(w.accept_authenticated(seq), "{seq} was never seen");
    }
    // Past the width the ring is full size and slides as before.
    assert!(w.accept_authenticated(5000));
    assert_eq!(w.bitmap_bytes(), 512);
    assert_eq!(w.check(5000 - 2048), Err(ReplayError::TooOld));
    assert_eq!(w.check(5000 - 2047), Ok(()));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    /// I4 per stream: windows kept for streams arriving in any order (and forgotten)
    /// answer exactly as one separate window per stream does.
    #[test]
    fn stream_windows_match_one_window_per_stream(
        ops in proptest::collection::vec((0u32..9, 0u64..300, 0u8..8), 1..300),
    ) {
        let mut windows = StreamWindows::new();
        let mut model: std::collections::BTreeMap<u32, ReplayWindow> = Default::default();
        let mut rejected = 0u64;
        for (stream, seq, op) in ops {
            let id = StreamId(stream);
            if op == 0 {
                prop_assert_eq!(windows.remove(id), model.remove(&stream).is_some());
                continue;
            }
            let w = model.entry(stream).or_default();
            prop_assert_eq!(windows.check(id, seq), w.check(seq));
            let expect = w.accept_authenticated(seq);
            rejected += u64::from(!expect);
            prop_assert_eq!(windows.accept_authenticated(id, seq).is_ok(), expect);
            prop_assert_eq!(windows.len(), model.len());
        }
        prop_assert_eq!(windows.rejected_total(), rejected);
        for (s, w) in &model {
            prop_assert_eq!(windows.get(StreamId(*s)).map(ReplayWindow::highest), Some(w.highest()));
        }
    }
}
