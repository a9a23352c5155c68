//! What the prescriber's, the drugstore's and the patient's pages share: the caller as the
//! pharmacy vertical sees it, prescription numbers from a path, a receipt and a list made
//! printable, the list's filter and pager, and the live update of a prescription waiting on
//! the patient's phone. No rule lives here: who may see what is the vertical's
//! (`holdfast_pharmacy::prescriptions`).

use super::page::PageError;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use holdfast_core::paging::{ListKind, Page, Paged};
use holdfast_pharmacy::number::PrescriptionNumber;
use holdfast_pharmacy::parties::{self, Actor};
use holdfast_pharmacy::prescriptions::{
    HistoryEntry, ListFilter, PrescriptionReceipt, PrescriptionSummary,
};
use holdfast_pharmacy::state::PrescriptionState;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The signed-in principal as the pharmacy vertical's actor (a prescriber with its hospital, a
/// drugstore login with its drugstore, a patient with the card it signed in with).
pub async fn actor(state: &AppState, principal: &Principal) -> Result<Actor, PageError> {
    Ok(parties::actor(&state.db, principal.party, principal.role, principal.card).await?)
}

/// A prescription number from a page's path; a mistyped one fails its check character.
pub fn number(raw: &str) -> Result<PrescriptionNumber, PageError> {
    PrescriptionNumber::parse(raw.trim())
        .map_err(|e| PageError::Api(ApiError::invalid(e.to_string())))
}

pub fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// How a state reads on a page.
pub fn state_label(state: PrescriptionState) -> &'static str {
    match state {
        PrescriptionState::Issued => "in the pool",
        PrescriptionState::Routed => "sent to the patient's chosen drugstore",
        PrescriptionState::AwaitingConsent => "waiting for the patient's phone",
        PrescriptionState::Claimed => "held by a drugstore",
        PrescriptionState::Priced => "priced",
        PrescriptionState::PaymentPending => "waiting for the patient to confirm the payment",
        PrescriptionState::Paid => "paid",
        PrescriptionState::Dispensed => "dispensed",
        PrescriptionState::Settled => "settled: the drugstore was paid",
        PrescriptionState::Cancelled => "cancelled",
        PrescriptionState::Expired => "expired",
    }
}

pub const ALL_STATES: [PrescriptionState; 11] = [
    PrescriptionState::Issued,
    PrescriptionState::Routed,
    PrescriptionState::AwaitingConsent,
    PrescriptionState::Claimed,
    PrescriptionState::Priced,
    PrescriptionState::PaymentPending,
    PrescriptionState::Paid,
    PrescriptionState::Dispensed,
    PrescriptionState::Settled,
    PrescriptionState::Cancelled,
    PrescriptionState::Expired,
];

/// A state as the page prints it: its code and its words.
#[derive(Debug, Clone)]
pub struct StateShown {
    pub code: &'static str,
    pub label: &'static str,
}

impl From<PrescriptionState> for StateShown {
    fn from(state: PrescriptionState) -> Self {
        StateShown {
            code: state.as_str(),
            label: state_label(state),
        }
    }
}

/// A receipt (no content) as a page prints it.
#[derive(Debug, Clone)]
pub struct ReceiptShown {
    pub number: String,
    pub state: StateShown,
    pub valid_from: String,
    pub valid_until: String,
    pub routed_to: Option<String>,
    pub held_by: Option<String>,
    pub price: Option<String>,
    pub payment_terms: Option<String>,
    pub order_number: Option<String>,
    pub escrow_state: Option<&'static str>,
    pub dispensed_at: Option<String>,
    pub handover: Option<&'static str>,
    /// Until when the patient's phone may answer the confirmation it is asked for now.
    pub pending_until: Option<String>,
}

pub fn handover_label(handover: holdfast_pharmacy::prescriptions::Handover) -> &'static str {
    match handover {
        holdfast_pharmacy::prescriptions::Handover::CollectedAtCounter => {
            "collected at the counter"
        }
        holdfast_pharmacy::prescriptions::Handover::DeliveredToHospital => {
            "delivered to the hospital"
        }
    }
}

impl From<&PrescriptionReceipt> for ReceiptShown {
    fn from(r: &PrescriptionReceipt) -> Self {
        ReceiptShown {
            number: r.prescription_number.to_string(),
            state: r.state.into(),
            valid_from: time(r.valid_from),
            valid_until: time(r.valid_until),
            routed_to: r.routed_to.as_ref().map(|n| n.name.clone()),
            held_by: r.held_by.as_ref().map(|n| n.name.clone()),
            price: r.price.map(|p| p.to_string()),
            payment_terms: r.payment.as_ref().and_then(|p| p.terms.clone()),
            order_number: r
                .payment
                .as_ref()
                .and_then(|p| p.order_number.as_ref())
                .map(ToString::to_string),
            escrow_state: r
                .payment
                .as_ref()
                .and_then(|p| p.escrow_state)
                .map(|s| s.as_str()),
            dispensed_at: r.dispensed_at.map(time),
            handover: r.handover.map(handover_label),
            pending_until: r.pending_confirmation.as_ref().map(|p| time(p.expires_at)),
        }
    }
}

/// A line of a prescription's history as a page prints it.
#[derive(Debug, Clone)]
pub struct HistoryShown {
    pub at: String,
    pub kind: String,
    pub to_state: String,
    pub detail: String,
}

impl From<HistoryEntry> for HistoryShown {
    fn from(e: HistoryEntry) -> Self {
        HistoryShown {
            at: time(e.at),
            kind: e.kind.replace('_', " "),
            to_state: e.to_state.unwrap_or_default(),
            detail: e.detail.unwrap_or_default(),
        }
    }
}

/// A line of a list as a page prints it.
#[derive(Debug, Clone)]
pub struct SummaryShown {
    pub number: String,
    pub state: StateShown,
    pub item_count: u64,
    pub valid_until: String,
    pub held_by: String,
    pub price: String,
    pub created_at: String,
}

impl From<&PrescriptionSummary> for SummaryShown {
    fn from(s: &PrescriptionSummary) -> Self {
        SummaryShown {
            number: s.prescription_number.to_string(),
            state: s.state.into(),
            item_count: s.item_count,
            valid_until: time(s.valid_until),
            held_by: s
                .held_by
                .as_ref()
                .map_or("–".to_owned(), |n| n.name.clone()),
            price: s.price.map_or("–".to_owned(), |p| p.to_string()),
            created_at: time(s.created_at),
        }
    }
}

/// `?state=…&from=…&to=…&cursor=…` of a list page.
pub use super::views::ListParams as ListQuery;

/// One page of a list, its filter and the link to the next page.
#[derive(Debug, Clone)]
pub struct ListShown {
    pub rows: Vec<SummaryShown>,
    /// The state filtered on ("" for all).
    pub state: String,
    pub states: Vec<StateShown>,
    /// The creation dates filtered on (YYYY-MM-DD, "" for open).
    pub from: String,
    pub to: String,
    pub next: Option<String>,
}

/// The filter and page a list query asks for.
pub fn filter(query: &ListQuery) -> Result<(ListFilter, Page), PageError> {
    Ok((query.filter()?, query.page(ListKind::Prescriptions)?))
}

/// Makes a page of summaries printable, with a "Next page" link under `path` when another
/// page follows (form-encoded, with the filter).
pub fn list_shown(
    path: &'static str,
    query: &ListQuery,
    filter: &ListFilter,
    page: &Paged<PrescriptionSummary>,
) -> ListShown {
    let nav = query.nav(path, ALL_STATES, filter, page.next_cursor.clone());
    ListShown {
        rows: page.items.iter().map(SummaryShown::from).collect(),
        state: filter
            .state
            .map_or("", PrescriptionState::as_str)
            .to_owned(),
        states: ALL_STATES.into_iter().map(StateShown::from).collect(),
        from: nav.from,
        to: nav.to,
        next: nav.next,
    }
}

/// What a page waiting on the patient's phone shows now, as a short fingerprint: state,
/// payment state, the confirmation asked for.
pub fn fingerprint(receipt: &PrescriptionReceipt) -> String {
    let mut hasher = Sha256::new();
    hasher.update(receipt.state.as_str());
    if let Some(payment) = &receipt.payment {
        hasher.update(payment.escrow_state.map_or("-", |s| s.as_str()));
    }
    if let Some(pending) = &receipt.pending_confirmation {
        hasher.update(pending.challenge_id.to_string());
    }
    hex::encode(&hasher.finalize()[..8])
}

/// Does the prescription wait on something that happens elsewhere (the patient, the phone,
/// the timers)?
/// Its page then polls [`live_answer`].
pub fn is_waiting(receipt: &PrescriptionReceipt) -> bool {
    use holdfast_core::escrow::CaseState;
    matches!(
        receipt.state,
        PrescriptionState::AwaitingConsent
            | PrescriptionState::Priced
            | PrescriptionState::PaymentPending
    ) || (receipt.state == PrescriptionState::Dispensed
        && receipt
            .payment
            .as_ref()
            .and_then(|p| p.escrow_state)
            .is_some_and(|s| s != CaseState::Settled))
}

/// The answer to a page's poll: 204 while nothing changed (htmx leaves the page alone), else
/// `HX-Refresh` so the page reloads and shows what changed.
pub fn live_answer(receipt: &PrescriptionReceipt, shown: Option<&str>) -> Response {
    if shown == Some(fingerprint(receipt).as_str()) {
        return StatusCode::NO_CONTENT.into_response();
    }
    live_answer_changed()
}

/// The answer to a poll when what the page shows no longer holds: reload it.
pub fn live_answer_changed() -> Response {
    let mut response = StatusCode::OK.into_response();
    response
        .headers_mut()
        .insert("hx-refresh", HeaderValue::from_static("true"));
    response
}

/// `?v=…`: the fingerprint the polling page shows.
#[derive(Debug, Deserialize)]
pub struct Shown {
    pub v: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_page_link_keeps_the_filter_and_carries_the_cursor() {
        let query = ListQuery {
            state: Some("issued".into()),
            from: Some("2026-12-01".into()),
            ..ListQuery::default()
        };
        let (filter, _) = super::filter(&query).unwrap();
        let cursor = holdfast_core::paging::Cursor::new(
            ListKind::Prescriptions,
            chrono::Utc::now(),
            uuid::Uuid::now_v7(),
        )
        .encode();
        let shown = list_shown(
            "/prescriber",
            &query,
            &filter,
            &Paged {
                items: Vec::new(),
                next_cursor: Some(cursor.clone()),
            },
        );
        let link = shown.next.expect("a next page");
        let parsed: ListQuery =
            serde_urlencoded::from_str(link.split_once('?').expect("a query").1).unwrap();
        let (again, page) = super::filter(&parsed).unwrap();
        assert_eq!(again, filter);
        assert_eq!(again.state, Some(PrescriptionState::Issued));
        assert_eq!(parsed.cursor.as_deref(), Some(cursor.as_str()));
        assert!(page.cursor().is_some());
    }
}
