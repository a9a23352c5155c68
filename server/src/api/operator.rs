//! The operator's desk: onboarding parties, paying into prepaid accounts, reading any
//! account, and auditing the ledger.

use crate::api::accounts::AccountView;
use crate::api::cards::CardView;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Query};
use crate::idempotency::{self, IdempotencyKey, Outcome};
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use holdfast_core::funding::{CreditClass, Institution, InstitutionKind, NewInstitution};
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
        .route("/operator/institutions", post(create_institution))
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
    /// An adult, personal EC card on a prepayment account at the built-in institution: the
    /// shopper logs in with it.
    pub card: CardView,
    pub prepaid_account: AccountView,
}

/// Onboard a shopper: an EC card mapped to the phone and to a prepayment account at the
/// built-in institution (funded with the initial deposit, so send an `Idempotency-Key`).
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
    let key = key.required()?;
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
                let issued = onboarding::onboard_shopper_in_txn(txn, &core, new).await?;
                Ok(Outcome::Done(ShopperCreated {
                    party_id: issued.card.holder,
                    card: CardView::from(&issued.card),
                    prepaid_account: issued.funding.into(),
                }))
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
    pub display_name: String,
    /// Four digits: the first four of every card number it issues.
    #[schema(example = "1001")]
    pub code: String,
    pub kind: InstitutionKind,
    /// The code of an existing institution whose freezing account to share.
    pub shares_freezing_with: Option<String>,
    /// The largest limit granted per EC credit-line class (banks).
    #[serde(default)]
    pub credit_class_caps: Vec<CreditClassCap>,
    pub username: String,
    pub password: String,
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
    let (institution, username) = onboarding::create_institution(
        &state.db,
        &state.core,
        NewInstitution {
            display_name: body.display_name,
            code: body.code,
            kind: body.kind,
            shares_freezing_with: body.shares_freezing_with,
            credit_class_caps: body
                .credit_class_caps
                .into_iter()
                .map(|cap| (cap.class, cap.max_limit))
                .collect(),
        },
        &body.username,
        &body.password,
    )
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
