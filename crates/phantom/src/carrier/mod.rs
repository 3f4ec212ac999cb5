//! The carriers datagrams travel on: UDP sockets ([`udp`]), TCP connections carrying
//! length-prefixed datagrams ([`tcp`]), and the fallback logic that moves a client
//! session between them ([`fallback`]). Above the shared state (`crate::state`),
//! below the driver and the API types.

pub(crate) mod fallback;
pub(crate) mod reuseport;
pub(crate) mod tcp;
pub(crate) mod udp;
