//! A policy's rows and what is computed from them: money, due dates, the free-look end, the
//! term's end, commission; reading, locking and saving; the views the API returns.

use super::*;
use holdfast_core::paging::{ListFilter, Page, Paged};

pub(crate) fn money(minor: MinorUnits, currency: &str) -> InsuranceResult<Money> {
    Ok(Money::from_minor(minor.0, Currency::from_str(currency)?)?)
}

pub(crate) fn premium_of(row: &policies::Model) -> InsuranceResult<Money> {
    money(row.premium, &row.currency)
}

/// How many premiums the whole term takes.
pub(crate) fn total_installments(row: &policies::Model) -> i32 {
    match row.payment_plan {
        PaymentPlan::Monthly => row.term_months,
        PaymentPlan::LumpSum => 1,
    }
}

/// When installment `n` (from 1) is due: a calendar month apart from the issue.
pub(crate) fn due_date(issued_at: DateTime<Utc>, installment: i32) -> DateTime<Utc> {
    let months = u32::try_from(installment.saturating_sub(1)).unwrap_or(0);
    issued_at
        .checked_add_months(Months::new(months))
        .unwrap_or(issued_at)
}

/// When the free-look period of a policy issued at `issued_at` ends: `free_look_days` after
/// the certificate's delivery, or after the delivery deadline if that came first (a delivery
/// recorded after the deadline does not open the period again).
pub(crate) fn free_look_end_from(
    issued_at: DateTime<Utc>,
    delivered_at: Option<DateTime<Utc>>,
    free_look_days: i32,
) -> DateTime<Utc> {
    let deadline = issued_at + Duration::days(CERTIFICATE_DELIVERY_DAYS);
    let starts = delivered_at.map_or(deadline, |at| at.min(deadline));
    starts + Duration::days(i64::from(free_look_days))
}

/// The policy's free-look end, computed rather than read, so that a policy stored without one
/// is bounded too; `None` before the issue.
pub(crate) fn free_look_end(row: &policies::Model) -> Option<DateTime<Utc>> {
    row.issued_at
        .map(|at| free_look_end_from(at, row.certificate_delivered_at, row.free_look_days))
}

pub(crate) fn term_end(row: &policies::Model) -> Option<DateTime<Utc>> {
    row.issued_at.map(|at| {
        at.checked_add_months(Months::new(u32::try_from(row.term_months).unwrap_or(0)))
            .unwrap_or(at)
    })
}

/// The platform's commission on a premium, from the rate the policy was sold at.
pub(crate) fn commission_on(row: &policies::Model, premium: Money) -> InsuranceResult<Money> {
    let rate = BasisPoints::new(row.commission_bps).map_err(CoreError::Money)?;
    Ok(premium.share_at(rate)?)
}

pub(super) fn policy_terms(
    name: &str,
    plan: PaymentPlan,
    premium: Money,
    term: i32,
    cover: Money,
) -> String {
    let plan = match plan {
        PaymentPlan::Monthly => format!("{premium} a month for {term} months"),
        PaymentPlan::LumpSum => format!("lump sum for {term} months"),
    };
    let terms = format!("{name}: {plan}, cover {cover}");
    terms.chars().take(200).collect()
}

pub(crate) async fn record_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    policy: Uuid,
    kind: &str,
    detail: Option<String>,
) -> InsuranceResult<()> {
    policy_events::Entity::insert(policy_events::ActiveModel {
        id: Set(Uuid::now_v7()),
        policy_id: Set(policy),
        kind: Set(kind.to_owned()),
        detail: Set(detail),
        at: Set(core.clock.now()),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// Texts the policy's holder (on the phone of the card that pays), keeping the text in the
/// first premium's timeline.
pub(crate) async fn text_holder_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    row: &policies::Model,
    text: String,
) -> InsuranceResult<()> {
    let case = escrow::get_case(txn, CaseId::from_uuid(row.first_case_id)).await?;
    escrow::text_buyer_in_txn(txn, core, &case, text).await?;
    Ok(())
}

pub(crate) async fn publish_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    party: Uuid,
    kind: &str,
    data: serde_json::Value,
) -> InsuranceResult<()> {
    events::publish_in_txn(txn, &core.clock, PartyId::from_uuid(party), kind, data).await?;
    Ok(())
}

pub(crate) fn number_of(row: &policies::Model) -> String {
    row.policy_number
        .clone()
        .map(|n| OrderNumber::from_stored(n).to_string())
        .unwrap_or_else(|| "(not issued)".to_owned())
}

pub(crate) async fn get_row(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> InsuranceResult<policies::Model> {
    Ok(policies::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(CoreError::NotFound("policy"))?)
}

pub(crate) async fn find_row(
    db: &impl ConnectionTrait,
    policy: &PolicyRef,
) -> InsuranceResult<policies::Model> {
    let found = match policy {
        PolicyRef::Id(id) => policies::Entity::find_by_id(*id).one(db).await?,
        PolicyRef::Number(number) => {
            policies::Entity::find()
                .filter(policies::Column::PolicyNumber.eq(number.digits()))
                .one(db)
                .await?
        }
    };
    let row = found.ok_or(CoreError::NotFound("policy"))?;
    record_policy_id(row.id);
    Ok(row)
}

/// Names the policy on the span of the use case that looked it up, by id, never by number.
fn record_policy_id(id: Uuid) {
    tracing::Span::current().record("policy_id", tracing::field::display(id));
}

pub(crate) async fn lock_row(
    txn: &DatabaseTransaction,
    id: Uuid,
) -> InsuranceResult<policies::Model> {
    record_policy_id(id);
    Ok(policies::Entity::find_by_id(id)
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or(CoreError::NotFound("policy"))?)
}

pub(crate) async fn premiums_of(
    db: &impl ConnectionTrait,
    policy: Uuid,
) -> InsuranceResult<Vec<premiums::Model>> {
    Ok(premiums::Entity::find()
        .filter(premiums::Column::PolicyId.eq(policy))
        .order_by_asc(premiums::Column::Installment)
        .all(db)
        .await?)
}

pub(crate) async fn premium_of_case(
    db: &impl ConnectionTrait,
    case: CaseId,
) -> InsuranceResult<Option<premiums::Model>> {
    Ok(premiums::Entity::find()
        .filter(premiums::Column::CaseId.eq(case.uuid()))
        .one(db)
        .await?)
}

/// The escrow cases of `premiums`, by case id, in one query.
pub(super) async fn cases_of(
    db: &impl ConnectionTrait,
    premiums: &[premiums::Model],
) -> InsuranceResult<HashMap<Uuid, EscrowCase>> {
    let ids: Vec<Uuid> = premiums.iter().map(|p| p.case_id).collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = escrow_cases::Entity::find()
        .filter(escrow_cases::Column::Id.is_in(ids))
        .all(db)
        .await?;
    let mut cases = HashMap::with_capacity(rows.len());
    for row in rows {
        let case = EscrowCase::try_from(row)?;
        cases.insert(case.id.uuid(), case);
    }
    Ok(cases)
}

/// Writes a changed policy (locked by the caller) and stamps it.
pub(crate) async fn save_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    mut row: policies::ActiveModel,
) -> InsuranceResult<policies::Model> {
    row.updated_at = Set(core.clock.now());
    Ok(row.update(txn).await?)
}

// ---------------------------------------------------------------------------------------
// Views
// ---------------------------------------------------------------------------------------

/// Whether `viewer` may see the policy: its holder, its insurer or an operator. Anyone else
/// is told it does not exist.
pub(super) fn may_see(row: &policies::Model, viewer: PartyId, role: Role) -> bool {
    role == Role::Operator
        || row.holder_party_id == viewer.uuid()
        || row.insurer_party_id == viewer.uuid()
}

pub(super) async fn pending_of(
    db: &impl ConnectionTrait,
    challenge: Option<ChallengeId>,
    now: DateTime<Utc>,
) -> InsuranceResult<Option<PendingConfirmation>> {
    let Some(id) = challenge else {
        return Ok(None);
    };
    let challenge = challenge::get_challenge(db, id).await?;
    Ok(
        (challenge.status == ChallengeStatus::Pending && now < challenge.expires_at).then_some(
            PendingConfirmation {
                challenge_id: challenge.id,
                purpose: challenge.purpose,
                expires_at: challenge.expires_at,
            },
        ),
    )
}

pub(crate) async fn view_of(
    db: &impl ConnectionTrait,
    core: &Core,
    row: &policies::Model,
    viewer: PartyId,
) -> InsuranceResult<PolicyView> {
    let now = core.clock.now();
    let for_holder = row.holder_party_id == viewer.uuid();
    let mut premiums = Vec::new();
    let mut first_case: Option<EscrowCase> = None;
    let premium_rows = premiums_of(db, row.id).await?;
    let mut cases = cases_of(db, &premium_rows).await?;
    for premium in premium_rows {
        let case = cases
            .remove(&premium.case_id)
            .ok_or(CoreError::NotFound("order"))?;
        let pending_confirmation = if for_holder && case.state == CaseState::SettlementRequested {
            pending_of(db, case.settlement_challenge, now).await?
        } else {
            None
        };
        premiums.push(PremiumView {
            installment: premium.installment,
            order_number: case.order_number.clone(),
            amount: case.amount,
            state: case.state,
            due_at: premium.due_at,
            pending_confirmation,
        });
        if case.id.uuid() == row.first_case_id {
            first_case = Some(case);
        }
    }
    let mut state = row.state;
    let mut pending_confirmation = None;
    if let Some(case) = &first_case
        && state == PolicyState::AwaitingConfirmation
    {
        match case.state {
            CaseState::AwaitingOrderConfirmation if for_holder => {
                pending_confirmation = pending_of(db, case.order_challenge, now).await?;
            }
            // Denied or expired before this vertical heard of it: shown as it stands.
            CaseState::Denied | CaseState::Expired | CaseState::Cancelled => {
                state = PolicyState::NotTaken;
            }
            _ => {}
        }
    }
    let card = cards::get_card(db, CardId::from_uuid(row.card_id)).await?;
    let funding = ledger::get_account(db, card.funding_account).await?;
    let collection = match funding::hold_mode(funding.kind) {
        Some(HoldMode::Reserve) => Collection::CreditLineReservation,
        _ => Collection::AutomaticTransfer,
    };
    let insurer = parties::get_party(db, PartyId::from_uuid(row.insurer_party_id)).await?;
    Ok(PolicyView {
        policy_id: row.id,
        policy_number: row.policy_number.clone().map(OrderNumber::from_stored),
        state,
        product_id: ProductId::from_uuid(row.product_id),
        product_name: row.product_name.clone(),
        coverage_amount: money(row.coverage_amount, &row.currency)?,
        insurer_id: insurer.id,
        insurer_name: insurer.display_name,
        service_company_id: PartyId::from_uuid(row.service_company_party_id),
        premium: premium_of(row)?,
        payment_plan: row.payment_plan,
        term_months: row.term_months,
        installments: total_installments(row),
        installments_collected: row.installments_collected,
        collection,
        card: card.number.masked(),
        issued_at: row.issued_at,
        next_premium_due_at: row.next_due_at,
        overdue_installment: row.overdue_installment,
        grace_ends_at: row.grace_ends_at,
        certificate_status: row.certificate_status,
        certificate_delivered_at: row.certificate_delivered_at,
        application_reference: row.application_reference.clone(),
        free_look_ends_at: free_look_end(row),
        grace_days: row.grace_days,
        free_look_days: row.free_look_days,
        premiums,
        pending_confirmation,
        ended_at: row.ended_at,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

/// One policy, for its holder, its insurer or an operator.
pub async fn get_policy(
    db: &impl ConnectionTrait,
    core: &Core,
    viewer: PartyId,
    role: Role,
    policy: &PolicyRef,
) -> InsuranceResult<PolicyView> {
    let row = find_row(db, policy).await?;
    if !may_see(&row, viewer, role) {
        return Err(CoreError::NotFound("policy").into());
    }
    view_of(db, core, &row, viewer).await
}

/// The newest policies of a holder, or of an insurer (its applications to recheck are
/// `awaiting_recheck`), or of everyone for an operator; in the filter's state and created in
/// its date range.
pub async fn list_policies(
    db: &impl ConnectionTrait,
    core: &Core,
    viewer: PartyId,
    role: Role,
    filter: &ListFilter<PolicyState>,
    page: &Page,
) -> InsuranceResult<Paged<PolicyView>> {
    let mut query =
        policies::Entity::find().filter(filter.created.condition(policies::Column::CreatedAt));
    query = match role {
        Role::Operator => query,
        Role::Insurer => query.filter(policies::Column::InsurerPartyId.eq(viewer.uuid())),
        _ => query.filter(policies::Column::HolderPartyId.eq(viewer.uuid())),
    };
    if let Some(state) = filter.state {
        query = query.filter(policies::Column::State.eq(state));
    }
    let rows = page
        .apply(query, policies::Column::CreatedAt, policies::Column::Id)
        .all(db)
        .await?;
    let rows = page.finish(rows, |row| (row.created_at, row.id));
    let mut list = Vec::with_capacity(rows.items.len());
    for row in &rows.items {
        list.push(view_of(db, core, row, viewer).await?);
    }
    Ok(Paged {
        items: list,
        next_cursor: rows.next_cursor,
    })
}

/// The policy's timeline, oldest first.
pub async fn history(
    db: &impl ConnectionTrait,
    viewer: PartyId,
    role: Role,
    policy: &PolicyRef,
) -> InsuranceResult<Vec<PolicyEvent>> {
    let row = find_row(db, policy).await?;
    if !may_see(&row, viewer, role) {
        return Err(CoreError::NotFound("policy").into());
    }
    let mut lines: Vec<PolicyEvent> = policy_events::Entity::find()
        .filter(policy_events::Column::PolicyId.eq(row.id))
        .order_by_asc(policy_events::Column::At)
        .limit(escrow::MAX_EVENTS)
        .all(db)
        .await?
        .into_iter()
        .map(|e| PolicyEvent {
            at: e.at,
            kind: e.kind,
            installment: None,
            to_state: None,
            detail: e.detail,
        })
        .collect();
    for premium in premiums_of(db, row.id).await? {
        let case_events: Vec<CaseEvent> =
            escrow::events(db, CaseId::from_uuid(premium.case_id)).await?;
        lines.extend(case_events.into_iter().map(|e| PolicyEvent {
            at: e.at,
            kind: e.kind,
            installment: Some(premium.installment),
            to_state: e.to_state,
            detail: e.detail,
        }));
    }
    lines.sort_by_key(|line| line.at);
    Ok(lines)
}

// ---------------------------------------------------------------------------------------
// Purchase, confirmation and recheck
// ---------------------------------------------------------------------------------------
