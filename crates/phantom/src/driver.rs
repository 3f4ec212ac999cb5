//! The driver task: one per endpoint, owning its UDP sockets (the primary one and
//! those added for extra paths).
//!
//! Each loop (bounded by an I/O budget) runs named steps: [`Driver::receive`]
//! (outside the lock), then under the lock [`Driver::adopt_sockets`],
//! [`Driver::deliver`] (received datagrams to the sessions), timers
//! ([`Inner::on_timeouts`]), [`Driver::transmit`] (dirty sessions and handshakes into
//! GSO batches), [`Driver::process_events`] (session events, carrier actions,
//! cleanup), then outside the lock the wake-ups, [`Driver::send`] and
//! [`Driver::prune_sockets`], and finally [`Driver::wait`]. It sleeps until a socket
//! is readable, a handle notifies it (new data, a close, a connect), or the earliest
//! session deadline passes; the tokio sleep is re-armed only when that deadline
//! changes.
//!
//! A transmit leaves from the socket whose local address is the transmit's `src`
//! (the primary socket otherwise), or through the TCP connection whose
//! `(local, remote)` is its `(src, dst)` ([`route`]).

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use phantom_session::AppCode;
use tokio::net::UdpSocket;
use tokio::time::Sleep;

use crate::carrier::fallback;
use crate::carrier::udp::{Batch, Io, Outbox, Ready, Received, adopt_socket, readable};
use crate::state::{Inner, SEND_BUDGET, Shared};

/// A busy driver (budget spent, more to do) yields to the other tasks every this many
/// loops: every 128 datagrams sent or 256 received, well within the 1 MiB stream
/// buffers the application tasks fill and drain meanwhile. Each yield costs an
/// I/O-driver poll (`epoll_wait`, ~5% of a bulk sender's CPU when yielding every
/// loop); docs/PERFORMANCE.md, runtime design choices, has the measurements.
const YIELD_EVERY: u32 = 4;

/// Where a datagram from `src` to `dst` leaves.
enum Route {
    /// A UDP socket (index into the driver's sockets).
    Udp(usize),
    /// Handed to a TCP connection's writer (or dropped): done.
    Tcp,
}

/// Picks the carrier for a datagram: the TCP connection `(src, dst)` if there is one
/// (with `src == None`: any TCP connection to `dst`), else the UDP socket bound to
/// `src`, else the primary socket. A datagram from the local address of a TCP
/// connection that is gone is dropped, never sent over UDP.
fn route(
    g: &mut Inner,
    ios: &[Io],
    src: Option<SocketAddr>,
    dst: SocketAddr,
    data: &[u8],
) -> Route {
    if g.send_over_tcp(src, dst, data) {
        return Route::Tcp;
    }
    let Some(s) = src else {
        return Route::Udp(0);
    };
    if let Some(i) = ios.iter().position(|io| io.local == s) {
        return Route::Udp(i);
    }
    if g.drop_from_closed_tcp(s) {
        return Route::Tcp;
    }
    Route::Udp(0)
}

/// What one loop's locked part decided.
struct Outcome {
    /// The send budget was not spent (nothing more to send right now).
    budget_left: bool,
    /// The earliest session or handshake deadline.
    deadline: Option<Instant>,
    /// Extra sockets to keep (the local addresses paths use), if some may go.
    prune: Option<HashSet<SocketAddr>>,
    /// The endpoint is closed and every session drained: the driver ends.
    stop: bool,
}

/// The driver's state between loops.
struct Driver {
    shared: Arc<Shared>,
    ios: Vec<Io>,
    rx: Received,
    batch: Batch,
    out: Outbox,
    sleep: Pin<Box<Sleep>>,
    /// The deadline the sleep is armed for.
    armed: Option<Instant>,
    shutdown_started: bool,
    /// Sockets to prune that could not be (datagrams were still queued on them).
    prune_later: bool,
    /// Tasks to wake once the lock is released.
    wakers: Vec<Waker>,
    busy: u32,
    /// A socket refused a send (`WouldBlock`): its index.
    blocked: Option<usize>,
    /// The last receive filled the budget or the arena: more may be waiting.
    recv_exhausted: bool,
}

impl Driver {
    /// Outside the lock: what an earlier loop could not send, then receive.
    fn receive(&mut self) {
        self.blocked = self.out.send(&self.ios);
        self.recv_exhausted = self.rx.recv(&self.ios);
    }

    /// Moves to a rebound primary socket and adopts the sockets of added paths.
    fn adopt_sockets(&mut self, g: &mut Inner) {
        if let Some(s) = g.take_rebind() {
            match adopt_socket(s) {
                Ok(new) => {
                    tracing::info!(target: "phantom::runtime", old = %g.local(), new = %new.local, "rebound socket");
                    let old = g.local();
                    g.set_local(new.local);
                    g.rebind_sessions(old, new.local);
                    // Datagrams queued on the old socket are lost: loss recovery repairs.
                    self.out.queue.retain(|r| r.sock != 0);
                    if self.blocked == Some(0) {
                        self.blocked = None;
                    }
                    // What the old socket received still counts.
                    self.deliver(g);
                    if let Some(first) = self.ios.first_mut() {
                        *first = new;
                    }
                }
                Err(e) => {
                    tracing::warn!(target: "phantom::runtime", error = %e, "rebind failed");
                }
            }
        }
        for s in g.take_new_sockets() {
            match adopt_socket(s) {
                Ok(new) => {
                    tracing::debug!(target: "phantom::runtime", local = %new.local, "extra path socket");
                    self.ios.push(new);
                }
                Err(e) => {
                    tracing::warn!(target: "phantom::runtime", error = %e, "cannot adopt a path socket");
                }
            }
        }
    }

    /// Hands the received datagrams to the sessions and handshakes.
    fn deliver(&mut self, g: &mut Inner) {
        let now = g.now();
        self.rx.deliver(g, &self.ios, now);
    }

    /// Builds what the handshakes and the dirty sessions `touched` send, coalescing
    /// datagrams into GSO batches (bounded; nothing new while a socket is full).
    /// Returns whether the budget was left unspent.
    fn transmit(&mut self, g: &mut Inner, touched: &BTreeSet<u64>, now: Instant) -> bool {
        if self.blocked.is_some() {
            return true;
        }
        let mut sent = 0usize;
        while let Some(o) = g.pop_handshake_out() {
            sent += 1;
            let Route::Udp(i) = route(g, &self.ios, o.src, o.dst, &o.data) else {
                continue;
            };
            let len = o.data.len();
            self.out.queue.push_back(Ready {
                sock: i,
                dst: o.dst,
                buf: o.data,
                len,
                segment: None,
            });
        }
        let mut budget_left = true;
        'conns: for &h in touched {
            loop {
                if sent >= SEND_BUDGET {
                    budget_left = false;
                    break 'conns;
                }
                let Some(t) = g.poll_transmit(h, now, self.batch.slot()) else {
                    break;
                };
                sent += 1;
                let Route::Udp(i) =
                    route(g, &self.ios, Some(t.src), t.dst, self.batch.built(t.len))
                else {
                    continue;
                };
                let gso = self.ios.get(i).map_or(1, |io| io.gso);
                self.batch.take_built(&mut self.out, i, t.dst, t.len, gso);
            }
            g.clear_dirty(h);
        }
        self.batch.finish(&mut self.out);
        budget_left
    }

    /// Drains the events of the sessions `touched` (and acts on the carrier actions
    /// they call for), forgets drained sessions, and decides which extra sockets may
    /// close and whether the driver stops.
    fn process_events(
        &mut self,
        g: &mut Inner,
        touched: &BTreeSet<u64>,
    ) -> (Option<HashSet<SocketAddr>>, bool) {
        let actions = g.process_events(touched);
        fallback::apply(&self.shared, g, actions);
        g.reap(touched);
        if std::mem::take(&mut self.prune_later) {
            g.request_prune();
        }
        // Close the extra sockets no path uses any more (failed or abandoned paths,
        // closed sessions) once nothing is queued on them; the primary socket stays.
        let prune = (g.take_prune() && self.ios.len() > 1).then(|| g.locals_in_use());
        let stop = g.is_finished();
        if stop {
            tracing::debug!(target: "phantom::runtime", local = %g.local(), "driver stopped");
            g.stop();
        }
        (prune, stop)
    }

    /// One loop's work under the endpoint's lock.
    fn locked_step(&mut self) -> Outcome {
        let shared = Arc::clone(&self.shared);
        let mut g = shared.lock();
        self.adopt_sockets(&mut g);
        if !self.shutdown_started && g.wants_shutdown() {
            self.shutdown_started = true;
            g.shut_down(AppCode(0), b"endpoint closed");
        }
        let now = g.now();
        self.deliver(&mut g);
        g.on_timeouts(now);
        let touched = g.dirty_sessions();
        let budget_left = self.transmit(&mut g, &touched, now.instant);
        let (prune, stop) = self.process_events(&mut g, &touched);
        g.take_wakers(&mut self.wakers);
        // A deadline already past (a timer the session keeps) must not spin.
        let floor = now.instant + Duration::from_millis(1);
        Outcome {
            budget_left,
            deadline: g.next_deadline().map(|d| d.max(floor)),
            prune,
            stop,
        }
    }

    /// Outside the lock: sends what was built (unless a socket is full).
    fn send(&mut self) {
        if self.blocked.is_none() {
            self.blocked = self.out.send(&self.ios);
        }
    }

    /// Closes the extra sockets not in `in_use` once nothing is queued on them.
    fn prune_sockets(&mut self, in_use: &HashSet<SocketAddr>) {
        if !self.out.queue.is_empty() {
            self.prune_later = true;
            return;
        }
        let mut first = true;
        self.ios.retain(|io| {
            let keep = first || in_use.contains(&io.local);
            first = false;
            if !keep {
                tracing::debug!(target: "phantom::runtime", local = %io.local, "path socket closed");
            }
            keep
        });
    }

    /// Sleeps until a socket is readable, a handle notifies, the deadline passes, or
    /// a full socket becomes writable.
    async fn wait(&mut self, deadline: Option<Instant>) {
        if deadline != self.armed {
            self.armed = deadline;
            if let Some(d) = deadline {
                self.sleep.as_mut().reset(tokio::time::Instant::from_std(d));
            }
        }
        let blocked = self.blocked.and_then(|i| self.ios.get(i));
        let armed = self.armed.is_some();
        tokio::select! {
            () = readable(&self.ios) => {}
            () = self.shared.notify.notified() => {}
            () = &mut self.sleep, if armed => {
                // Fired: force a re-arm on the next loop even if the deadline is equal.
                self.armed = None;
            }
            r = async { blocked?.socket.writable().await.err() }, if blocked.is_some() => {
                if let Some(e) = r {
                    tracing::warn!(target: "phantom::runtime", error = %e, "socket error");
                }
            }
        }
    }
}

/// Runs the endpoint until it is closed and every session drained.
///
/// Each loop takes the endpoint's lock once, and only for the sessions' work: the
/// receive system calls happen before it (into `Received`), the send system calls
/// after it (from the `Outbox`), so application tasks copying stream data in and out
/// of sessions wait only for session processing and sealing, never for the kernel.
pub(crate) async fn run(shared: Arc<Shared>, socket: UdpSocket) {
    let primary = match Io::new(socket) {
        Ok(io) => io,
        Err(e) => {
            tracing::error!(target: "phantom::runtime", error = %e, "cannot set up the socket");
            shared.lock().shut_down(AppCode(0), b"socket error");
            let _ = shared.shutdown.send(true);
            return;
        }
    };
    let mut d = Driver {
        shared,
        ios: vec![primary],
        rx: Received::new(),
        batch: Batch::new(),
        out: Outbox::new(),
        sleep: Box::pin(tokio::time::sleep(Duration::from_secs(3600))),
        armed: None,
        shutdown_started: false,
        prune_later: false,
        wakers: Vec::new(),
        busy: 0,
        blocked: None,
        recv_exhausted: false,
    };
    loop {
        d.receive();
        let o = d.locked_step();
        // Outside the lock: wake the tasks waiting on sessions (they may take the
        // lock at once), then send what was built.
        for w in d.wakers.drain(..) {
            w.wake();
        }
        d.send();
        if let Some(in_use) = o.prune {
            d.prune_sockets(&in_use);
        }
        if o.stop {
            let _ = d.shared.shutdown.send(true);
            return;
        }
        if d.recv_exhausted || (d.blocked.is_none() && !o.budget_left) {
            // More work is waiting: go on, letting other tasks run every few loops.
            d.busy = d.busy.wrapping_add(1);
            if d.busy.is_multiple_of(YIELD_EVERY) {
                tokio::task::yield_now().await;
            }
            continue;
        }
        d.wait(o.deadline).await;
    }
}
