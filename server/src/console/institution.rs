//! Pages of an institution's staff (a bank, card company or department store): issuing EC
//! cards with their funding source, blocking, unblocking and replacing them, the holds on its
//! funding sources, and its freezing account. The same use cases as `/v1/institution/…`.

use super::forms::{self, label};
use super::page::{self, Layout, PageError, PageResult, Posted};
use super::session::SignedIn;
use super::txn;
use super::views::{ListNav, ListParams};
use crate::api::accounts::AccountView;
use crate::api::cards::CardView;
use crate::api::institution::HoldView;
use crate::state::AppState;
use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use holdfast_core::Currency;
use holdfast_core::cards::CardStatus;
use holdfast_core::cards::{self, AgeClass, CardNumber, MappingKind, PurchaseType};
use holdfast_core::funding::{self, FundingTerms, Holder, IssueCard};
use holdfast_core::holds::{self, HoldStatus};
use holdfast_core::ledger::{self, AccountKind};
use holdfast_core::paging::ListKind;
use holdfast_core::parties::Role;
use holdfast_core::phone_number::PhoneNumber;
use holdfast_core::text::{Address, Email, Name};
use sea_orm::Iterable;
use serde::Deserialize;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/institution/cards", get(cards_page).post(issue))
        .route("/institution/cards/{number}/{action}", post(change_card))
        .route("/institution/holds", get(holds_page))
        .route("/institution/accounts", get(accounts_page))
}

struct CardRow {
    number: String,
    masked: String,
    status: String,
    mapping: String,
    age_class: String,
    purchase_type: String,
    phone: String,
    active: bool,
    blocked: bool,
}

impl From<CardView> for CardRow {
    fn from(card: CardView) -> Self {
        CardRow {
            number: card.card_number.to_string(),
            masked: card.masked,
            status: label(&card.status),
            mapping: label(&card.mapping_kind),
            age_class: label(&card.age_class),
            purchase_type: label(&card.purchase_type),
            phone: card.phone,
            active: card.status == cards::CardStatus::Active,
            blocked: card.status == cards::CardStatus::Blocked,
        }
    }
}

#[derive(Template)]
#[template(path = "console/institution/cards.html")]
struct CardsPage {
    layout: Layout,
    cards: Vec<CardRow>,
    nav: ListNav,
    mappings: Vec<String>,
    currencies: [Currency; 5],
}

async fn cards_page(
    State(state): State<AppState>,
    SignedIn { session, principal }: SignedIn,
    Query(params): Query<ListParams>,
) -> PageResult {
    PageError::require(&principal, &[Role::Institution])?;
    let filter = params.filter()?;
    let page = params.page(ListKind::Cards)?;
    let list = cards::cards_of_institution(&state.db, principal.party, &filter, &page).await?;
    page::render(&CardsPage {
        layout: Layout::signed_in("Cards", &session, "/institution/cards"),
        cards: list
            .items
            .iter()
            .map(|c| CardRow::from(CardView::from(c)))
            .collect(),
        nav: params.nav(
            "/institution/cards",
            CardStatus::iter(),
            &filter,
            list.next_cursor,
        ),
        mappings: MappingKind::ALL.iter().map(label).collect(),
        currencies: Currency::ALL,
    })
}

#[derive(Deserialize)]
struct IssueForm {
    holder_name: Name,
    age_class: AgeClass,
    purchase_type: PurchaseType,
    mapping_kind: MappingKind,
    currency: Currency,
    phone: PhoneNumber,
    #[serde(default)]
    email: String,
    #[serde(default)]
    delivery_address: String,
    #[serde(default)]
    credit_limit: String,
    #[serde(default)]
    normal_card_limit: String,
    #[serde(default)]
    initial_deposit: String,
    #[serde(default)]
    seller: Option<String>,
}

async fn issue(State(state): State<AppState>, posted: Posted<IssueForm>) -> PageResult {
    let principal = posted.session.principal()?;
    PageError::require(&principal, &[Role::Institution])?;
    let form = posted.form;
    let email = forms::optional_field(&form.email, Email::parse)?.map(String::from);
    let delivery_address =
        forms::optional_field(&form.delivery_address, Address::parse)?.map(String::from);
    let request = IssueCard {
        holder: Holder::New {
            display_name: form.holder_name.into(),
        },
        age_class: form.age_class,
        purchase_type: form.purchase_type,
        mapping_kind: form.mapping_kind,
        currency: form.currency,
        phone: form.phone,
        email,
        delivery_address,
        terms: FundingTerms {
            credit_limit: forms::optional_money(&form.credit_limit, form.currency)?,
            normal_card_limit: forms::optional_money(&form.normal_card_limit, form.currency)?,
            initial_deposit: forms::optional_money(&form.initial_deposit, form.currency)?,
        },
        seller: form.seller.is_some(),
    };
    txn::write(&state, posted.claim, async |txn, core| {
        funding::issue_card_in_txn(txn, &core.clock, principal.party, request).await?;
        Ok(())
    })
    .await?;
    Ok(page::see_other("/institution/cards"))
}

async fn change_card(
    State(state): State<AppState>,
    Path((number, action)): Path<(CardNumber, String)>,
    posted: Posted<page::NoFields>,
) -> PageResult {
    let principal = posted.session.principal()?;
    PageError::require(&principal, &[Role::Institution])?;
    let institution = principal.party;
    let number = &number;
    if !matches!(action.as_str(), "block" | "unblock" | "replace") {
        return Err(PageError::Api(crate::error::ApiError::not_found("page")));
    }
    txn::write(&state, posted.claim, async |txn, core| {
        let clock = &core.clock;
        match action.as_str() {
            "block" => cards::block_in_txn(txn, clock, number, institution).await?,
            "unblock" => cards::unblock_in_txn(txn, clock, number, institution).await?,
            _ => cards::replace_in_txn(txn, clock, number, institution).await?,
        };
        Ok(())
    })
    .await?;
    Ok(page::see_other("/institution/cards"))
}

struct HoldRow {
    id: String,
    amount: String,
    mode: String,
    status: &'static str,
    posted: String,
    expires_at: String,
}

#[derive(Template)]
#[template(path = "console/institution/holds.html")]
struct HoldsPage {
    layout: Layout,
    holds: Vec<HoldRow>,
    nav: ListNav,
}

async fn holds_page(
    State(state): State<AppState>,
    SignedIn { session, principal }: SignedIn,
    Query(params): Query<ListParams>,
) -> PageResult {
    PageError::require(&principal, &[Role::Institution])?;
    let filter = params.filter()?;
    let page = params.page(ListKind::Holds)?;
    let list = holds::holds_of_institution(&state.db, principal.party, &filter, &page).await?;
    let nav = params.nav(
        "/institution/holds",
        HoldStatus::iter(),
        &filter,
        list.next_cursor,
    );
    let holds = list
        .items
        .into_iter()
        .map(HoldView::from)
        .map(|h| HoldRow {
            id: h.id.to_string(),
            amount: h.amount.to_string(),
            mode: label(&h.mode),
            status: h.status.as_str(),
            posted: h.posted_amount.map(|m| m.to_string()).unwrap_or_default(),
            expires_at: h.expires_at.as_ref().map(forms::when).unwrap_or_default(),
        })
        .collect();
    page::render(&HoldsPage {
        layout: Layout::signed_in("Holds", &session, "/institution/holds"),
        holds,
        nav,
    })
}

struct AccountRow {
    id: String,
    kind: String,
    balance: String,
    available: String,
}

#[derive(Template)]
#[template(path = "console/institution/accounts.html")]
struct AccountsPage {
    layout: Layout,
    accounts: Vec<AccountRow>,
}

/// The institution's own accounts: its freezing account(s), fee income and external account.
async fn accounts_page(
    State(state): State<AppState>,
    SignedIn { session, principal }: SignedIn,
) -> PageResult {
    PageError::require(&principal, &[Role::Institution])?;
    let accounts = ledger::accounts_of(&state.db, principal.party).await?;
    page::render(&AccountsPage {
        layout: Layout::signed_in("Freezing account", &session, "/institution/accounts"),
        accounts: accounts
            .into_iter()
            .filter(|a| !matches!(a.kind, AccountKind::Prepaid))
            .map(AccountView::from)
            .map(|a| AccountRow {
                id: a.id.to_string(),
                kind: label(&a.kind),
                balance: format!("{} {}", a.balance, label(&a.currency)),
                available: a.available.to_string(),
            })
            .collect(),
    })
}
