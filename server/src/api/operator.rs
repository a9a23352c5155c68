//! The operator's desk: onboarding parties, paying into prepaid accounts, reading any
//! account, and auditing the ledger.

use crate::api::accounts::AccountView;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::idempotency::{self, IdempotencyKey, Outcome};
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use holdfast_core::ids::PartyId;
use holdfast_core::ledger::{self, LedgerAudit};
use holdfast_core::onboarding::{self, NewShopper, NewSupplier};
use holdfast_core::parties::{PLATFORM_PARTY, Role};
use holdfast_core::phone_number::PhoneNumber;
use holdfast_core::{Currency, Money};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/operator/suppliers", post(create_supplier))
        .route("/operator/shoppers", post(create_shopper))
        .route("/operator/shoppers/{shopper_id}/deposits", post(deposit))
        .route("/operator/accounts", get(accounts))
        .route("/operator/ledger/audit", get(audit))
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct CreateSupplier {
    pub display_name: String,
    pub username: String,
    /// 10 to 256 characters.
    pub password: String,
    /// Needed later to change the supplier's information.
    pub second_password: Option<String>,
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
    let (party, username) = onboarding::onboard_supplier(
        &state.db,
        &state.core,
        NewSupplier {
            display_name: body.display_name,
            username: body.username,
            password: body.password,
            second_password: body.second_password,
        },
    )
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
    pub display_name: String,
    /// E.164, e.g. `+821012345678`: where confirmations are sent.
    #[schema(value_type = String, example = "+821012345678")]
    pub phone: PhoneNumber,
    pub currency: Currency,
    /// Paid into the new prepaid account.
    pub initial_deposit: Option<Money>,
}

#[derive(Serialize, ToSchema)]
pub struct ShopperCreated {
    pub party_id: PartyId,
    pub display_name: String,
    pub prepaid_account: AccountView,
}

/// Onboard a shopper with a phone and an EC prepayment account (funded with the initial
/// deposit, so send an `Idempotency-Key`).
#[utoipa::path(post, path = "/v1/operator/shoppers", tag = "operator", security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header)),
    request_body = CreateShopper,
    responses((status = 201, body = ShopperCreated), (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody)))]
pub async fn create_shopper(
    State(state): State<AppState>,
    principal: Principal,
    key: IdempotencyKey,
    Json(body): Json<CreateShopper>,
) -> ApiResult<Response> {
    principal.require(&[Role::Operator])?;
    let fingerprint = idempotency::fingerprint("create_shopper", &body);
    let core = state.core.clone();
    idempotency::run(
        &state,
        principal.scope(),
        key,
        fingerprint,
        StatusCode::CREATED,
        move |txn| {
            Box::pin(async move {
                let new = NewShopper {
                    display_name: body.display_name,
                    phone: body.phone,
                    currency: body.currency,
                    initial_deposit: body.initial_deposit,
                };
                let (party, account) = onboarding::onboard_shopper_in_txn(txn, &core, new).await?;
                Ok(Outcome::Done(ShopperCreated {
                    party_id: party.id,
                    display_name: party.display_name,
                    prepaid_account: account.into(),
                }))
            })
        },
    )
    .await
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct Deposit {
    pub amount: Money,
}

#[derive(Serialize, ToSchema)]
pub struct Deposited {
    pub account: AccountView,
}

/// Pay money into a shopper's prepaid account. Send an `Idempotency-Key` so a retry cannot pay
/// twice.
#[utoipa::path(post, path = "/v1/operator/shoppers/{shopper_id}/deposits", tag = "operator",
    security(("bearer" = [])),
    params(("shopper_id" = PartyId, Path), ("Idempotency-Key" = Option<String>, Header)),
    request_body = Deposit,
    responses((status = 201, body = Deposited), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)))]
pub async fn deposit(
    State(state): State<AppState>,
    principal: Principal,
    Path(shopper): Path<PartyId>,
    key: IdempotencyKey,
    Json(body): Json<Deposit>,
) -> ApiResult<Response> {
    principal.require(&[Role::Operator])?;
    let fingerprint = idempotency::fingerprint("deposit", &(shopper, &body));
    // Without a client key each request is its own deposit.
    let transfer_key = match &key.0 {
        Some(k) => format!("deposit:{}:{k}", principal.party),
        None => format!("deposit:{}", uuid::Uuid::now_v7()),
    };
    let core = state.core.clone();
    idempotency::run(
        &state,
        principal.scope(),
        key,
        fingerprint,
        StatusCode::CREATED,
        move |txn| {
            Box::pin(async move {
                let (_, account) = onboarding::deposit_for_shopper_in_txn(
                    txn,
                    &core,
                    shopper,
                    body.amount,
                    &transfer_key,
                )
                .await?;
                Ok(Outcome::Done(Deposited {
                    account: account.into(),
                }))
            })
        },
    )
    .await
}

#[derive(Deserialize, IntoParams)]
pub struct AccountsQuery {
    /// A party id, or `platform` for the platform's own (commission) accounts.
    pub owner: String,
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
    let owner = if query.owner == "platform" {
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
