//! The supplier's own information, guarded by its second password.

use crate::auth::Principal;
use crate::error::ApiResult;
use crate::extract::Json;
use crate::state::AppState;
use axum::extract::State;
use holdfast_core::parties::{self, Party, Role};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(change_profile))
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct ProfileChange {
    /// The name buyers see on their phone when they confirm.
    pub display_name: holdfast_core::text::Name,
    /// The second password given at onboarding.
    pub second_password: holdfast_core::text::Password,
}

/// Change the supplier's information. It needs the second password, not only the login.
#[utoipa::path(patch, path = "/v1/supplier/profile", tag = "retail", security(("bearer" = [])),
    request_body = ProfileChange,
    responses((status = 200, body = Party), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody)))]
pub async fn change_profile(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<ProfileChange>,
) -> ApiResult<axum::Json<Party>> {
    principal.require(&[Role::Supplier])?;
    parties::verify_second_password(
        &state.db,
        &state.core.passwords,
        principal.party,
        &body.second_password,
    )
    .await?;
    let party = state
        .in_write_txn(async move |txn, _| {
            parties::change_display_name_in_txn(txn, principal.party, &body.display_name).await
        })
        .await?;
    Ok(axum::Json(party))
}
