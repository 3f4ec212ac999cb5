//! The fallback carrier logic of client sessions with a TCP address: acts on the
//! session's fallback state machine (open TCP and probe it as a path, re-probe UDP,
//! retire TCP once a UDP path works again).

use std::net::SocketAddr;
use std::sync::Arc;

use phantom_session::PathSnapshot;
use phantom_session::fallback::{Carrier, FallbackAction};

use crate::carrier::tcp;
use crate::state::{CarrierAction, Inner, Shared, TcpCarrier};

fn is_path(p: &PathSnapshot, local: SocketAddr, remote: SocketAddr) -> bool {
    p.local == local && p.remote == remote
}

/// Acts on the carrier actions of client sessions (called by the driver under the
/// lock): opens TCP and probes it as a path, re-probes UDP, retires TCP once a UDP
/// path works again.
pub(crate) fn apply(shared: &Arc<Shared>, g: &mut Inner, actions: Vec<(u64, CarrierAction)>) {
    if actions.is_empty() {
        return;
    }
    let now = g.now();
    let udp_local = g.local();
    let rt = g.runtime().clone();
    let mut prune = false;
    for (h, a) in actions {
        let Some(c) = g.conn_mut(h) else {
            continue;
        };
        if c.session().is_closed() {
            continue;
        }
        let Some(tcp_remote) = c.tcp_remote() else {
            continue;
        };
        let on_tcp = c.session_mut().fallback_mut().carrier() == Carrier::Tcp;
        match a {
            CarrierAction::Fallback(FallbackAction::SwitchToTcp) => match c.tcp() {
                TcpCarrier::Idle => {
                    c.set_tcp(TcpCarrier::Opening);
                    let shared2 = Arc::clone(shared);
                    rt.spawn(open_for(shared2, h, tcp_remote));
                }
                TcpCarrier::Open(l, r) => {
                    let _ = c.session_mut().probe_path(now.instant, l, r);
                    g.mark_dirty(h);
                }
                TcpCarrier::Opening => {}
            },
            CarrierAction::Fallback(FallbackAction::ProbeUdp) => {
                if c.tcp() == TcpCarrier::Idle {
                    // Opening TCP failed when UDP first failed: try again.
                    c.set_tcp(TcpCarrier::Opening);
                    rt.spawn(open_for(Arc::clone(shared), h, tcp_remote));
                }
                // A fresh validation over UDP: a PATH_CHALLENGE answered over UDP
                // brings the state machine back (SwitchToUdp).
                let udp_remote = c.udp_remote();
                let _ = c.session_mut().abandon_path(udp_local, udp_remote);
                prune = true;
                match c
                    .session_mut()
                    .probe_path(now.instant, udp_local, udp_remote)
                {
                    Ok(p) => {
                        tracing::debug!(target: "phantom::runtime", path = p.0, "probing UDP");
                    }
                    Err(e) => {
                        tracing::debug!(target: "phantom::runtime", error = %e, "cannot probe UDP");
                    }
                }
                g.mark_dirty(h);
            }
            CarrierAction::Fallback(FallbackAction::SwitchToUdp)
            | CarrierAction::PathValidated(_) => {
                let TcpCarrier::Open(l, r) = c.tcp() else {
                    continue;
                };
                let paths = c.session().paths();
                // The TCP path itself just passed validation.
                let tcp_validated = matches!(a, CarrierAction::PathValidated(id)
                    if paths.iter().any(|p| p.id == id && is_path(p, l, r)));
                let other_validated = paths.iter().any(|p| !is_path(p, l, r) && p.validated);
                if !on_tcp && other_validated {
                    // UDP works again: retire the TCP path and close the connection.
                    if c.session_mut().abandon_path(l, r).is_ok() {
                        tracing::info!(target: "phantom::runtime", "back on UDP: TCP carrier retired");
                    }
                    c.set_tcp(TcpCarrier::Idle);
                    g.close_tcp_link(l, r);
                    g.mark_dirty(h);
                } else if on_tcp && tcp_validated {
                    // Carried over TCP now: stop waiting on the failing UDP paths;
                    // whatever was in flight there is re-sent over TCP.
                    for p in paths.iter().filter(|p| !is_path(p, l, r)) {
                        let _ = c.session_mut().abandon_path(p.local, p.remote);
                    }
                    prune = true;
                    g.mark_dirty(h);
                }
            }
            CarrierAction::Fallback(FallbackAction::None) => {}
        }
    }
    if prune {
        g.request_prune();
    }
}

/// Opens the TCP carrier of session `h` and starts validating it as a path.
async fn open_for(shared: Arc<Shared>, h: u64, addr: SocketAddr) {
    let r = tcp::connect(&shared, addr).await;
    let mut g = shared.lock();
    let now = g.now();
    let Some(c) = g.conn_mut(h) else {
        return;
    };
    match r {
        Ok((l, rem)) => {
            c.set_tcp(TcpCarrier::Open(l, rem));
            match c.session_mut().probe_path(now.instant, l, rem) {
                Ok(p) => {
                    tracing::info!(target: "phantom::runtime", path = p.0, local = %l, remote = %rem, "TCP carrier opened: validating");
                }
                Err(e) => {
                    tracing::debug!(target: "phantom::runtime", error = %e, "cannot probe the TCP path");
                }
            }
            g.mark_dirty(h);
        }
        Err(e) => {
            c.set_tcp(TcpCarrier::Idle);
            tracing::warn!(target: "phantom::runtime", %addr, error = %e, "cannot open the TCP carrier");
        }
    }
    shared.unlock_and_wake(g);
}
