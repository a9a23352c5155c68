use crate::auth::Principal;
use crate::error::ApiResult;
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use holdfast_core::ids::{AccountId, PartyId};
use holdfast_core::ledger::{self, Account, AccountKind};
use holdfast_core::{Currency, Money};
use serde::Serialize;
use utoipa::ToSchema;

pub fn routes() -> Router<AppState> {
    Router::new().route("/accounts", get(my_accounts))
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
