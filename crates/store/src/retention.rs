//! What the state keeps and for how long: the in-memory event ring, the on-disk event history,
//! the window of create request ids, and what an event may carry. See docs/storage.md.
//!
//! Every bound here is a function of the replicated log only (revisions, serialized sizes, the
//! time stamped in command envelopes), so replicas prune the same way whatever their batching.

use crate::resource::Resource;
use andromede_api::v1::{Event, Instance};
use std::collections::VecDeque;

/// Events kept in memory for watchers; older revisions are answered from SQLite.
pub const EVENT_RING: usize = 20_000;
/// Approximate bytes of events kept in memory.
pub const EVENT_RING_BYTES: usize = 16 << 20;
/// Events kept on disk for watchers resuming from an old revision; older ones must re-list.
pub const EVENT_HISTORY: Bounds = Bounds {
    count: 200_000,
    bytes: 128 << 20,
};
/// A create's request id is remembered while its resource exists and for this long after the
/// create, whichever is later.
pub const REQUEST_ID_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;

/// A bound in count and in bytes; whichever is reached first evicts the oldest entries, the
/// newest entry is always kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub count: u64,
    pub bytes: u64,
}

impl Bounds {
    /// Whether `count` entries weighing `bytes` exceed the bound (one entry never does).
    pub fn exceeded(&self, count: u64, bytes: u64) -> bool {
        count > 1 && (count > self.count || bytes > self.bytes)
    }
}

/// The resource as an event may show it: without credential hashes, user-data or SSH keys,
/// which only the resource's own API reads and the host running it receive.
pub fn event_json<T: Resource>(r: &T) -> String {
    let mut public = r.clone();
    public.redact();
    if let Some(i) = (&mut public as &mut dyn std::any::Any).downcast_mut::<Instance>() {
        i.user_data.clear();
        i.ssh_keys.clear();
    }
    serde_json::to_string(&public).unwrap_or_default()
}

/// Bytes an event holds in memory, near enough to bound the ring.
fn weight(e: &Event) -> u64 {
    (e.resource_json.len() + e.kind.len() + e.id.len() + e.name.len() + e.project_id.len() + 64)
        as u64
}

/// The most recent events, bounded in count and bytes.
#[derive(Debug, Clone)]
pub struct EventRing {
    events: VecDeque<Event>,
    bytes: u64,
    bounds: Bounds,
}

impl Default for EventRing {
    fn default() -> Self {
        Self::with_bounds(Bounds {
            count: EVENT_RING as u64,
            bytes: EVENT_RING_BYTES as u64,
        })
    }
}

impl EventRing {
    pub fn with_bounds(bounds: Bounds) -> Self {
        Self {
            events: VecDeque::new(),
            bytes: 0,
            bounds,
        }
    }

    /// Appends the newest event, evicting the oldest ones past the bounds.
    pub fn push(&mut self, e: Event) {
        self.bytes += weight(&e);
        self.events.push_back(e);
        while self.bounds.exceeded(self.events.len() as u64, self.bytes) {
            if let Some(old) = self.events.pop_front() {
                self.bytes -= weight(&old);
            }
        }
    }

    pub fn front(&self) -> Option<&Event> {
        self.events.front()
    }

    pub fn back(&self) -> Option<&Event> {
        self.events.back()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Event> {
        self.events.iter()
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Bytes held, as counted against the byte bound.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(revision: u64, size: usize) -> Event {
        Event {
            revision,
            resource_json: "x".repeat(size),
            ..Default::default()
        }
    }

    #[test]
    fn ring_is_bounded_in_count_and_bytes_whatever_the_push_order() {
        let b = Bounds {
            count: 4,
            bytes: 1000,
        };
        let mut r = EventRing::with_bounds(b);
        for i in 1..=10 {
            r.push(ev(i, 10));
        }
        assert_eq!(r.len(), 4);
        assert_eq!(r.front().map(|e| e.revision), Some(7));
        // Big events: the byte bound bites before the count bound.
        r.push(ev(11, 400));
        r.push(ev(12, 400));
        assert!(r.bytes() <= 1000, "{} bytes", r.bytes());
        assert_eq!(
            r.iter().map(|e| e.revision).collect::<Vec<_>>(),
            vec![11, 12]
        );
        // An event alone above the byte bound is still kept: watchers must see the newest.
        r.push(ev(13, 5000));
        assert_eq!(r.len(), 1);
        assert_eq!(r.back().map(|e| e.revision), Some(13));
    }
}
