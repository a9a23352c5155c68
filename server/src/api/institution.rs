//! An institution's desk: issuing EC cards with their funding sources, blocking and replacing
//! them, and watching the money its freezing account holds.

use crate::api::accounts::AccountView;
use crate::api::cards::CardView;
use crate::api::paging::{self, PagedJson};
use crate::auth::Principal;
use crate::error::ApiResult;
use crate::extract::{Json, Path, Query};
use crate::idempotency::{IdempotencyKey, Idempotent};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use holdfast_core::cards::{self, AgeClass, CardNumber, CardStatus, MappingKind, PurchaseType};
use holdfast_core::funding::{self, FundingTerms, Holder, IssueCard};
use holdfast_core::holds::{self, Hold, HoldMode, HoldStatus};
use holdfast_core::ids::{AccountId, HoldId, PartyId};
use holdfast_core::ledger::{self, AccountKind};
use holdfast_core::paging::ListKind;
use holdfast_core::parties::Role;
use holdfast_core::phone_number::PhoneNumber;
use holdfast_core::{Currency, Money};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(issue_card, list_cards))
        .routes(routes!(block_card))
        .routes(routes!(unblock_card))
        .routes(routes!(replace_card))
        .routes(routes!(list_holds))
        .routes(routes!(list_accounts))
}

#[derive(Clone, Deserialize, Serialize, ToSchema)]
pub struct IssueCardRequest {
    /// An existing holder (a shopper who already has a card), or none to create one.
    pub holder_id: Option<PartyId>,
    /// The new holder's name (required without `holder_id`).
    pub holder_name: Option<holdfast_core::text::Name>,
    pub age_class: AgeClass,
    pub purchase_type: PurchaseType,
    pub mapping_kind: MappingKind,
    pub currency: Currency,
    /// E.164: the phone that confirms every order and payment of this card.
    #[schema(value_type = String, example = "+821012345678")]
    pub phone: PhoneNumber,
    pub email: Option<holdfast_core::text::Email>,
    pub delivery_address: Option<holdfast_core::text::Address>,
    /// The credit limit (EC-exclusive limit for the EC-line kinds); required for every credit
    /// kind.
    pub credit_limit: Option<Money>,
    /// The normal card limit behind `credit_card_with_ec_line`.
    pub normal_card_limit: Option<Money>,
    /// Paid into a prepaid or bank account at once.
    pub initial_deposit: Option<Money>,
    /// The holder also sells (auctions): open its withdrawal account.
    #[serde(default)]
    pub seller: bool,
}

#[derive(Serialize, ToSchema)]
pub struct IssuedCardView {
    pub card: CardView,
    pub funding_account: AccountView,
    pub linked_account: Option<AccountView>,
    pub withdrawal_account: Option<AccountView>,
}

/// Issue an EC card to a holder, with its funding source. Send an `Idempotency-Key`: an initial
/// deposit moves money.
#[utoipa::path(post, path = "/v1/institution/cards", tag = "institution", security(("bearer" = [])),
    params(crate::openapi::RequiredIdempotencyKey),
    request_body = IssueCardRequest,
    responses((status = 201, body = IssuedCardView), (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody)))]
pub async fn issue_card(
    State(state): State<AppState>,
    principal: Principal,
    key: IdempotencyKey,
    Json(body): Json<IssueCardRequest>,
) -> ApiResult<Response> {
    let key = key.required()?;
    principal.require(&[Role::Institution])?;
    state
        .write(
            Idempotent::new(principal.scope(), key, "issue_card", &body),
            StatusCode::CREATED,
            async move |txn, core| {
                let holder = match body.holder_id {
                    Some(id) => Holder::Existing(id),
                    None => Holder::New {
                        display_name: body.holder_name.map(String::from).unwrap_or_default(),
                    },
                };
                let issued = funding::issue_card_in_txn(
                    txn,
                    &core.clock,
                    principal.party,
                    IssueCard {
                        holder,
                        age_class: body.age_class,
                        purchase_type: body.purchase_type,
                        mapping_kind: body.mapping_kind,
                        currency: body.currency,
                        phone: body.phone,
                        email: body.email.map(Into::into),
                        delivery_address: body.delivery_address.map(Into::into),
                        terms: FundingTerms {
                            credit_limit: body.credit_limit,
                            normal_card_limit: body.normal_card_limit,
                            initial_deposit: body.initial_deposit,
                        },
                        seller: body.seller,
                    },
                )
                .await?;
                Ok(IssuedCardView {
                    card: CardView::from(&issued.card),
                    funding_account: issued.funding.into(),
                    linked_account: issued.linked.map(AccountView::from),
                    withdrawal_account: issued.withdrawal.map(AccountView::from),
                })
            },
        )
        .await
}

#[derive(Deserialize, IntoParams)]
pub struct CardsQuery {
    /// Only cards in this status.
    pub state: Option<CardStatus>,
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

/// The cards this institution issued, newest first. Paged: the next page's cursor is in the
/// `Next-Cursor` header.
#[utoipa::path(get, path = "/v1/institution/cards", tag = "institution", security(("bearer" = [])),
    params(CardsQuery), responses((status = 200, description = "a page of cards", body = [CardView], headers(("Next-Cursor" = String, description = "The `cursor` of the next page; absent on the last page."))),
        (status = 400, description = "a cursor this list did not give out (`invalid_cursor`)", body = crate::error::ErrorBody)))]
pub async fn list_cards(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<CardsQuery>,
) -> ApiResult<PagedJson<CardView>> {
    principal.require(&[Role::Institution])?;
    let page = paging::page(ListKind::Cards, query.limit, query.cursor.as_deref())?;
    let filter = paging::filter(query.state, query.from, query.to);
    let list = cards::cards_of_institution(&state.db, principal.party, &filter, &page).await?;
    Ok(list.map(|card| CardView::from(&card)).into())
}

/// Block a card at once (lost, stolen, stopped): it can no longer log in, order or confirm.
#[utoipa::path(post, path = "/v1/institution/cards/{card_number}/block", tag = "institution",
    security(("bearer" = [])), params(("card_number" = CardNumber, Path)),
    responses((status = 200, body = CardView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn block_card(
    State(state): State<AppState>,
    principal: Principal,
    Path(number): Path<CardNumber>,
) -> ApiResult<axum::Json<CardView>> {
    principal.require(&[Role::Institution])?;
    let card = state
        .in_write_txn(async move |txn, core| {
            cards::block_in_txn(txn, &core.clock, &number, principal.party).await
        })
        .await?;
    Ok(axum::Json(CardView::from(&card)))
}

/// Lift a block.
#[utoipa::path(post, path = "/v1/institution/cards/{card_number}/unblock", tag = "institution",
    security(("bearer" = [])), params(("card_number" = CardNumber, Path)),
    responses((status = 200, body = CardView), (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)))]
pub async fn unblock_card(
    State(state): State<AppState>,
    principal: Principal,
    Path(number): Path<CardNumber>,
) -> ApiResult<axum::Json<CardView>> {
    principal.require(&[Role::Institution])?;
    let card = state
        .in_write_txn(async move |txn, core| {
            cards::unblock_in_txn(txn, &core.clock, &number, principal.party).await
        })
        .await?;
    Ok(axum::Json(CardView::from(&card)))
}

/// Replace a card: a new number with the same mapping; the old number is retired for good.
#[utoipa::path(post, path = "/v1/institution/cards/{card_number}/replace", tag = "institution",
    security(("bearer" = [])), params(("card_number" = CardNumber, Path)),
    responses((status = 201, body = CardView), (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)))]
pub async fn replace_card(
    State(state): State<AppState>,
    principal: Principal,
    Path(number): Path<CardNumber>,
) -> ApiResult<(StatusCode, axum::Json<CardView>)> {
    principal.require(&[Role::Institution])?;
    let card = state
        .in_write_txn(async move |txn, core| {
            cards::replace_in_txn(txn, &core.clock, &number, principal.party).await
        })
        .await?;
    Ok((StatusCode::CREATED, axum::Json(CardView::from(&card))))
}

#[derive(Serialize, ToSchema)]
pub struct HoldView {
    pub id: HoldId,
    pub amount: Money,
    pub mode: HoldMode,
    pub status: HoldStatus,
    pub funding_account_id: AccountId,
    /// The freezing account that holds (or will receive) the money.
    pub freezing_account_id: AccountId,
    /// The institution the frozen entry belongs to, even in a shared freezing account.
    pub institution_id: PartyId,
    pub posted_amount: Option<Money>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl From<Hold> for HoldView {
    fn from(hold: Hold) -> Self {
        HoldView {
            id: hold.id,
            amount: hold.amount,
            mode: hold.mode,
            status: hold.status,
            funding_account_id: hold.funding_account,
            freezing_account_id: hold.freezing_account,
            institution_id: hold.institution,
            posted_amount: hold.posted_amount,
            expires_at: hold.expires_at,
        }
    }
}

#[derive(Deserialize, IntoParams)]
pub struct HoldsQuery {
    /// Only holds in this status (`state` says the same, as on the other lists).
    pub status: Option<HoldStatus>,
    /// Only holds in this status.
    pub state: Option<HoldStatus>,
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

/// The holds on this institution's funding sources, newest first. Paged: the next page's
/// cursor is in the `Next-Cursor` header.
#[utoipa::path(get, path = "/v1/institution/holds", tag = "institution", security(("bearer" = [])),
    params(HoldsQuery), responses((status = 200, description = "a page of holds", body = [HoldView], headers(("Next-Cursor" = String, description = "The `cursor` of the next page; absent on the last page."))),
        (status = 400, description = "a cursor this list did not give out (`invalid_cursor`)", body = crate::error::ErrorBody)))]
pub async fn list_holds(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<HoldsQuery>,
) -> ApiResult<PagedJson<HoldView>> {
    principal.require(&[Role::Institution])?;
    let page = paging::page(ListKind::Holds, query.limit, query.cursor.as_deref())?;
    let filter = paging::filter(query.state.or(query.status), query.from, query.to);
    let list = holds::holds_of_institution(&state.db, principal.party, &filter, &page).await?;
    Ok(list.map(HoldView::from).into())
}

/// The institution's own accounts: its freezing account(s), fee income and external account.
#[utoipa::path(get, path = "/v1/institution/accounts", tag = "institution", security(("bearer" = [])),
    responses((status = 200, body = [AccountView])))]
pub async fn list_accounts(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<axum::Json<Vec<AccountView>>> {
    principal.require(&[Role::Institution])?;
    let accounts = ledger::accounts_of(&state.db, principal.party).await?;
    Ok(axum::Json(
        accounts
            .into_iter()
            .filter(|a| !matches!(a.kind, AccountKind::Prepaid))
            .map(AccountView::from)
            .collect(),
    ))
}
