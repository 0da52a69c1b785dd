//! EventService: a resumable watch of resource events (from memory, or disk for old revisions).

use super::{project_id, Api};
use andromede_api::v1::event_service_server::EventService;
use andromede_api::v1::{Event, WatchRequest};
use andromede_store::sqlite;
use std::pin::Pin;
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

type EventStream = Pin<Box<dyn Stream<Item = Result<Event, Status>> + Send>>;

#[tonic::async_trait]
impl EventService for Api {
    type WatchStream = EventStream;

    async fn watch(&self, r: Request<WatchRequest>) -> Result<Response<EventStream>, Status> {
        let r = r.into_inner();
        let project = if r.project.is_empty() {
            String::new()
        } else {
            self.read(false, |s| project_id(s, "project", &r.project))
                .await??
        };
        // Subscribe before reading history so nothing falls between the two.
        let mut live = self.node.shared.events.subscribe();
        let (ring_start, ring) = self.node.read(|s| {
            let start = s
                .events
                .front()
                .map(|e| e.revision)
                .unwrap_or(s.revision + 1);
            let evs: Vec<Event> = s
                .events
                .iter()
                .filter(|e| e.revision > r.from_revision)
                .cloned()
                .collect();
            (start, evs)
        });
        let mut history = Vec::new();
        if r.from_revision + 1 < ring_start {
            let pool = self.node.shared.pool();
            history = sqlite::events_since(&pool, r.from_revision, 200_000)
                .await
                .map_err(|e| Status::internal(e.to_string()))?;
            if history
                .first()
                .is_some_and(|e| e.revision > r.from_revision + 1)
            {
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
        };
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(async move {
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
                match live.recv().await {
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
