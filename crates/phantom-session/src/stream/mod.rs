//! Stream state: the send buffer with retransmission tracking by offset ranges,
//! the receive reassembly buffer bounded by the flow-control window, and the
//! session-level flow-control accounting.
//!
//! Neither side knows about packets: the session asks a [`SendStream`] for the next
//! chunk to put in a STREAM frame, tells it which chunks were acknowledged or lost,
//! and feeds received STREAM frames to a [`RecvStream`].

mod flow;
mod ids;
mod recv;
mod send;
mod send_buf;

pub(crate) use flow::ConnFlow;
pub use ids::{Dir, Side};
pub(crate) use ids::{stream_dir, stream_id_for, stream_index, stream_initiator};
pub(crate) use recv::RecvStream;
pub(crate) use send::SendStream;
