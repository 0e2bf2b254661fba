//! `GET /console/stream`: the decisions as server-sent events, for the
//! console's live table (and anyone with `curl -N`). It starts after the
//! `after` cursor (or the browser's `Last-Event-ID` when it reconnects;
//! without either, with the newest 50 rows: the backfill) and then
//! follows the audit database, so every replica's decisions show, not
//! only this one's. Each event is `event: decision`, `id:` the row's
//! cursor, `data:` a [`Row`] as JSON — never a prompt or an argument.

use super::pages::DecisionFilters;
use super::session;
use super::view::Row;
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use futures_util::stream::{self, Stream};
use palisade_audit::{Filter, Store};
use serde::Deserialize;
use std::convert::Infallible;
use std::time::Duration;

/// How often the audit is asked for newer rows.
const POLL: Duration = Duration::from_millis(250);
/// Rows sent at once; more wait for the next poll.
const BATCH: i64 = 200;
/// Rows of the backfill when the stream starts with no cursor.
const BACKFILL: i64 = 50;

#[derive(Debug, Deserialize)]
pub struct Params {
    #[serde(flatten)]
    filters: DecisionFilters,
    /// `TIME_MS.ID` of the last row the page shows.
    after: Option<String>,
}

/// A cursor `TIME_MS.ID`, if it reads as one.
fn parse_cursor(text: &str) -> Option<(i64, String)> {
    let (ms, id) = text.split_once('.')?;
    Some((ms.parse().ok()?, id.to_owned()))
}

/// `GET /console/stream?namespace=&agent=&decision=&reason=&after=`.
pub async fn decisions(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    if session::viewer(&state, &headers).is_none() {
        return (StatusCode::UNAUTHORIZED, "log in at /console/login").into_response();
    }
    let Some(store) = state.audit_reader.as_ref().map(|r| r.store.clone()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .or(params.after.as_deref())
        .and_then(parse_cursor);
    let filter = params.filters.filter();
    let sse = Sse::new(follow(store, filter, resume)).keep_alive(KeepAlive::default());
    super::guarded(sse.into_response())
}

/// The stream of rows matching `filter` after `cursor`.
fn follow(
    store: Store,
    filter: Filter,
    cursor: Option<(i64, String)>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let start = (store, filter, cursor, true);
    stream::unfold(start, |(store, filter, cursor, first)| async move {
        let mut events = Vec::new();
        let mut cursor = cursor;
        let mut first = first;
        loop {
            let rows = if first && cursor.is_none() {
                let newest = Filter {
                    limit: Some(BACKFILL),
                    newest_first: true,
                    ..filter.clone()
                };
                store.query(&newest).await.map(|mut r| {
                    r.reverse();
                    r
                })
            } else {
                let next = Filter {
                    after: cursor.clone(),
                    limit: Some(BATCH),
                    ..filter.clone()
                };
                store.query(&next).await
            };
            first = false;
            match rows {
                Ok(rows) => {
                    for r in &rows {
                        let row = Row::of(&r.event);
                        cursor = Some((r.event.time.as_millisecond(), r.event.id.clone()));
                        if let Ok(e) = Event::default()
                            .event("decision")
                            .id(&row.cursor)
                            .json_data(&row)
                        {
                            events.push(Ok(e));
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "console stream: audit query failed; retrying");
                    tokio::time::sleep(POLL * 8).await;
                    events.push(Ok(Event::default()
                        .event("unavailable")
                        .data("audit database unavailable")));
                }
            }
            if !events.is_empty() {
                return Some((stream::iter(events), (store, filter, cursor, first)));
            }
            tokio::time::sleep(POLL).await;
        }
    })
    .flatten()
}
