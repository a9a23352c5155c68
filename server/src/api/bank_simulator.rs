//! The simulated bank's endpoints, for development, tests and the demo: a credit arrives at an
//! institution's bank account, a payout comes back, the day closes. They answer to the
//! simulator key or an operator, and only when the simulated bank is the gateway.

use crate::api::simulator::SIMULATOR_KEY_HEADER;
use crate::auth::Principal;
use crate::bank_gateways::{self, SimulatedBank};
use crate::error::{ApiError, ApiResult};
use crate::extract::Json;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::NaiveDate;
use holdfast_core::Money;
use holdfast_core::ids::PartyId;
use holdfast_core::parties::Role;
use holdfast_core::text::{Remittance, Text};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(simulate_credit))
        .routes(routes!(simulate_return))
        .routes(routes!(simulate_close_day))
}

/// The simulated bank, for a caller with the simulator key or an operator's token.
fn simulated_bank(state: &AppState, headers: &HeaderMap) -> ApiResult<Arc<SimulatedBank>> {
    let Some(bank) = state.simulated_bank.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "bank_simulator_disabled",
            "the bank simulator is off: another bank gateway is configured",
        ));
    };
    if let (Some(key), Some(presented)) = (&state.simulator_key, headers.get(SIMULATOR_KEY_HEADER))
    {
        return if key.matches(presented.as_bytes()) {
            Ok(bank)
        } else {
            Err(ApiError::unauthenticated("the simulator key is wrong"))
        };
    }
    Principal::from_headers(headers, &state.jwt)?.require(&[Role::Operator])?;
    Ok(bank)
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct SimulatedCredit {
    /// The institution whose account receives it.
    pub institution_id: PartyId,
    pub amount: Money,
    /// What the payer wrote: a deposit reference (`RF…`) or anything else.
    pub remittance: Option<Remittance>,
}

#[derive(Serialize, ToSchema)]
pub struct SimulatedView {
    /// The bank's reference (or, for a closed day, the statement's message id).
    pub reference: String,
    /// Statements imported into Holdfast as a result.
    pub statements_imported: u32,
}

/// The simulated bank receives a credit (a shopper's bank transfer) and notifies Holdfast.
#[utoipa::path(post, path = "/v1/simulator/bank/credits", tag = "bank",
    security(("simulator_key" = []), ("bearer" = [])), request_body = SimulatedCredit,
    responses((status = 201, body = SimulatedView), (status = 400, body = crate::error::ErrorBody),
        (status = 404, description = "The simulated bank is off (`bank_simulator_disabled`), or the institution has no account there in this currency",
            body = crate::error::ErrorBody)))]
pub async fn simulate_credit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<SimulatedCredit>,
) -> ApiResult<(StatusCode, axum::Json<SimulatedView>)> {
    let bank = simulated_bank(&state, &headers)?;
    let reference = bank
        .receive_credit(
            body.institution_id,
            body.amount,
            body.remittance.map(String::from),
        )
        .await?;
    Ok((StatusCode::CREATED, delivered(&state, reference).await?))
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct SimulatedReturn {
    /// The payout's end-to-end id.
    pub end_to_end_id: Text<1, 35>,
    /// ISO external return reason code, e.g. `AC04` (closed account).
    #[schema(pattern = "^[A-Z0-9]{4}$", example = "AC04")]
    pub reason: String,
}

/// The payee's bank returns a payout: the simulated bank credits it back and notifies
/// Holdfast.
#[utoipa::path(post, path = "/v1/simulator/bank/returns", tag = "bank",
    security(("simulator_key" = []), ("bearer" = [])), request_body = SimulatedReturn,
    responses((status = 201, body = SimulatedView), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn simulate_return(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<SimulatedReturn>,
) -> ApiResult<(StatusCode, axum::Json<SimulatedView>)> {
    let bank = simulated_bank(&state, &headers)?;
    let reference = bank
        .return_transfer(&body.end_to_end_id, &body.reason)
        .await?;
    Ok((StatusCode::CREATED, delivered(&state, reference).await?))
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct SimulatedCloseDay {
    pub institution_id: PartyId,
    /// The day to close (default: today, UTC).
    // Documented as a date that may be left out: generators read a nullable date as any
    // string, and a JSON `null` is still read as absent.
    #[schema(nullable = false)]
    pub day: Option<NaiveDate>,
}

/// The simulated bank closes an institution's day: its camt.053 end-of-day statement, with
/// opening and closing balances, is imported into Holdfast.
#[utoipa::path(post, path = "/v1/simulator/bank/close-day", tag = "bank",
    security(("simulator_key" = []), ("bearer" = [])), request_body = SimulatedCloseDay,
    responses((status = 200, body = SimulatedView), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)))]
pub async fn simulate_close_day(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<SimulatedCloseDay>,
) -> ApiResult<axum::Json<SimulatedView>> {
    let bank = simulated_bank(&state, &headers)?;
    let day = body
        .day
        .unwrap_or_else(|| state.core.clock.now().date_naive());
    let reference = bank.close_day(body.institution_id, day).await?;
    delivered(&state, reference).await
}

/// What the simulated bank did (`reference`), once the statements it wrote are imported into
/// Holdfast.
async fn delivered(state: &AppState, reference: String) -> ApiResult<axum::Json<SimulatedView>> {
    let statements_imported = bank_gateways::deliver_statements(state).await?;
    Ok(axum::Json(SimulatedView {
        reference,
        statements_imported,
    }))
}
