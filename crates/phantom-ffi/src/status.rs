//! Status codes, the per-thread error message, and the one mapping from runtime errors
//! to status codes.

use std::cell::RefCell;
use std::ffi::{CString, c_char};

/// What every fallible `phantom_*` call returns. `PHANTOM_STATUS_OK` is zero; on any
/// other value, `phantom_last_error_message()` describes the failure.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhantomStatus {
    /// Success.
    Ok = 0,
    /// A required pointer argument was null.
    NullPointer = 1,
    /// An argument is unusable: a string that is not UTF-8, an address that does not
    /// parse or cannot be used, a key that does not decode.
    InvalidArgument = 2,
    /// A socket or file operation failed.
    Io = 3,
    /// The server proved a key other than the pinned one.
    WrongServerKey = 4,
    /// The peer did not answer in time (silent, or every answer was damaged or not for
    /// this handshake), or a wait given a timeout expired.
    Timeout = 5,
    /// The handshake failed for another reason.
    Handshake = 6,
    /// The connection is closed (by either side, or after an idle timeout).
    Closed = 7,
    /// The stream was reset or stopped by the peer, or the session refused the
    /// operation on it.
    Stream = 8,
    /// The endpoint is closed.
    EndpointClosed = 9,
    /// `phantom_endpoint_accept` was called on a client endpoint.
    NotServer = 10,
    /// The caller's buffer is too small; the length needed is in the length out-param.
    BufferTooSmall = 11,
    /// The library failed internally (the runtime could not start, or a bug was caught
    /// before it could cross into C).
    Internal = 12,
}

/// A failed call: the status to return and the message to keep for the thread.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) status: PhantomStatus,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(status: PhantomStatus, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn null(what: &str) -> Self {
        Self::new(
            PhantomStatus::NullPointer,
            format!("{what} is a null pointer"),
        )
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(PhantomStatus::InvalidArgument, message)
    }
}

/// The status of a runtime error: the one place a `phantom` error becomes a C code.
pub(crate) fn status_of(e: &phantom::Error) -> PhantomStatus {
    use phantom::{
        AddPathError as P, ConnectError as C, EndpointError as EP, Error as E,
        OpenStreamError as O, SendDatagramError as D,
    };
    match e {
        E::Endpoint(EP::BadAddress(_)) | E::Connect(C::BadAddress(_)) => {
            PhantomStatus::InvalidArgument
        }
        E::Endpoint(EP::Io(_)) | E::AddPath(P::Io(_)) => PhantomStatus::Io,
        E::Endpoint(EP::NotServer) => PhantomStatus::NotServer,
        E::Endpoint(EP::Closed) | E::Connect(C::EndpointClosed) => PhantomStatus::EndpointClosed,
        E::Connect(C::WrongServerKey) => PhantomStatus::WrongServerKey,
        E::Connect(C::Timeout(_) | C::UnusableAnswers { .. }) => PhantomStatus::Timeout,
        E::Connect(C::Handshake(_)) => PhantomStatus::Handshake,
        E::Connect(C::InvalidOptions(_) | C::SeveralWorkers(_)) | E::AddPath(P::BadAddress(_)) => {
            PhantomStatus::InvalidArgument
        }
        E::Connection(_)
        | E::Read(phantom::ReadError::ConnectionLost(_))
        | E::Write(phantom::WriteError::ConnectionLost(_))
        | E::OpenStream(O::ConnectionLost(_))
        | E::SendDatagram(D::ConnectionLost(_))
        | E::AddPath(P::ConnectionLost(_)) => PhantomStatus::Closed,
        E::Read(_) | E::Write(_) | E::OpenStream(_) | E::SendDatagram(_) | E::AddPath(_) => {
            PhantomStatus::Stream
        }
        _ => PhantomStatus::Internal,
    }
}

/// Every runtime error type converts through [`phantom::Error`] and [`status_of`].
macro_rules! failure_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Failure {
            fn from(e: $t) -> Self {
                Failure::from(phantom::Error::from(e))
            }
        }
    )*};
}

failure_from!(
    phantom::EndpointError,
    phantom::ConnectError,
    phantom::ConnectionError,
    phantom::ReadError,
    phantom::WriteError,
    phantom::OpenStreamError,
    phantom::SendDatagramError,
    phantom::AddPathError
);

impl From<phantom::Error> for Failure {
    fn from(e: phantom::Error) -> Self {
        Self::new(status_of(&e), e.to_string())
    }
}

impl From<std::io::Error> for Failure {
    /// Stream reads and writes report runtime errors wrapped in `io::Error`.
    fn from(e: std::io::Error) -> Self {
        let inner = e.get_ref().and_then(|i| {
            if let Some(r) = i.downcast_ref::<phantom::ReadError>() {
                Some(phantom::Error::Read(r.clone()))
            } else {
                i.downcast_ref::<phantom::WriteError>()
                    .map(|w| phantom::Error::Write(w.clone()))
            }
        });
        let status = match inner {
            Some(inner) => status_of(&inner),
            None => match e.kind() {
                std::io::ErrorKind::ConnectionReset => PhantomStatus::Stream,
                std::io::ErrorKind::ConnectionAborted => PhantomStatus::Closed,
                _ => PhantomStatus::Io,
            },
        };
        Self::new(status, e.to_string())
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Keeps `message` as this thread's last error (NUL bytes become spaces).
pub(crate) fn set_last_error(message: &str) {
    let c = CString::new(message.replace('\0', " ")).unwrap_or_default();
    let _ = LAST_ERROR.try_with(|m| *m.borrow_mut() = c);
}

/// This thread's last error message (empty if none).
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR
        .try_with(|m| m.borrow().as_ptr())
        .unwrap_or(c"".as_ptr())
}

/// Runs one C entry point: a returned failure or a panic becomes a status code and
/// this thread's message; nothing unwinds into C.
pub(crate) fn guard(f: impl FnOnce() -> Result<(), Failure>) -> PhantomStatus {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(())) => PhantomStatus::Ok,
        Ok(Err(fail)) => {
            set_last_error(&fail.message);
            fail.status
        }
        Err(_) => {
            set_last_error("internal error: the library caught a panic");
            PhantomStatus::Internal
        }
    }
}
