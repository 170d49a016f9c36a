//! The MAC learning table: which port a unicast source address was last seen on.
//!
//! Entries age out after [`MAX_AGE`] (uml_switch's 100 s) without traffic from that address.
//! A port's entries are all forgotten when the port goes away (uml_switch forgets only the
//! last one and lets the rest linger until they age out). The table holds at most
//! [`MAX_ENTRIES`] addresses, so a guest spraying random source addresses cannot grow it
//! without bound; past that, new addresses are simply not learned (their frames flood).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long an address stays learned without traffic from it (uml_switch: 100 s).
pub const MAX_AGE: Duration = Duration::from_secs(100);
/// The most addresses the table holds.
pub const MAX_ENTRIES: usize = 16 * 1024;

pub type PortId = usize;

#[derive(Debug, Clone, Copy)]
struct Entry {
    port: PortId,
    seen: Instant,
}

/// What learning a source address changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    New,
    Moved { from: PortId },
    Refreshed,
    TableFull,
}

#[derive(Debug, Default)]
pub struct MacTable {
    entries: HashMap<[u8; 6], Entry>,
}

/// Whether `mac` is a group (multicast or broadcast) address: bit 0 of the first byte.
pub fn is_multicast(mac: &[u8; 6]) -> bool {
    mac[0] & 1 == 1
}

impl MacTable {
    /// Record that `mac` was seen on `port` at `now`. Group addresses are never learned.
    pub fn learn(&mut self, mac: [u8; 6], port: PortId, now: Instant) -> Learned {
        if is_multicast(&mac) {
            return Learned::Refreshed;
        }
        let len = self.entries.len();
        match self.entries.get_mut(&mac) {
            Some(entry) => {
                let from = entry.port;
                *entry = Entry { port, seen: now };
                if from == port {
                    Learned::Refreshed
                } else {
                    Learned::Moved { from }
                }
            }
            None if len >= MAX_ENTRIES => Learned::TableFull,
            None => {
                self.entries.insert(mac, Entry { port, seen: now });
                Learned::New
            }
        }
    }

    /// The port `mac` was learned on, unless it has aged out.
    pub fn lookup(&self, mac: &[u8; 6], now: Instant) -> Option<PortId> {
        let entry = self.entries.get(mac)?;
        (now.saturating_duration_since(entry.seen) <= MAX_AGE).then_some(entry.port)
    }

    /// Forget every address learned on `port`.
    pub fn forget_port(&mut self, port: PortId) {
        self.entries.retain(|_, e| e.port != port);
    }

    /// Drop entries older than [`MAX_AGE`]; returns how many went.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.entries.len();
        self.entries
            .retain(|_, e| now.saturating_duration_since(e.seen) <= MAX_AGE);
        before - self.entries.len()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 6] = [0xfe, 0xfd, 0, 0, 0, 1];
    const B: [u8; 6] = [0xfe, 0xfd, 0, 0, 0, 2];

    #[test]
    fn learned_address_moves_with_its_sender() {
        let now = Instant::now();
        let mut t = MacTable::default();
        assert_eq!(t.learn(A, 1, now), Learned::New);
        assert_eq!(t.lookup(&A, now), Some(1));
        assert_eq!(t.learn(A, 2, now), Learned::Moved { from: 1 });
        assert_eq!(t.lookup(&A, now), Some(2));
    }

    #[test]
    fn group_addresses_are_never_learned() {
        let mut t = MacTable::default();
        t.learn([0xff; 6], 1, Instant::now());
        t.learn([0x33, 0x33, 0, 0, 0, 1], 1, Instant::now());
        assert!(t.is_empty());
    }

    #[test]
    fn entries_age_out_after_100_seconds() {
        let start = Instant::now();
        let mut t = MacTable::default();
        t.learn(A, 1, start);
        t.learn(B, 1, start + Duration::from_secs(50));
        let later = start + Duration::from_secs(101);
        assert_eq!(t.lookup(&A, later), None);
        assert_eq!(t.lookup(&B, later), Some(1));
        assert_eq!(t.expire(later), 1);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn removing_a_port_forgets_all_its_addresses() {
        let now = Instant::now();
        let mut t = MacTable::default();
        t.learn(A, 1, now);
        t.learn(B, 1, now);
        t.learn([0xfe, 0xfd, 0, 0, 0, 3], 2, now);
        t.forget_port(1);
        assert_eq!(t.lookup(&A, now), None);
        assert_eq!(t.lookup(&B, now), None);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn table_stops_growing_at_its_bound() {
        let now = Instant::now();
        let mut t = MacTable::default();
        for i in 0..MAX_ENTRIES + 10 {
            let b = (i as u32).to_be_bytes();
            t.learn([2, 0, b[0], b[1], b[2], b[3]], 1, now);
        }
        assert_eq!(t.len(), MAX_ENTRIES);
    }
}
