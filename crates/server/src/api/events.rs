//! EventService: a resumable watch of resource events (from memory, or disk for old revisions).

use super::{caller, project_id, Api};
use andromede_api::v1::event_service_server::EventService;
use andromede_api::v1::{Event, WatchRequest};
use andromede_store::retention::EVENT_HISTORY;
use std::pin::Pin;
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

type EventStream = Pin<Box<dyn Stream<Item = Result<Event, Status>> + Send>>;

#[tonic::async_trait]
impl EventService for Api {
    type WatchStream = EventStream;

    async fn watch(&self, r: Request<WatchRequest>) -> Result<Response<EventStream>, Status> {
        let who = caller(&r)?;
        let r = r.into_inner();
        // A project-scoped watcher sees its project's events only, whatever it asks.
        let project = if r.project.is_empty() && who.confined_to().is_none() {
            String::new()
        } else {
            self.read(false, |s| project_id(s, &who, "project", &r.project))
                .await??
        };
        // Tokens are shown to those who may list them.
        let tokens_too = who.allows(andromede_auth::access::TOKEN_READ);
        // Held by the forwarding task below: the slot frees when the watch ends.
        let slot = self.node.watch_slot()?;
        // Subscribe before reading history so nothing falls between the two.
        let mut live = self.node.shared.events.subscribe();
        let (ring_start, ring) = self.node.read(|s| {
            let start = s
                .events
                .front()
                .map(|e| e.revision)
                .unwrap_or(s.revision.saturating_add(1));
            let evs: Vec<Event> = s
                .events
                .iter()
                .filter(|e| e.revision > r.from_revision)
                .cloned()
                .collect();
            (start, evs)
        });
        let mut history = Vec::new();
        if before(r.from_revision, ring_start) {
            history = self
                .node
                .shared
                .events_since(r.from_revision, EVENT_HISTORY.count as u32)
                .await
                .map_err(|e| Status::internal(format!("reading the event history: {e}")))?;
            let first = history.first().map_or(ring_start, |e| e.revision);
            if !resumable(r.from_revision, first) {
                return Err(Status::out_of_range(format!(
                    "revision {} is compacted; list resources and watch from the current revision",
                    r.from_revision
                )));
            }
        }
        let kinds = r.kinds.clone();
        let keep = move |e: &Event| {
            (kinds.is_empty() || kinds.contains(&e.kind))
                && (project.is_empty() || e.project_id == project)
                && (tokens_too || e.kind != "api_token")
        };
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(async move {
            let _slot = slot;
            let mut last = r.from_revision;
            for e in history.into_iter().chain(ring) {
                if e.revision <= last {
                    continue;
                }
                last = e.revision;
                if keep(&e) && tx.send(Ok(e)).await.is_err() {
                    return;
                }
            }
            loop {
                // A watcher that hung up ends the task (and frees its slot) without waiting
                // for the next event.
                let next = tokio::select! {
                    e = live.recv() => e,
                    () = tx.closed() => return,
                };
                match next {
                    Ok(e) => {
                        if e.revision <= last {
                            continue;
                        }
                        last = e.revision;
                        if keep(&e) && tx.send(Ok(e)).await.is_err() {
                            return;
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        let _ = tx
                            .send(Err(Status::data_loss(format!(
                                "watcher fell behind after revision {last}; resume from it"
                            ))))
                            .await;
                        return;
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// Whether a watch resuming after revision `from` wants events older than `first`. Revisions
/// are u64 end to end: past u64::MAX nothing is wanted but live events.
fn before(from: u64, first: u64) -> bool {
    from.checked_add(1).is_some_and(|want| want < first)
}

/// Whether a watch resuming after `from` can be served when `first` is the oldest revision on
/// hand: nothing it wants may have been pruned.
fn resumable(from: u64, first: u64) -> bool {
    !before(from, first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resuming_from_any_revision_never_overflows() {
        assert!(before(0, 5));
        assert!(!before(4, 5));
        assert!(!before(u64::MAX - 1, 5));
        assert!(!before(u64::MAX, 5));
        assert!(!before(u64::MAX, u64::MAX));
        assert!(resumable(u64::MAX, 1));
        assert!(resumable(4, 5));
        assert!(!resumable(3, 5));
    }
}
