//! The payee's "Payouts" page (suppliers, drugstores, insurers, and card holders who sell at
//! auction): where it is paid (the active destination, one waiting for confirmation, the
//! history), a form to register a bank account and one to confirm it with the second password
//! (a card holder confirms on its card's phone instead, and the page says so), a payout request
//! (everything or an amount), the list of payouts with their status, and the daily sweep. The same use cases as
//! `/v1/payee/...` ([`crate::api::payee`]); account numbers are shown by their last four.

use super::page::{self, Layout, PageError, PageResult, Posted};
use super::session::SignedIn;
use super::txn;
use super::views::{self, AccountLine};
use crate::api::payee::{self as api, Confirmation, DestinationView};
use crate::auth::Principal;
use crate::state::AppState;
use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use holdfast_core::banking::destinations::{self, BankAccount, DestinationStatus, Scheme};
use holdfast_core::banking::payee;
use holdfast_core::banking::payouts::{self, Payout, PayoutAmount, PayoutStatus};
use holdfast_core::banking::schedule::{self, ScheduleTerms};
use holdfast_core::ids::PayoutDestinationId;
use holdfast_core::ledger::{self, AccountKind};
use holdfast_core::paging::{ListFilter, ListKind, Page};
use holdfast_core::text::AccountHolderName;
use holdfast_core::{Currency, Money};
use sea_orm::Iterable;
use serde::Deserialize;
use std::str::FromStr;

const PATH: &str = "/payee/payouts";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(PATH, get(payouts_page).post(request_payout))
        .route("/payee/destinations", post(register_destination))
        .route(
            "/payee/destinations/{id}/confirm",
            post(confirm_destination),
        )
        .route("/payee/destinations/{id}/cancel", post(cancel_destination))
        .route("/payee/payout-schedule", post(set_schedule))
}

async fn payee_only(state: &AppState, principal: &Principal) -> Result<Confirmation, PageError> {
    Ok(api::payee(state, principal).await?)
}

struct DestinationRow {
    id: String,
    status: String,
    account: String,
    holder_name: String,
    registered: String,
    confirmed: String,
}

impl From<DestinationView> for DestinationRow {
    fn from(d: DestinationView) -> Self {
        let account = match (d.scheme, &d.bank_code) {
            (Scheme::Domestic, Some(code)) => {
                format!("bank {code}, account …{}", d.account_last_four)
            }
            _ => format!("IBAN …{}", d.account_last_four),
        };
        DestinationRow {
            id: d.id.to_string(),
            status: views::label(&d.status),
            account,
            holder_name: d.holder_name,
            registered: views::when(d.created_at),
            confirmed: d.confirmed_at.map(views::when).unwrap_or_default(),
        }
    }
}

struct PayoutRow {
    created: String,
    amount: String,
    status: String,
    /// The bank's reason for a return; when it was sent or settled otherwise.
    detail: String,
    reference: String,
}

impl From<Payout> for PayoutRow {
    fn from(p: Payout) -> Self {
        let detail = match (p.status, &p.return_reason) {
            (PayoutStatus::Returned, Some(reason)) => format!("returned: {reason}"),
            (PayoutStatus::Paid | PayoutStatus::Returned, _) => {
                p.settled_at.map(views::when).unwrap_or_default()
            }
            (PayoutStatus::Sent, _) => p.sent_at.map(views::when).unwrap_or_default(),
            (PayoutStatus::Pending, _) => "waiting for the next bank run".to_owned(),
        };
        PayoutRow {
            created: views::when(p.created_at),
            amount: p.amount.to_string(),
            status: views::label(&p.status),
            detail,
            reference: p.end_to_end_id,
        }
    }
}

#[derive(Template)]
#[template(path = "console/payee/payouts.html")]
struct PayoutsTemplate {
    layout: Layout,
    accounts: Vec<AccountLine>,
    /// A card holder confirms on its card's phone, not with a second password.
    confirms_on_phone: bool,
    active: Option<DestinationRow>,
    pending: Option<DestinationRow>,
    history: Vec<DestinationRow>,
    payouts: Vec<PayoutRow>,
    nav: views::ListNav,
    schedule_enabled: bool,
    schedule_minimum: String,
    schedule_currency: String,
    schedule_hour: u8,
    next_sweep: String,
}

async fn payouts_page(
    State(state): State<AppState>,
    SignedIn { session, principal }: SignedIn,
    Query(params): Query<views::ListParams>,
) -> PageResult {
    let confirmation = payee_only(&state, &principal).await?;
    let party = principal.party;
    let filter = params.filter()?;
    let page = params.page(ListKind::Payouts)?;
    let accounts: Vec<_> = ledger::accounts_of(&state.db, party)
        .await?
        .iter()
        .filter(|a| a.kind == AccountKind::Withdrawal)
        .map(AccountLine::from)
        .collect();
    let history = destinations::history(
        &state.db,
        party,
        &ListFilter::default(),
        &Page::parse(ListKind::PayoutDestinations, Some(20), None)
            .map_err(holdfast_core::CoreError::from)?,
    )
    .await?;
    let rows: Vec<DestinationView> = history
        .items
        .into_iter()
        .map(DestinationView::from)
        .collect();
    let find = |status: DestinationStatus| {
        rows.iter()
            .find(|d| d.status == status)
            .cloned()
            .map(DestinationRow::from)
    };
    let (active, pending) = (
        find(DestinationStatus::Active),
        find(DestinationStatus::Pending),
    );
    let list = payouts::payouts_of(&state.db, party, &filter, &page).await?;
    let nav = params.nav(PATH, PayoutStatus::iter(), &filter, list.next_cursor);
    let sweep = schedule::get(&state.db, party).await?;
    page::render(&PayoutsTemplate {
        layout: Layout::signed_in("Payouts", &session, PATH),
        accounts,
        confirms_on_phone: matches!(confirmation, Confirmation::Phone(_)),
        active,
        pending,
        history: rows.into_iter().map(DestinationRow::from).collect(),
        payouts: list.items.into_iter().map(PayoutRow::from).collect(),
        nav,
        schedule_enabled: sweep.is_some_and(|s| s.enabled),
        schedule_minimum: sweep
            .map(|s| s.minimum.amount().to_string())
            .unwrap_or_default(),
        schedule_currency: sweep
            .map_or_else(|| "USD".to_owned(), |s| s.minimum.currency().to_string()),
        schedule_hour: sweep.map_or(6, |s| s.hour_utc),
        next_sweep: sweep
            .and_then(|s| s.next_sweep_at)
            .map(views::when)
            .unwrap_or_default(),
    })
}

#[derive(Deserialize)]
struct DestinationForm {
    holder_name: AccountHolderName,
    #[serde(default)]
    iban: String,
    #[serde(default)]
    bank_code: String,
    #[serde(default)]
    account_number: String,
}

async fn register_destination(
    State(state): State<AppState>,
    posted: Posted<DestinationForm>,
) -> PageResult {
    let principal = posted.session.principal()?;
    let confirmation = payee_only(&state, &principal).await?;
    let form = posted.form;
    let account = BankAccount::typed(
        Some(&form.iban),
        Some(&form.bank_code),
        Some(&form.account_number),
    )?;
    txn::write(&state, posted.claim, async move |txn, core| {
        match confirmation {
            Confirmation::SecondPassword => {
                destinations::register_in_txn(
                    txn,
                    &core.clock,
                    principal.party,
                    account,
                    &form.holder_name,
                )
                .await?;
            }
            Confirmation::Phone(card) => {
                destinations::register_on_phone_in_txn(txn, core, card, account, &form.holder_name)
                    .await?;
            }
        }
        Ok(())
    })
    .await?;
    Ok(page::see_other(PATH))
}

#[derive(Deserialize)]
struct ConfirmForm {
    second_password: holdfast_core::text::Password,
}

async fn confirm_destination(
    State(state): State<AppState>,
    Path(id): Path<PayoutDestinationId>,
    posted: Posted<ConfirmForm>,
) -> PageResult {
    let principal = posted.session.principal()?;
    if payee_only(&state, &principal).await? != Confirmation::SecondPassword {
        return Err(api::confirmed_on_phone().into());
    }
    api::confirm(&state, principal.party, id, &posted.form.second_password).await?;
    Ok(page::see_other(PATH))
}

async fn cancel_destination(
    State(state): State<AppState>,
    Path(id): Path<PayoutDestinationId>,
    posted: Posted<page::NoFields>,
) -> PageResult {
    let principal = posted.session.principal()?;
    payee_only(&state, &principal).await?;
    txn::write(&state, posted.claim, async move |txn, core| {
        destinations::cancel_in_txn(txn, &core.clock, principal.party, id).await?;
        Ok(())
    })
    .await?;
    Ok(page::see_other(PATH))
}

#[derive(Deserialize)]
struct PayoutForm {
    currency: String,
    /// `all`, or an amount.
    amount: String,
    /// The form's nonce, which also names the payout in core (as an `Idempotency-Key` does).
    nonce: String,
}

async fn request_payout(State(state): State<AppState>, posted: Posted<PayoutForm>) -> PageResult {
    let principal = posted.session.principal()?;
    payee_only(&state, &principal).await?;
    let currency =
        Currency::from_str(posted.form.currency.trim()).map_err(holdfast_core::CoreError::from)?;
    let amount = PayoutAmount::parse(&posted.form.amount, currency)?;
    let key = api::payout_key(Some(&format!("console:{}", posted.form.nonce)));
    txn::write(&state, posted.claim, async move |txn, core| {
        payee::request_payout_in_txn(txn, &core.clock, principal.party, amount, key).await?;
        Ok(())
    })
    .await?;
    Ok(page::see_other(PATH))
}

#[derive(Deserialize)]
struct ScheduleForm {
    /// A checkbox: present when ticked.
    enabled: Option<String>,
    minimum: String,
    currency: String,
    hour_utc: u8,
}

async fn set_schedule(State(state): State<AppState>, posted: Posted<ScheduleForm>) -> PageResult {
    let principal = posted.session.principal()?;
    payee_only(&state, &principal).await?;
    let form = posted.form;
    let minimum = views::money_field(&form.minimum, &form.currency)?;
    let currency =
        Currency::from_str(form.currency.trim()).map_err(holdfast_core::CoreError::from)?;
    let body = api::ScheduleBody {
        enabled: form.enabled.is_some(),
        minimum: minimum.unwrap_or_else(|| Money::zero(currency)),
        hour_utc: form.hour_utc,
    };
    let terms: ScheduleTerms = body.terms()?;
    txn::write(&state, posted.claim, async move |txn, core| {
        schedule::set_in_txn(txn, &core.clock, principal.party, terms).await?;
        Ok(())
    })
    .await?;
    Ok(page::see_other(PATH))
}
