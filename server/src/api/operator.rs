//! The operator's desk: onboarding parties, paying into prepaid accounts, reading any
//! account, and auditing the ledger.

use crate::api::accounts::AccountView;
use crate::api::cards::CardView;
use crate::api::paging::{self, PagedJson};
use crate::app::mediation::{self, Decision, Mediated, MediationOrder};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::idempotency::{IdempotencyKey, Idempotent};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use holdfast_core::escrow::{self, CaseState, Fault};
use holdfast_core::funding::{CreditClass, Institution, InstitutionKind, NewInstitution};
use holdfast_core::ids::{PartyId, TimerId};
use holdfast_core::ledger::{self, LedgerAudit};
use holdfast_core::onboarding::{self, NewShopper, StaffCredentials};
use holdfast_core::order_number::OrderNumber;
use holdfast_core::paging::{CreatedRange, ListKind};
use holdfast_core::parties::{PLATFORM_PARTY, Role};
use holdfast_core::phone_number::PhoneNumber;
use holdfast_core::timers::{self, TimerKind};
use holdfast_core::{BasisPoints, Currency, Money, Vertical};
use holdfast_retail::catalogue::{self, CommissionRate, Commodity, CommodityId};
use holdfast_retail::orders::OrderView;
use holdfast_retail::sellers::{self, SellerTerms, SellerTermsView};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_supplier))
        .routes(routes!(create_shopper))
        .routes(routes!(create_institution))
        .routes(routes!(create_distributor))
        .routes(routes!(set_seller_terms))
        .routes(routes!(set_commodity_commission))
        .routes(routes!(list_disputes))
        .routes(routes!(mediate))
        .routes(routes!(accounts))
        .routes(routes!(audit))
        .routes(routes!(list_failed_timers))
        .routes(routes!(retry_timer))
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct CreateSupplier {
    pub display_name: holdfast_core::text::Name,
    pub username: holdfast_core::text::Username,
    /// 10 to 256 characters.
    pub password: holdfast_core::text::NewPassword,
    /// Needed later to change the supplier's information.
    pub second_password: Option<holdfast_core::text::NewPassword>,
    /// The platform's share of its sales, a decimal fraction below 1 (default `"0.05"`).
    pub commission_rate: Option<holdfast_core::text::Token>,
    /// The carrier its parcels go to unless it picks another.
    pub default_distributor_id: Option<PartyId>,
}

#[derive(Serialize, ToSchema)]
pub struct PartyCreated {
    pub party_id: PartyId,
    pub role: Role,
    pub display_name: String,
    pub username: Option<String>,
}

/// Onboard a supplier that logs in with a username and password.
#[utoipa::path(post, path = "/v1/operator/suppliers", tag = "operator", security(("bearer" = [])),
    request_body = CreateSupplier,
    responses((status = 201, body = PartyCreated), (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn create_supplier(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<CreateSupplier>,
) -> ApiResult<(StatusCode, axum::Json<PartyCreated>)> {
    principal.require(&[Role::Operator])?;
    let given = body.commission_rate.as_deref().map(CommissionRate::parse);
    let commission = sellers::commission_or_default(given.transpose()?)?;
    let credentials = StaffCredentials::hash(
        &state.core.passwords,
        &body.username,
        &body.password,
        body.second_password.as_deref(),
    )
    .await?;
    let terms = SellerTerms {
        commission,
        default_distributor: body.default_distributor_id,
    };
    let (party, username, _) = state
        .in_write_txn(async move |txn, core| {
            sellers::onboard_supplier_in_txn(txn, core, &body.display_name, credentials, terms)
                .await
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(PartyCreated {
            party_id: party.id,
            role: party.role,
            display_name: party.display_name,
            username: Some(username),
        }),
    ))
}

#[derive(Clone, Deserialize, Serialize, ToSchema)]
pub struct CreateShopper {
    pub display_name: holdfast_core::text::Name,
    /// E.164, e.g. `+821012345678`: where confirmations are sent.
    #[schema(value_type = String, example = "+821012345678")]
    pub phone: PhoneNumber,
    pub currency: Currency,
    /// Paid into the new prepaid account.
    pub initial_deposit: Option<Money>,
    /// Where parcels go; only the carrier of an order sees it.
    pub delivery_address: Option<holdfast_core::text::Address>,
}

#[derive(Serialize, ToSchema)]
pub struct ShopperCreated {
    pub party_id: PartyId,
    /// An adult, personal EC card on a prepayment account at the built-in institution: the
    /// shopper logs in with it.
    pub card: CardView,
    pub prepaid_account: AccountView,
}

/// Onboard a shopper: an EC card mapped to the phone and to a prepayment account at the
/// built-in institution (funded with the initial deposit, so send an `Idempotency-Key`).
#[utoipa::path(post, path = "/v1/operator/shoppers", tag = "operator", security(("bearer" = [])),
    params(crate::openapi::RequiredIdempotencyKey),
    request_body = CreateShopper,
    responses((status = 201, body = ShopperCreated), (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody)))]
pub async fn create_shopper(
    State(state): State<AppState>,
    principal: Principal,
    key: IdempotencyKey,
    Json(body): Json<CreateShopper>,
) -> ApiResult<Response> {
    let key = key.required()?;
    principal.require(&[Role::Operator])?;
    state
        .write(
            Idempotent::new(principal.scope(), key, "create_shopper", &body),
            StatusCode::CREATED,
            async move |txn, core| {
                let new = NewShopper {
                    display_name: body.display_name.into(),
                    phone: body.phone,
                    currency: body.currency,
                    initial_deposit: body.initial_deposit,
                    delivery_address: body.delivery_address.map(Into::into),
                };
                let issued = onboarding::onboard_shopper_in_txn(txn, core, new).await?;
                Ok(ShopperCreated {
                    party_id: issued.card.holder,
                    card: CardView::from(&issued.card),
                    prepaid_account: issued.funding.into(),
                })
            },
        )
        .await
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct CreditClassCap {
    pub class: CreditClass,
    pub max_limit: Money,
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct CreateInstitution {
    pub display_name: holdfast_core::text::Name,
    /// Four digits: the first four of every card number it issues.
    #[schema(example = "1001")]
    pub code: holdfast_core::text::Token,
    pub kind: InstitutionKind,
    /// The code of an existing institution whose freezing account to share.
    pub shares_freezing_with: Option<holdfast_core::text::Token>,
    /// The largest limit granted per EC credit-line class (banks).
    #[serde(default)]
    pub credit_class_caps: Vec<CreditClassCap>,
    /// What it keeps of a settlement its card paid (card companies, stores), a decimal
    /// fraction up to 0.1 (default 0).
    pub card_fee_rate: Option<holdfast_core::text::Token>,
    pub username: holdfast_core::text::Username,
    pub password: holdfast_core::text::NewPassword,
}

#[derive(Serialize, ToSchema)]
pub struct InstitutionCreated {
    pub institution: Institution,
    pub username: String,
}

/// Onboard a bank, card company or department store, with the login of its staff.
#[utoipa::path(post, path = "/v1/operator/institutions", tag = "operator", security(("bearer" = [])),
    request_body = CreateInstitution,
    responses((status = 201, body = InstitutionCreated), (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn create_institution(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<CreateInstitution>,
) -> ApiResult<(StatusCode, axum::Json<InstitutionCreated>)> {
    principal.require(&[Role::Operator])?;
    let card_fee = match &body.card_fee_rate {
        Some(rate) => BasisPoints::new(CommissionRate::parse(rate)?.basis_points())
            .map_err(holdfast_core::CoreError::Money)?,
        None => BasisPoints::ZERO,
    };
    let credentials =
        StaffCredentials::hash(&state.core.passwords, &body.username, &body.password, None).await?;
    let new = NewInstitution {
        display_name: body.display_name.into(),
        code: body.code.into(),
        kind: body.kind,
        shares_freezing_with: body.shares_freezing_with.map(Into::into),
        credit_class_caps: body
            .credit_class_caps
            .into_iter()
            .map(|cap| (cap.class, cap.max_limit))
            .collect(),
        card_fee,
    };
    let (institution, username) = state
        .in_write_txn(async move |txn, core| {
            onboarding::create_institution_in_txn(txn, core, new, credentials).await
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(InstitutionCreated {
            institution,
            username,
        }),
    ))
}

#[derive(Deserialize, IntoParams)]
pub struct AccountsQuery {
    /// A party id, or `platform` for the platform's own (commission) accounts.
    pub owner: holdfast_core::text::Token,
}

/// Any party's accounts.
#[utoipa::path(get, path = "/v1/operator/accounts", tag = "operator", security(("bearer" = [])),
    params(AccountsQuery),
    responses((status = 200, body = [AccountView]), (status = 403, body = crate::error::ErrorBody)))]
pub async fn accounts(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<AccountsQuery>,
) -> ApiResult<axum::Json<Vec<AccountView>>> {
    principal.require(&[Role::Operator])?;
    let owner = if query.owner.as_str() == "platform" {
        PLATFORM_PARTY
    } else {
        query
            .owner
            .parse::<PartyId>()
            .map_err(|_| ApiError::invalid("owner is a party id or 'platform'"))?
    };
    let accounts = ledger::accounts_of(&state.db, owner).await?;
    Ok(axum::Json(
        accounts.into_iter().map(AccountView::from).collect(),
    ))
}

/// Prove the ledger: every transfer balances, every balance equals its postings, nothing is
/// overdrawn, and money sums to zero per currency.
#[utoipa::path(get, path = "/v1/operator/ledger/audit", tag = "operator", security(("bearer" = [])),
    responses((status = 200, body = LedgerAudit), (status = 403, body = crate::error::ErrorBody)))]
pub async fn audit(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<axum::Json<LedgerAudit>> {
    principal.require(&[Role::Operator])?;
    Ok(axum::Json(ledger::audit(&state.db).await?))
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct CreateDistributor {
    pub display_name: holdfast_core::text::Name,
    pub username: holdfast_core::text::Username,
    pub password: holdfast_core::text::NewPassword,
}

/// Onboard a carrier (a distributor; an insurer's service company is one too).
#[utoipa::path(post, path = "/v1/operator/distributors", tag = "operator", security(("bearer" = [])),
    request_body = CreateDistributor,
    responses((status = 201, body = PartyCreated), (status = 400, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)))]
pub async fn create_distributor(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<CreateDistributor>,
) -> ApiResult<(StatusCode, axum::Json<PartyCreated>)> {
    principal.require(&[Role::Operator])?;
    let credentials =
        StaffCredentials::hash(&state.core.passwords, &body.username, &body.password, None).await?;
    let (party, username) = state
        .in_write_txn(async move |txn, core| {
            onboarding::create_staff_in_txn(
                txn,
                core,
                Role::Distributor,
                &body.display_name,
                credentials,
            )
            .await
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(PartyCreated {
            party_id: party.id,
            role: party.role,
            display_name: party.display_name,
            username: Some(username),
        }),
    ))
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct SellerTermsChange {
    /// The platform's share, a decimal fraction below 1: the default for the seller's
    /// commodities from now on.
    pub commission_rate: holdfast_core::text::Token,
    pub default_distributor_id: Option<PartyId>,
}

/// Set a seller's commission and default carrier.
#[utoipa::path(put, path = "/v1/operator/sellers/{party_id}", tag = "operator",
    security(("bearer" = [])), params(("party_id" = PartyId, Path)), request_body = SellerTermsChange,
    responses((status = 200, body = SellerTermsView), (status = 400, body = crate::error::ErrorBody)))]
pub async fn set_seller_terms(
    State(state): State<AppState>,
    principal: Principal,
    Path(seller): Path<PartyId>,
    Json(body): Json<SellerTermsChange>,
) -> ApiResult<axum::Json<SellerTermsView>> {
    principal.require(&[Role::Operator])?;
    let terms = state
        .in_write_txn(async move |txn, core| {
            sellers::set_terms_in_txn(
                txn,
                &core.clock,
                seller,
                SellerTerms {
                    commission: CommissionRate::parse(&body.commission_rate)?,
                    default_distributor: body.default_distributor_id,
                },
            )
            .await
        })
        .await?;
    Ok(axum::Json(terms.view(seller)))
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct CommissionChange {
    #[schema(example = "0.08")]
    pub commission_rate: holdfast_core::text::Token,
}

/// Set one commodity's commission, overriding its seller's default (for new orders).
#[utoipa::path(put, path = "/v1/operator/commodities/{commodity_id}/commission", tag = "operator",
    security(("bearer" = [])), params(("commodity_id" = CommodityId, Path)),
    request_body = CommissionChange,
    responses((status = 200, body = Commodity), (status = 404, body = crate::error::ErrorBody)))]
pub async fn set_commodity_commission(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<CommodityId>,
    Json(body): Json<CommissionChange>,
) -> ApiResult<axum::Json<Commodity>> {
    principal.require(&[Role::Operator])?;
    let rate = CommissionRate::parse(&body.commission_rate)?;
    Ok(axum::Json(
        state
            .in_write_txn(async move |txn, _| catalogue::set_commission_in_txn(txn, id, rate).await)
            .await?,
    ))
}

#[derive(Deserialize, IntoParams)]
pub struct DisputesQuery {
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

/// A disputed case waiting for an operator.
#[derive(Serialize, ToSchema)]
pub struct DisputeSummary {
    pub order_number: OrderNumber,
    pub vertical: Vertical,
    pub state: CaseState,
    pub amount: Money,
    pub payee_name: String,
    pub created_at: DateTime<Utc>,
    /// When it was disputed (its last change).
    pub disputed_at: DateTime<Utc>,
}

/// Disputed orders of every vertical waiting for mediation, newest first (the longest waiting
/// are on the last page). Paged: the next page's cursor is in the `Next-Cursor` header.
#[utoipa::path(get, path = "/v1/operator/disputes", tag = "operator", security(("bearer" = [])),
    params(DisputesQuery), responses((status = 200, description = "a page of disputes", body = [DisputeSummary], headers(("Next-Cursor" = String, description = "The `cursor` of the next page; absent on the last page."))),
        (status = 400, description = "a cursor this list did not give out (`invalid_cursor`)", body = crate::error::ErrorBody)))]
pub async fn list_disputes(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<DisputesQuery>,
) -> ApiResult<PagedJson<DisputeSummary>> {
    principal.require(&[Role::Operator])?;
    let page = paging::page(ListKind::Disputes, query.limit, query.cursor.as_deref())?;
    let created = CreatedRange::new(query.from, query.to);
    let cases = escrow::disputed_cases(&state.db, &created, &page).await?;
    Ok(PagedJson(cases.map(|case| DisputeSummary {
        order_number: case.order_number,
        vertical: case.vertical,
        state: case.state,
        amount: case.amount,
        payee_name: case.payee_name,
        created_at: case.created_at,
        disputed_at: case.updated_at,
    })))
}

#[derive(Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MediationOutcome {
    /// All of it to the seller.
    Release,
    /// All of it back to the buyer.
    Refund,
    /// `to_seller` to the seller, the rest back to the buyer.
    Split,
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct Penalty {
    pub party: Fault,
    pub amount: Money,
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct MediationRequest {
    pub outcome: MediationOutcome,
    /// With `split`: what the seller gets (before commission and fees).
    pub to_seller: Option<Money>,
    /// Charged to the party at fault, out of its share.
    pub penalty: Option<Penalty>,
    pub note: holdfast_core::text::Note,
}

#[derive(Serialize, ToSchema)]
pub struct MediationResult {
    pub order_number: OrderNumber,
    pub vertical: Vertical,
    pub state: CaseState,
    /// The order as its seller sees it, for a retail order.
    pub order: Option<OrderView>,
    /// The prescription's payment, for a pharmacy order.
    pub prescription: Option<holdfast_pharmacy::payment::MediationResult>,
    pub released_to_seller: Money,
    pub seller_payout: Money,
    pub commission: Money,
    pub institution_fee: Money,
    pub penalty: Money,
    pub refunded_to_buyer: Money,
}

/// Mediate a disputed order: release it, refund it, or split it, and charge a penalty to the
/// party at fault. Send an `Idempotency-Key`.
#[utoipa::path(post, path = "/v1/operator/disputes/{order_number}/mediation", tag = "operator",
    security(("bearer" = [])),
    params(("order_number" = OrderNumber, Path), crate::openapi::RequiredIdempotencyKey),
    request_body = MediationRequest,
    responses((status = 200, body = MediationResult), (status = 400, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)))]
pub async fn mediate(
    State(state): State<AppState>,
    principal: Principal,
    Path(number): Path<OrderNumber>,
    key: IdempotencyKey,
    Json(body): Json<MediationRequest>,
) -> ApiResult<Response> {
    principal.require(&[Role::Operator])?;
    let key = key.required()?;
    state
        .write(
            Idempotent::new(principal.scope(), key, "mediate", &(&number, &body)),
            StatusCode::OK,
            async move |txn, core| {
                let decision = match body.outcome {
                    MediationOutcome::Release => Decision::Release,
                    MediationOutcome::Refund => Decision::Refund,
                    MediationOutcome::Split => Decision::split(body.to_seller)?,
                };
                let Mediated {
                    case,
                    split,
                    order,
                    prescription,
                } = mediation::mediate_in_txn(
                    txn,
                    core,
                    &number,
                    MediationOrder {
                        decision,
                        penalty: body.penalty.map(|p| (p.party, p.amount)),
                        note: body.note.into(),
                    },
                )
                .await?;
                Ok(MediationResult {
                    order_number: case.order_number,
                    vertical: case.vertical,
                    state: case.state,
                    order,
                    prescription,
                    released_to_seller: split.to_seller,
                    seller_payout: split.seller_net,
                    commission: split.commission,
                    institution_fee: split.institution_fee,
                    penalty: split.penalty,
                    refunded_to_buyer: split.refund,
                })
            },
        )
        .await
}

#[derive(Deserialize, IntoParams)]
pub struct FailedTimersQuery {
    /// 1–100, default 20.
    pub limit: Option<u64>,
    /// The `Next-Cursor` of the previous page; empty or absent for the first page.
    #[param(pattern = "^([A-Za-z0-9_-]{40})?$")]
    pub cursor: Option<String>,
}

/// A timer the worker gave up on after its last attempt.
#[derive(Serialize, ToSchema)]
pub struct FailedTimerView {
    pub timer_id: TimerId,
    pub kind: TimerKind,
    /// What it is about: the case, prescription, policy or authorisation id.
    pub subject_id: uuid::Uuid,
    /// When its last attempt was.
    pub due_at: DateTime<Utc>,
    pub attempts: i32,
    /// The stable error code of the last attempt.
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<timers::FailedTimer> for FailedTimerView {
    fn from(timer: timers::FailedTimer) -> Self {
        FailedTimerView {
            timer_id: timer.id,
            kind: timer.kind,
            subject_id: timer.subject,
            due_at: timer.due_at,
            attempts: timer.attempts,
            last_error: timer.last_error,
            created_at: timer.created_at,
        }
    }
}

/// Timers whose handler kept failing until the worker gave up, newest first. Paged: the next
/// page's cursor is in the `Next-Cursor` header.
#[utoipa::path(get, path = "/v1/operator/timers/failed", tag = "operator", security(("bearer" = [])),
    params(FailedTimersQuery), responses((status = 200, description = "a page of failed timers", body = [FailedTimerView], headers(("Next-Cursor" = String, description = "The `cursor` of the next page; absent on the last page."))),
        (status = 400, description = "a cursor this list did not give out (`invalid_cursor`)", body = crate::error::ErrorBody),
        (status = 403, description = "not an operator", body = crate::error::ErrorBody)))]
pub async fn list_failed_timers(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<FailedTimersQuery>,
) -> ApiResult<PagedJson<FailedTimerView>> {
    principal.require(&[Role::Operator])?;
    let page = paging::page(ListKind::FailedTimers, query.limit, query.cursor.as_deref())?;
    Ok(PagedJson(
        timers::failed(&state.db, &page).await?.map(Into::into),
    ))
}

/// A retried timer, pending again.
#[derive(Serialize, ToSchema)]
pub struct RetriedTimer {
    pub timer_id: TimerId,
    pub kind: TimerKind,
    /// Now: the worker fires it at its next round.
    pub due_at: DateTime<Utc>,
    /// Counted from zero again: it gets every attempt anew.
    pub attempts: i32,
}

/// Put a failed timer back: pending, due now, its attempts counted anew. Recorded in the
/// operator's event feed (`timer.retried`, with who and when). Only a failed timer can be
/// retried (`409 timer_not_failed`); with an `Idempotency-Key` a repeat answers as the first.
#[utoipa::path(post, path = "/v1/operator/timers/{timer_id}/retry", tag = "operator",
    security(("bearer" = [])),
    params(("timer_id" = TimerId, Path), crate::openapi::OptionalIdempotencyKey),
    responses((status = 200, description = "pending again, due now", body = RetriedTimer),
        (status = 403, description = "not an operator", body = crate::error::ErrorBody),
        (status = 404, description = "no such timer", body = crate::error::ErrorBody),
        (status = 409, description = "`timer_not_failed`: it is not failed; `timer_superseded`: its subject has a pending timer of that kind again", body = crate::error::ErrorBody)))]
pub async fn retry_timer(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<TimerId>,
    key: IdempotencyKey,
) -> ApiResult<Response> {
    principal.require(&[Role::Operator])?;
    let by = principal.party;
    state
        .write(
            Idempotent::new(principal.scope(), key, "retry_timer", &id),
            StatusCode::OK,
            async move |txn, core| {
                let timer = timers::retry_failed_in_txn(txn, &core.clock, by, id).await?;
                Ok(RetriedTimer {
                    timer_id: timer.id,
                    kind: timer.kind,
                    due_at: timer.due_at,
                    attempts: timer.attempts,
                })
            },
        )
        .await
}
