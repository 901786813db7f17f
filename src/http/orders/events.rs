//! `GET /orders/{id}/events`: the order's timeline as Server-Sent Events.
//!
//! One LISTEN connection per API process (`EventHub`) fans NOTIFYs out to
//! subscribers through a broadcast channel; a subscriber only borrows a pooled
//! connection for the moment it reads new events, so idle subscribers hold
//! none. Works across replicas (NOTIFY reaches every listener) and survives a
//! lost listener connection by also re-reading on a slow timer
//! (`ORDERS_EVENTS_FALLBACK_POLL`).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::db::orders::{self, EVENTS_CHANNEL, EventView};
use crate::domain::{OrderId, OrderStatus};
use crate::http::auth::{Caller, Role};
use crate::http::error::ApiError;
use crate::http::state::AppState;

/// Relays NOTIFYs on `order_events` to in-process subscribers.
#[derive(Clone)]
pub struct EventHub {
    tx: broadcast::Sender<Uuid>,
}

impl EventHub {
    pub fn new() -> Self {
        Self { tx: broadcast::channel(1024).0 }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Uuid> {
        self.tx.subscribe()
    }

    /// Listens until the process stops, reconnecting after errors.
    pub async fn run(self, pool: PgPool) {
        loop {
            match PgListener::connect_with(&pool).await {
                Ok(mut listener) => {
                    if let Err(e) = listener.listen(EVENTS_CHANNEL).await {
                        tracing::warn!(error = %e, "events: LISTEN failed");
                    } else {
                        while let Ok(n) = listener.recv().await {
                            if let Ok(id) = n.payload().parse::<Uuid>() {
                                // No subscribers is fine.
                                let _ = self.tx.send(id);
                            }
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "events: cannot connect the listener"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

impl Default for EventHub {
    fn default() -> Self {
        Self::new()
    }
}

/// One Server-Sent Event of the stream, as the OpenAPI document describes it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documentation only: the stream is written by `to_sse`
pub struct TimelineSseEvent {
    /// The event id; send it back as `Last-Event-ID` to resume.
    #[schema(example = "42")]
    id: String,
    /// The event's `status` (an order status, or `exception`).
    #[schema(example = "paid")]
    event: String,
    /// The timeline event as JSON (schema `EventView`).
    #[schema(example = r#"{"id":42,"status":"paid","detail":"payment captured","at":"2026-11-25T10:00:00Z"}"#)]
    data: String,
}

fn is_terminal(status: &str) -> bool {
    OrderStatus::parse(status).is_some_and(OrderStatus::is_terminal)
}

fn to_sse(e: &EventView) -> Event {
    // EventView serialises to JSON without fail (strings, numbers, a timestamp).
    Event::default().id(e.id.to_string()).event(e.status.clone()).json_data(e).unwrap_or_default()
}

struct Subscription {
    pool: PgPool,
    order: OrderId,
    last_id: i64,
    rx: broadcast::Receiver<Uuid>,
    pending: std::collections::VecDeque<EventView>,
    finished: bool,
    fallback_poll: Duration,
}

/// Status changes of an order as they happen; resumable with `Last-Event-ID`;
/// the stream ends after a terminal status.
#[utoipa::path(get, path = "/orders/{id}/events", operation_id = "streamOrderEvents", tag = "orders",
    params(("id" = String, Path, description = "Order id"),
        ("Last-Event-ID" = Option<String>, Header, description = "resume after this event `id` (anything else: from the start)")),
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "Timeline events as Server-Sent Events: `id` the event id, `event` the status, `data` the event as JSON", content_type = "text/event-stream", body = TimelineSseEvent),
    ))]
pub async fn stream(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    caller.require(&[Role::Customer, Role::Admin])?;
    let (order, _) = super::visible_order(&state, &caller, &id).await?;
    let last_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(0);
    let sub = Subscription {
        pool: state.pool.clone(),
        order,
        last_id,
        rx: state.events.subscribe(),
        pending: Default::default(),
        finished: false,
        fallback_poll: state.settings.events_fallback_poll,
    };
    let stream = futures::stream::unfold(sub, |mut sub| async move {
        loop {
            if let Some(e) = sub.pending.pop_front() {
                sub.last_id = e.id;
                if is_terminal(&e.status) {
                    sub.finished = true;
                    sub.pending.clear();
                }
                return Some((Ok(to_sse(&e)), sub));
            }
            if sub.finished {
                return None;
            }
            match orders::events_after(&sub.pool, sub.order, sub.last_id).await {
                Ok(events) if !events.is_empty() => {
                    sub.pending.extend(events);
                    continue;
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "events: read failed; retrying"),
            }
            // Wait for a NOTIFY about this order, or the fallback tick.
            let wait = async {
                loop {
                    match sub.rx.recv().await {
                        Ok(id) if id == sub.order.0 => return,
                        Ok(_) => continue,
                        Err(broadcast::error::RecvError::Lagged(_)) => return,
                        Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
                    }
                }
            };
            let _ = tokio::time::timeout(sub.fallback_poll, wait).await;
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
