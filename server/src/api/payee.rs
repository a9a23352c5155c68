//! A payee's side of payouts: the bank account it is paid to (registered, then confirmed with
//! its second password, or on its card's phone), its payouts (on request, with an
//! `Idempotency-Key`), and its daily sweep. Payees are the parties money is settled to:
//! suppliers, drugstores and insurers, and card holders who sell at auction.

use crate::api::paging::{self, PagedJson};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::idempotency::{IdempotencyKey, Idempotent};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use holdfast_core::banking::destinations::{self, BankAccount, Destination, DestinationStatus};
use holdfast_core::banking::payouts::{self, Payout, PayoutAmount, PayoutStatus};
use holdfast_core::banking::schedule::{self, PayoutSchedule, ScheduleTerms};
use holdfast_core::banking::{payee, schedule::MAX_HOUR_UTC};
use holdfast_core::cards::CardId;
use holdfast_core::ids::{ChallengeId, PartyId, PayoutDestinationId, PayoutId};
use holdfast_core::ledger::{self, AccountKind};
use holdfast_core::paging::ListKind;
use holdfast_core::parties::{self, Role};
use holdfast_core::text::{AccountHolderName, Token};
use holdfast_core::{Currency, Money};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The roles that are paid out and confirm their bank account with a second password. Card
/// holders who sell (a shopper with a withdrawal account) are payees too: see [`payee`].
pub const PAYEES: &[Role] = &[Role::Supplier, Role::Drugstore, Role::Insurer];

/// How a payee confirms the bank account it is paid to: its second channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confirmation {
    /// A supplier, drugstore or insurer: the second password given at onboarding.
    SecondPassword,
    /// A card holder who sells: a challenge on the phone of the card it logged in with.
    Phone(CardId),
}

/// The caller as a payee, with how it confirms its bank account; anyone else is refused.
pub async fn payee(state: &AppState, principal: &Principal) -> ApiResult<Confirmation> {
    if principal.role != Role::Shopper {
        principal.require(PAYEES)?;
        return Ok(Confirmation::SecondPassword);
    }
    let card = principal.shopper_card()?;
    let sells = ledger::accounts_of(&state.db, principal.party)
        .await?
        .iter()
        .any(|account| account.kind == AccountKind::Withdrawal);
    if !sells {
        return Err(ApiError::forbidden(
            "only a card holder who sells (its card came with a withdrawal account) is paid out",
        ));
    }
    Ok(Confirmation::Phone(card))
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register_destination, list_destinations))
        .routes(routes!(confirm_destination))
        .routes(routes!(cancel_destination))
        .routes(routes!(request_payout, list_payouts))
        .routes(routes!(get_payout))
        .routes(routes!(set_schedule, get_schedule))
}

/// A bank account to be paid to: an IBAN, or a domestic bank code and account number.
#[derive(Clone, Deserialize, Serialize, ToSchema)]
pub struct NewDestination {
    /// An IBAN, with or without spaces (checked: country format and mod-97).
    #[schema(example = "DE44 5001 0517 5407 3249 31")]
    pub iban: Option<Token>,
    /// Instead of an IBAN: the bank's code (2 to 11 letters or digits)…
    pub bank_code: Option<Token>,
    /// …and the account number (4 to 34 letters or digits; spaces and hyphens ignored).
    pub account_number: Option<Token>,
    /// The account holder's name, as the bank knows it.
    pub holder_name: AccountHolderName,
}

impl NewDestination {
    pub fn account(&self) -> Result<BankAccount, holdfast_core::CoreError> {
        BankAccount::typed(
            self.iban.as_deref(),
            self.bank_code.as_deref(),
            self.account_number.as_deref(),
        )
    }
}

/// A payout destination as its payee sees it: the account shown by its last four characters.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct DestinationView {
    pub id: PayoutDestinationId,
    pub status: DestinationStatus,
    pub scheme: destinations::Scheme,
    /// The domestic bank code (none for an IBAN).
    pub bank_code: Option<String>,
    /// The account's last four characters.
    #[schema(example = "4931")]
    pub account_last_four: String,
    pub holder_name: String,
    pub created_at: DateTime<Utc>,
    pub confirmed_at: Option<DateTime<Utc>>,
    /// When it was superseded by another or cancelled.
    pub ended_at: Option<DateTime<Utc>>,
    /// In the answer to a card holder's registration only: the challenge sent to the card's
    /// phone, whose approval confirms this destination (and whose denial cancels it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge_id: Option<ChallengeId>,
}

impl From<Destination> for DestinationView {
    fn from(destination: Destination) -> Self {
        let bank_code = match &destination.account {
            BankAccount::Domestic { bank_code, .. } => Some(bank_code.clone()),
            BankAccount::Iban(_) => None,
        };
        DestinationView {
            id: destination.id,
            status: destination.status,
            scheme: destination.account.scheme(),
            bank_code,
            account_last_four: destination.account.last_four().to_owned(),
            holder_name: destination.holder_name,
            created_at: destination.created_at,
            confirmed_at: destination.confirmed_at,
            ended_at: destination.ended_at,
            challenge_id: None,
        }
    }
}

/// Register the bank account payouts go to. It is `pending` until confirmed: with the second
/// password, or, for a card holder who sells, on the card's phone (the answer carries the
/// `payout_destination` challenge's `challenge_id`; the phone shows the account's last four).
/// A pending one registered before is cancelled; the active one stays in use until then.
#[utoipa::path(post, path = "/v1/payee/destinations", tag = "payee", security(("bearer" = [])),
    request_body = NewDestination,
    responses((status = 201, description = "registered, pending confirmation", body = DestinationView),
        (status = 400, description = "the account number fails its checks (`invalid_bank_account`)", body = crate::error::ErrorBody),
        (status = 403, description = "not a payee", body = crate::error::ErrorBody)))]
pub async fn register_destination(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<NewDestination>,
) -> ApiResult<Response> {
    let confirmation = payee(&state, &principal).await?;
    let registered = register(&state, principal.party, confirmation, body).await?;
    Ok((StatusCode::CREATED, axum::Json(registered)).into_response())
}

/// The registration, as the API and the console make it: a card holder's also asks its phone.
pub async fn register(
    state: &AppState,
    party: PartyId,
    confirmation: Confirmation,
    body: NewDestination,
) -> ApiResult<DestinationView> {
    let account = body.account()?;
    Ok(state
        .in_write_txn(async move |txn, core| match confirmation {
            Confirmation::SecondPassword => {
                destinations::register_in_txn(txn, &core.clock, party, account, &body.holder_name)
                    .await
                    .map(DestinationView::from)
            }
            Confirmation::Phone(card) => {
                destinations::register_on_phone_in_txn(txn, core, card, account, &body.holder_name)
                    .await
                    .map(|registered| DestinationView {
                        challenge_id: Some(registered.challenge),
                        ..DestinationView::from(registered.destination)
                    })
            }
        })
        .await?)
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct SecondPassword {
    /// The second password given at onboarding.
    pub second_password: holdfast_core::text::Password,
}

/// Confirm a pending destination with the second password: it becomes the active one, and the
/// one active before is superseded.
#[utoipa::path(post, path = "/v1/payee/destinations/{id}/confirm", tag = "payee",
    security(("bearer" = [])), params(("id" = PayoutDestinationId, Path)),
    request_body = SecondPassword,
    responses((status = 200, description = "the destination, now active", body = DestinationView),
        (status = 401, description = "wrong second password (`bad_credentials`)", body = crate::error::ErrorBody),
        (status = 404, description = "no such destination of this payee", body = crate::error::ErrorBody),
        (status = 409, description = "not pending (`invalid_state`)", body = crate::error::ErrorBody),
        (status = 422, description = "a card holder confirms on its phone, not here (`confirmed_on_phone`)", body = crate::error::ErrorBody)))]
pub async fn confirm_destination(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<PayoutDestinationId>,
    Json(body): Json<SecondPassword>,
) -> ApiResult<axum::Json<DestinationView>> {
    if payee(&state, &principal).await? != Confirmation::SecondPassword {
        return Err(confirmed_on_phone());
    }
    let confirmed = confirm(&state, principal.party, id, &body.second_password).await?;
    Ok(axum::Json(confirmed))
}

/// A card holder has no second password: its destination is confirmed by answering the
/// challenge its registration sent to the phone.
pub fn confirmed_on_phone() -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "confirmed_on_phone",
        "a card holder confirms its bank account on its phone: answer the challenge sent there",
    )
}

/// The confirmation, as the API and the console make it: the second password first, outside
/// the transaction (argon2 is slow on purpose), then the change.
pub async fn confirm(
    state: &AppState,
    party: PartyId,
    id: PayoutDestinationId,
    second_password: &str,
) -> ApiResult<DestinationView> {
    parties::verify_second_password(&state.db, &state.core.passwords, party, second_password)
        .await?;
    let confirmed = state
        .in_write_txn(async move |txn, core| {
            destinations::confirm_in_txn(txn, &core.clock, party, id).await
        })
        .await?;
    Ok(DestinationView::from(confirmed))
}

/// Withdraw a pending destination before confirming it.
#[utoipa::path(post, path = "/v1/payee/destinations/{id}/cancel", tag = "payee",
    security(("bearer" = [])), params(("id" = PayoutDestinationId, Path)),
    responses((status = 200, description = "the destination, cancelled", body = DestinationView),
        (status = 404, description = "no such destination of this payee", body = crate::error::ErrorBody),
        (status = 409, description = "not pending (`invalid_state`)", body = crate::error::ErrorBody)))]
pub async fn cancel_destination(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<PayoutDestinationId>,
) -> ApiResult<axum::Json<DestinationView>> {
    payee(&state, &principal).await?;
    let cancelled = state
        .in_write_txn(async move |txn, core| {
            destinations::cancel_in_txn(txn, &core.clock, principal.party, id).await
        })
        .await?;
    Ok(axum::Json(DestinationView::from(cancelled)))
}

#[derive(Deserialize, IntoParams)]
pub struct DestinationsQuery {
    /// Only destinations in this status.
    pub state: Option<DestinationStatus>,
    /// Created on or after this day (UTC).
    pub from: Option<chrono::NaiveDate>,
    /// Created on or before this day (UTC).
    pub to: Option<chrono::NaiveDate>,
    /// 1–100, default 20.
    pub limit: Option<u64>,
    /// The `Next-Cursor` of the previous page; empty or absent for the first page.
    #[param(pattern = "^([A-Za-z0-9_-]{40})?$")]
    pub cursor: Option<String>,
}

/// The payee's destinations, newest first: its history of registrations and changes. Paged:
/// the next page's cursor is in the `Next-Cursor` header.
#[utoipa::path(get, path = "/v1/payee/destinations", tag = "payee", security(("bearer" = [])),
    params(DestinationsQuery),
    responses((status = 200, description = "a page of destinations", body = [DestinationView],
            headers(("Next-Cursor" = String, description = "The `cursor` of the next page; absent on the last page."))),
        (status = 400, description = "a cursor this list did not give out (`invalid_cursor`)", body = crate::error::ErrorBody)))]
pub async fn list_destinations(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<DestinationsQuery>,
) -> ApiResult<PagedJson<DestinationView>> {
    payee(&state, &principal).await?;
    let page = paging::page(
        ListKind::PayoutDestinations,
        query.limit,
        query.cursor.as_deref(),
    )?;
    let filter = paging::filter(query.state, query.from, query.to);
    let list = destinations::history(&state.db, principal.party, &filter, &page).await?;
    Ok(list.map(DestinationView::from).into())
}

/// What to pay out.
#[derive(Clone, Deserialize, Serialize, ToSchema)]
pub struct PayoutOrder {
    pub currency: Currency,
    /// `all` (everything on the withdrawal account), or an amount such as `"250.00"`.
    #[schema(example = "all", pattern = r"^(all|(0|[1-9][0-9]*)(\.[0-9]+)?)$")]
    pub amount: String,
}

/// A payout as its payee sees it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PayoutView {
    pub id: PayoutId,
    pub status: PayoutStatus,
    pub amount: Money,
    pub destination_id: PayoutDestinationId,
    /// The institution whose bank sends it.
    pub institution_id: PartyId,
    /// The id the credit transfer and the bank's statements carry.
    pub end_to_end_id: String,
    /// Why the bank sent it back, when `returned`.
    pub return_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    /// When the bank reported it paid or returned.
    pub settled_at: Option<DateTime<Utc>>,
}

impl From<Payout> for PayoutView {
    fn from(payout: Payout) -> Self {
        PayoutView {
            id: payout.id,
            status: payout.status,
            amount: payout.amount,
            destination_id: payout.destination,
            institution_id: payout.institution,
            end_to_end_id: payout.end_to_end_id,
            return_reason: payout.return_reason,
            created_at: payout.created_at,
            sent_at: payout.sent_at,
            settled_at: payout.settled_at,
        }
    }
}

/// The payout's key in core, from the request's key (an `Idempotency-Key`, a form's nonce):
/// a digest, so that any key fits and none can be taken for a sweep's (`sweep:<day>`).
pub fn payout_key(request_key: Option<&str>) -> String {
    let digest = Sha256::digest(request_key.unwrap_or_default().as_bytes());
    format!("request:{}", hex::encode(digest))
}

/// Pay out to the active destination: everything (`"all"`) or an amount. The money leaves the
/// withdrawal account at once (into payouts in transit) and the payout is `pending` until the
/// next bank run. Send an `Idempotency-Key`: the same key again answers the same payout and
/// moves nothing.
#[utoipa::path(post, path = "/v1/payee/payouts", tag = "payee", security(("bearer" = [])),
    params(crate::openapi::RequiredIdempotencyKey), request_body = PayoutOrder,
    responses((status = 201, description = "the payout, pending", body = PayoutView),
        (status = 400, description = "no `Idempotency-Key`, or a malformed amount", body = crate::error::ErrorBody),
        (status = 409, description = "the key was used for another request (`idempotency_key_reused`)", body = crate::error::ErrorBody),
        (status = 422, description = "no confirmed destination (`payout_destination_required`) or not enough on the account (`insufficient_funds`)", body = crate::error::ErrorBody)))]
pub async fn request_payout(
    State(state): State<AppState>,
    principal: Principal,
    key: IdempotencyKey,
    Json(body): Json<PayoutOrder>,
) -> ApiResult<Response> {
    let key = key.required()?;
    payee(&state, &principal).await?;
    let amount = PayoutAmount::parse(&body.amount, body.currency)?;
    let request = Idempotent::new(principal.scope(), key, "request_payout", &body);
    let key = payout_key(request.key());
    state
        .write(request, StatusCode::CREATED, async move |txn, core| {
            let payout =
                payee::request_payout_in_txn(txn, &core.clock, principal.party, amount, key)
                    .await?;
            Ok(PayoutView::from(payout.into_inner()))
        })
        .await
}

#[derive(Deserialize, IntoParams)]
pub struct PayoutsQuery {
    /// Only payouts in this status.
    pub state: Option<PayoutStatus>,
    /// Created on or after this day (UTC).
    pub from: Option<chrono::NaiveDate>,
    /// Created on or before this day (UTC).
    pub to: Option<chrono::NaiveDate>,
    /// 1–100, default 20.
    pub limit: Option<u64>,
    /// The `Next-Cursor` of the previous page; empty or absent for the first page.
    #[param(pattern = "^([A-Za-z0-9_-]{40})?$")]
    pub cursor: Option<String>,
}

/// The payee's payouts, newest first. Paged: the next page's cursor is in the `Next-Cursor`
/// header.
#[utoipa::path(get, path = "/v1/payee/payouts", tag = "payee", security(("bearer" = [])),
    params(PayoutsQuery),
    responses((status = 200, description = "a page of payouts", body = [PayoutView],
            headers(("Next-Cursor" = String, description = "The `cursor` of the next page; absent on the last page."))),
        (status = 400, description = "a cursor this list did not give out (`invalid_cursor`)", body = crate::error::ErrorBody)))]
pub async fn list_payouts(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<PayoutsQuery>,
) -> ApiResult<PagedJson<PayoutView>> {
    payee(&state, &principal).await?;
    let page = paging::page(ListKind::Payouts, query.limit, query.cursor.as_deref())?;
    let filter = paging::filter(query.state, query.from, query.to);
    let list = payouts::payouts_of(&state.db, principal.party, &filter, &page).await?;
    Ok(list.map(PayoutView::from).into())
}

/// One payout of the payee's; another payee's is not found.
#[utoipa::path(get, path = "/v1/payee/payouts/{id}", tag = "payee", security(("bearer" = [])),
    params(("id" = PayoutId, Path)),
    responses((status = 200, description = "the payout", body = PayoutView),
        (status = 404, description = "no such payout of this payee", body = crate::error::ErrorBody)))]
pub async fn get_payout(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<PayoutId>,
) -> ApiResult<axum::Json<PayoutView>> {
    payee(&state, &principal).await?;
    let payout = payouts::get(&state.db, principal.party, id).await?;
    Ok(axum::Json(PayoutView::from(payout)))
}

/// The daily sweep: at `hour_utc` each day, everything on the withdrawal account in the
/// minimum's currency is paid out when it is at least `minimum`.
#[derive(Clone, Deserialize, Serialize, ToSchema)]
pub struct ScheduleBody {
    pub enabled: bool,
    /// Sweep only when the account holds at least this; its currency is the sweep's.
    pub minimum: Money,
    /// The hour of the day (0–23, UTC).
    #[schema(maximum = 23)]
    pub hour_utc: u8,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ScheduleView {
    pub enabled: bool,
    pub minimum: Money,
    pub hour_utc: u8,
    /// When the next sweep runs (none while disabled).
    pub next_sweep_at: Option<DateTime<Utc>>,
}

impl From<PayoutSchedule> for ScheduleView {
    fn from(schedule: PayoutSchedule) -> Self {
        ScheduleView {
            enabled: schedule.enabled,
            minimum: schedule.minimum,
            hour_utc: schedule.hour_utc,
            next_sweep_at: schedule.next_sweep_at,
        }
    }
}

impl ScheduleBody {
    pub fn terms(&self) -> ApiResult<ScheduleTerms> {
        if self.hour_utc > MAX_HOUR_UTC {
            return Err(crate::error::ApiError::invalid(
                "a sweep's hour is 0 to 23 (UTC)",
            ));
        }
        Ok(ScheduleTerms {
            enabled: self.enabled,
            minimum: self.minimum,
            hour_utc: self.hour_utc,
        })
    }
}

/// Set the daily sweep (replacing the one before); disabling it cancels the next sweep.
#[utoipa::path(put, path = "/v1/payee/payout-schedule", tag = "payee", security(("bearer" = [])),
    request_body = ScheduleBody,
    responses((status = 200, description = "the schedule and its next sweep", body = ScheduleView),
        (status = 400, description = "an hour out of range", body = crate::error::ErrorBody)))]
pub async fn set_schedule(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<ScheduleBody>,
) -> ApiResult<axum::Json<ScheduleView>> {
    payee(&state, &principal).await?;
    let terms = body.terms()?;
    let set = state
        .in_write_txn(async move |txn, core| {
            schedule::set_in_txn(txn, &core.clock, principal.party, terms).await
        })
        .await?;
    Ok(axum::Json(ScheduleView::from(set)))
}

/// The daily sweep, if one was set.
#[utoipa::path(get, path = "/v1/payee/payout-schedule", tag = "payee", security(("bearer" = [])),
    responses((status = 200, description = "the schedule and its next sweep", body = ScheduleView),
        (status = 404, description = "no schedule set", body = crate::error::ErrorBody)))]
pub async fn get_schedule(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<axum::Json<ScheduleView>> {
    payee(&state, &principal).await?;
    let found = schedule::get(&state.db, principal.party)
        .await?
        .ok_or_else(|| crate::error::ApiError::not_found("payout schedule"))?;
    Ok(axum::Json(ScheduleView::from(found)))
}
