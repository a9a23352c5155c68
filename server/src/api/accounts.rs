use crate::auth::Principal;
use crate::error::ApiResult;
use crate::extract::{Json, Path};
use crate::idempotency::{IdempotencyKey, Idempotent};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use holdfast_core::ids::{AccountId, PartyId};
use holdfast_core::ledger::{self, Account, AccountKind};
use holdfast_core::onboarding;
use holdfast_core::parties::Role;
use holdfast_core::{Currency, Money};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(my_accounts))
        .routes(routes!(deposit))
}

#[derive(Serialize, ToSchema)]
pub struct AccountView {
    pub id: AccountId,
    pub owner_id: PartyId,
    pub kind: AccountKind,
    pub currency: Currency,
    /// Signed: negative for a drawn credit line or an institution's external account.
    #[schema(example = "125.00")]
    pub balance: String,
    /// What can be spent or held now.
    pub available: Money,
}

impl From<Account> for AccountView {
    fn from(account: Account) -> Self {
        AccountView {
            id: account.id,
            owner_id: account.owner,
            kind: account.kind,
            currency: account.currency,
            balance: ledger::signed_decimal(account.balance, account.currency),
            available: account.available(),
        }
    }
}

/// The caller's own accounts and balances.
#[utoipa::path(get, path = "/v1/accounts", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, body = [AccountView]), (status = 401, body = crate::error::ErrorBody)))]
pub async fn my_accounts(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<axum::Json<Vec<AccountView>>> {
    let accounts = ledger::accounts_of(&state.db, principal.party).await?;
    Ok(axum::Json(
        accounts.into_iter().map(AccountView::from).collect(),
    ))
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct Deposit {
    pub amount: Money,
}

/// Pay money in: onto a prepaid or bank account, or as a repayment onto a credit line. The
/// operator may pay into any funding account, an institution into those it operates. Send an
/// `Idempotency-Key` so that a retry cannot pay twice.
#[utoipa::path(post, path = "/v1/accounts/{account_id}/deposits", tag = "accounts",
    security(("bearer" = [])),
    params(("account_id" = AccountId, Path), crate::openapi::RequiredIdempotencyKey),
    request_body = Deposit,
    responses((status = 201, body = AccountView), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)))]
pub async fn deposit(
    State(state): State<AppState>,
    principal: Principal,
    Path(account): Path<AccountId>,
    key: IdempotencyKey,
    Json(body): Json<Deposit>,
) -> ApiResult<Response> {
    let key = key.required()?;
    principal.require(&[Role::Operator, Role::Institution])?;
    let request = Idempotent::new(principal.scope(), key, "deposit", &(account, &body));
    let transfer_key = format!(
        "deposit:{}:{}",
        principal.party,
        request.key().unwrap_or_default()
    );
    let by_operator = principal.role == Role::Operator;
    state
        .write(request, StatusCode::CREATED, async move |txn, core| {
            let (_, account) = onboarding::pay_in_in_txn(
                txn,
                core,
                principal.party,
                by_operator,
                account,
                body.amount,
                &transfer_key,
            )
            .await?;
            Ok(AccountView::from(account))
        })
        .await
}
