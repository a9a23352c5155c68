//! Pages of an insurer's service company (a distributor): the certificates it fetches from the
//! insurer (mark received) and delivers to the holder, recording the signed application and
//! the policy number the holder hands over. The same use cases as
//! `/v1/insurance/certificates…`.

use super::forms::when;
use super::page::{self, Layout, PageError, PageResult, Posted};
use super::session::SignedIn;
use super::txn;
use super::views::{ListNav, ListParams};
use crate::state::AppState;
use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use holdfast_core::ids::PartyId;
use holdfast_core::order_number::OrderNumber;
use holdfast_core::paging::ListKind;
use holdfast_core::parties::Role;
use holdfast_insurance::policies::{
    self, ApplicationReference, CertificateStatus, CertificateTask,
};
use sea_orm::Iterable;
use serde::Deserialize;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/certificates", get(certificates))
        .route("/certificates/{number}/received", post(received))
        .route("/certificates/{number}/delivery", post(delivered))
}

struct TaskRow {
    number: String,
    product: String,
    insurer: String,
    status: &'static str,
    to_collect: bool,
    to_deliver: bool,
    destination: String,
    issued_at: String,
}

impl From<CertificateTask> for TaskRow {
    fn from(task: CertificateTask) -> Self {
        TaskRow {
            number: task.policy_number.to_string(),
            product: task.product_name,
            insurer: task.insurer_name,
            status: task.certificate_status.as_str(),
            to_collect: task.certificate_status == CertificateStatus::AwaitingPickup,
            to_deliver: task.certificate_status == CertificateStatus::WithServiceCompany,
            destination: task.destination,
            issued_at: task.issued_at.as_ref().map(when).unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "console/service/certificates.html")]
struct CertificatesPage {
    layout: Layout,
    party: PartyId,
    tasks: Vec<TaskRow>,
    nav: ListNav,
}

async fn certificates(
    State(state): State<AppState>,
    SignedIn { session, principal }: SignedIn,
    Query(params): Query<ListParams>,
) -> PageResult {
    PageError::require(&principal, &[Role::Distributor])?;
    let filter = params.filter()?;
    let page = params.page(ListKind::Certificates)?;
    let list = policies::certificates_of(&state.db, principal.party, &filter, &page).await?;
    // Not issued is never listed: there is nothing to collect.
    let states = CertificateStatus::iter().filter(|s| *s != CertificateStatus::NotIssued);
    let nav = params.nav("/certificates", states, &filter, list.next_cursor);
    page::render(&CertificatesPage {
        layout: Layout::signed_in("Certificates", &session, "/certificates"),
        party: principal.party,
        tasks: list.items.into_iter().map(TaskRow::from).collect(),
        nav,
    })
}

async fn received(
    State(state): State<AppState>,
    Path(number): Path<OrderNumber>,
    posted: Posted<page::NoFields>,
) -> PageResult {
    let principal = posted.session.principal()?;
    PageError::require(&principal, &[Role::Distributor])?;
    txn::write(&state, posted.claim, async |txn, core| {
        policies::receive_certificate_in_txn(txn, core, principal.party, &number).await?;
        Ok(())
    })
    .await?;
    Ok(page::see_other("/certificates"))
}

#[derive(Deserialize)]
struct DeliveryForm {
    /// The number the holder handed over.
    handed_over: OrderNumber,
    application_reference: ApplicationReference,
}

async fn delivered(
    State(state): State<AppState>,
    Path(number): Path<OrderNumber>,
    posted: Posted<DeliveryForm>,
) -> PageResult {
    let principal = posted.session.principal()?;
    PageError::require(&principal, &[Role::Distributor])?;
    let DeliveryForm {
        handed_over,
        application_reference,
    } = posted.form;
    txn::write(&state, posted.claim, async |txn, core| {
        policies::record_documents_in_txn(
            txn,
            core,
            principal.party,
            &number,
            &handed_over,
            &application_reference,
        )
        .await?;
        Ok(())
    })
    .await?;
    Ok(page::see_other("/certificates"))
}
