//! Money in and out of the banks: an institution's own bank accounts, its statements and daily
//! reconciliation; the operators' bank runs and open items; a shopper's deposit reference; and
//! the simulated bank's controls for development and tests.

use crate::api::paging::{self, PagedJson};
use crate::auth::Principal;
use crate::bank_gateways::{self, BankRound};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, NaiveDate, Utc};
use holdfast_core::Currency;
use holdfast_core::banking::camt::MAX_STATEMENT_BYTES;
use holdfast_core::banking::destinations::BankAccount;
use holdfast_core::banking::lists::{self, EntryRecord, ReconciliationRecord, StatementRecord};
use holdfast_core::banking::reconciliation::{self, DifferenceKind, Reconciliation};
use holdfast_core::banking::runs::{self, InstitutionBankAccount};
use holdfast_core::banking::statements::{self, EntryStatus, ImportSummary};
use holdfast_core::ids::{AccountId, PartyId};
use holdfast_core::ledger::{self, AccountKind};
use holdfast_core::paging::ListKind;
use holdfast_core::parties::Role;
use holdfast_core::text::{AccountHolderName, ResolutionReason, Token};
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(bank_accounts))
        .routes(routes!(set_bank_account))
        .routes(routes!(upload_statement, list_statements))
        .routes(routes!(operator_reconciliations))
        .routes(routes!(list_reconciliations, run_reconciliation))
        .routes(routes!(run_bank_round))
        .routes(routes!(open_items))
        .routes(routes!(assign_entry))
        .routes(routes!(resolve_entry))
        .routes(routes!(resolve_transfer))
        .routes(routes!(deposit_reference))
        .merge(super::bank_simulator::routes())
}

fn money_text(minor: i64, currency: Currency) -> String {
    ledger::signed_decimal(minor, currency)
}

// ---- an institution's own accounts ----

#[derive(Serialize, ToSchema)]
pub struct BankAccountView {
    pub currency: Currency,
    pub scheme: holdfast_core::banking::destinations::Scheme,
    /// The IBAN, or the domestic account number.
    pub account: String,
    pub bank_code: Option<String>,
    pub bic: Option<String>,
    pub holder_name: String,
}

impl From<InstitutionBankAccount> for BankAccountView {
    fn from(own: InstitutionBankAccount) -> Self {
        let (_, bank_code, _) = own.account.to_columns();
        BankAccountView {
            currency: own.currency,
            scheme: own.account.scheme(),
            account: own.account.number().to_owned(),
            bank_code,
            bic: own.bic,
            holder_name: own.holder_name,
        }
    }
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct SetBankAccount {
    /// An IBAN; or else `bank_code` and `account_number`.
    pub iban: Option<Token>,
    pub bank_code: Option<Token>,
    pub account_number: Option<Token>,
    pub bic: Option<Token>,
    pub holder_name: AccountHolderName,
}

/// The institution's own accounts at its bank, one per currency: where payouts leave from and
/// deposits arrive.
#[utoipa::path(get, path = "/v1/institution/bank-accounts", tag = "bank", security(("bearer" = [])),
    responses((status = 200, body = [BankAccountView]), (status = 403, body = crate::error::ErrorBody)))]
pub async fn bank_accounts(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<axum::Json<Vec<BankAccountView>>> {
    principal.require(&[Role::Institution])?;
    let accounts = runs::institution_accounts(&state.db, principal.party).await?;
    Ok(axum::Json(
        accounts.into_iter().map(BankAccountView::from).collect(),
    ))
}

/// Set (or replace) the institution's own account in `currency`.
#[utoipa::path(put, path = "/v1/institution/bank-accounts/{currency}", tag = "bank",
    security(("bearer" = [])), params(("currency" = Currency, Path)), request_body = SetBankAccount,
    responses((status = 200, body = BankAccountView), (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody)))]
pub async fn set_bank_account(
    State(state): State<AppState>,
    principal: Principal,
    Path(currency): Path<Currency>,
    Json(body): Json<SetBankAccount>,
) -> ApiResult<axum::Json<BankAccountView>> {
    principal.require(&[Role::Institution])?;
    let account = BankAccount::typed(
        body.iban.as_deref(),
        body.bank_code.as_deref(),
        body.account_number.as_deref(),
    )?;
    let own = InstitutionBankAccount {
        institution: principal.party,
        currency,
        account,
        bic: body.bic.map(String::from),
        holder_name: body.holder_name.into(),
    };
    let stored = own.clone();
    state
        .in_write_txn(async move |txn, core| {
            runs::set_institution_account_in_txn(txn, &core.clock, &stored).await
        })
        .await?;
    Ok(axum::Json(BankAccountView::from(own)))
}

// ---- statements ----

#[derive(Serialize, ToSchema)]
pub struct ImportView {
    /// False when this statement (its message id) was imported before: nothing was done.
    pub imported: bool,
    pub entries: u32,
    /// Entries reported before (in a notification, then in the end-of-day statement).
    pub duplicates: u32,
    pub payouts_paid: u32,
    pub payouts_returned: u32,
    pub deposits: u32,
    /// Entries left for an operator (unmatched or mismatched).
    pub for_operator: u32,
}

impl ImportView {
    fn of(summary: Option<ImportSummary>) -> ImportView {
        let imported = summary.is_some();
        let s = summary.unwrap_or_default();
        ImportView {
            imported,
            entries: s.entries,
            duplicates: s.duplicates,
            payouts_paid: s.payouts_paid,
            payouts_returned: s.payouts_returned,
            deposits: s.deposits,
            for_operator: s.for_operator,
        }
    }
}

/// Where statements are uploaded: the route with its own body limit (`super::body_limit_of`).
pub const STATEMENTS_ROUTE: &str = "/v1/institution/statements";

/// Import a bank statement of the institution's own accounts: a camt.053 (end of day) or
/// camt.054 (notification), the XML as the body (`Content-Type: application/xml`). The same
/// file again (its message id) is answered with `imported: false` and changes nothing.
#[utoipa::path(post, path = "/v1/institution/statements", tag = "bank", security(("bearer" = [])),
    request_body(content = String, content_type = "application/xml"),
    responses((status = 200, body = ImportView),
        (status = 400, description = "invalid_request: not a camt.053/054, or an account that is not the institution's", body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 413, description = "body_too_large", body = crate::error::ErrorBody)))]
pub async fn upload_statement(
    State(state): State<AppState>,
    principal: Principal,
    body: axum::body::Bytes,
) -> ApiResult<axum::Json<ImportView>> {
    principal.require(&[Role::Institution])?;
    if body.len() > MAX_STATEMENT_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "a statement has at most 8 MiB",
        ));
    }
    let xml = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::invalid("statement: the XML is not UTF-8"))?;
    let summary = bank_gateways::import_statement(&state, principal.party, xml).await?;
    Ok(axum::Json(ImportView::of(summary)))
}

#[derive(Serialize, ToSchema)]
pub struct StatementView {
    pub id: Uuid,
    pub message_id: String,
    /// `end_of_day` (camt.053) or `notification` (camt.054).
    pub kind: String,
    pub entries: i32,
    pub imported_at: DateTime<Utc>,
}

impl From<StatementRecord> for StatementView {
    fn from(s: StatementRecord) -> Self {
        StatementView {
            id: s.id,
            message_id: s.message_id,
            kind: s.kind,
            entries: s.entries,
            imported_at: s.imported_at,
        }
    }
}

#[derive(Deserialize, IntoParams)]
pub struct PageQuery {
    /// 1–100, default 20.
    pub limit: Option<u64>,
    /// The `Next-Cursor` of the previous page; empty or absent for the first page.
    #[param(pattern = "^([A-Za-z0-9_-]{40})?$")]
    pub cursor: Option<String>,
}

/// The institution's imported statements, newest first. Paged: the next page's cursor is in
/// the `Next-Cursor` header.
#[utoipa::path(get, path = "/v1/institution/statements", tag = "bank", security(("bearer" = [])),
    params(PageQuery), responses((status = 200, description = "a page of statements", body = [StatementView], headers(("Next-Cursor" = String, description = "The `cursor` of the next page; absent on the last page."))),
        (status = 400, description = "a cursor this list did not give out (`invalid_cursor`)", body = crate::error::ErrorBody)))]
pub async fn list_statements(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<PageQuery>,
) -> ApiResult<PagedJson<StatementView>> {
    principal.require(&[Role::Institution])?;
    let page = paging::page(
        ListKind::BankStatements,
        query.limit,
        query.cursor.as_deref(),
    )?;
    let list = lists::statements_of(&state.db, principal.party, &page).await?;
    Ok(list.map(StatementView::from).into())
}

// ---- reconciliation ----

#[derive(Serialize, ToSchema)]
pub struct DifferenceView {
    pub kind: DifferenceKind,
    /// Signed as it moves the bank account: positive money in.
    pub amount: String,
    pub bank_entry_id: Option<Uuid>,
    pub transfer_id: Option<Uuid>,
    pub day: Option<NaiveDate>,
    pub note: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ReconciliationView {
    pub currency: Currency,
    pub day: NaiveDate,
    /// The bank's closing balance; absent until its end-of-day statement is in.
    pub bank_closing: Option<String>,
    /// What the bank should hold by the ledger.
    pub ledger_balance: String,
    /// Bank minus ledger; absent without a closing balance.
    pub balance_difference: Option<String>,
    /// The statement is in, the balances agree and no item is open.
    pub clean: bool,
    pub differences: Vec<DifferenceView>,
}

impl From<Reconciliation> for ReconciliationView {
    fn from(r: Reconciliation) -> Self {
        let c = r.currency;
        ReconciliationView {
            currency: c,
            day: r.day,
            bank_closing: r.bank_closing.map(|m| money_text(m, c)),
            ledger_balance: money_text(r.ledger_balance, c),
            balance_difference: r.balance_difference().map(|m| money_text(m, c)),
            clean: r.is_clean(),
            differences: r
                .differences
                .into_iter()
                .map(|d| DifferenceView {
                    kind: d.kind,
                    amount: money_text(d.amount, c),
                    bank_entry_id: d.bank_entry,
                    transfer_id: d.transfer,
                    day: d.day,
                    note: d.note,
                })
                .collect(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ReconciliationRunView {
    pub currency: Currency,
    pub day: NaiveDate,
    /// The bank's closing balance; absent when the run had no end-of-day statement.
    pub bank_closing: Option<String>,
    /// What the bank should hold by the ledger.
    pub ledger_balance: String,
    pub open_items: i32,
    pub clean: bool,
    pub reconciled_at: DateTime<Utc>,
}

impl TryFrom<ReconciliationRecord> for ReconciliationRunView {
    type Error = holdfast_core::CoreError;

    fn try_from(r: ReconciliationRecord) -> Result<Self, Self::Error> {
        // Amounts as every other amount of the API: decimal text in the currency's scale.
        let currency = Currency::from_str(&r.currency)?;
        Ok(ReconciliationRunView {
            currency,
            day: r.day,
            bank_closing: r.bank_closing.map(|m| money_text(m, currency)),
            ledger_balance: money_text(r.ledger_balance, currency),
            open_items: r.open_items,
            clean: r.clean,
            reconciled_at: r.reconciled_at,
        })
    }
}

#[derive(Deserialize, IntoParams)]
pub struct ReconciliationQuery {
    /// With `currency`: the day's reconciliation as of now, with its differences listed.
    /// Without: the stored runs, newest day first.
    pub day: Option<NaiveDate>,
    pub currency: Option<Currency>,
}

#[derive(Serialize, ToSchema)]
pub struct ReconciliationsView {
    /// The stored runs (without `day`), newest day first (at most 60).
    pub runs: Vec<ReconciliationRunView>,
    /// The asked-for day as of now (with `day` and `currency`).
    pub reconciliation: Option<ReconciliationView>,
}

/// The institution's reconciliations: the stored runs, or (with `day` and `currency`) one
/// day's books against the bank's as of now, every difference listed. Reading stores nothing.
#[utoipa::path(get, path = "/v1/institution/reconciliations", tag = "bank", security(("bearer" = [])),
    params(ReconciliationQuery),
    responses((status = 200, body = ReconciliationsView), (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody)))]
pub async fn list_reconciliations(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<ReconciliationQuery>,
) -> ApiResult<axum::Json<ReconciliationsView>> {
    principal.require(&[Role::Institution])?;
    let view = reconciliations_of(&state, principal.party, query.day, query.currency).await?;
    Ok(axum::Json(view))
}

#[derive(Deserialize, IntoParams)]
pub struct OperatorReconciliationQuery {
    /// The institution whose books are compared with its bank's.
    pub institution_id: PartyId,
    /// With `currency`: the day's reconciliation as of now, with its differences listed.
    /// Without: the stored runs, newest day first.
    pub day: Option<NaiveDate>,
    pub currency: Option<Currency>,
}

/// Any institution's reconciliations, for operators: the same view the institution has.
#[utoipa::path(get, path = "/v1/operator/reconciliations", tag = "bank", security(("bearer" = [])),
    params(OperatorReconciliationQuery),
    responses((status = 200, body = ReconciliationsView), (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody)))]
pub async fn operator_reconciliations(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<OperatorReconciliationQuery>,
) -> ApiResult<axum::Json<ReconciliationsView>> {
    principal.require(&[Role::Operator])?;
    let view = reconciliations_of(&state, query.institution_id, query.day, query.currency).await?;
    Ok(axum::Json(view))
}

async fn reconciliations_of(
    state: &AppState,
    institution: PartyId,
    day: Option<NaiveDate>,
    currency: Option<Currency>,
) -> ApiResult<ReconciliationsView> {
    Ok(match (day, currency) {
        (Some(day), Some(currency)) => ReconciliationsView {
            runs: Vec::new(),
            reconciliation: Some(
                reconciliation::reconcile(&state.db, institution, currency, day)
                    .await?
                    .into(),
            ),
        },
        (None, None) => ReconciliationsView {
            runs: lists::reconciliations_of(&state.db, institution, 60)
                .await?
                .into_iter()
                .map(ReconciliationRunView::try_from)
                .collect::<Result<_, _>>()?,
            reconciliation: None,
        },
        _ => return Err(ApiError::invalid("give both day and currency, or neither")),
    })
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct RunReconciliation {
    pub day: NaiveDate,
    pub currency: Currency,
}

/// Reconcile a day and store the result (a later run of the day replaces it). A day that is
/// not clean raises `reconciliation.discrepancy`.
#[utoipa::path(post, path = "/v1/institution/reconciliations", tag = "bank", security(("bearer" = [])),
    request_body = RunReconciliation,
    responses((status = 200, body = ReconciliationView), (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody)))]
pub async fn run_reconciliation(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<RunReconciliation>,
) -> ApiResult<axum::Json<ReconciliationView>> {
    principal.require(&[Role::Institution])?;
    let result = state
        .in_write_txn(async move |txn, core| {
            reconciliation::run_in_txn(txn, &core.clock, principal.party, body.currency, body.day)
                .await
        })
        .await?;
    Ok(axum::Json(result.into()))
}

// ---- operators ----

/// Run the bank round now: pending payouts of every institution written into files and
/// handed to the bank, files left over handed again, the simulated bank's statements imported.
#[utoipa::path(post, path = "/v1/operator/bank-runs", tag = "bank", security(("bearer" = [])),
    responses((status = 200, body = BankRound), (status = 403, body = crate::error::ErrorBody),
        (status = 503, description = "bank_gateway_off: no bank gateway is configured", body = crate::error::ErrorBody)))]
pub async fn run_bank_round(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<axum::Json<BankRound>> {
    principal.require(&[Role::Operator])?;
    if state.bank_gateway.is_none() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "bank_gateway_off",
            "no bank gateway is configured (--bank-gateway)",
        ));
    }
    Ok(axum::Json(bank_gateways::bank_round(&state).await?))
}

#[derive(Serialize, ToSchema)]
pub struct BankEntryView {
    pub id: Uuid,
    pub institution_id: PartyId,
    pub currency: String,
    /// Signed as it moved the bank account: positive money in.
    pub amount: String,
    pub booking_date: Option<NaiveDate>,
    pub end_to_end_id: Option<String>,
    /// What the payer wrote.
    pub remittance: Option<String>,
    pub return_reason: Option<String>,
    pub status: EntryStatus,
    pub note: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<EntryRecord> for BankEntryView {
    fn from(e: EntryRecord) -> Self {
        let amount = e
            .currency
            .parse::<Currency>()
            .map(|c| money_text(e.amount, c))
            .unwrap_or_else(|_| e.amount.to_string());
        BankEntryView {
            id: e.id,
            institution_id: e.institution,
            currency: e.currency,
            amount,
            booking_date: e.booking_date,
            end_to_end_id: e.end_to_end_id,
            remittance: e.remittance,
            return_reason: e.return_reason,
            status: e.status,
            note: e.note,
            created_at: e.created_at,
        }
    }
}

/// Bank entries of every institution waiting for an operator (unmatched or mismatched),
/// newest first. Paged: the next page's cursor is in the `Next-Cursor` header.
#[utoipa::path(get, path = "/v1/operator/reconciliation/open-items", tag = "bank", security(("bearer" = [])),
    params(PageQuery), responses((status = 200, description = "a page of open items", body = [BankEntryView], headers(("Next-Cursor" = String, description = "The `cursor` of the next page; absent on the last page."))),
        (status = 400, description = "a cursor this list did not give out (`invalid_cursor`)", body = crate::error::ErrorBody)))]
pub async fn open_items(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<PageQuery>,
) -> ApiResult<PagedJson<BankEntryView>> {
    principal.require(&[Role::Operator])?;
    let page = paging::page(
        ListKind::OpenBankEntries,
        query.limit,
        query.cursor.as_deref(),
    )?;
    let list = lists::open_entries(&state.db, &page).await?;
    Ok(list.map(BankEntryView::from).into())
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct AssignEntry {
    /// The funding account the credit was meant for (at the entry's institution).
    pub account_id: AccountId,
    /// Why (recorded).
    pub reason: ResolutionReason,
}

#[derive(Serialize, ToSchema)]
pub struct AssignedView {
    /// The deposit made.
    pub transfer_id: Uuid,
}

/// Place an unmatched credit on the account it was meant for: a deposit, and the entry
/// resolved with the reason.
#[utoipa::path(post, path = "/v1/operator/bank-entries/{entry_id}/assign", tag = "bank",
    security(("bearer" = [])), params(("entry_id" = Uuid, Path)), request_body = AssignEntry,
    responses((status = 200, body = AssignedView), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn assign_entry(
    State(state): State<AppState>,
    principal: Principal,
    Path(entry): Path<Uuid>,
    Json(body): Json<AssignEntry>,
) -> ApiResult<axum::Json<AssignedView>> {
    principal.require(&[Role::Operator])?;
    let institution = lists::entry(&state.db, entry).await?.institution;
    let transfer_id = state
        .in_write_txn(async move |txn, core| {
            reconciliation::assign_entry_in_txn(
                txn,
                &core.clock,
                institution,
                entry,
                body.account_id,
                principal.party,
                body.reason.as_str(),
            )
            .await
        })
        .await?;
    Ok(axum::Json(AssignedView { transfer_id }))
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct Resolve {
    /// Why (recorded).
    pub reason: ResolutionReason,
}

/// Resolve an unmatched or mismatched bank entry with a recorded reason; no money moves.
#[utoipa::path(post, path = "/v1/operator/bank-entries/{entry_id}/resolve", tag = "bank",
    security(("bearer" = [])), params(("entry_id" = Uuid, Path)), request_body = Resolve,
    responses((status = 200, body = BankEntryView), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn resolve_entry(
    State(state): State<AppState>,
    principal: Principal,
    Path(entry): Path<Uuid>,
    Json(body): Json<Resolve>,
) -> ApiResult<axum::Json<BankEntryView>> {
    principal.require(&[Role::Operator])?;
    let institution = lists::entry(&state.db, entry).await?.institution;
    state
        .in_write_txn(async move |txn, core| {
            reconciliation::resolve_entry_in_txn(
                txn,
                &core.clock,
                institution,
                entry,
                principal.party,
                body.reason.as_str(),
            )
            .await
        })
        .await?;
    Ok(axum::Json(lists::entry(&state.db, entry).await?.into()))
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct ResolveTransfer {
    /// The institution whose external account the movement crossed.
    pub institution_id: PartyId,
    pub currency: Currency,
    /// Why (recorded).
    pub reason: ResolutionReason,
}

/// Resolve a ledger movement the bank never showed, with a recorded reason; no money moves.
#[utoipa::path(post, path = "/v1/operator/transfers/{transfer_id}/resolve", tag = "bank",
    security(("bearer" = [])), params(("transfer_id" = Uuid, Path)), request_body = ResolveTransfer,
    responses((status = 204), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn resolve_transfer(
    State(state): State<AppState>,
    principal: Principal,
    Path(transfer): Path<Uuid>,
    Json(body): Json<ResolveTransfer>,
) -> ApiResult<StatusCode> {
    principal.require(&[Role::Operator])?;
    state
        .in_write_txn(async move |txn, core| {
            reconciliation::resolve_transfer_in_txn(
                txn,
                &core.clock,
                body.institution_id,
                body.currency,
                transfer,
                principal.party,
                body.reason.as_str(),
            )
            .await
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- a shopper's deposit reference ----

#[derive(Serialize, ToSchema)]
pub struct DepositReferenceView {
    pub account_id: AccountId,
    /// ISO 11649 creditor reference (`RF…`): what to write as the bank transfer's reference
    /// so the money lands on this account.
    pub reference: String,
    /// The institution's account to transfer to.
    pub pay_to: Option<BankAccountView>,
}

/// The reference to write on a bank transfer that tops up the caller's prepaid account, and
/// the account to send it to.
#[utoipa::path(get, path = "/v1/accounts/{account_id}/deposit-reference", tag = "accounts",
    security(("bearer" = [])), params(("account_id" = AccountId, Path)),
    responses((status = 200, body = DepositReferenceView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn deposit_reference(
    State(state): State<AppState>,
    principal: Principal,
    Path(account_id): Path<AccountId>,
) -> ApiResult<axum::Json<DepositReferenceView>> {
    let account = ledger::get_account(&state.db, account_id)
        .await
        .ok()
        .filter(|a| a.owner == principal.party && a.kind == AccountKind::Prepaid)
        .ok_or_else(|| ApiError::from(holdfast_core::CoreError::NotFound("prepaid account")))?;
    let reference = state
        .in_write_txn(async move |txn, core| {
            statements::deposit_reference_in_txn(txn, &core.clock, account_id).await
        })
        .await?;
    let pay_to = match account.institution {
        Some(institution) => runs::institution_accounts(&state.db, institution)
            .await?
            .into_iter()
            .find(|a| a.currency == account.currency)
            .map(BankAccountView::from),
        None => None,
    };
    Ok(axum::Json(DepositReferenceView {
        account_id,
        reference,
        pay_to,
    }))
}
