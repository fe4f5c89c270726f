//! Change events from Vault's audit stream (`AUDIT_LISTEN_ADDR`, a `socket` audit device over
//! UDP): a KV write to a secret some objects read drops the cached read and sends those objects
//! to the urgent lane, so the Secret follows within about a second instead of at the next poll.
//!
//! The stream is a hint, never data: values still come from an authenticated read. A forged
//! or replayed datagram can at most cause an early read, and those are bounded — one per secret
//! per `AUDIT_MIN_REFRESH`, `AUDIT_MAX_READS_PER_SECOND` in all — and an entry is dropped unread
//! when it is too large, not JSON, carries clear values, or comes from outside
//! `AUDIT_ALLOWED_SOURCES`. Nothing of an entry is logged or kept. Polling stays the safety net
//! for lost datagrams.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::triggers::Retrigger;
use super::Shared;
use crate::config::AuditListener;
use crate::vault::audit_entry::{changed_secret, MAX_ENTRY_BYTES};

/// One second's budget of event-driven reads.
struct Budget {
    per_second: u32,
    left: u32,
    window: Instant,
}

impl Budget {
    fn take(&mut self, now: Instant) -> bool {
        if now.duration_since(self.window) >= Duration::from_secs(1) {
            self.window = now;
            self.left = self.per_second;
        }
        if self.left == 0 {
            return false;
        }
        self.left -= 1;
        true
    }
}

fn allowed(cfg: &AuditListener, ip: IpAddr) -> bool {
    cfg.allowed_sources.is_empty() || cfg.allowed_sources.iter().any(|n| n.contains(&ip))
}

pub async fn listen(shared: Arc<Shared>, retrigger: Arc<Retrigger>, cfg: AuditListener) {
    let socket = match UdpSocket::bind(cfg.addr).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(addr = %cfg.addr, error = %e, "cannot listen for Vault audit events; polling only");
            return;
        }
    };
    tracing::info!(addr = %cfg.addr, "listening for Vault audit events");
    let count = |result: &str| {
        shared
            .metrics
            .audit_events
            .with_label_values(&[result])
            .inc()
    };
    // One byte more than accepted: a datagram that fills it was larger (and truncated).
    let mut buf = vec![0u8; MAX_ENTRY_BYTES + 1];
    // Secret → its last event-driven read. Only secrets some object reads get in, so it is
    // bounded by the secrets read; old entries are dropped as it grows.
    let mut recent: HashMap<String, Instant> = HashMap::new();
    let mut budget = Budget {
        per_second: cfg.max_per_second,
        left: cfg.max_per_second,
        window: Instant::now(),
    };
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "audit socket error");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let now = Instant::now();
        if !allowed(&cfg, from.ip()) {
            count("source");
            continue;
        }
        let secret = match changed_secret(&buf[..n]) {
            Ok(s) => s,
            Err(why) => {
                count(why.as_str());
                continue;
            }
        };
        let (uids, reads) = shared.readers.of(&secret);
        if uids.is_empty() {
            count("unknown_secret");
            continue;
        }
        if recent
            .get(&secret)
            .is_some_and(|t| now.duration_since(*t) < cfg.min_refresh)
        {
            count("too_soon");
            continue;
        }
        if !budget.take(now) {
            count("rate_limited");
            continue;
        }
        if recent.len() >= 10_000 {
            recent.retain(|_, t| now.duration_since(*t) < cfg.min_refresh);
        }
        recent.insert(secret, now);
        count("matched");
        for r in &reads {
            shared.kv.invalidate(r).await;
        }
        for uid in &uids {
            shared.objects.changed(uid, now.into_std());
        }
        for resend in retrigger.select(|o| o.uid().is_some_and(|u| uids.contains(&u))) {
            resend();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_budget_refills_each_second() {
        let mut b = Budget {
            per_second: 2,
            left: 2,
            window: Instant::now(),
        };
        let t = Instant::now();
        assert!(b.take(t) && b.take(t));
        assert!(!b.take(t + Duration::from_millis(999)));
        assert!(b.take(t + Duration::from_secs(1)));
    }

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
