//! What the shopper's and the supplier's pages of one order share: the live status (state,
//! pending confirmation, tracking, timeline), its polling fragment, and the order's lines.

use super::page::{self, PageError, PageResult};
use super::views::{self, TimelineEntry};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;
use askama::Template;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use holdfast_core::order_number::OrderNumber;
use holdfast_retail::orders::{self, OrderView};
use serde::Deserialize;

/// What the live part of an order's page shows.
pub struct OrderStatus {
    pub number: String,
    pub state: String,
    pub total: String,
    pub settlement_amount: String,
    pub pending: Option<String>,
    pub parcel: String,
    pub tracking: Vec<String>,
    pub timeline: Vec<TimelineEntry>,
    pub version: String,
    /// The page's path prefix (`/shop/orders` or `/supplier/orders`) for the polling URL.
    pub base: &'static str,
}

impl OrderStatus {
    pub async fn load(
        state: &AppState,
        principal: &Principal,
        number: &OrderNumber,
        base: &'static str,
    ) -> Result<(OrderView, OrderStatus), PageError> {
        let view = orders::get_order(&state.db, principal.party, principal.role, number).await?;
        let history =
            orders::order_history(&state.db, principal.party, principal.role, number).await?;
        let timeline: Vec<TimelineEntry> = history.iter().map(TimelineEntry::from).collect();
        let tracking: Vec<String> = view
            .parcel
            .iter()
            .flat_map(|p| p.tracking.iter())
            .map(|t| {
                format!(
                    "{} — {} ({})",
                    views::label(&t.kind),
                    t.location,
                    views::when(t.at)
                )
            })
            .collect();
        let pending = view
            .pending_confirmation
            .as_ref()
            .map(|p| views::when(p.expires_at));
        let state_label = views::label(&view.state);
        let parcel = view
            .parcel
            .as_ref()
            .map(|p| views::label(&p.status))
            .unwrap_or_default();
        let version = views::fingerprint(&[
            &state_label,
            pending.as_deref().unwrap_or("-"),
            &parcel,
            &timeline.len().to_string(),
        ]);
        let status = OrderStatus {
            number: view.order_number.to_string(),
            state: state_label,
            total: view.total.to_string(),
            settlement_amount: view
                .settlement_amount
                .map(|m| m.to_string())
                .unwrap_or_default(),
            pending,
            parcel,
            tracking,
            timeline,
            version,
            base,
        };
        Ok((view, status))
    }
}

/// One line of an order as pages print it.
pub struct Line {
    pub name: String,
    pub unit_price: String,
    pub quantity: u32,
}

pub fn lines_of(view: &OrderView) -> Vec<Line> {
    view.lines
        .iter()
        .map(|l| Line {
            name: l.name.clone(),
            unit_price: l.unit_price.to_string(),
            quantity: l.quantity,
        })
        .collect()
}

/// An order number from a path or a form.
pub fn parse_number(raw: &str) -> Result<OrderNumber, PageError> {
    OrderNumber::parse(raw.trim()).map_err(|e| {
        PageError::Api(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_order_number",
            e.to_string(),
        ))
    })
}

#[derive(Template)]
#[template(path = "console/shop/order_status.html")]
struct OrderStatusFragment {
    status: OrderStatus,
}

/// What the page polls every 2 s.
#[derive(Deserialize)]
pub struct Shown {
    /// The fingerprint of what the page shows now.
    pub v: Option<String>,
}

/// The live status of an order, or 204 while it is what the page already shows.
pub async fn status_fragment(
    state: &AppState,
    principal: &Principal,
    raw: &str,
    shown: Shown,
    base: &'static str,
) -> PageResult {
    let number = parse_number(raw)?;
    let (_, status) = OrderStatus::load(state, principal, &number, base).await?;
    if shown.v.as_deref() == Some(status.version.as_str()) {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    page::render(&OrderStatusFragment { status })
}
