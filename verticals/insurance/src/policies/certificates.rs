//! The certificate the service company collects and delivers, and the signed application it
//! brings back.

use super::*;
use holdfast_core::paging::{ListFilter, Page, Paged};

pub(super) async fn service_row_in_txn(
    txn: &DatabaseTransaction,
    service: PartyId,
    number: &OrderNumber,
) -> InsuranceResult<policies::Model> {
    let row = find_row(txn, &PolicyRef::Number(number.clone())).await?;
    if row.service_company_party_id != service.uuid() {
        return Err(CoreError::NotFound("policy").into());
    }
    lock_row(txn, row.id).await
}

pub(super) fn task_of(
    row: &policies::Model,
    insurer_name: String,
    card: &cards::Card,
) -> CertificateTask {
    CertificateTask {
        policy_number: OrderNumber::from_stored(row.policy_number.clone().unwrap_or_default()),
        product_name: row.product_name.clone(),
        insurer_name,
        certificate_status: row.certificate_status,
        destination: destination_of(card),
        issued_at: row.issued_at,
        certificate_delivered_at: row.certificate_delivered_at,
    }
}

pub(super) async fn task_view(
    db: &impl ConnectionTrait,
    row: &policies::Model,
) -> InsuranceResult<CertificateTask> {
    let insurer = parties::get_party(db, PartyId::from_uuid(row.insurer_party_id)).await?;
    let card = cards::get_card(db, CardId::from_uuid(row.card_id)).await?;
    Ok(task_of(row, insurer.display_name, &card))
}

/// The newest certificates of a service company: in the filter's status, or with none named
/// those it still has to fetch or deliver; created in the filter's date range. A policy not yet
/// issued is never on the list (there is nothing to collect).
pub async fn certificates_of(
    db: &impl ConnectionTrait,
    service: PartyId,
    filter: &ListFilter<CertificateStatus>,
    page: &Page,
) -> InsuranceResult<Paged<CertificateTask>> {
    let status = match filter.state {
        Some(status) => Condition::all()
            .add(policies::Column::CertificateStatus.eq(status))
            .add(policies::Column::CertificateStatus.ne(CertificateStatus::NotIssued)),
        None => Condition::any()
            .add(policies::Column::CertificateStatus.eq(CertificateStatus::AwaitingPickup))
            .add(policies::Column::CertificateStatus.eq(CertificateStatus::WithServiceCompany)),
    };
    let query = policies::Entity::find()
        .filter(policies::Column::ServiceCompanyPartyId.eq(service.uuid()))
        .filter(status)
        .filter(filter.created.condition(policies::Column::CreatedAt));
    let rows = page
        .apply(query, policies::Column::CreatedAt, policies::Column::Id)
        .all(db)
        .await?;
    let rows = page.finish(rows, |row| (row.created_at, row.id));
    let mut list = Vec::with_capacity(rows.items.len());
    for row in &rows.items {
        list.push(task_view(db, row).await?);
    }
    Ok(Paged {
        items: list,
        next_cursor: rows.next_cursor,
    })
}

/// The service company has fetched the certificate from the insurer.
#[tracing::instrument(name = "insurance.receive_certificate", skip_all, fields(policy_id = tracing::field::Empty))]
pub async fn receive_certificate_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    service: PartyId,
    number: &OrderNumber,
) -> InsuranceResult<CertificateTask> {
    let row = service_row_in_txn(txn, service, number).await?;
    if row.certificate_status != CertificateStatus::AwaitingPickup {
        return Err(InsuranceError::CertificateState {
            status: row.certificate_status.as_str(),
            action: "receive the certificate",
        });
    }
    let mut active: policies::ActiveModel = row.clone().into();
    active.certificate_status = Set(CertificateStatus::WithServiceCompany);
    active.certificate_received_at = Set(Some(core.clock.now()));
    let row = save_in_txn(txn, core, active).await?;
    record_in_txn(
        txn,
        core,
        row.id,
        "certificate_received",
        Some("the service company fetched the certificate from the insurer".to_owned()),
    )
    .await?;
    publish_in_txn(
        txn,
        core,
        row.insurer_party_id,
        "certificate.received",
        serde_json::json!({"policy_number": number}),
    )
    .await?;
    task_view(txn, &row).await
}

/// The service company delivered the certificate and collected, from the holder, the signed
/// application and the policy number: it records both, and the number the holder handed over
/// must be the policy's own (the one issued and texted to the holder), or the documents are
/// another policy's. The free-look period starts now (or started at the delivery deadline, if
/// that passed: a late delivery does not open it again), and the insurer may from now on ask
/// to be paid.
#[tracing::instrument(name = "insurance.record_documents", skip_all, fields(policy_id = tracing::field::Empty))]
pub async fn record_documents_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    service: PartyId,
    number: &OrderNumber,
    handed_over: &OrderNumber,
    application_reference: &str,
) -> InsuranceResult<CertificateTask> {
    let reference = application_reference.trim();
    if reference.is_empty()
        || reference.chars().count() > MAX_APPLICATION_REFERENCE_CHARS
        || reference.chars().any(char::is_control)
    {
        return Err(InsuranceError::ApplicationReference {
            max: MAX_APPLICATION_REFERENCE_CHARS,
        });
    }
    let row = service_row_in_txn(txn, service, number).await?;
    if row.policy_number.as_deref() != Some(handed_over.digits()) {
        return Err(InsuranceError::HandedOverNumber);
    }
    if !matches!(
        row.certificate_status,
        CertificateStatus::AwaitingPickup | CertificateStatus::WithServiceCompany
    ) {
        return Err(InsuranceError::CertificateState {
            status: row.certificate_status.as_str(),
            action: "record the delivery",
        });
    }
    if !row.state.settles() {
        return Err(row.state.refuse("record the delivery"));
    }
    let now = core.clock.now();
    let free_look_ends_at =
        free_look_end_from(row.issued_at.unwrap_or(now), Some(now), row.free_look_days);
    let free_look = if now < free_look_ends_at {
        format!(
            "You may cancel it with every premium returned until {} UTC.",
            free_look_ends_at.format("%Y-%m-%d %H:%M")
        )
    } else {
        format!(
            "Its free-look period ended on {} UTC: it started {CERTIFICATE_DELIVERY_DAYS} days \
             after the policy was issued, without the certificate.",
            free_look_ends_at.format("%Y-%m-%d %H:%M")
        )
    };
    let mut active: policies::ActiveModel = row.clone().into();
    if row.certificate_received_at.is_none() {
        active.certificate_received_at = Set(Some(now));
    }
    active.certificate_status = Set(CertificateStatus::Delivered);
    active.certificate_delivered_at = Set(Some(now));
    active.application_reference = Set(Some(reference.to_owned()));
    active.free_look_ends_at = Set(Some(free_look_ends_at));
    let row = save_in_txn(txn, core, active).await?;
    record_in_txn(
        txn,
        core,
        row.id,
        "documents_recorded",
        Some(format!(
            "certificate delivered; signed application {reference} and the policy number \
             collected; free-look until {} UTC",
            free_look_ends_at.format("%Y-%m-%d %H:%M")
        )),
    )
    .await?;
    text_holder_in_txn(
        txn,
        core,
        &row,
        format!(
            "Holdfast: the certificate of policy {number} was delivered and your signed \
             application collected. {free_look}"
        ),
    )
    .await?;
    publish_in_txn(
        txn,
        core,
        row.insurer_party_id,
        "policy.documents_recorded",
        serde_json::json!({
            "policy_number": number,
            "application_reference": reference,
            "delivered_at": now,
            "free_look_ends_at": free_look_ends_at,
        }),
    )
    .await?;
    task_view(txn, &row).await
}

// ---------------------------------------------------------------------------------------
// Settlement (the insurer)
// ---------------------------------------------------------------------------------------
