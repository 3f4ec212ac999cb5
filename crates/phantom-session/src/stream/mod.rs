//! Stream state: the send buffer with retransmission tracking by offset ranges,
//! the receive reassembly buffer bounded by the flow-control window, and the
//! session-level flow-control accounting.
//!
//! Neither side knows about packets: the session asks a [`SendStream`] for the next
//! chunk to put in a STREAM frame, tells it which chunks were acknowledged or lost,
//! and feeds received STREAM frames to a [`RecvStream`].
//!
//! - [`ids`]: the stream-id layout (initiator, direction, index) over
//!   [`phantom_wire::StreamId`], and the [`Side`] and [`Dir`] it encodes (I3);
//! - `send_buf`: the unacknowledged bytes of a send stream;
//! - `send`: the sending half, [`SendStream`];
//! - `recv`: the receiving half, [`RecvStream`], whose memory is its window (I1);
//! - `flow`: session-level flow control, [`ConnFlow`].

mod flow;
pub(crate) mod ids;
mod recv;
mod send;
mod send_buf;

pub(crate) use flow::ConnFlow;
pub use ids::{Dir, Side};
pub(crate) use ids::{stream_dir, stream_id_for, stream_index, stream_initiator, stream_kind};
pub(crate) use recv::RecvStream;
pub(crate) use send::SendStream;
