//! Round-trip, totality and invariant tests for the header, the frames and the codec.

use proptest::prelude::*;

use crate::frame::{
    Ack, AckRange, Close, DataBlocked, Datagram, HandshakeFragment, MAX_ACK_RANGES,
    MAX_CLOSE_REASON_LEN, MAX_HANDSHAKE_FRAGMENT_LEN, MAX_HANDSHAKE_MESSAGE_LEN, MAX_STREAM_COUNT,
    MAX_STREAM_OFFSET, MaxData, MaxStreamData, MaxStreams, NewConnId, Padding, PathChallenge,
    PathResponse, RESET_TOKEN_LEN, Rekey, ResetStream, RetireConnId, StopSending, Stream,
    StreamDataBlocked, StreamKind, StreamOpen, StreamsBlocked, encode_frames, frames_encoded_len,
    is_ack_eliciting, payload_is_ack_eliciting,
};
use crate::{
    ConnId, Decode, Encode, Epoch, Error, FORM_MASK, Flags, Frame, FrameType, HANDSHAKE_MARKER,
    Header, MAX_HEADER_LEN, MAX_SEQUENCE, Reader, SAMPLE_LEN, SHORT_FORM, SeqLen, StreamId,
    VERSION, VarInt, WireHeader, Writer, min_packet_len, parse_frames, peek_conn_id,
    protect_in_place, sample_offset,
};

// --- test fixtures -------------------------------------------------------------

fn encode_to_vec<E: Encode>(x: &E) -> Vec<u8> {
    let mut buf = vec![0u8; x.encoded_len()];
    let mut w = Writer::new(&mut buf);
    x.encode(&mut w).expect("encode");
    assert_eq!(w.written(), buf.len(), "encoded_len matches bytes written");
    buf
}

fn decode_one<'a, D: Decode<'a>>(bytes: &'a [u8]) -> Result<D, Error> {
    let mut r = Reader::new(bytes);
    let v = D::decode(&mut r)?;
    r.finish()?;
    Ok(v)
}

fn parse_all(payload: &[u8]) -> Result<Vec<Frame<'_>>, Error> {
    parse_frames(payload).collect()
}

/// Encodes `frames` into a fresh buffer of exactly their encoded length.
fn encode_all(frames: &[Frame<'_>]) -> Vec<u8> {
    let mut buf = vec![0u8; frames_encoded_len(frames)];
    let mut w = Writer::new(&mut buf);
    encode_frames(frames, &mut w).expect("encode frames");
    assert_eq!(w.written(), buf.len());
    buf
}

/// The fuzz targets' property: if every frame of `bytes` parses, re-encoding them
/// reproduces `bytes` exactly; otherwise exactly one error ends the iteration.
fn check_payload_property(bytes: &[u8]) {
    let mut it = parse_frames(bytes);
    let mut frames = Vec::new();
    let mut failed = false;
    for item in it.by_ref() {
        match item {
            Ok(f) => frames.push(f),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(
        it.next().is_none(),
        "nothing after the end or the first error"
    );
    if !failed {
        assert_eq!(encode_all(&frames), bytes, "canonical re-encoding");
    }
}

fn header(sequence: u64, stream: u32) -> Header {
    Header {
        flags: Flags::ACK_ELICITING | Flags::REKEY,
        epoch: Epoch(0x0a0b_0c0d),
        conn_id: ConnId::from_slice(&[0x5a; 8]).unwrap(),
        stream_id: StreamId(stream),
        sequence,
        seq_len: SeqLen::FULL,
    }
}

fn image_of(h: &Header) -> Vec<u8> {
    let mut out = vec![0u8; h.len()];
    assert_eq!(h.write_image(&mut out).unwrap(), h.len());
    out
}

// --- strategies ----------------------------------------------------------------

/// A varint value, spread over the four encoding lengths.
fn varint_value() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..64,
        64u64..16_384,
        16_384u64..(1 << 30),
        (1u64 << 30)..=VarInt::MAX.into_inner(),
    ]
}

fn stream_id() -> impl Strategy<Value = StreamId> {
    prop_oneof![0u32..64, any::<u32>()].prop_map(StreamId)
}

fn stream_kind() -> impl Strategy<Value = StreamKind> {
    prop_oneof![Just(StreamKind::Bidi), Just(StreamKind::Uni)]
}

/// Valid ACK ranges: descending, separated by at least one missing number.
fn ack_ranges() -> impl Strategy<Value = Vec<AckRange>> {
    (
        0..=MAX_SEQUENCE,
        0u64..1000,
        proptest::collection::vec((0u64..300, 0u64..300), 0..20),
    )
        .prop_map(|(largest, first_len, pairs)| {
            let mut ranges = vec![largest.saturating_sub(first_len)..=largest];
            let mut smallest = largest.saturating_sub(first_len);
            for (gap, len) in pairs {
                let Some(end) = smallest.checked_sub(gap + 2) else {
                    break;
                };
                let start = end.saturating_sub(len);
                ranges.push(start..=end);
                smallest = start;
            }
            ranges
        })
}

/// An owned description of a frame, from which a borrowing [`Frame`] is built.
#[derive(Debug, Clone)]
enum Owned {
    Padding(usize),
    Ping,
    Ack(StreamId, u64, Vec<AckRange>),
    Stream(StreamId, u64, bool, Vec<u8>),
    ResetStream(ResetStream),
    StreamOpen(StreamOpen),
    MaxData(MaxData),
    MaxStreamData(MaxStreamData),
    PathChallenge([u8; 32]),
    PathResponse([u8; 32]),
    Rekey(u32),
    Close(u64, bool, Vec<u8>),
    Handshake(u32, usize, usize, Vec<u8>),
    Datagram(Vec<u8>),
    StopSending(StopSending),
    DataBlocked(u64),
    StreamDataBlocked(StreamId, u64),
    MaxStreams(StreamKind, u64),
    StreamsBlocked(StreamKind, u64),
    NewConnId(NewConnId),
    RetireConnId(u64),
}

impl Owned {
    fn frame(&self) -> Frame<'_> {
        match self {
            Owned::Padding(len) => Frame::Padding(Padding { len: *len }),
            Owned::Ping => Frame::Ping,
            Owned::Ack(id, delay, ranges) => {
                Frame::Ack(Ack::new(*id, *delay, ranges).expect("valid ranges"))
            }
            Owned::Stream(id, offset, fin, data) => Frame::Stream(Stream {
                stream_id: *id,
                offset: *offset,
                fin: *fin,
                data,
            }),
            Owned::ResetStream(f) => Frame::ResetStream(*f),
            Owned::StreamOpen(f) => Frame::StreamOpen(*f),
            Owned::MaxData(f) => Frame::MaxData(*f),
            Owned::MaxStreamData(f) => Frame::MaxStreamData(*f),
            Owned::PathChallenge(t) => Frame::PathChallenge(PathChallenge { token: *t }),
            Owned::PathResponse(t) => Frame::PathResponse(PathResponse { token: *t }),
            Owned::Rekey(e) => Frame::Rekey(Rekey { epoch: Epoch(*e) }),
            Owned::Close(code, app, reason) => Frame::Close(Close {
                error_code: *code,
                application: *app,
                reason,
            }),
            Owned::Handshake(seq, total, offset, data) => Frame::Handshake(HandshakeFragment {
                message_seq: *seq,
                total_len: *total,
                offset: *offset,
                data,
            }),
            Owned::Datagram(data) => Frame::Datagram(Datagram { data }),
            Owned::StopSending(f) => Frame::StopSending(*f),
            Owned::DataBlocked(limit) => Frame::DataBlocked(DataBlocked { limit: *limit }),
            Owned::StreamDataBlocked(id, limit) => Frame::StreamDataBlocked(StreamDataBlocked {
                stream_id: *id,
                limit: *limit,
            }),
            Owned::MaxStreams(kind, max) => Frame::MaxStreams(MaxStreams {
                kind: *kind,
                max: *max,
            }),
            Owned::StreamsBlocked(kind, limit) => Frame::StreamsBlocked(StreamsBlocked {
                kind: *kind,
                limit: *limit,
            }),
            Owned::NewConnId(f) => Frame::NewConnId(*f),
            Owned::RetireConnId(seq) => Frame::RetireConnId(RetireConnId { seq: *seq }),
        }
    }
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn owned_frame() -> impl Strategy<Value = Owned> {
    let vi = varint_value;
    prop_oneof![
        (1usize..40).prop_map(Owned::Padding),
        Just(Owned::Ping),
        (stream_id(), vi(), ack_ranges()).prop_map(|(id, d, r)| Owned::Ack(id, d, r)),
        (stream_id(), vi(), any::<bool>(), bytes(64)).prop_map(|(id, off, fin, data)| {
            let off = off.min(MAX_STREAM_OFFSET - data.len() as u64);
            Owned::Stream(id, off, fin, data)
        }),
        (stream_id(), vi(), vi()).prop_map(|(stream_id, error_code, final_size)| {
            Owned::ResetStream(ResetStream {
                stream_id,
                error_code,
                final_size,
            })
        }),
        (stream_id(), stream_kind(), any::<bool>()).prop_map(|(stream_id, kind, replay_safe)| {
            Owned::StreamOpen(StreamOpen {
                stream_id,
                kind,
                replay_safe,
            })
        }),
        vi().prop_map(|max| Owned::MaxData(MaxData { max })),
        (stream_id(), vi())
            .prop_map(|(stream_id, max)| Owned::MaxStreamData(MaxStreamData { stream_id, max })),
        any::<[u8; 32]>().prop_map(Owned::PathChallenge),
        any::<[u8; 32]>().prop_map(Owned::PathResponse),
        any::<u32>().prop_map(Owned::Rekey),
        (vi(), any::<bool>(), bytes(80)).prop_map(|(c, a, r)| Owned::Close(c, a, r)),
        (
            any::<u32>(),
            0usize..=MAX_HANDSHAKE_MESSAGE_LEN,
            any::<prop::sample::Index>(),
            bytes(80)
        )
            .prop_map(|(seq, total, at, data)| {
                let total = total.max(data.len());
                let offset = at.index(total - data.len() + 1);
                Owned::Handshake(seq, total, offset, data)
            }),
        bytes(64).prop_map(Owned::Datagram),
        (stream_id(), vi()).prop_map(|(stream_id, error_code)| Owned::StopSending(StopSending {
            stream_id,
            error_code
        })),
        vi().prop_map(Owned::DataBlocked),
        (stream_id(), vi()).prop_map(|(id, l)| Owned::StreamDataBlocked(id, l)),
        (stream_kind(), 0..=MAX_STREAM_COUNT).prop_map(|(k, m)| Owned::MaxStreams(k, m)),
        (stream_kind(), 0..=MAX_STREAM_COUNT).prop_map(|(k, m)| Owned::StreamsBlocked(k, m)),
        (
            vi(),
            any::<prop::sample::Index>(),
            proptest::collection::vec(any::<u8>(), 4..=20),
            any::<[u8; RESET_TOKEN_LEN]>()
        )
            .prop_map(|(seq, at, id, reset_token)| Owned::NewConnId(NewConnId {
                seq,
                retire_prior_to: at.index(usize::try_from(seq.min(1 << 20)).unwrap() + 1) as u64,
                id: ConnId::from_slice(&id).unwrap(),
                reset_token,
            })),
        vi().prop_map(Owned::RetireConnId),
    ]
}

fn arb_header() -> impl Strategy<Value = Header> {
    (
        0u8..=Flags::ALL.bits(),
        any::<u32>(),
        proptest::collection::vec(any::<u8>(), 4..=20),
        prop_oneof![Just(0u32), 1u32..=0xff, 0x100u32..=0xffff, any::<u32>()],
        0..=MAX_SEQUENCE,
        prop_oneof![
            Just(SeqLen::ONE),
            Just(SeqLen::TWO),
            Just(SeqLen::FOUR),
            Just(SeqLen::FULL)
        ],
    )
        .prop_map(|(flags, epoch, cid, stream, sequence, seq_len)| Header {
            flags: Flags::from_bits(flags).expect("defined bits"),
            epoch: Epoch(epoch),
            conn_id: ConnId::from_slice(&cid).expect("4..=20 bytes"),
            stream_id: StreamId(stream),
            sequence,
            seq_len,
        })
}

/// Decodes `bytes` with the frame struct's own [`Decode`] impl and checks it
/// matches `frame` (the per-struct codecs agree with the enum's).
fn check_struct_decode(frame: &Frame<'_>, bytes: &[u8]) {
    match frame {
        Frame::Padding(f) => assert_eq!(decode_one::<Padding>(bytes).unwrap(), *f),
        Frame::Ping => assert_eq!(bytes, [0x01]),
        Frame::Ack(f) => assert_eq!(decode_one::<Ack<'_>>(bytes).unwrap(), *f),
        Frame::Stream(f) => assert_eq!(decode_one::<Stream<'_>>(bytes).unwrap(), *f),
        Frame::ResetStream(f) => assert_eq!(decode_one::<ResetStream>(bytes).unwrap(), *f),
        Frame::StreamOpen(f) => assert_eq!(decode_one::<StreamOpen>(bytes).unwrap(), *f),
        Frame::MaxData(f) => assert_eq!(decode_one::<MaxData>(bytes).unwrap(), *f),
        Frame::MaxStreamData(f) => assert_eq!(decode_one::<MaxStreamData>(bytes).unwrap(), *f),
        Frame::PathChallenge(f) => assert_eq!(decode_one::<PathChallenge>(bytes).unwrap(), *f),
        Frame::PathResponse(f) => assert_eq!(decode_one::<PathResponse>(bytes).unwrap(), *f),
        Frame::Rekey(f) => assert_eq!(decode_one::<Rekey>(bytes).unwrap(), *f),
        Frame::Close(f) => assert_eq!(decode_one::<Close<'_>>(bytes).unwrap(), *f),
        Frame::Handshake(f) => {
            assert_eq!(decode_one::<HandshakeFragment<'_>>(bytes).unwrap(), *f);
        }
        Frame::Datagram(f) => assert_eq!(decode_one::<Datagram<'_>>(bytes).unwrap(), *f),
        Frame::StopSending(f) => assert_eq!(decode_one::<StopSending>(bytes).unwrap(), *f),
        Frame::DataBlocked(f) => assert_eq!(decode_one::<DataBlocked>(bytes).unwrap(), *f),
        Frame::StreamDataBlocked(f) => {
            assert_eq!(decode_one::<StreamDataBlocked>(bytes).unwrap(), *f);
        }
        Frame::MaxStreams(f) => assert_eq!(decode_one::<MaxStreams>(bytes).unwrap(), *f),
        Frame::StreamsBlocked(f) => assert_eq!(decode_one::<StreamsBlocked>(bytes).unwrap(), *f),
        Frame::NewConnId(f) => assert_eq!(decode_one::<NewConnId>(bytes).unwrap(), *f),
        Frame::RetireConnId(f) => assert_eq!(decode_one::<RetireConnId>(bytes).unwrap(), *f),
    }
}

// --- proptests -----------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_frame_round_trips(owned in owned_frame()) {
        let frame = owned.frame();
        let bytes = encode_to_vec(&frame);
        let decoded: Frame<'_> = decode_one(&bytes).unwrap();
        prop_assert_eq!(decoded, frame);
        prop_assert_eq!(decoded.frame_type(), frame.frame_type());
        // Encoding the decoded (canonical) input reproduces the bytes.
        prop_assert_eq!(encode_to_vec(&decoded), bytes.clone());
        check_struct_decode(&frame, &bytes);
    }

    #[test]
    fn frame_sequences_round_trip(owned in proptest::collection::vec(owned_frame(), 0..12)) {
        let frames: Vec<Frame<'_>> = owned.iter().map(Owned::frame).collect();
        let bytes = encode_all(&frames);
        // Adjacent PADDING frames are one run of zeros on the wire: merge them.
        let mut expected: Vec<Frame<'_>> = Vec::new();
        for f in &frames {
            match (expected.last_mut(), f) {
                (Some(Frame::Padding(prev)), Frame::Padding(p)) => prev.len += p.len,
                _ => expected.push(*f),
            }
        }
        let parsed = parse_all(&bytes).unwrap();
        prop_assert_eq!(&parsed, &expected);
        prop_assert_eq!(encode_all(&parsed), bytes.clone());
        prop_assert_eq!(
            payload_is_ack_eliciting(&bytes).unwrap(),
            frames.iter().any(|f| !matches!(f, Frame::Padding(_) | Frame::Ack(_) | Frame::Close(_)))
        );
        prop_assert_eq!(is_ack_eliciting(&parsed), payload_is_ack_eliciting(&bytes).unwrap());
    }

    #[test]
    fn header_round_trips(h in arb_header(), tail in bytes(40)) {
        let image = image_of(&h);
        prop_assert!(image.len() <= MAX_HEADER_LEN);
        let mut datagram = image.clone();
        datagram.extend_from_slice(&tail);
        let parsed = WireHeader::parse(&datagram, h.conn_id.len()).unwrap();
        prop_assert_eq!(parsed.len, image.len());
        prop_assert_eq!(parsed.flags, h.flags);
        prop_assert_eq!(parsed.conn_id, h.conn_id);
        prop_assert_eq!(parsed.stream_id, h.stream_id);
        prop_assert_eq!(parsed.seq_len, h.seq_len);
        prop_assert_eq!(u32::from(parsed.epoch_low), h.epoch.0 & 31);
        let bits = 8 * h.seq_len.bytes() as u32;
        prop_assert_eq!(parsed.truncated, h.sequence & ((1u64 << bits) - 1));
        // A receiver that authenticated the sequence before recovers it exactly.
        let largest = h.sequence.checked_sub(1);
        prop_assert_eq!(parsed.seq_len.expand(parsed.truncated, largest), h.sequence);
        prop_assert_eq!(Epoch::reconstruct(h.epoch, parsed.epoch_low), Some(h.epoch));
    }

    #[test]
    fn i1_arbitrary_bytes_never_panic_header_or_frames(data in bytes(300), cid in 4usize..=20) {
        if let Ok(w) = WireHeader::parse(&data, cid) {
            let h = Header {
                flags: w.flags,
                epoch: Epoch(u32::from(w.epoch_low)),
                conn_id: w.conn_id,
                stream_id: w.stream_id,
                sequence: w.truncated,
                seq_len: w.seq_len,
            };
            prop_assert_eq!(image_of(&h), data[..w.len].to_vec());
        }
        let mut copy = data.clone();
        let mask = [0xa5; SAMPLE_LEN];
        if let Ok(n) = protect_in_place(&mut copy, cid, &mask, false) {
            prop_assert!(n <= data.len());
        }
        let _ = peek_conn_id(&data, cid);
        check_payload_property(&data);
    }

    #[test]
    fn i1_arbitrary_frame_bodies_never_panic(ty in 0u8..0x14, body in bytes(120)) {
        // A valid type byte first, so every body decoder sees random input.
        let mut data = vec![ty];
        data.extend_from_slice(&body);
        check_payload_property(&data);
    }

    #[test]
    fn i1_mutated_valid_payloads_never_panic(
        owned in proptest::collection::vec(owned_frame(), 1..6),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let frames: Vec<Frame<'_>> = owned.iter().map(Owned::frame).collect();
        let mut bytes = encode_all(&frames);
        for (at, v) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= v;
        }
        check_payload_property(&bytes);
    }

    #[test]
    fn i1_truncation_at_every_offset_is_an_error(owned in owned_frame()) {
        let frame = owned.frame();
        let bytes = encode_to_vec(&frame);
        for cut in 0..bytes.len() {
            let prefix = &bytes[..cut];
            match frame {
                // A prefix of a zero run is a shorter zero run (or nothing).
                Frame::Padding(_) => {
                    prop_assert!(parse_all(prefix).is_ok());
                }
                _ => {
                    prop_assert!(decode_one::<Frame<'_>>(prefix).is_err(), "cut at {}", cut);
                    if cut > 0 {
                        prop_assert!(parse_all(prefix).is_err());
                    }
                }
            }
        }
    }

    #[test]
    fn i1_short_output_buffer_is_an_error(owned in owned_frame()) {
        let frame = owned.frame();
        let len = frame.encoded_len();
        for short in [0, len / 2, len - 1] {
            let mut buf = vec![0u8; short];
            let res = frame.encode(&mut Writer::new(&mut buf));
            prop_assert!(matches!(res, Err(Error::BufferTooSmall { .. })), "short buffer {}", short);
        }
    }

    #[test]
    fn varint_round_trips_and_is_minimal(v in varint_value()) {
        let v = VarInt::try_from(v).unwrap();
        let mut buf = [0u8; 8];
        let mut w = Writer::new(&mut buf);
        w.put_varint(v).unwrap();
        let n = w.written();
        prop_assert_eq!(n, v.encoded_len());
        let mut r = Reader::new(&buf[..n]);
        prop_assert_eq!(r.varint_canonical().unwrap(), v);
        prop_assert!(r.is_empty());
    }

    #[test]
    fn varint_canonical_is_varint_plus_the_shortest_length_test(data in proptest::collection::vec(any::<u8>(), 0..10)) {
        // The model: a plain varint read, then the length read compared with the
        // value's shortest encoding; same result, error and bytes consumed.
        let mut model = Reader::new(&data);
        let before = model.remaining();
        let expected = model.varint().and_then(|v| {
            if before - model.remaining() == v.encoded_len() {
                Ok(v)
            } else {
                Err(Error::Malformed("non-minimal varint"))
            }
        });
        let mut r = Reader::new(&data);
        prop_assert_eq!(r.varint_canonical(), expected);
        prop_assert_eq!(r.remaining(), model.remaining());
    }

    #[test]
    fn header_truncation_and_bad_bytes_are_errors(h in arb_header(), cut in 0usize..MAX_HEADER_LEN) {
        let image = image_of(&h);
        let cut = cut % image.len();
        let truncated = matches!(
            WireHeader::parse(&image[..cut], h.conn_id.len()),
            Err(Error::Truncated { .. })
        );
        prop_assert!(truncated);
    }

    #[test]
    fn header_protection_mask_is_its_own_inverse(h in arb_header(), mask in any::<[u8; 16]>()) {
        let image = image_of(&h);
        let mut packet = image.clone();
        let n = protect_in_place(&mut packet, h.conn_id.len(), &mask, true).unwrap();
        prop_assert_eq!(n, image.len());
        // The id and the fixed bits stay in clear.
        prop_assert_eq!(packet[0] & FORM_MASK, SHORT_FORM);
        prop_assert_eq!(&packet[1..1 + h.conn_id.len()], h.conn_id.as_bytes());
        let n = protect_in_place(&mut packet, h.conn_id.len(), &mask, false).unwrap();
        prop_assert_eq!(n, image.len());
        prop_assert_eq!(packet, image);
    }
}

// --- invariant and rule tests --------------------------------------------------

#[test]
fn i3_stream_id_keeps_full_32_bits_on_wire() {
    // Header: a large stream id is a full big-endian u32 after the meta byte.
    let h = header(1, 0xdead_beef);
    let image = image_of(&h);
    assert_eq!(&image[10..14], &[0xde, 0xad, 0xbe, 0xef]);
    assert_eq!(
        WireHeader::parse(&image, 8).unwrap().stream_id,
        StreamId(0xdead_beef)
    );
    // Lengths are minimal: 0, 1, 2 or 4 bytes; a padded encoding is refused.
    for (id, len) in [(0u32, 0usize), (1, 1), (0xff, 1), (0x100, 2), (0x1_0000, 4)] {
        assert_eq!(image_of(&header(1, id)).len(), 1 + 8 + 1 + len + 6);
    }
    let mut padded = image_of(&header(1, 0x0000_00ef));
    padded[0] = (padded[0] & !0x0c) | 0x0c; // claims 4 bytes
    padded.splice(10..11, [0, 0, 0, 0xef]);
    assert_eq!(
        WireHeader::parse(&padded, 8).unwrap_err(),
        Error::Malformed("stream id not minimally encoded")
    );

    // Frames: ids that agree in their low 16 bits stay distinct on the wire.
    for id in [0x0001_0005u32, 0x0000_0005, u32::MAX, 0xffff_0000] {
        let f = Frame::Stream(Stream {
            stream_id: StreamId(id),
            offset: 0,
            fin: false,
            data: b"x",
        });
        let bytes = encode_to_vec(&f);
        let Frame::Stream(back) = decode_one::<Frame<'_>>(&bytes).unwrap() else {
            panic!("not a stream frame");
        };
        assert_eq!(back.stream_id, StreamId(id));
    }
    let big = encode_to_vec(&Frame::MaxStreamData(MaxStreamData {
        stream_id: StreamId(u32::MAX),
        max: 0,
    }));
    assert_eq!(&big[..9], &[0x07, 0xc0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);

    // One past u32::MAX is rejected, never truncated.
    let mut wire = vec![0x07, 0xc0, 0, 0, 1, 0, 0, 0, 0, 0x00];
    assert_eq!(
        decode_one::<Frame<'_>>(&wire),
        Err(Error::OutOfRange("stream id"))
    );
    wire[4] = 0;
    assert!(decode_one::<Frame<'_>>(&wire).is_err(), "non-minimal zero");
}

#[test]
fn i3_sequence_beyond_48_bits_is_rejected() {
    let mut out = [0u8; MAX_HEADER_LEN];
    assert_eq!(
        header(MAX_SEQUENCE + 1, 0).write_image(&mut out),
        Err(Error::OutOfRange("sequence"))
    );
    let image = image_of(&header(MAX_SEQUENCE, 0));
    let w = WireHeader::parse(&image, 8).unwrap();
    assert_eq!(w.seq_len.expand(w.truncated, None), MAX_SEQUENCE);
    // Expansion never goes past 48 bits, whatever the receiver's state.
    for len in [SeqLen::ONE, SeqLen::TWO, SeqLen::FOUR, SeqLen::FULL] {
        assert!(len.expand(u64::MAX, Some(MAX_SEQUENCE)) <= MAX_SEQUENCE);
    }
    // ACKs cannot name a sequence a header could not carry.
    let ranges = [0..=MAX_SEQUENCE + 1];
    assert_eq!(
        Ack::new(StreamId(1), 0, &ranges).unwrap_err(),
        Error::OutOfRange("ack largest")
    );
    let wire = [0x02, 0x01, 0x00, 0xc0, 0x01, 0, 0, 0, 0, 0, 0, 0x00, 0x00];
    assert_eq!(
        decode_one::<Frame<'_>>(&wire),
        Err(Error::OutOfRange("ack largest"))
    );
}

#[test]
fn header_rejects_other_forms_reserved_bits_and_keeps_flags() {
    let good = image_of(&header(9, 9));
    assert_eq!(good[0] & FORM_MASK, SHORT_FORM);
    assert_eq!(VERSION, 2);

    for b0 in [0x00u8, 0x80, 0xc0, HANDSHAKE_MARKER] {
        let mut b = good.clone();
        b[0] = b0 | (good[0] & 0x3f);
        assert_eq!(
            WireHeader::parse(&b, 8).unwrap_err(),
            Error::Malformed("not a short packet")
        );
        assert_eq!(peek_conn_id(&b, 8), None);
    }
    assert_eq!(peek_conn_id(&good, 8), Some(&[0x5a; 8][..]));
    for r in [0x10u8, 0x20, 0x30] {
        let mut b = good.clone();
        b[0] |= r;
        assert_eq!(
            WireHeader::parse(&b, 8).unwrap_err(),
            Error::Reserved("header bits 5..4")
        );
    }
    for bits in 0..=Flags::ALL.bits() {
        let mut b = good.clone();
        b[9] = (b[9] & !Flags::ALL.bits()) | bits;
        assert_eq!(WireHeader::parse(&b, 8).unwrap().flags.bits(), bits);
    }
    assert_eq!(
        Flags::from_bits(0x08),
        Err(Error::Reserved("undefined flag bits"))
    );
}

#[test]
fn header_parse_reports_the_exact_image_length() {
    let h = header(77, 5);
    let mut datagram = image_of(&h);
    datagram.extend_from_slice(&[1, 2, 3]);
    let w = WireHeader::parse(&datagram, 8).unwrap();
    assert_eq!(w.len, h.len());
    assert_eq!(&datagram[w.len..], &[1, 2, 3]);
    // The largest header with an 8-byte id is 20 bytes.
    let big = Header {
        stream_id: StreamId(u32::MAX),
        ..header(MAX_SEQUENCE, 0)
    };
    assert_eq!(big.len(), 20);
    assert_eq!(sample_offset(8), 20);
    assert_eq!(min_packet_len(8), 36);
}

#[test]
fn sequence_truncation_follows_rfc9000_appendix_a() {
    // RFC 9000 A.2: 0xac5c02 with 0xabe8b3 acknowledged needs 2 bytes, 0xace8fe 3 (4 here).
    assert_eq!(SeqLen::for_sequence(0xac5c02, Some(0xabe8b3)), SeqLen::TWO);
    assert_eq!(SeqLen::for_sequence(0xace8fe, Some(0xabe8b3)), SeqLen::FOUR);
    assert_eq!(SeqLen::for_sequence(5, None), SeqLen::FULL);
    assert_eq!(SeqLen::for_sequence(100, Some(99)), SeqLen::ONE);
    assert_eq!(SeqLen::for_sequence(228, Some(100)), SeqLen::TWO);
    // RFC 9000 A.3: largest 0xa82f30ea, 2-byte 0x9b32 -> 0xa82f9b32.
    assert_eq!(SeqLen::TWO.expand(0x9b32, Some(0xa82f_30ea)), 0xa82f_9b32);
    // Wrapping forward and backward across the window.
    assert_eq!(SeqLen::ONE.expand(0x01, Some(0x1fe)), 0x201);
    assert_eq!(SeqLen::ONE.expand(0xff, Some(0x200)), 0x1ff);
    assert_eq!(SeqLen::ONE.expand(3, None), 3);
    for seq in [0u64, 1, 255, 256, 70_000, 1 << 40] {
        for gap in [0u64, 1, 100, 127] {
            let acked = seq.checked_sub(gap + 1);
            let len = SeqLen::for_sequence(seq, acked);
            let bits = 8 * len.bytes() as u32;
            let truncated = if bits >= 64 {
                seq
            } else {
                seq & ((1 << bits) - 1)
            };
            // The receiver's largest is anywhere between the acknowledged and seq - 1.
            assert_eq!(len.expand(truncated, acked), seq);
            assert_eq!(len.expand(truncated, seq.checked_sub(1)), seq);
        }
    }
}

#[test]
fn epoch_is_reconstructed_from_its_low_five_bits() {
    assert_eq!(Epoch::reconstruct(Epoch(0), 0), Some(Epoch(0)));
    assert_eq!(Epoch::reconstruct(Epoch(0), 1), Some(Epoch(1)));
    assert_eq!(Epoch::reconstruct(Epoch(0), 30), Some(Epoch(30)));
    assert_eq!(Epoch::reconstruct(Epoch(0), 31), None); // epoch -1
    assert_eq!(Epoch::reconstruct(Epoch(40), 7), Some(Epoch(39)));
    assert_eq!(Epoch::reconstruct(Epoch(40), 8), Some(Epoch(40)));
    assert_eq!(Epoch::reconstruct(Epoch(40), 24), Some(Epoch(56)));
    assert_eq!(Epoch::reconstruct(Epoch(40), 6), Some(Epoch(70)));
    assert_eq!(Epoch::reconstruct(Epoch(u32::MAX), 0), None);
}

#[test]
fn unknown_and_non_minimal_frame_types_are_rejected() {
    assert_eq!(parse_all(&[0x15]), Err(Error::UnknownFrame(0x15)));
    assert_eq!(parse_all(&[0x3f]), Err(Error::UnknownFrame(0x3f)));
    assert_eq!(parse_all(&[0x40, 0x40]), Err(Error::UnknownFrame(0x40)));
    // PING encoded in two bytes.
    assert_eq!(
        parse_all(&[0x40, 0x01]),
        Err(Error::Malformed("non-minimal varint"))
    );
    // A struct decoder refuses another frame's type.
    assert_eq!(
        decode_one::<MaxData>(&[0x01]),
        Err(Error::Malformed("unexpected frame type"))
    );
}

#[test]
fn non_minimal_field_varints_are_rejected() {
    // MAX_DATA with the value 5 in two bytes.
    assert_eq!(
        parse_all(&[0x06, 0x40, 0x05]),
        Err(Error::Malformed("non-minimal varint"))
    );
    assert_eq!(
        parse_all(&[0x06, 0x05]).unwrap(),
        [Frame::MaxData(MaxData { max: 5 })]
    );
}

#[test]
fn reserved_frame_bits_and_bad_enums_are_rejected() {
    // STREAM flags: only FIN (0x01) is defined.
    for flags in [0x02u8, 0x80, 0xff] {
        assert_eq!(
            parse_all(&[0x03, 0x01, 0x00, flags, 0x00]),
            Err(Error::Reserved("stream flags"))
        );
    }
    // STREAM_OPEN: kind 0/1 only, flags bit 0 only.
    assert_eq!(
        parse_all(&[0x05, 0x01, 0x02, 0x00]),
        Err(Error::Malformed("stream kind"))
    );
    assert_eq!(
        parse_all(&[0x05, 0x01, 0x00, 0x02]),
        Err(Error::Reserved("stream open flags"))
    );
    // CLOSE: the application byte is 0 or 1.
    assert_eq!(
        parse_all(&[0x0b, 0x00, 0x02, 0x00]),
        Err(Error::Malformed("close kind"))
    );
    assert_eq!(
        parse_all(&[0x11, 0x07, 0x00]),
        Err(Error::Malformed("stream kind"))
    );
}

#[test]
fn i1_oversized_lengths_rejected_without_allocation() {
    // CLOSE reason over the cap is refused by the cap, before the bytes are sought.
    let mut close = vec![0x0b, 0x00, 0x01, 0x44, 0x01]; // length 1025
    close.extend_from_slice(b"short");
    assert_eq!(
        parse_all(&close),
        Err(Error::OutOfRange("close reason length"))
    );
    // Exactly the cap is fine.
    let reason = vec![b'r'; MAX_CLOSE_REASON_LEN];
    let ok = Frame::Close(Close {
        error_code: 1,
        application: true,
        reason: &reason,
    });
    assert_eq!(parse_all(&encode_to_vec(&ok)).unwrap(), [ok]);

    // A huge STREAM/DATAGRAM length with a short payload is a truncation error.
    let stream = [
        0x03, 0x01, 0x00, 0x00, 0xbf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2,
    ];
    assert!(matches!(parse_all(&stream), Err(Error::Truncated { .. })));
    let datagram = [0x0d, 0xbf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2];
    assert!(matches!(parse_all(&datagram), Err(Error::Truncated { .. })));

    // HANDSHAKE: message and fragment caps, and the fragment must fit the message.
    let hs = |total: u64, offset: u64, len: u64| {
        let mut v = vec![0x0c, 0x00];
        let mut buf = [0u8; 32];
        let mut w = Writer::new(&mut buf);
        w.put_varint_u64(total).unwrap();
        w.put_varint_u64(offset).unwrap();
        w.put_varint_u64(len).unwrap();
        let n = w.written();
        v.extend_from_slice(&buf[..n]);
        v.extend(core::iter::repeat_n(
            0xaa,
            usize::try_from(len.min(2000)).unwrap(),
        ));
        v
    };
    let max_msg = MAX_HANDSHAKE_MESSAGE_LEN as u64;
    let max_frag = MAX_HANDSHAKE_FRAGMENT_LEN as u64;
    assert!(parse_all(&hs(max_msg, max_msg - max_frag, max_frag)).is_ok());
    assert_eq!(
        parse_all(&hs(max_msg + 1, 0, 1)),
        Err(Error::OutOfRange("handshake message length"))
    );
    assert_eq!(
        parse_all(&hs(5000, 0, max_frag + 1)),
        Err(Error::OutOfRange("handshake fragment length"))
    );
    assert_eq!(
        parse_all(&hs(100, 101, 0)),
        Err(Error::OutOfRange("handshake fragment offset"))
    );
    assert_eq!(
        parse_all(&hs(100, 90, 11)),
        Err(Error::OutOfRange("handshake fragment beyond message"))
    );
    assert!(parse_all(&hs(100, 90, 10)).is_ok());
    // Message sequence must fit 32 bits.
    assert_eq!(
        parse_all(&[0x0c, 0xc0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0]),
        Err(Error::OutOfRange("handshake message sequence"))
    );

    // ACK range count: capped by a constant, then by the bytes present.
    let ack = |count: u64, tail: &[u8]| {
        let mut v = vec![0x02, 0x01, 0x00, 0x80, 0x01, 0x00, 0x00, 0x00];
        let mut buf = [0u8; 8];
        let mut w = Writer::new(&mut buf);
        w.put_varint_u64(count).unwrap();
        let n = w.written();
        v.extend_from_slice(&buf[..n]);
        v.extend_from_slice(tail);
        v
    };
    assert_eq!(
        parse_all(&ack(1 << 40, &[])),
        Err(Error::OutOfRange("ack range count"))
    );
    assert_eq!(
        parse_all(&ack(MAX_ACK_RANGES as u64, &[0; 600])),
        Err(Error::OutOfRange("ack range count"))
    );
    assert_eq!(
        parse_all(&ack(200, &[0; 10])),
        Err(Error::Truncated { needed: 390 })
    );
    // 255 extra ranges (256 in all) of one number each, gap 0, fit under 65536.
    let full_wire = ack(MAX_ACK_RANGES as u64 - 1, &[0; 510]);
    let full = parse_all(&full_wire).unwrap();
    let [Frame::Ack(a)] = full.as_slice() else {
        panic!("one ack")
    };
    assert_eq!(a.range_count(), MAX_ACK_RANGES);
    assert_eq!(a.ranges().count(), MAX_ACK_RANGES);
}

#[test]
fn stream_offset_plus_length_is_capped() {
    let at_limit = Stream {
        stream_id: StreamId(1),
        offset: MAX_STREAM_OFFSET - 1,
        fin: true,
        data: b"z",
    };
    let bytes = encode_to_vec(&Frame::Stream(at_limit));
    assert_eq!(parse_all(&bytes).unwrap(), [Frame::Stream(at_limit)]);
    assert_eq!(
        Frame::Stream(at_limit).frame_type().code(),
        FrameType::Stream.code()
    );

    let over = Stream {
        offset: MAX_STREAM_OFFSET,
        ..at_limit
    };
    let mut buf = [0u8; 64];
    assert_eq!(
        Frame::Stream(over).encode(&mut Writer::new(&mut buf)),
        Err(Error::OutOfRange("stream offset + length"))
    );
    // Same thing on the wire: offset 2^62-1, length 1.
    let wire = [
        0x03, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x01, b'z',
    ];
    assert_eq!(
        parse_all(&wire),
        Err(Error::OutOfRange("stream offset + length"))
    );
}

#[test]
fn ack_ranges_are_descending_and_never_underflow() {
    let ranges = [100..=110, 90..=95, 2..=88, 0..=0];
    let ack = Ack::new(StreamId(9), 1500, &ranges).unwrap();
    let bytes = encode_to_vec(&Frame::Ack(ack));
    let [Frame::Ack(back)] = parse_all(&bytes).unwrap()[..] else {
        panic!("one ack")
    };
    assert_eq!(back.ranges().collect::<Vec<_>>(), ranges);
    assert_eq!(back.largest(), 110);
    assert_eq!(back.smallest(), 0);
    assert_eq!(back.range_count(), 4);
    assert_eq!(back.ack_delay_us, 1500);
    assert!(back.contains(93) && back.contains(0) && !back.contains(1) && !back.contains(89));

    // Builder rejects empty, ascending, overlapping, adjacent and too many ranges.
    assert!(Ack::new(StreamId(0), 0, &[]).is_err());
    #[allow(clippy::reversed_empty_ranges)]
    let empty = [5..=4];
    assert!(Ack::new(StreamId(0), 0, &empty).is_err());
    assert!(Ack::new(StreamId(0), 0, &[1..=2, 5..=6]).is_err());
    assert!(Ack::new(StreamId(0), 0, &[10..=20, 5..=10]).is_err());
    assert!(
        Ack::new(StreamId(0), 0, &[10..=20, 5..=9]).is_err(),
        "adjacent"
    );
    assert!(
        Ack::new(StreamId(0), 0, &[10..=20, 5..=8]).is_ok(),
        "one missing"
    );
    let many: Vec<AckRange> = (0..=MAX_ACK_RANGES as u64)
        .rev()
        .map(|i| 2 * i..=2 * i)
        .collect();
    assert_eq!(
        Ack::new(StreamId(0), 0, &many).unwrap_err(),
        Error::OutOfRange("ack range count")
    );
    assert!(Ack::new(StreamId(0), 0, &many[1..]).is_ok());

    // Wire underflows: first range below zero, and a gap below zero.
    assert_eq!(
        parse_all(&[0x02, 0x00, 0x00, 0x05, 0x06, 0x00]),
        Err(Error::Malformed("ack range underflow"))
    );
    // largest 5, first 0 -> smallest 5; gap 4 -> end = 5 - 4 - 2 < 0.
    assert_eq!(
        parse_all(&[0x02, 0x00, 0x00, 0x05, 0x00, 0x01, 0x04, 0x00]),
        Err(Error::Malformed("ack range underflow"))
    );
    // gap 3 -> end 0, length 1 -> start below 0.
    assert_eq!(
        parse_all(&[0x02, 0x00, 0x00, 0x05, 0x00, 0x01, 0x03, 0x01]),
        Err(Error::Malformed("ack range underflow"))
    );
    let ok = parse_all(&[0x02, 0x00, 0x00, 0x05, 0x00, 0x01, 0x03, 0x00]).unwrap();
    let [Frame::Ack(a)] = ok[..] else {
        panic!("one ack")
    };
    assert_eq!(a.ranges().collect::<Vec<_>>(), [5..=5, 0..=0]);
}

#[test]
fn parse_frames_stops_after_the_first_error() {
    let payload = [0x01, 0x3f, 0x01, 0x01];
    let mut it = parse_frames(&payload);
    assert_eq!(it.next(), Some(Ok(Frame::Ping)));
    assert_eq!(it.next(), Some(Err(Error::UnknownFrame(0x3f))));
    assert_eq!(it.next(), None);
    assert_eq!(it.next(), None);
    assert_eq!(parse_frames(&[]).count(), 0);
}

#[test]
fn ack_eliciting_classification() {
    let ranges = [0..=3];
    let ack = Frame::Ack(Ack::new(StreamId(0), 0, &ranges).unwrap());
    let pad = Frame::Padding(Padding { len: 3 });
    let close = Frame::Close(Close {
        error_code: 0,
        application: false,
        reason: b"",
    });
    assert!(!is_ack_eliciting(&[ack, pad, close]));
    assert!(is_ack_eliciting(&[ack, Frame::Ping]));
    assert!(!payload_is_ack_eliciting(&encode_all(&[ack, close, pad])).unwrap());
    assert!(
        payload_is_ack_eliciting(&encode_all(&[ack, Frame::MaxData(MaxData { max: 1 })])).unwrap()
    );
    assert!(payload_is_ack_eliciting(&[0x01, 0x3f]).is_err());
    for t in FrameType::ALL {
        assert_eq!(FrameType::from_code(t.code()), Some(t));
        assert_eq!(
            t.is_ack_eliciting(),
            !matches!(t, FrameType::Padding | FrameType::Ack | FrameType::Close)
        );
        assert_eq!(
            t.is_allowed_in_cleartext(),
            matches!(t, FrameType::Padding | FrameType::Handshake)
        );
    }
    assert_eq!(FrameType::from_code(FrameType::ALL.len() as u64), None);
}

#[test]
fn padding_is_a_zero_run() {
    assert_eq!(
        parse_all(&[0, 0, 0, 0x01, 0]).unwrap(),
        [
            Frame::Padding(Padding { len: 3 }),
            Frame::Ping,
            Frame::Padding(Padding { len: 1 })
        ]
    );
    let mut buf = [0xffu8; 4];
    assert_eq!(
        Padding { len: 0 }.encode(&mut Writer::new(&mut buf)),
        Err(Error::OutOfRange("padding length"))
    );
    Padding { len: 4 }
        .encode(&mut Writer::new(&mut buf))
        .unwrap();
    assert_eq!(buf, [0; 4]);
}

#[test]
fn encoder_refuses_out_of_range_fields() {
    let mut buf = [0u8; 4096];
    let reason = vec![0u8; MAX_CLOSE_REASON_LEN + 1];
    let cases = [
        Frame::Close(Close {
            error_code: 0,
            application: false,
            reason: &reason,
        }),
        Frame::MaxData(MaxData { max: u64::MAX }),
        Frame::MaxStreams(MaxStreams {
            kind: StreamKind::Uni,
            max: MAX_STREAM_COUNT + 1,
        }),
        Frame::Handshake(HandshakeFragment {
            message_seq: 0,
            total_len: 10,
            offset: 5,
            data: b"123456",
        }),
        Frame::Handshake(HandshakeFragment {
            message_seq: 0,
            total_len: MAX_HANDSHAKE_MESSAGE_LEN + 1,
            offset: 0,
            data: b"",
        }),
    ];
    for f in cases {
        assert!(
            matches!(
                f.encode(&mut Writer::new(&mut buf)),
                Err(Error::OutOfRange(_))
            ),
            "{f:?}"
        );
    }
}

#[test]
fn debug_of_data_frames_prints_lengths_not_bytes() {
    let s = format!(
        "{:?}",
        Frame::Stream(Stream {
            stream_id: StreamId(1),
            offset: 0,
            fin: false,
            data: b"SECRETPAYLOAD",
        })
    );
    assert!(s.contains("data_len: 13") && !s.contains("SECRET"), "{s}");
    let d = format!(
        "{:?}",
        Frame::Datagram(Datagram {
            data: b"SECRETPAYLOAD"
        })
    );
    assert!(!d.contains("83") && !d.contains("SECRET"), "{d}");
}

#[test]
fn writer_put_zeros_and_filled_are_bounded() {
    let mut buf = [0xffu8; 3];
    let mut w = Writer::new(&mut buf);
    w.put_u8(7).unwrap();
    w.put_zeros(2).unwrap();
    assert_eq!(w.filled(), &[7, 0, 0]);
    assert_eq!(
        w.put_zeros(1),
        Err(Error::BufferTooSmall {
            needed: 1,
            available: 0
        })
    );
}

#[test]
fn conn_ids_are_4_to_20_bytes() {
    assert!(ConnId::from_slice(&[1; 3]).is_err());
    assert!(ConnId::from_slice(&[1; 21]).is_err());
    for n in 4..=20 {
        let id = ConnId::from_slice(&vec![7; n]).unwrap();
        assert_eq!(id.len(), n);
        assert_eq!(id.as_bytes(), &vec![7; n][..]);
    }
}

/// The byte-by-byte varint reading the reader's one-load-per-length decoder
/// replaced: value, bytes consumed, and the error (with the bytes it consumes)
/// on truncated input.
fn varint_reference(bytes: &[u8]) -> (Result<u64, Error>, usize) {
    let Some((&first, rest)) = bytes.split_first() else {
        return (Err(Error::Truncated { needed: 1 }), 0);
    };
    let len = 1usize << (first >> 6);
    if rest.len() < len - 1 {
        return (
            Err(Error::Truncated {
                needed: len - 1 - rest.len(),
            }),
            1,
        );
    }
    let mut value = u64::from(first & 0x3f);
    for b in &rest[..len - 1] {
        value = (value << 8) | u64::from(*b);
    }
    (Ok(value), len)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn varint_decoding_matches_the_byte_by_byte_reading(
        first in any::<u8>(),
        rest in proptest::collection::vec(any::<u8>(), 0..10),
    ) {
        let mut bytes = vec![first];
        bytes.extend_from_slice(&rest);
        for cut in 0..=bytes.len() {
            let input = &bytes[..cut];
            let (want, consumed) = varint_reference(input);
            let mut r = Reader::new(input);
            let got = r.varint().map(VarInt::into_inner);
            prop_assert_eq!(got, want);
            prop_assert_eq!(r.remaining(), cut - consumed);
        }
    }
}

#[test]
fn new_conn_id_frame_layout_and_caps() {
    let f = NewConnId {
        seq: 3,
        retire_prior_to: 1,
        id: ConnId::from_slice(&[0xaa; 8]).unwrap(),
        reset_token: [0x55; RESET_TOKEN_LEN],
    };
    let bytes = encode_to_vec(&Frame::NewConnId(f));
    // type, seq, retire_prior_to, len, 8-byte id, 16-byte token.
    assert_eq!(bytes.len(), 1 + 1 + 1 + 1 + 8 + 16);
    assert_eq!(bytes[..4], [0x13, 3, 1, 8]);
    assert_eq!(bytes[4..12], [0xaa; 8]);
    assert_eq!(bytes[12..], [0x55; 16]);
    assert_eq!(parse_all(&bytes).unwrap(), [Frame::NewConnId(f)]);
    // Id lengths outside 4..=20 are refused before any byte is taken.
    for len in [0u8, 3, 21, 255] {
        let mut b = vec![0x13, 0, 0, len];
        b.extend_from_slice(&[0u8; 40]);
        assert_eq!(
            parse_all(&b),
            Err(Error::OutOfRange("connection id length"))
        );
    }
    // retire_prior_to above seq.
    let mut b = bytes.clone();
    b[2] = 4;
    assert_eq!(
        parse_all(&b),
        Err(Error::Malformed("retire_prior_to above the sequence"))
    );
    // Every truncation fails.
    for cut in 1..bytes.len() {
        assert!(parse_all(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    // RETIRE_CONN_ID: one varint.
    let r = encode_to_vec(&Frame::RetireConnId(RetireConnId { seq: 300 }));
    assert_eq!(r, [0x14, 0x41, 0x2c]);
    assert!(FrameType::NewConnId.is_ack_eliciting());
    assert!(FrameType::RetireConnId.is_ack_eliciting());
    assert!(!FrameType::NewConnId.is_allowed_in_cleartext());
    assert!(!FrameType::RetireConnId.is_allowed_in_cleartext());
}

#[test]
fn new_conn_id_debug_omits_the_reset_token() {
    let f = NewConnId {
        seq: 1,
        retire_prior_to: 0,
        id: ConnId::from_slice(&[1; 4]).unwrap(),
        reset_token: [0xee; RESET_TOKEN_LEN],
    };
    let text = format!("{f:?}");
    assert_eq!(text.matches("238").count(), 0, "{text}");
    assert_eq!(text.matches("ee").count(), 0, "{text}");
}
