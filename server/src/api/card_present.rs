//! Card-present authorisation: a shop terminal, confirmed on the holder's phone.

use crate::api::paging::{self, PagedJson};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use holdfast_card_present::{
    self as card_present, ArmRequest, ArmedApproval, ArmedApprovalId, Authorisation,
    AuthorisationStatus, AuthoriseRequest, Merchant, Terminal,
};
use holdfast_core::cards::CardNumber;
use holdfast_core::ids::PartyId;
use holdfast_core::onboarding::StaffCredentials;
use holdfast_core::paging::ListKind;
use holdfast_core::parties::Role;
use holdfast_core::{CoreError, Money};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register_terminal))
        .routes(routes!(list_merchants))
        .routes(routes!(authorise, list_authorisations))
        .routes(routes!(get_authorisation))
        .routes(routes!(capture))
        .routes(routes!(void))
        .routes(routes!(arm, list_armed_approvals))
        .routes(routes!(cancel_armed_approval))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterTerminal {
    /// The merchant (a supplier) the terminal takes payments for; a supplier registering its
    /// own terminal leaves it out.
    pub merchant_id: Option<PartyId>,
    /// Which terminal of the shop, e.g. "till 1".
    pub label: card_present::TerminalLabel,
    pub username: holdfast_core::text::Username,
    /// 10 to 256 characters.
    pub password: holdfast_core::text::NewPassword,
}

/// Register a shop terminal that logs in as a merchant device (operators, or a supplier for
/// itself); it then logs in with `POST /v1/auth/login`.
#[utoipa::path(post, path = "/v1/card-present/terminals", tag = "card-present",
    security(("bearer" = [])), request_body = RegisterTerminal,
    responses((status = 201, body = Terminal), (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, description = "no such merchant", body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)))]
pub async fn register_terminal(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<RegisterTerminal>,
) -> ApiResult<(StatusCode, axum::Json<Terminal>)> {
    principal.require(&[Role::Operator, Role::Supplier])?;
    let merchant = match (principal.role, body.merchant_id) {
        (Role::Supplier, None) => principal.party,
        (Role::Supplier, Some(id)) if id == principal.party => id,
        (Role::Supplier, Some(_)) => {
            return Err(ApiError::forbidden(
                "a supplier registers terminals for itself only",
            ));
        }
        (_, Some(id)) => id,
        (_, None) => return Err(ApiError::invalid("name the merchant_id")),
    };
    let credentials =
        StaffCredentials::hash(&state.core.passwords, &body.username, &body.password, None).await?;
    let terminal = state
        .in_write_txn(async move |txn, core| {
            card_present::register_terminal_in_txn(txn, core, merchant, &body.label, credentials)
                .await
        })
        .await?;
    Ok((StatusCode::CREATED, axum::Json(terminal)))
}

#[derive(Deserialize, IntoParams)]
pub struct LimitQuery {
    /// 1–100, default 20.
    pub limit: Option<u64>,
}

/// Merchants that take card-present payments (for a holder arming an approval).
#[utoipa::path(get, path = "/v1/card-present/merchants", tag = "card-present",
    security(("bearer" = [])), params(LimitQuery), responses((status = 200, body = [Merchant])))]
pub async fn list_merchants(
    State(state): State<AppState>,
    _principal: Principal,
    Query(query): Query<LimitQuery>,
) -> ApiResult<axum::Json<Vec<Merchant>>> {
    Ok(axum::Json(
        card_present::merchants(&state.db, query.limit.unwrap_or(20)).await?,
    ))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorisationRequest {
    /// The terminal's own id for this payment (1–64 letters, digits, `-_.:`): asking again with
    /// it is a retry of the same payment, never a second one.
    #[schema(example = "till1-20260501-0042")]
    pub authorisation_id: card_present::AuthorisationReference,
    pub card_number: CardNumber,
    pub amount: Money,
}

/// Ask to authorise a card for an amount (terminals). Answers at once: `challenge_required`
/// (202) while the holder's phone is asked — ask again with the same `authorisation_id` after
/// `retry_after_secs`; `approved` (200) once the phone approved, or at once when the holder armed
/// an approval for this merchant and the money is there; `declined` (200) for an unknown or
/// blocked card (both `card_declined`: a till cannot tell which numbers exist), a card in
/// another currency, a phone that did
/// not answer (`confirmation_expired`) or was locked by wrong codes, and `not_approved` when the
/// holder said no or the money was not there — the terminal is never told which, so it learns
/// nothing of the holder's balance. Nothing is held unless approved. A card whose phone already
/// has 2 questions open, or that was asked for 5 new authorisations within 10 minutes, is
/// refused with 429 `too_many_attempts`: nothing is recorded under the id and the phone is not
/// texted, so the same id may be asked again later.
#[utoipa::path(post, path = "/v1/card-present/authorisations", tag = "card-present",
    security(("bearer" = [])), request_body = AuthorisationRequest,
    responses((status = 200, description = "approved or declined", body = Authorisation),
        (status = 202, description = "challenge_required: ask again", body = Authorisation),
        (status = 400, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody),
        (status = 409, description = "the authorisation id was used for another card or amount", body = crate::error::ErrorBody),
        (status = 429, description = "too_many_attempts: the card's phone was asked too often; try later", body = crate::error::ErrorBody)))]
pub async fn authorise(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<AuthorisationRequest>,
) -> ApiResult<(StatusCode, axum::Json<Authorisation>)> {
    principal.require(&[Role::Terminal])?;
    let authorisation = state
        .in_write_txn(async move |txn, core| {
            card_present::authorise_in_txn(
                txn,
                core,
                principal.party,
                AuthoriseRequest {
                    reference: body.authorisation_id.into(),
                    card_number: body.card_number,
                    amount: body.amount,
                },
            )
            .await
        })
        .await
        .map_err(|error| match error {
            CoreError::TooManyAttempts => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                error.code(),
                format!(
                    "this card's phone was asked too often (at most {} open questions, {} new \
                 payments per {} minutes); ask again later or take another payment method",
                    card_present::MAX_OPEN_CONFIRMATIONS_PER_CARD,
                    card_present::MAX_REQUESTS_PER_CARD_PER_WINDOW,
                    card_present::REQUEST_WINDOW_MINUTES
                ),
            )
            // An open question is answered or expires within the window.
            .retry_after(u64::try_from(card_present::REQUEST_WINDOW_MINUTES * 60).unwrap_or(600)),
            other => ApiError::from(other),
        })?;
    let status = if authorisation.status == AuthorisationStatus::ChallengeRequired {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(authorisation)))
}

#[derive(Deserialize, IntoParams)]
pub struct AuthorisationsQuery {
    /// Only authorisations in this status.
    pub state: Option<AuthorisationStatus>,
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

/// The newest authorisations: a terminal's own, or those asked on a holder's cards (shoppers,
/// with the pending phone confirmations to answer). Paged: the next page's cursor is in the
/// `Next-Cursor` header.
#[utoipa::path(get, path = "/v1/card-present/authorisations", tag = "card-present",
    security(("bearer" = [])), params(AuthorisationsQuery),
    responses((status = 200, description = "a page of authorisations", body = [Authorisation], headers(("Next-Cursor" = String, description = "The `cursor` of the next page; absent on the last page."))),
        (status = 400, description = "a cursor this list did not give out (`invalid_cursor`)", body = crate::error::ErrorBody)))]
pub async fn list_authorisations(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<AuthorisationsQuery>,
) -> ApiResult<PagedJson<Authorisation>> {
    principal.require(&[Role::Terminal, Role::Shopper])?;
    let page = paging::page(
        ListKind::Authorisations,
        query.limit,
        query.cursor.as_deref(),
    )?;
    let filter = paging::filter(query.state, query.from, query.to);
    let (db, core, party) = (&state.db, &state.core, principal.party);
    let list = if principal.role == Role::Terminal {
        card_present::authorisations_of_terminal(db, core, party, &filter, &page).await?
    } else {
        card_present::authorisations_of_holder(db, core, party, &filter, &page).await?
    };
    Ok(list.into())
}

/// One of the terminal's authorisations, as it stands now.
#[utoipa::path(get, path = "/v1/card-present/authorisations/{authorisation_id}", tag = "card-present",
    security(("bearer" = [])), params(("authorisation_id" = String, Path)),
    responses((status = 200, body = Authorisation), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_authorisation(
    State(state): State<AppState>,
    principal: Principal,
    Path(reference): Path<String>,
) -> ApiResult<axum::Json<Authorisation>> {
    principal.require(&[Role::Terminal])?;
    Ok(axum::Json(
        card_present::get(&state.db, &state.core, principal.party, &reference).await?,
    ))
}

#[derive(Deserialize, Serialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CaptureRequest {
    /// At most the authorised amount (the rest returns to the card); all of it when absent.
    pub amount: Option<Money>,
}

/// Take the money of an approved authorisation (terminals): the merchant's withdrawal account
/// receives it minus the card institution's fee. Capturing again the same amount is a no-op.
#[utoipa::path(post, path = "/v1/card-present/authorisations/{authorisation_id}/capture",
    tag = "card-present", security(("bearer" = [])), params(("authorisation_id" = String, Path)),
    request_body(content = CaptureRequest, description = "optional"),
    responses((status = 200, body = Authorisation), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody), (status = 409, description = "not approved", body = crate::error::ErrorBody)))]
pub async fn capture(
    State(state): State<AppState>,
    principal: Principal,
    Path(reference): Path<String>,
    raw: axum::body::Bytes,
) -> ApiResult<axum::Json<Authorisation>> {
    principal.require(&[Role::Terminal])?;
    let body: CaptureRequest = crate::extract::optional_json(&raw)?;
    Ok(axum::Json(
        state
            .in_write_txn(async move |txn, core| {
                card_present::capture_in_txn(txn, core, principal.party, &reference, body.amount)
                    .await
            })
            .await?,
    ))
}

/// Cancel an authorisation the terminal will not capture: a pending phone question is
/// withdrawn, a hold returns. Voiding again is a no-op.
#[utoipa::path(post, path = "/v1/card-present/authorisations/{authorisation_id}/void",
    tag = "card-present", security(("bearer" = [])), params(("authorisation_id" = String, Path)),
    responses((status = 200, body = Authorisation), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)))]
pub async fn void(
    State(state): State<AppState>,
    principal: Principal,
    Path(reference): Path<String>,
) -> ApiResult<axum::Json<Authorisation>> {
    principal.require(&[Role::Terminal])?;
    Ok(axum::Json(
        state
            .in_write_txn(async move |txn, core| {
                card_present::void_in_txn(txn, core, principal.party, &reference).await
            })
            .await?,
    ))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ArmApproval {
    pub merchant_id: PartyId,
    /// The most the payment may be.
    pub max_amount: Money,
    /// When the window opens (now when absent; at most 7 days ahead).
    pub valid_from: Option<DateTime<Utc>>,
    /// How long it stays open, 1 to 1440 minutes.
    #[schema(minimum = 1, maximum = 1440)]
    pub valid_for_minutes: i64,
}

/// Arm an approval ahead of paying at a shop (shoppers, with the card of the session): once
/// confirmed with the code sent to the phone, one payment at that merchant up to the ceiling
/// and within the window is approved at once.
#[utoipa::path(post, path = "/v1/card-present/armed-approvals", tag = "card-present",
    security(("bearer" = [])), request_body = ArmApproval,
    responses((status = 201, body = ArmedApproval), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
        (status = 422, description = "the ceiling is not in the card's currency", body = crate::error::ErrorBody)))]
pub async fn arm(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<ArmApproval>,
) -> ApiResult<(StatusCode, axum::Json<ArmedApproval>)> {
    let card = principal.shopper_card()?;
    let armed = state
        .in_write_txn(async move |txn, core| {
            card_present::arm_in_txn(
                txn,
                core,
                principal.party,
                card,
                ArmRequest {
                    merchant: body.merchant_id,
                    max_amount: body.max_amount,
                    valid_from: body.valid_from,
                    valid_for_minutes: body.valid_for_minutes,
                },
            )
            .await
        })
        .await?;
    Ok((StatusCode::CREATED, axum::Json(armed)))
}

#[derive(Deserialize, IntoParams)]
pub struct PageQuery {
    /// 1–100, default 20.
    pub limit: Option<u64>,
    /// The `Next-Cursor` of the previous page; empty or absent for the first page.
    #[param(pattern = "^([A-Za-z0-9_-]{40})?$")]
    pub cursor: Option<String>,
}

/// The holder's armed approvals, newest first. Paged: the next page's cursor is in the
/// `Next-Cursor` header.
#[utoipa::path(get, path = "/v1/card-present/armed-approvals", tag = "card-present",
    security(("bearer" = [])), params(PageQuery),
    responses((status = 200, description = "a page of armed approvals", body = [ArmedApproval], headers(("Next-Cursor" = String, description = "The `cursor` of the next page; absent on the last page."))),
        (status = 400, description = "a cursor this list did not give out (`invalid_cursor`)", body = crate::error::ErrorBody)))]
pub async fn list_armed_approvals(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<PageQuery>,
) -> ApiResult<PagedJson<ArmedApproval>> {
    principal.require(&[Role::Shopper])?;
    let page = paging::page(
        ListKind::ArmedApprovals,
        query.limit,
        query.cursor.as_deref(),
    )?;
    Ok(
        card_present::armed_approvals_of(&state.db, &state.core, principal.party, &page)
            .await?
            .into(),
    )
}

/// Withdraw an armed approval before it is used.
#[utoipa::path(post, path = "/v1/card-present/armed-approvals/{armed_approval_id}/cancel",
    tag = "card-present", security(("bearer" = [])), params(("armed_approval_id" = ArmedApprovalId, Path)),
    responses((status = 200, body = ArmedApproval), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)))]
pub async fn cancel_armed_approval(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<ArmedApprovalId>,
) -> ApiResult<axum::Json<ArmedApproval>> {
    principal.require(&[Role::Shopper])?;
    Ok(axum::Json(
        state
            .in_write_txn(async move |txn, core| {
                card_present::cancel_armed_in_txn(txn, core, principal.party, id).await
            })
            .await?,
    ))
}
