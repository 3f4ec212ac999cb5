//! Fuzz the frame parser: `parse_frames` never panics, stops after its first error,
//! and a payload whose frames all parse re-encodes to exactly the same bytes
//! (frames are canonical), with `encoded_len` agreeing with what `encode` writes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phantom_wire::frame::{encode_frames, frames_encoded_len, payload_is_ack_eliciting};
use phantom_wire::{Encode, Frame, Writer, parse_frames};

fuzz_target!(|data: &[u8]| {
    let mut frames: Vec<Frame<'_>> = Vec::new();
    let mut iter = parse_frames(data);
    let mut failed = false;
    for item in iter.by_ref() {
        match item {
            Ok(frame) => frames.push(frame),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(
        iter.next().is_none(),
        "iterator continued after the end or an error"
    );
    assert_eq!(payload_is_ack_eliciting(data).is_err(), failed);
    if failed {
        return;
    }
    // Walking ACK ranges is bounded and strictly descending.
    for f in &frames {
        if let Frame::Ack(ack) = f {
            let mut prev_start: Option<u64> = None;
            let mut n = 0usize;
            for r in ack.ranges() {
                assert!(r.start() <= r.end());
                if let Some(p) = prev_start {
                    assert!(*r.end() + 2 <= p, "ack ranges must descend with a gap");
                }
                prev_start = Some(*r.start());
                n += 1;
            }
            assert_eq!(n, ack.range_count());
        }
        // NEW_CONN_ID: the caps the parser enforces hold for what it returns.
        if let Frame::NewConnId(f) = f {
            assert!(f.retire_prior_to <= f.seq);
            assert!((4..=20).contains(&f.id.len()));
        }
    }
    let len = frames_encoded_len(&frames);
    assert_eq!(len, data.len(), "encoded_len of a parsed payload");
    let mut out = vec![0u8; len];
    let mut w = Writer::new(&mut out);
    encode_frames(&frames, &mut w).expect("a parsed payload re-encodes");
    assert_eq!(w.written(), len);
    assert_eq!(
        out.as_slice(),
        data,
        "frame re-encoding differs from the input"
    );
    for f in &frames {
        assert!(f.encoded_len() >= 1);
    }
});
