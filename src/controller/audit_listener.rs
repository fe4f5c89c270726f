//! Change events from Vault's audit stream (`AUDIT_LISTEN_ADDR`, a `socket` audit device over
//! UDP, or TCP): a KV write to a secret some objects read drops the cached read and sends those objects
//! to the urgent lane, so the Secret follows within about a second instead of at the next poll.
//!
//! The stream is a hint, never data: values still come from an authenticated read. A forged
//! or replayed datagram can at most cause an early read, and those are bounded — one per secret
//! per `AUDIT_MIN_REFRESH` (`event_pacing`), `AUDIT_MAX_READS_PER_SECOND` in all — and an entry is dropped unread
//! when it is too large, not JSON, carries clear values, or comes from outside
//! `AUDIT_ALLOWED_SOURCES`. Nothing of an entry is logged or kept. Polling stays the safety net
//! for lost datagrams.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::budget::Budget;
use super::event_pacing::{Pace, Pacer};
use super::triggers::Retrigger;
use super::Shared;
use crate::config::AuditListener;
use crate::vault::audit_entry::{changed_secret, Dropped, EntryLines, MAX_ENTRY_BYTES};

fn allowed(cfg: &AuditListener, ip: IpAddr) -> bool {
    cfg.allowed_sources.is_empty() || cfg.allowed_sources.iter().any(|n| n.contains(&ip))
}

/// Concurrent TCP connections accepted (Vault keeps one per node and device).
const MAX_CONNECTIONS: usize = 8;

/// What the UDP and TCP listeners share: the bounds, and what a matched event sets off.
struct Events {
    shared: Arc<Shared>,
    retrigger: Arc<Retrigger>,
    cfg: AuditListener,
    /// Each secret's last event-driven read, and whether one is deferred.
    pacer: Mutex<Pacer>,
    /// Event-driven reads in all (`AUDIT_MAX_READS_PER_SECOND`).
    budget: Budget,
}

impl Events {
    fn count(&self, result: &str) {
        self.shared
            .metrics
            .audit_events
            .with_label_values(&[result])
            .inc();
    }

    fn pacer(&self) -> std::sync::MutexGuard<'_, Pacer> {
        self.pacer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One entry as received (or why it was dropped before it was parsed).
    fn entry(self: &Arc<Self>, entry: Result<&[u8], Dropped>) {
        let now = Instant::now();
        let secret = match entry.and_then(changed_secret) {
            Ok(s) => s,
            Err(why) => return self.count(why.as_str()),
        };
        if !self.shared.readers.any(&secret) {
            return self.count("unknown_secret");
        }
        let pace = self.pacer().event(&secret, now);
        match pace {
            Pace::Now => {
                if self.read(secret, now) {
                    self.count("matched");
                }
            }
            Pace::Defer(at) => {
                self.count("deferred");
                let events = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep_until(at).await;
                    events.read(secret, now);
                });
            }
            Pace::Pending => self.count("too_soon"),
        }
    }

    /// Drops the cached reads of `secret` and sends the objects that read it to the urgent
    /// lane, if the read budget allows; `event_at` is when the event arrived. Whether it did.
    fn read(&self, secret: String, event_at: Instant) -> bool {
        let (uids, reads) = self.shared.readers.of(&secret);
        if uids.is_empty() || !self.budget.take() {
            self.pacer().refused(&secret);
            if !uids.is_empty() {
                self.count("rate_limited");
            }
            return false;
        }
        self.pacer().read(secret, Instant::now());
        for r in &reads {
            self.shared.kv.invalidate(r);
        }
        for uid in &uids {
            self.shared.objects.changed(uid, event_at.into_std());
        }
        for resend in self.retrigger.select(|o| uids.contains(o.uid())) {
            resend();
        }
        true
    }
}

/// Listens on `AUDIT_LISTEN_ADDR` for a `socket` audit device: UDP datagrams, and TCP streams
/// of one entry per line (for devices with `socket_type = "tcp"`).
pub async fn listen(shared: Arc<Shared>, retrigger: Arc<Retrigger>, cfg: AuditListener) {
    let addr = cfg.addr;
    let (udp, tcp) = match (UdpSocket::bind(addr).await, TcpListener::bind(addr).await) {
        (Ok(u), Ok(t)) => (u, t),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(addr = %addr, error = %e, "cannot listen for Vault audit events; polling only");
            return;
        }
    };
    tracing::info!(addr = %addr, "listening for Vault audit events (UDP and TCP)");
    let per_second = cfg.max_per_second;
    let pacer = Mutex::new(Pacer::new(cfg.min_refresh));
    let events = Arc::new(Events {
        shared,
        retrigger,
        cfg,
        pacer,
        budget: Budget::per_second(per_second),
    });
    tokio::spawn(accept(events.clone(), tcp));
    datagrams(events, udp).await;
}

async fn datagrams(events: Arc<Events>, socket: UdpSocket) {
    // One byte more than accepted: a datagram that fills it was larger (and truncated).
    let mut buf = vec![0u8; MAX_ENTRY_BYTES + 1];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "audit socket error");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !allowed(&events.cfg, from.ip()) {
            events.count("source");
            continue;
        }
        events.entry(Ok(&buf[..n]));
    }
}

async fn accept(events: Arc<Events>, listener: TcpListener) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "audit listener error");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !allowed(&events.cfg, from.ip()) {
            events.count("source");
            continue;
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            events.count("connection_limit");
            continue;
        };
        let events = events.clone();
        tokio::spawn(async move {
            stream_entries(&events, stream).await;
            drop(slot);
        });
    }
}

/// One TCP connection's entries, a line each, until the peer closes it.
async fn stream_entries(events: &Arc<Events>, mut stream: TcpStream) {
    let mut lines = EntryLines::default();
    let mut buf = vec![0u8; 8 * 1024];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        lines.feed(&buf[..n], |e| events.entry(e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources() {
        let mut cfg = AuditListener {
            addr: "127.0.0.1:0".parse().unwrap(),
            min_refresh: Duration::from_secs(1),
            max_per_second: 1,
            allowed_sources: vec![],
        };
        assert!(allowed(&cfg, "10.1.2.3".parse().unwrap()));
        cfg.allowed_sources = vec!["10.0.0.0/8".parse().unwrap()];
        assert!(allowed(&cfg, "10.1.2.3".parse().unwrap()));
        assert!(!allowed(&cfg, "192.168.0.1".parse().unwrap()));
    }
}
