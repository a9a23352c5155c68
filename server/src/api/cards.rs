//! A shopper's own cards.

use crate::auth::Principal;
use crate::error::ApiResult;
use crate::extract::Path;
use crate::state::AppState;
use axum::extract::State;
use holdfast_core::cards::{
    self, AgeClass, Card, CardNumber, CardStatus, MappingKind, PurchaseType,
};
use holdfast_core::ids::{AccountId, PartyId};
use holdfast_core::parties::Role;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(my_cards))
        .routes(routes!(report_lost))
}

/// A card as its holder or issuer sees it. The phone is masked even here.
#[derive(Serialize, ToSchema)]
pub struct CardView {
    pub card_number: CardNumber,
    pub masked: String,
    pub holder_id: PartyId,
    pub institution_id: PartyId,
    pub age_class: AgeClass,
    pub purchase_type: PurchaseType,
    pub mapping_kind: MappingKind,
    pub status: CardStatus,
    pub funding_account_id: AccountId,
    pub phone: String,
}

impl From<&Card> for CardView {
    fn from(card: &Card) -> Self {
        CardView {
            card_number: card.number.clone(),
            masked: card.number.masked(),
            holder_id: card.holder,
            institution_id: card.institution,
            age_class: card.age_class,
            purchase_type: card.purchase_type,
            mapping_kind: card.mapping_kind,
            status: card.status,
            funding_account_id: card.funding_account,
            phone: card.phone.masked(),
        }
    }
}

/// The caller's cards.
#[utoipa::path(get, path = "/v1/me/cards", tag = "cards", security(("bearer" = [])),
    responses((status = 200, body = [CardView])))]
pub async fn my_cards(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<axum::Json<Vec<CardView>>> {
    principal.require(&[Role::Shopper])?;
    let list = cards::cards_of_holder(&state.db, principal.party).await?;
    Ok(axum::Json(list.iter().map(CardView::from).collect()))
}

/// Report one of your cards lost: it is blocked at once.
#[utoipa::path(post, path = "/v1/me/cards/{card_number}/block", tag = "cards",
    security(("bearer" = [])), params(("card_number" = CardNumber, Path)),
    responses((status = 200, body = CardView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn report_lost(
    State(state): State<AppState>,
    principal: Principal,
    Path(number): Path<CardNumber>,
) -> ApiResult<axum::Json<CardView>> {
    principal.require(&[Role::Shopper])?;
    let card = state
        .in_write_txn(async move |txn, core| {
            cards::block_in_txn(txn, &core.clock, &number, principal.party).await
        })
        .await?;
    Ok(axum::Json(CardView::from(&card)))
}
