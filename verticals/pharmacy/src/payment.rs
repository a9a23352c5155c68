//! Pricing, payment, dispensing and settlement, through the escrow core.
//!
//! The holder prices the prescription; the patient chooses how to pay. By card (lump sum or
//! installments) an escrow case opens: the amount is held on the card's funding source and the
//! phone is asked to confirm the exact amount, the drugstore and the terms — opening consent is
//! not payment consent. In cash nothing is held; the choice is recorded and the cash is taken
//! at the counter. The drugstore dispenses once — a card payment's order number, handed over by
//! the patient, is recorded as the delivery — then asks to be paid quoting that order number,
//! and the patient's phone releases the money (or the settlement period does).
//!
//! Installments: the whole amount is held and settled like a lump sum; the number of months is
//! bound into the phone confirmation and recorded on the case, and the card company runs the
//! plan with the patient.

use crate::claims::{self, check_holder};
use crate::entities::prescriptions as rows;
use crate::error::{PharmacyError, PharmacyResult};
use crate::number::PrescriptionNumber;
use crate::parties::{self, Actor};
use crate::prescriptions::{
    self as rx, Handover, Loaded, PaymentMethod, PrescriptionReceipt, ensure_valid,
    lock_by_number_in_txn, notify_in_txn, receipt_of, terms_of, text_patient_in_txn,
    transition_in_txn,
};
use crate::state::PrescriptionState;
use crate::{CONSENT_TIMER, EXPIRY_TIMER, VERTICAL};
use holdfast_core::cards::{self, CardId};
use holdfast_core::challenge::{self, ChallengePurpose};
use holdfast_core::db::MinorUnits;
use holdfast_core::escrow::{self, CaseState, Mediation, OpenCase, PayoutSplit};
use holdfast_core::ids::{ChallengeId, PartyId};
use holdfast_core::order_number::OrderNumber;
use holdfast_core::{BasisPoints, Core, CoreError, Currency, Money, ledger, timers};
use sea_orm::DatabaseTransaction;
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub const MAX_INSTALLMENT_MONTHS: u32 = 24;

/// The lowest price whose commission, rounded half up to the currency's minor unit, leaves the
/// drugstore something: the escrow refuses a commission of the whole amount. In minor units,
/// `round(p × bps / 10 000) < p` holds exactly when `p × (10 000 − bps) > 5 000`.
fn lowest_price(commission: BasisPoints, currency: Currency) -> PharmacyResult<Money> {
    let kept = i64::from(commission.remainder().get());
    if kept == 0 {
        return Err(CoreError::invalid("a commission rate is from 0 up to 1").into());
    }
    Ok(Money::from_minor(5_000 / kept + 1, currency)?)
}

/// The holder sets the price (again, if it changed, until the patient pays). The patient's
/// phone is told the amount and what is available on the card. A price the drugstore's
/// commission would take whole is refused here, with the lowest price, rather than when the
/// patient pays.
#[tracing::instrument(name = "pharmacy.price", skip_all, fields(prescription_id = tracing::field::Empty, case_id = tracing::field::Empty))]
pub async fn price_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    actor: &Actor,
    number: &PrescriptionNumber,
    secret: Option<&str>,
    price: Money,
) -> PharmacyResult<PrescriptionReceipt> {
    let mut loaded = lock_by_number_in_txn(txn, core, number).await?;
    let drugstore = check_holder(&loaded, actor, secret)?.clone();
    ensure_valid(&loaded, core.clock.now())?;
    let to = loaded.row.state.price()?;
    if price.is_zero() {
        return Err(PharmacyError::invalid("a price is more than zero"));
    }
    let card = cards::get_card(txn, CardId::from_uuid(loaded.row.patient_card_id)).await?;
    let funding = ledger::get_account(txn, card.funding_account).await?;
    if funding.currency != price.currency() {
        return Err(
            CoreError::Money(holdfast_core::money::MoneyError::CurrencyMismatch {
                left: funding.currency,
                right: price.currency(),
            })
            .into(),
        );
    }
    let commission = price.share_at(drugstore.commission)?;
    if commission.checked_cmp(&price)?.is_ge() {
        return Err(PharmacyError::PriceBelowMinimum {
            minimum: lowest_price(drugstore.commission, price.currency())?,
        });
    }
    loaded.row.price = Some(MinorUnits(price.minor()));
    loaded.row.commission = Some(MinorUnits(commission.minor()));
    loaded.row.currency = Some(price.currency().code().to_owned());
    transition_in_txn(
        txn,
        core,
        &mut loaded,
        to,
        "priced",
        Some(actor.party()),
        Some(price.to_string()),
    )
    .await?;
    text_patient_in_txn(
        txn,
        core,
        &loaded.row,
        format!(
            "Holdfast: {} priced prescription {} at {price}. Available on your card: {}. Choose \
             lump sum, installments or cash at the counter in the Holdfast app.",
            drugstore.name,
            loaded.number(),
            funding.available()
        ),
    )
    .await?;
    receipt_of(txn, &loaded, actor, core.clock.now()).await
}

/// How the patient pays.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PrescriptionPaymentChoice)]
pub struct PaymentChoice {
    pub method: PaymentMethod,
    /// With `installments`: 2 to 24 months.
    pub installment_months: Option<u32>,
}

/// The patient chooses how to pay, with the card of its session. By card, the amount is held
/// and the phone is asked to confirm the exact amount, the drugstore and the terms; in cash,
/// nothing is held.
#[tracing::instrument(name = "pharmacy.choose_payment", skip_all, fields(prescription_id = tracing::field::Empty, case_id = tracing::field::Empty))]
pub async fn choose_payment_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    actor: &Actor,
    number: &PrescriptionNumber,
    choice: PaymentChoice,
) -> PharmacyResult<PrescriptionReceipt> {
    let Actor::Patient {
        party,
        card: Some(card),
    } = actor
    else {
        return Err(CoreError::Forbidden("the patient pays, logged in with a card").into());
    };
    let mut loaded = lock_by_number_in_txn(txn, core, number).await?;
    if loaded.row.patient_party_id != party.uuid() {
        return Err(CoreError::NotFound("prescription").into());
    }
    ensure_valid(&loaded, core.clock.now())?;
    let months = match (choice.method, choice.installment_months) {
        (PaymentMethod::Installments, Some(months))
            if (2..=MAX_INSTALLMENT_MONTHS).contains(&months) =>
        {
            Some(i32::try_from(months).unwrap_or(0))
        }
        (PaymentMethod::Installments, _) => {
            return Err(PharmacyError::InstallmentMonths {
                max: MAX_INSTALLMENT_MONTHS,
            });
        }
        (_, Some(_)) => {
            return Err(PharmacyError::invalid(
                "installment months go with the installments method only",
            ));
        }
        (_, None) => None,
    };
    // Both methods need a priced prescription: this refuses any other state by name.
    loaded.row.state.choose_cash()?;
    let price = loaded.price()?.ok_or(CoreError::NotFound("price"))?;
    let holder = loaded
        .row
        .holder_drugstore_party_id
        .map(PartyId::from_uuid)
        .ok_or(PharmacyError::NotHeld)?;
    let drugstore = parties::get_drugstore(txn, holder).await?;
    let terms = terms_of(choice.method, months);
    match choice.method {
        PaymentMethod::Cash => {
            let to = loaded.row.state.choose_cash()?;
            loaded.row.payment_method = Some(PaymentMethod::Cash);
            transition_in_txn(
                txn,
                core,
                &mut loaded,
                to,
                "cash_chosen",
                Some(*party),
                Some(format!("{price}, cash at the counter")),
            )
            .await?;
            notify_in_txn(txn, core, holder, "prescription.paid", &loaded).await?;
            text_patient_in_txn(
                txn,
                core,
                &loaded.row,
                format!(
                    "Holdfast: you will pay {price} in cash at the counter of {} for prescription \
                     {}.",
                    drugstore.name,
                    loaded.number()
                ),
            )
            .await?;
        }
        PaymentMethod::LumpSum | PaymentMethod::Installments => {
            let to = loaded.row.state.choose_card_payment()?;
            let paying = cards::get_card(txn, *card).await?;
            let commission = match (loaded.row.commission, loaded.row.currency.as_deref()) {
                (Some(minor), Some(_)) => Money::from_minor(minor.0, price.currency())?,
                _ => Money::zero(price.currency()),
            };
            let (case, _) = escrow::open_case_in_txn(
                txn,
                core,
                OpenCase {
                    vertical: VERTICAL,
                    payer: *party,
                    payer_card: paying.id,
                    payee: holder,
                    payee_name: drugstore.name.clone(),
                    amount: price,
                    commission,
                    confirmation: ChallengePurpose::Payment,
                    terms: terms.clone(),
                },
            )
            .await?;
            loaded.row.payment_method = Some(choice.method);
            loaded.row.installment_months = months;
            loaded.row.case_id = Some(case.id.uuid());
            loaded.case = Some(case);
            transition_in_txn(
                txn,
                core,
                &mut loaded,
                to,
                "payment_requested",
                Some(*party),
                terms.map(|t| format!("{price}, {t}")),
            )
            .await?;
        }
    }
    receipt_of(txn, &loaded, actor, core.clock.now()).await
}

/// What the drugstore records when it hands the medicine over.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PrescriptionDispensing)]
pub struct Dispensing {
    /// The order number the patient handed over (card payments): recorded as the delivery.
    pub order_number: Option<OrderNumber>,
    #[serde(default)]
    pub handover: Handover,
}

/// The holder dispenses a paid prescription — once: the row lock and a guarded update make a
/// second attempt, concurrent or not, a 409. A card payment needs the order number the patient
/// handed over; cash is taken at the counter, which settles it.
#[tracing::instrument(name = "pharmacy.dispense", skip_all, fields(prescription_id = tracing::field::Empty, case_id = tracing::field::Empty))]
pub async fn dispense_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    actor: &Actor,
    number: &PrescriptionNumber,
    secret: Option<&str>,
    dispensing: Dispensing,
) -> PharmacyResult<PrescriptionReceipt> {
    let mut loaded = lock_by_number_in_txn(txn, core, number).await?;
    let drugstore = check_holder(&loaded, actor, secret)?.clone();
    let now = core.clock.now();
    let to = loaded.row.state.dispense()?;
    ensure_valid(&loaded, now)?;
    let cash = loaded.row.payment_method == Some(PaymentMethod::Cash);
    if !cash {
        let handed_over = dispensing.order_number.as_ref().ok_or_else(|| {
            PharmacyError::invalid("give the order number the patient handed over")
        })?;
        let case = loaded.case.as_mut().ok_or(CoreError::NotFound("payment"))?;
        escrow::record_delivery_in_txn(txn, core, case, handed_over).await?;
    }
    loaded.row.dispensed_at = Some(now);
    loaded.row.dispensed_by_party_id = Some(actor.party().uuid());
    loaded.row.handover = Some(dispensing.handover);
    timers::cancel_in_txn(txn, EXPIRY_TIMER, loaded.row.id).await?;
    transition_in_txn(
        txn,
        core,
        &mut loaded,
        to,
        "dispensed",
        Some(actor.party()),
        Some(format!("by {}", drugstore.name)),
    )
    .await?;
    if cash {
        let settled = loaded.row.state.settle()?;
        let price = loaded.price()?;
        transition_in_txn(
            txn,
            core,
            &mut loaded,
            settled,
            "settled",
            Some(actor.party()),
            price.map(|p| format!("{p} paid in cash at the counter")),
        )
        .await?;
    }
    notify_in_txn(
        txn,
        core,
        PartyId::from_uuid(loaded.row.prescriber_party_id),
        "prescription.dispensed",
        &loaded,
    )
    .await?;
    text_patient_in_txn(
        txn,
        core,
        &loaded.row,
        format!(
            "Holdfast: prescription {} was dispensed by {}.",
            loaded.number(),
            drugstore.name
        ),
    )
    .await?;
    receipt_of(txn, &loaded, actor, now).await
}

/// The holder asks to be paid for a dispensed prescription, quoting the order number the
/// patient handed over: the patient's phone is asked to release the money; without an answer
/// it is released when the settlement period ends.
#[tracing::instrument(name = "pharmacy.request_payment", skip_all, fields(prescription_id = tracing::field::Empty, case_id = tracing::field::Empty))]
pub async fn request_payment_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    actor: &Actor,
    number: &PrescriptionNumber,
    secret: Option<&str>,
    order_number: &OrderNumber,
) -> PharmacyResult<PrescriptionReceipt> {
    let mut loaded = lock_by_number_in_txn(txn, core, number).await?;
    let drugstore = check_holder(&loaded, actor, secret)?.clone();
    if loaded.row.state != PrescriptionState::Dispensed {
        return Err(PharmacyError::InvalidTransition(
            crate::state::TransitionError {
                state: loaded.row.state,
                action: "request payment (dispense it first)",
            },
        ));
    }
    let case = loaded
        .case
        .as_mut()
        .ok_or_else(|| PharmacyError::invalid("this prescription was paid in cash"))?;
    if &case.order_number != order_number {
        return Err(PharmacyError::invalid(
            "the order number quoted is not this prescription's",
        ));
    }
    escrow::request_settlement_in_txn(txn, core, case, drugstore.drugstore_id, None).await?;
    claims::note_in_txn(
        txn,
        core,
        &loaded,
        "payment_requested_by_drugstore",
        Some(actor.party()),
    )
    .await?;
    receipt_of(txn, &loaded, actor, core.clock.now()).await
}

/// Ends what an undispensed prescription had started: the pending consent request, the payment
/// (the hold is voided), the claim secret.
async fn wind_up_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    loaded: &mut Loaded,
    reason: &str,
) -> PharmacyResult<()> {
    if let Some(asked) = loaded.row.consent_challenge_id.take() {
        challenge::close_in_txn(txn, &core.clock, ChallengeId::from_uuid(asked)).await?;
    }
    loaded.row.consent_expires_at = None;
    timers::cancel_in_txn(txn, CONSENT_TIMER, loaded.row.id).await?;
    timers::cancel_in_txn(txn, EXPIRY_TIMER, loaded.row.id).await?;
    if let Some(case) = loaded.case.as_mut()
        && matches!(
            case.state,
            CaseState::AwaitingOrderConfirmation | CaseState::Frozen
        )
    {
        escrow::withdraw_in_txn(txn, core, case, reason.to_owned()).await?;
    }
    loaded.row.claim_secret_hash = None;
    Ok(())
}

/// Everyone the end of a prescription concerns: the drugstore holding it, asking for it, or
/// chosen for it.
fn drugstores_concerned(row: &rows::Model) -> Vec<PartyId> {
    let mut parties: Vec<PartyId> = row
        .holder_drugstore_party_id
        .iter()
        .chain(row.routed_drugstore_party_id.iter())
        .map(|id| PartyId::from_uuid(*id))
        .collect();
    parties.dedup();
    parties
}

/// The prescriber cancels a prescription of its hospital, until it is dispensed. The drugstore
/// holding it (or chosen for it) is told, and any hold is voided.
#[tracing::instrument(name = "pharmacy.cancel", skip_all, fields(prescription_id = tracing::field::Empty, case_id = tracing::field::Empty))]
pub async fn cancel_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    actor: &Actor,
    number: &PrescriptionNumber,
) -> PharmacyResult<PrescriptionReceipt> {
    let Actor::Prescriber { party, hospital } = actor else {
        return Err(CoreError::Forbidden("this needs the role prescriber").into());
    };
    let mut loaded = lock_by_number_in_txn(txn, core, number).await?;
    if loaded.row.hospital_id != hospital.hospital_id.uuid() {
        return Err(CoreError::NotFound("prescription").into());
    }
    let to = loaded.row.state.cancel()?;
    wind_up_in_txn(
        txn,
        core,
        &mut loaded,
        "the prescription was cancelled by its prescriber",
    )
    .await?;
    transition_in_txn(
        txn,
        core,
        &mut loaded,
        to,
        "cancelled",
        Some(party.id),
        None,
    )
    .await?;
    for drugstore in drugstores_concerned(&loaded.row) {
        notify_in_txn(txn, core, drugstore, "prescription.cancelled", &loaded).await?;
    }
    text_patient_in_txn(
        txn,
        core,
        &loaded.row,
        format!(
            "Holdfast: prescription {} was cancelled by its prescriber; nothing is held for it.",
            loaded.number()
        ),
    )
    .await?;
    receipt_of(txn, &loaded, actor, core.clock.now()).await
}

/// The expiry timer: a prescription not dispensed by the end of its validity expires; a held
/// payment returns to the patient.
#[tracing::instrument(name = "pharmacy.expire", skip_all, fields(prescription_id = %prescription, case_id = tracing::field::Empty))]
pub(crate) async fn expire_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    prescription: Uuid,
) -> PharmacyResult<()> {
    let mut loaded = rx::lock_in_txn(txn, core, prescription).await?;
    if !loaded.row.state.is_undispensed() || core.clock.now() < loaded.row.expires_at {
        return Ok(());
    }
    let to = loaded.row.state.expire()?;
    wind_up_in_txn(txn, core, &mut loaded, "the prescription expired").await?;
    transition_in_txn(txn, core, &mut loaded, to, "expired", None, None).await?;
    for drugstore in drugstores_concerned(&loaded.row) {
        notify_in_txn(txn, core, drugstore, "prescription.expired", &loaded).await?;
    }
    text_patient_in_txn(
        txn,
        core,
        &loaded.row,
        format!(
            "Holdfast: prescription {} has expired; nothing is held for it.",
            loaded.number()
        ),
    )
    .await?;
    Ok(())
}

/// An operator's mediation of a disputed prescription payment.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = PrescriptionMediationResult)]
pub struct MediationResult {
    pub prescription_number: PrescriptionNumber,
    pub state: PrescriptionState,
    pub escrow_state: CaseState,
    pub released_to_drugstore: Money,
    pub drugstore_payout: Money,
    pub commission: Money,
    pub institution_fee: Money,
    pub penalty: Money,
    pub refunded_to_patient: Money,
}

/// An operator mediates a disputed payment (the patient denied the release on the phone).
#[tracing::instrument(name = "pharmacy.mediate", skip_all, fields(prescription_id = tracing::field::Empty, case_id = tracing::field::Empty))]
pub async fn mediate_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    order_number: &OrderNumber,
    mediation: Mediation,
) -> PharmacyResult<MediationResult> {
    let case = escrow::find_case_by_number(txn, order_number)
        .await?
        .filter(|case| case.vertical == VERTICAL)
        .ok_or(CoreError::NotFound("order"))?;
    let row = rows::Entity::find()
        .filter(rows::Column::CaseId.eq(case.id.uuid()))
        .one(txn)
        .await?
        .ok_or(CoreError::NotFound("prescription"))?;
    let mut loaded = rx::lock_in_txn(txn, core, row.id).await?;
    let case = loaded.case.as_mut().ok_or(CoreError::NotFound("order"))?;
    let split: PayoutSplit = escrow::mediate_in_txn(txn, core, case, mediation).await?;
    let escrow_state = case.state;
    rx::sync_in_txn(txn, core, &mut loaded).await?;
    Ok(MediationResult {
        prescription_number: loaded.number(),
        state: loaded.row.state,
        escrow_state,
        released_to_drugstore: split.to_seller,
        drugstore_payout: split.seller_net,
        commission: split.commission,
        institution_fee: split.institution_fee,
        penalty: split.penalty,
        refunded_to_patient: split.refund,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_price_is_the_first_the_commission_does_not_take_whole() {
        for currency in [Currency::USD, Currency::KRW] {
            for bps in 0..10_000 {
                let rate = BasisPoints::new(bps).unwrap();
                let lowest = lowest_price(rate, currency).unwrap();
                let commission = lowest.share_at(rate).unwrap();
                assert!(commission.minor() < lowest.minor(), "{bps} bps: {lowest}");
                if lowest.minor() > 1 {
                    let below = Money::from_minor(lowest.minor() - 1, currency).unwrap();
                    let taken = below.share_at(rate).unwrap();
                    assert_eq!(taken.minor(), below.minor(), "{bps} bps: {below}");
                }
            }
        }
    }

    #[test]
    fn a_rate_of_one_or_more_has_no_lowest_price() {
        assert!(lowest_price(BasisPoints::WHOLE, Currency::USD).is_err());
    }
}
