//! Paged lists in the API. Every list takes `limit` (1–100, default 20) and `cursor`; the lists
//! of things with a lifecycle also take `state`, `from` and `to` (creation dates, UTC, both
//! included).
//!
//! The lists answer a bare JSON array, as they did before paging: the cursor of the next page
//! travels in the `Next-Cursor` response header (absent on the last page), so no client that
//! reads the array breaks. An envelope (`{"items", "next_cursor"}`) would have changed the type
//! of every list response at once.

use crate::error::{ApiError, ApiResult};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use holdfast_core::CoreError;
use holdfast_core::paging::{CreatedRange, ListFilter, ListKind, Page, Paged};
use serde::Serialize;

/// The response header carrying the next page's cursor.
pub const NEXT_CURSOR: &str = "next-cursor";

/// The page a client asked for; a cursor this list did not give out is 400 `invalid_cursor`.
pub fn page(kind: ListKind, limit: Option<u64>, cursor: Option<&str>) -> ApiResult<Page> {
    Page::parse(kind, limit, cursor).map_err(|error| ApiError::from(CoreError::from(error)))
}

/// A list's filter from its `state`, `from` and `to` parameters.
pub fn filter<S>(
    state: Option<S>,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> ListFilter<S> {
    ListFilter {
        state,
        created: CreatedRange::new(from, to),
    }
}

/// One page as a JSON array, with the next page's cursor in the `Next-Cursor` header.
pub struct PagedJson<T>(pub Paged<T>);

impl<T> From<Paged<T>> for PagedJson<T> {
    fn from(paged: Paged<T>) -> Self {
        PagedJson(paged)
    }
}

impl<T: Serialize> IntoResponse for PagedJson<T> {
    fn into_response(self) -> Response {
        let Paged { items, next_cursor } = self.0;
        let mut response = axum::Json(items).into_response();
        // A cursor is base64url, always a valid header value.
        if let Some(value) = next_cursor.and_then(|c| HeaderValue::from_str(&c).ok()) {
            response.headers_mut().insert(NEXT_CURSOR, value);
        }
        response
    }
}

/// The OpenAPI description of the header.
pub const NEXT_CURSOR_DOC: &str = "The `cursor` of the next page; absent on the last page.";
