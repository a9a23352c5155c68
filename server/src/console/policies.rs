//! The card holder's insurance page (signed in with the EC card): the products on sale, buying
//! one (the first premium is held and the card's phone asked to approve it, as
//! `POST /v1/insurance/policies` does), and the holder's policies with their premiums.

use super::insurer::{PolicyRow, ProductRow};
use super::page::{self, Layout, PageResult, Posted};
use super::session::SignedIn;
use super::txn;
use super::views;
use crate::state::AppState;
use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::routing::{get, post};
use holdfast_core::paging::ListKind;
use holdfast_core::parties::Role;
use holdfast_insurance::policies;
use holdfast_insurance::policies::PolicyState;
use holdfast_insurance::products::{self, ProductId, ProductViewer};
use sea_orm::Iterable;
use serde::Deserialize;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/policies", get(policies_page))
        .route("/policies/buy", post(buy))
}

const PAGE: u64 = 20;

#[derive(Deserialize)]
struct PoliciesQuery {
    /// The last product of the previous page of products.
    after: Option<ProductId>,
    /// The filter and page of the holder's policies.
    #[serde(flatten)]
    held: views::ListParams,
}

#[derive(Template)]
#[template(path = "console/policies/policies.html")]
struct PoliciesPage {
    layout: Layout,
    products: Vec<ProductRow>,
    next: Option<ProductId>,
    policies: Vec<PolicyRow>,
    nav: views::ListNav,
    awaiting_phone: bool,
}

async fn policies_page(
    State(state): State<AppState>,
    SignedIn { session, principal }: SignedIn,
    Query(query): Query<PoliciesQuery>,
) -> PageResult {
    principal.shopper_card()?;
    let on_sale =
        products::list_products(&state.db, ProductViewer::Buyer, query.after, PAGE).await?;
    let next = (on_sale.len() as u64 == PAGE)
        .then(|| on_sale.last().map(|p| p.id))
        .flatten();
    let filter = query.held.filter()?;
    let page = query.held.page(ListKind::Policies)?;
    let (db, core) = (&state.db, &state.core);
    let held =
        policies::list_policies(db, core, principal.party, Role::Shopper, &filter, &page).await?;
    let nav = query
        .held
        .nav("/policies", PolicyState::iter(), &filter, held.next_cursor);
    let held = held.items;
    page::render(&PoliciesPage {
        layout: Layout::signed_in("Insurance", &session, "/policies"),
        products: on_sale.into_iter().map(ProductRow::from).collect(),
        next,
        nav,
        awaiting_phone: held.iter().any(|p| {
            p.pending_confirmation.is_some()
                || p.premiums.iter().any(|m| m.pending_confirmation.is_some())
        }),
        policies: held.into_iter().map(PolicyRow::from).collect(),
    })
}

#[derive(Deserialize)]
struct BuyForm {
    product_id: ProductId,
}

async fn buy(State(state): State<AppState>, posted: Posted<BuyForm>) -> PageResult {
    let principal = posted.session.principal()?;
    let card = principal.shopper_card()?;
    let product = posted.form.product_id;
    txn::write(&state, posted.claim, async |txn, core| {
        policies::purchase_in_txn(txn, core, principal.party, card, product).await?;
        Ok(())
    })
    .await?;
    Ok(page::see_other("/policies"))
}
