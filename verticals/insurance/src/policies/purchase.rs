//! Buying a policy and the insurer's recheck: the purchase confirmed on the phone, issue or
//! decline, what a phone answer changes, and the deadlines for both.

use super::*;

/// The holder buys a product with the card of its session: the first premium (a month's, or
/// the lump sum) is held at once and the card's phone is asked to approve product, insurer and
/// premium (a `policy` challenge).
#[tracing::instrument(name = "insurance.purchase", skip_all, fields(product_id = %product, policy_id = tracing::field::Empty, case_id = tracing::field::Empty))]
pub async fn purchase_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    holder: PartyId,
    card: CardId,
    product: ProductId,
) -> InsuranceResult<PolicyView> {
    let product = products::get_product(txn, product).await?;
    if !product.active {
        return Err(InsuranceError::ProductUnavailable);
    }
    let commission_rate = products::commission_of(txn, product.insurer_id).await?;
    let premium = product.premium;
    let commission = premium.share_at(commission_rate)?;
    let terms = policy_terms(
        &product.name,
        product.payment_plan,
        premium,
        product.term_months,
        product.coverage_amount,
    );
    let (case, challenge) = escrow::open_case_in_txn(
        txn,
        core,
        OpenCase {
            vertical: VERTICAL,
            payer: holder,
            payer_card: card,
            payee: product.insurer_id,
            payee_name: product.insurer_name.clone(),
            amount: premium,
            commission,
            confirmation: ChallengePurpose::Policy,
            terms: Some(terms),
        },
    )
    .await?;
    let id = Uuid::now_v7();
    tracing::Span::current().record("policy_id", tracing::field::display(id));
    let now = core.clock.now();
    policies::Entity::insert(policies::ActiveModel {
        id: Set(id),
        product_id: Set(product.id.uuid()),
        insurer_party_id: Set(product.insurer_id.uuid()),
        service_company_party_id: Set(product.service_company_id.uuid()),
        holder_party_id: Set(holder.uuid()),
        card_id: Set(card.uuid()),
        policy_number: Set(None),
        state: Set(PolicyState::AwaitingConfirmation),
        product_name: Set(product.name.clone()),
        coverage_amount: Set(MinorUnits(product.coverage_amount.minor())),
        premium: Set(MinorUnits(premium.minor())),
        currency: Set(premium.currency().code().to_owned()),
        payment_plan: Set(product.payment_plan),
        term_months: Set(product.term_months),
        commission_bps: Set(commission_rate.get()),
        grace_days: Set(product.grace_days),
        free_look_days: Set(product.free_look_days),
        installments_collected: Set(1),
        first_case_id: Set(case.id.uuid()),
        certificate_status: Set(CertificateStatus::NotIssued),
        certificate_received_at: Set(None),
        certificate_delivered_at: Set(None),
        application_reference: Set(None),
        free_look_ends_at: Set(None),
        issued_at: Set(None),
        next_due_at: Set(None),
        overdue_installment: Set(None),
        grace_ends_at: Set(None),
        ended_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_without_returning(txn)
    .await?;
    premiums::Entity::insert(premiums::ActiveModel {
        id: Set(Uuid::now_v7()),
        policy_id: Set(id),
        installment: Set(1),
        case_id: Set(case.id.uuid()),
        due_at: Set(now),
        created_at: Set(now),
    })
    .exec_without_returning(txn)
    .await?;
    record_in_txn(
        txn,
        core,
        id,
        "applied",
        Some(format!(
            "{} from {}: first premium {premium} held, confirmation sent to the phone",
            product.name, product.insurer_name
        )),
    )
    .await?;
    // The phone's deadline is the core's; a second later this vertical settles the outcome.
    timers::schedule_in_txn(
        txn,
        &core.clock,
        CONFIRMATION_DEADLINE_TIMER,
        id,
        challenge.expires_at + Duration::seconds(1),
    )
    .await?;
    let row = get_row(txn, id).await?;
    view_of(txn, core, &row, holder).await
}

/// The insurer's decision at its recheck.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recheck {
    /// Issue the policy: its number goes to the holder's phone.
    Issue,
    /// Decline: the first premium returns.
    Decline { reason: String },
}

pub(super) fn reason_text(reason: &str) -> InsuranceResult<String> {
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
        return Err(
            CoreError::invalid(format!("a reason has 1 to {MAX_REASON_CHARS} characters")).into(),
        );
    }
    Ok(reason.to_owned())
}

/// The insurer rechecks an application the holder approved: it issues the policy (a policy
/// number, texted to the holder; the service company is asked to deliver the certificate; the
/// monthly cycle starts) or declines it (the first premium returns).
#[tracing::instrument(name = "insurance.recheck", skip_all, fields(policy_id = tracing::field::Empty, case_id = tracing::field::Empty))]
pub async fn recheck_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    insurer: PartyId,
    policy: &PolicyRef,
    decision: Recheck,
) -> InsuranceResult<PolicyView> {
    let unlocked = find_row(txn, policy).await?;
    if unlocked.insurer_party_id != insurer.uuid() {
        return Err(CoreError::NotFound("policy").into());
    }
    let row = lock_row(txn, unlocked.id).await?;
    let mut case = escrow::lock_case_in_txn(txn, CaseId::from_uuid(row.first_case_id)).await?;
    match decision {
        Recheck::Issue => issue_in_txn(txn, core, row, &case).await?,
        Recheck::Decline { reason } => {
            let reason = reason_text(&reason)?;
            decline_in_txn(txn, core, row, &mut case, reason).await?
        }
    };
    let row = get_row(txn, unlocked.id).await?;
    view_of(txn, core, &row, insurer).await
}

pub(super) async fn issue_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    row: policies::Model,
    case: &EscrowCase,
) -> InsuranceResult<policies::Model> {
    let to = row.state.issue()?;
    if case.state != CaseState::Frozen {
        return Err(CoreError::InvalidTransition {
            state: case.state.as_str(),
            action: "issue a policy on this premium",
        }
        .into());
    }
    // The application's number, on the phone since the purchase, becomes the policy's: one
    // number for the holder, the service company and the insurer's settlement requests.
    let number = case.order_number.clone();
    let now = core.clock.now();
    let free_look_ends_at = free_look_end_from(now, None, row.free_look_days);
    let mut active: policies::ActiveModel = row.clone().into();
    active.state = Set(to);
    active.policy_number = Set(Some(number.digits().to_owned()));
    active.issued_at = Set(Some(now));
    active.certificate_status = Set(CertificateStatus::AwaitingPickup);
    active.free_look_ends_at = Set(Some(free_look_ends_at));
    let issued = save_in_txn(txn, core, active).await?;
    timers::cancel_in_txn(txn, RECHECK_DEADLINE_TIMER, row.id).await?;
    let issued = crate::cycle::schedule_next_in_txn(txn, core, issued).await?;
    record_in_txn(
        txn,
        core,
        row.id,
        "issued",
        Some(format!(
            "policy number {number} issued after the insurer's recheck"
        )),
    )
    .await?;
    text_holder_in_txn(
        txn,
        core,
        &issued,
        format!(
            "Holdfast: {} issued your policy {number} ({}). Keep this number: hand it to the \
             service company with your signed application when your certificate arrives. You \
             may cancel with every premium returned until {} days after it arrives, and until \
             {} UTC at the latest.",
            case.payee_name,
            issued.product_name,
            issued.free_look_days,
            free_look_ends_at.format("%Y-%m-%d %H:%M")
        ),
    )
    .await?;
    publish_in_txn(
        txn,
        core,
        issued.insurer_party_id,
        "policy.issued",
        serde_json::json!({
            "policy_id": issued.id,
            "policy_number": number,
            "product_name": issued.product_name,
        }),
    )
    .await?;
    let card = cards::get_card(txn, CardId::from_uuid(issued.card_id)).await?;
    publish_in_txn(
        txn,
        core,
        issued.service_company_party_id,
        "certificate.requested",
        serde_json::json!({
            "policy_number": number,
            "product_name": issued.product_name,
            "insurer_name": case.payee_name,
            "destination": destination_of(&card),
        }),
    )
    .await?;
    Ok(issued)
}

pub(super) fn destination_of(card: &cards::Card) -> String {
    card.delivery_address
        .clone()
        .unwrap_or_else(|| "collection at the service company".to_owned())
}

pub(super) async fn decline_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    row: policies::Model,
    case: &mut EscrowCase,
    reason: String,
) -> InsuranceResult<policies::Model> {
    let to = row.state.decline()?;
    escrow::withdraw_in_txn(
        txn,
        core,
        case,
        format!("declined by the insurer: {reason}"),
    )
    .await?;
    let mut active: policies::ActiveModel = row.clone().into();
    active.state = Set(to);
    active.ended_at = Set(Some(core.clock.now()));
    let declined = save_in_txn(txn, core, active).await?;
    timers::cancel_in_txn(txn, RECHECK_DEADLINE_TIMER, row.id).await?;
    record_in_txn(txn, core, row.id, "declined", Some(reason)).await?;
    text_holder_in_txn(
        txn,
        core,
        &declined,
        format!(
            "Holdfast: {} declined your application for {}; {} returned to you.",
            case.payee_name, declined.product_name, case.amount
        ),
    )
    .await?;
    Ok(declined)
}

/// What this vertical does when the phone answered one of its premiums' confirmations: an
/// approved application goes to the insurer's recheck, a denied one ends; a settled or
/// disputed premium goes on the timeline and to the insurer.
///
/// The caller locked the policy before the case ([`crate::hooks::lock_answer_subject_in_txn`]).
/// Only the application's outcomes write the policy, and lock it (again, at no cost); a
/// premium's settlement or dispute only reads what its issue fixed (number, insurer, term), so
/// it takes no lock at all — even a caller that forgot the pre-lock cannot turn the lock order
/// round there. A premium settled without an answer (the settlement period ended) or through
/// an operator's mediation does not come here: its state in the policy view and timeline is
/// its case's, and the insurer hears of it from the core's `order.settled` or
/// `dispute.mediated` event (with the premium's order number), not from `premium.settled`.
#[tracing::instrument(name = "insurance.purchase_answered", skip_all, fields(case_id = %case.id, policy_id = tracing::field::Empty))]
pub async fn after_answer_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: &EscrowCase,
    outcome: escrow::CaseOutcome,
) -> InsuranceResult<()> {
    use escrow::CaseOutcome;
    if case.vertical != VERTICAL {
        return Ok(());
    }
    let Some(premium) = premium_of_case(txn, case.id).await? else {
        return Ok(());
    };
    let row = match outcome {
        CaseOutcome::OrderApproved | CaseOutcome::OrderDenied => {
            lock_row(txn, premium.policy_id).await?
        }
        CaseOutcome::Settled | CaseOutcome::Disputed => get_row(txn, premium.policy_id).await?,
    };
    match outcome {
        CaseOutcome::OrderApproved if row.state == PolicyState::AwaitingConfirmation => {
            let to = row.state.confirm()?;
            let mut active: policies::ActiveModel = row.clone().into();
            active.state = Set(to);
            save_in_txn(txn, core, active).await?;
            timers::cancel_in_txn(txn, CONFIRMATION_DEADLINE_TIMER, row.id).await?;
            timers::schedule_in_txn(
                txn,
                &core.clock,
                RECHECK_DEADLINE_TIMER,
                row.id,
                core.clock.now() + Duration::days(RECHECK_DAYS),
            )
            .await?;
            record_in_txn(
                txn,
                core,
                row.id,
                "confirmed",
                Some("approved on the phone; sent to the insurer for its recheck".to_owned()),
            )
            .await?;
            let card = cards::get_card(txn, CardId::from_uuid(row.card_id)).await?;
            publish_in_txn(
                txn,
                core,
                row.insurer_party_id,
                "policy.applied",
                serde_json::json!({
                    "policy_id": row.id,
                    "product_id": row.product_id,
                    "product_name": row.product_name,
                    "premium": case.amount,
                    "card": card.number.masked(),
                    "recheck_by": core.clock.now() + Duration::days(RECHECK_DAYS),
                }),
            )
            .await?;
        }
        CaseOutcome::OrderDenied if row.state == PolicyState::AwaitingConfirmation => {
            let to = row.state.not_taken()?;
            let mut active: policies::ActiveModel = row.clone().into();
            active.state = Set(to);
            active.ended_at = Set(Some(core.clock.now()));
            save_in_txn(txn, core, active).await?;
            timers::cancel_in_txn(txn, CONFIRMATION_DEADLINE_TIMER, row.id).await?;
            record_in_txn(
                txn,
                core,
                row.id,
                "not_taken",
                Some(format!("denied on the phone; {} returned", case.amount)),
            )
            .await?;
        }
        CaseOutcome::Settled => {
            record_in_txn(
                txn,
                core,
                row.id,
                "premium_settled",
                Some(format!(
                    "premium {} of {}: {} released to the insurer",
                    premium.installment,
                    total_installments(&row),
                    case.amount_to_settle()
                )),
            )
            .await?;
            publish_in_txn(
                txn,
                core,
                row.insurer_party_id,
                "premium.settled",
                serde_json::json!({
                    "policy_number": row.policy_number,
                    "installment": premium.installment,
                    "order_number": case.order_number,
                    "amount": case.amount_to_settle(),
                }),
            )
            .await?;
        }
        CaseOutcome::Disputed => {
            record_in_txn(
                txn,
                core,
                row.id,
                "premium_disputed",
                Some(format!(
                    "premium {}: the holder denied the settlement; an operator mediates",
                    premium.installment
                )),
            )
            .await?;
            publish_in_txn(
                txn,
                core,
                row.insurer_party_id,
                "premium.disputed",
                serde_json::json!({
                    "policy_number": row.policy_number,
                    "installment": premium.installment,
                    "order_number": case.order_number,
                }),
            )
            .await?;
        }
        _ => {}
    }
    Ok(())
}

/// The application's phone deadline passed: if the core expired the first premium (or must
/// now), the application is not taken.
#[tracing::instrument(name = "insurance.confirmation_deadline", skip_all, fields(policy_id = %policy, case_id = tracing::field::Empty))]
pub(crate) async fn confirmation_deadline_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    policy: Uuid,
) -> InsuranceResult<()> {
    let row = lock_row(txn, policy).await?;
    let case_id = CaseId::from_uuid(row.first_case_id);
    let case = escrow::lock_case_in_txn(txn, case_id).await?;
    if case.state == CaseState::AwaitingOrderConfirmation {
        // The core's own deadline timer may not have run yet: it is idempotent, run it now.
        escrow::fire_timer_in_txn(txn, core, escrow::ORDER_DEADLINE_TIMER, case_id.uuid()).await?;
    }
    let case = escrow::get_case(txn, case_id).await?;
    if row.state == PolicyState::AwaitingConfirmation
        && matches!(
            case.state,
            CaseState::Expired | CaseState::Denied | CaseState::Cancelled
        )
    {
        let to = row.state.not_taken()?;
        let mut active: policies::ActiveModel = row.clone().into();
        active.state = Set(to);
        active.ended_at = Set(Some(core.clock.now()));
        save_in_txn(txn, core, active).await?;
        record_in_txn(
            txn,
            core,
            policy,
            "not_taken",
            Some(format!(
                "not confirmed on the phone in time; {} returned",
                case.amount
            )),
        )
        .await?;
    }
    Ok(())
}

/// The insurer did not recheck in time: the application is declined and the premium returns.
#[tracing::instrument(name = "insurance.recheck_deadline", skip_all, fields(policy_id = %policy, case_id = tracing::field::Empty))]
pub(crate) async fn recheck_deadline_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    policy: Uuid,
) -> InsuranceResult<()> {
    let row = lock_row(txn, policy).await?;
    let mut case = escrow::lock_case_in_txn(txn, CaseId::from_uuid(row.first_case_id)).await?;
    if row.state == PolicyState::AwaitingRecheck {
        decline_in_txn(
            txn,
            core,
            row,
            &mut case,
            format!("the insurer did not recheck the application within {RECHECK_DAYS} days"),
        )
        .await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Certificate and documents (the service company)
// ---------------------------------------------------------------------------------------
