//! Bank statements and reconciliation in the console: the institution's page (paste a
//! camt.053/054, its imported statements, a day's reconciliation with every difference) and
//! the operator's open items, each with forms that place a stray credit on an account or
//! resolve it, always with a reason — the API's `/v1/institution/statements`,
//! `/v1/institution/reconciliations` and `/v1/operator/bank-entries/…` in pages.

use super::forms::when;
use super::page::{self, Layout, Notice, PageError, PageResult, Posted};
use super::session::SignedIn;
use super::txn;
use super::views;
use crate::bank_gateways;
use crate::state::AppState;
use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use chrono::NaiveDate;
use holdfast_core::Currency;
use holdfast_core::banking::lists::{self, EntryRecord};
use holdfast_core::banking::reconciliation::{self, OpenMovement, Reconciliation};
use holdfast_core::ids::{AccountId, PartyId};
use holdfast_core::ledger;
use holdfast_core::paging::ListKind;
use holdfast_core::parties::Role;
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use uuid::Uuid;

/// The statement upload form's route: it takes bodies larger than other forms
/// (`crate::api::body_limit_of`).
pub const STATEMENT_FORM_ROUTE: &str = "/institution/bank/statements";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/institution/bank", get(institution_page))
        .route(STATEMENT_FORM_ROUTE, post(upload))
        .route("/operator/reconciliation", get(operator_page))
        .route("/operator/reconciliation/{entry_id}/assign", post(assign))
        .route("/operator/reconciliation/{entry_id}/resolve", post(resolve))
        .route(
            "/operator/reconciliation/transfers/{transfer_id}/resolve",
            post(resolve_movement),
        )
}

struct StatementRow {
    message_id: String,
    kind: String,
    entries: i32,
    imported_at: String,
}

struct DifferenceRow {
    kind: String,
    amount: String,
    reference: String,
    day: String,
    note: String,
}

struct DayView {
    day: String,
    currency: String,
    bank_closing: String,
    ledger_balance: String,
    clean: bool,
    differences: Vec<DifferenceRow>,
}

impl From<Reconciliation> for DayView {
    fn from(r: Reconciliation) -> Self {
        let c = r.currency;
        DayView {
            day: r.day.to_string(),
            currency: c.code().to_owned(),
            bank_closing: r.bank_closing.map_or_else(
                || "no statement yet".to_owned(),
                |m| ledger::signed_decimal(m, c),
            ),
            ledger_balance: ledger::signed_decimal(r.ledger_balance, c),
            clean: r.is_clean(),
            differences: r
                .differences
                .into_iter()
                .map(|d| DifferenceRow {
                    kind: super::forms::label(&d.kind),
                    amount: ledger::signed_decimal(d.amount, c),
                    reference: d
                        .bank_entry
                        .map(|e| format!("bank entry {e}"))
                        .or(d.transfer.map(|t| format!("ledger transfer {t}")))
                        .unwrap_or_default(),
                    day: d.day.map(|d| d.to_string()).unwrap_or_default(),
                    note: d.note.unwrap_or_default(),
                })
                .collect(),
        }
    }
}

#[derive(Template)]
#[template(path = "console/institution/bank.html")]
struct InstitutionPage {
    layout: Layout,
    statements: Vec<StatementRow>,
    nav: views::ListNav,
    day: String,
    currency: String,
    reconciliation: Option<DayView>,
    imported: Option<String>,
    /// A refused upload: its error, shown above the form, which keeps the pasted XML.
    notice: Option<Notice>,
    xml: String,
}

#[derive(Deserialize, Default)]
struct DayQuery {
    day: Option<String>,
    currency: Option<String>,
    #[serde(flatten)]
    list: views::ListParams,
}

async fn render_institution(
    state: &AppState,
    layout: Layout,
    institution: holdfast_core::ids::PartyId,
    query: &DayQuery,
    imported: Option<String>,
    refused: Option<(Notice, String)>,
) -> PageResult {
    let page = query.list.page(ListKind::BankStatements)?;
    let statements = lists::statements_of(&state.db, institution, &page).await?;
    let day = query
        .day
        .as_deref()
        .and_then(|d| NaiveDate::from_str(d).ok())
        .unwrap_or_else(|| state.core.clock.now().date_naive());
    let currency = query.currency.clone().unwrap_or_else(|| "USD".to_owned());
    let reconciliation = match Currency::from_str(&currency) {
        Ok(c) => Some(
            reconciliation::reconcile(&state.db, institution, c, day)
                .await?
                .into(),
        ),
        Err(_) => None,
    };
    page::render(&InstitutionPage {
        layout,
        nav: query
            .list
            .pager("/institution/bank", statements.next_cursor),
        statements: statements
            .items
            .into_iter()
            .map(|s| StatementRow {
                message_id: s.message_id,
                kind: s.kind,
                entries: s.entries,
                imported_at: when(&s.imported_at),
            })
            .collect(),
        day: day.to_string(),
        currency,
        reconciliation,
        imported,
        notice: refused.as_ref().map(|(notice, _)| notice.clone()),
        xml: refused.map(|(_, xml)| xml).unwrap_or_default(),
    })
}

async fn institution_page(
    State(state): State<AppState>,
    SignedIn { session, principal }: SignedIn,
    Query(query): Query<DayQuery>,
) -> PageResult {
    PageError::require(&principal, &[Role::Institution])?;
    let layout = Layout::signed_in("Statements & reconciliation", &session, "/institution/bank");
    render_institution(&state, layout, principal.party, &query, None, None).await
}

#[derive(Deserialize)]
struct UploadForm {
    xml: String,
}

/// A statement is imported once by its message id, so the form needs no claim of its own. A
/// refused one is shown above the form, the pasted XML kept to correct.
async fn upload(State(state): State<AppState>, posted: Posted<UploadForm>) -> PageResult {
    let Posted { session, form, .. } = posted;
    let principal = session.principal()?;
    PageError::require(&principal, &[Role::Institution])?;
    let layout = Layout::signed_in("Statements & reconciliation", &session, "/institution/bank");
    let query = DayQuery::default();
    let imported = bank_gateways::import_statement(&state, principal.party, form.xml.clone())
        .await
        .map_err(crate::error::ApiError::from);
    match imported {
        Ok(summary) => {
            let imported = Some(match summary {
                None => "This statement was imported before: nothing changed.".to_owned(),
                Some(s) => format!(
                    "Imported {} entries: {} payouts paid, {} returned, {} deposits, {} for an operator, {} seen before.",
                    s.entries,
                    s.payouts_paid,
                    s.payouts_returned,
                    s.deposits,
                    s.for_operator,
                    s.duplicates
                ),
            });
            render_institution(&state, layout, principal.party, &query, imported, None).await
        }
        Err(error) if error.status.is_client_error() => {
            let status = error.status;
            let refused = Some((Notice::from(&error), form.xml));
            let mut response =
                render_institution(&state, layout, principal.party, &query, None, refused).await?;
            *response.status_mut() = status;
            Ok(response)
        }
        Err(error) => Err(error.into()),
    }
}

struct OpenItemRow {
    id: String,
    institution: String,
    amount: String,
    booking_date: String,
    remittance: String,
    status: String,
    note: String,
}

impl From<EntryRecord> for OpenItemRow {
    fn from(e: EntryRecord) -> Self {
        let amount = Currency::from_str(&e.currency)
            .map(|c| format!("{} {}", ledger::signed_decimal(e.amount, c), c.code()))
            .unwrap_or_default();
        OpenItemRow {
            id: e.id.to_string(),
            institution: e.institution.to_string(),
            amount,
            booking_date: e.booking_date.map(|d| d.to_string()).unwrap_or_default(),
            remittance: e.remittance.unwrap_or_default(),
            status: super::forms::label(&e.status),
            note: e.note.unwrap_or_default(),
        }
    }
}

/// What an operator's action did; recorded with the form's claim.
#[derive(Serialize, Deserialize)]
struct Done {
    message: String,
}

/// A ledger movement the bank never showed, with what its resolve form sends back.
struct MovementRow {
    transfer: String,
    institution: String,
    currency: String,
    amount: String,
    day: String,
    reconciled_day: String,
}

impl From<OpenMovement> for MovementRow {
    fn from(m: OpenMovement) -> Self {
        let c = m.currency;
        MovementRow {
            transfer: m
                .difference
                .transfer
                .map(|t| t.to_string())
                .unwrap_or_default(),
            institution: m.institution.to_string(),
            currency: c.code().to_owned(),
            amount: format!(
                "{} {}",
                ledger::signed_decimal(m.difference.amount, c),
                c.code()
            ),
            day: m.difference.day.map(|d| d.to_string()).unwrap_or_default(),
            reconciled_day: m.reconciled_day.to_string(),
        }
    }
}

/// A refused form: its error above the lists, and what was typed into it (the row's forms
/// are told apart by `target`, the entry's or the transfer's id).
#[derive(Default)]
struct Refused {
    notice: Option<Notice>,
    target: String,
    account_id: String,
    reason: String,
}

#[derive(Template)]
#[template(path = "console/operator/reconciliation.html")]
struct OperatorPage {
    layout: Layout,
    items: Vec<OpenItemRow>,
    movements: Vec<MovementRow>,
    nav: views::ListNav,
    done: Option<Done>,
    notice: Option<Notice>,
    refused: Refused,
}

async fn render_operator(
    state: &AppState,
    layout: Layout,
    params: &views::ListParams,
    done: Option<Done>,
    refused: Refused,
) -> PageResult {
    let page = params.page(ListKind::OpenBankEntries)?;
    let open = lists::open_entries(&state.db, &page).await?;
    let movements = reconciliation::open_movements(&state.db).await?;
    page::render(&OperatorPage {
        layout,
        nav: params.pager("/operator/reconciliation", open.next_cursor),
        items: open.items.into_iter().map(OpenItemRow::from).collect(),
        movements: movements.into_iter().map(MovementRow::from).collect(),
        done,
        notice: refused.notice.clone(),
        refused,
    })
}

/// The operator's page after a form: what it did, or its refusal with the typed values kept.
async fn operator_outcome(
    state: &AppState,
    session: &super::session::Session,
    outcome: Result<Done, PageError>,
    refused: Refused,
) -> PageResult {
    let layout = Layout::signed_in("Reconciliation", session, "/operator/reconciliation");
    let params = views::ListParams::default();
    match outcome {
        Ok(done) => render_operator(state, layout, &params, Some(done), Refused::default()).await,
        Err(PageError::Api(error)) if error.status.is_client_error() => {
            let refused = Refused {
                notice: Some(Notice::from(&error)),
                ..refused
            };
            let mut response = render_operator(state, layout, &params, None, refused).await?;
            *response.status_mut() = error.status;
            Ok(response)
        }
        Err(other) => Err(other),
    }
}

async fn operator_page(
    State(state): State<AppState>,
    SignedIn { session, principal }: SignedIn,
    Query(params): Query<views::ListParams>,
) -> PageResult {
    PageError::require(&principal, &[Role::Operator])?;
    let layout = Layout::signed_in("Reconciliation", &session, "/operator/reconciliation");
    render_operator(&state, layout, &params, None, Refused::default()).await
}

#[derive(Deserialize)]
struct AssignForm {
    account_id: String,
    reason: String,
}

async fn assign(
    State(state): State<AppState>,
    Path(entry): Path<Uuid>,
    posted: Posted<AssignForm>,
) -> PageResult {
    let Posted {
        session,
        form,
        claim,
    } = posted;
    let principal = session.principal()?;
    PageError::require(&principal, &[Role::Operator])?;
    let by = principal.party;
    let outcome = async {
        let account = AccountId::from_str(form.account_id.trim())
            .map_err(|_| crate::error::ApiError::invalid("the account id is not an id"))?;
        let institution = lists::entry(&state.db, entry).await?.institution;
        txn::write(&state, claim, async |txn, core| {
            let transfer = reconciliation::assign_entry_in_txn(
                txn,
                &core.clock,
                institution,
                entry,
                account,
                by,
                &form.reason,
            )
            .await?;
            Ok(Done {
                message: format!(
                    "Bank entry {entry} was deposited on account {account} (transfer {transfer})."
                ),
            })
        })
        .await
    }
    .await;
    let refused = Refused {
        target: entry.to_string(),
        account_id: form.account_id.clone(),
        reason: form.reason.clone(),
        ..Refused::default()
    };
    operator_outcome(&state, &session, outcome, refused).await
}

#[derive(Deserialize)]
struct ResolveForm {
    reason: String,
}

async fn resolve(
    State(state): State<AppState>,
    Path(entry): Path<Uuid>,
    posted: Posted<ResolveForm>,
) -> PageResult {
    let Posted {
        session,
        form,
        claim,
    } = posted;
    let principal = session.principal()?;
    PageError::require(&principal, &[Role::Operator])?;
    let by = principal.party;
    let outcome = async {
        let institution = lists::entry(&state.db, entry).await?.institution;
        txn::write(&state, claim, async |txn, core| {
            reconciliation::resolve_entry_in_txn(
                txn,
                &core.clock,
                institution,
                entry,
                by,
                &form.reason,
            )
            .await?;
            Ok(Done {
                message: format!("Bank entry {entry} was resolved."),
            })
        })
        .await
    }
    .await;
    let refused = Refused {
        target: entry.to_string(),
        reason: form.reason.clone(),
        ..Refused::default()
    };
    operator_outcome(&state, &session, outcome, refused).await
}

#[derive(Deserialize)]
struct ResolveMovementForm {
    institution_id: String,
    currency: String,
    reason: String,
}

/// A ledger movement the bank never showed, resolved with a reason; no money moves.
async fn resolve_movement(
    State(state): State<AppState>,
    Path(transfer): Path<Uuid>,
    posted: Posted<ResolveMovementForm>,
) -> PageResult {
    let Posted {
        session,
        form,
        claim,
    } = posted;
    let principal = session.principal()?;
    PageError::require(&principal, &[Role::Operator])?;
    let by = principal.party;
    let outcome = async {
        let institution = PartyId::from_str(form.institution_id.trim())
            .map_err(|_| crate::error::ApiError::invalid("the institution id is not an id"))?;
        let currency = Currency::from_str(form.currency.trim())
            .map_err(|_| crate::error::ApiError::invalid("not a currency code"))?;
        txn::write(&state, claim, async |txn, core| {
            reconciliation::resolve_transfer_in_txn(
                txn,
                &core.clock,
                institution,
                currency,
                transfer,
                by,
                &form.reason,
            )
            .await?;
            Ok(Done {
                message: format!("Ledger transfer {transfer} was resolved."),
            })
        })
        .await
    }
    .await;
    let refused = Refused {
        target: transfer.to_string(),
        reason: form.reason.clone(),
        ..Refused::default()
    };
    operator_outcome(&state, &session, outcome, refused).await
}
