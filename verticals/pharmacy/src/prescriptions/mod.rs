//! Prescriptions: what a prescriber enters for a patient's medical card, and how each party
//! sees it. Content (items, notes) is personal health data: only the prescriber's hospital, the
//! drugstore holding the claim (or chosen by the patient), the patient and an operator see it,
//! each read is written to the access log the patient can list, and none of it reaches a log
//! line, an error message, a phone text or an escrow case.

use crate::EXPIRY_TIMER;
use crate::audit::{self, Access};
use crate::entities::{hospitals, items, prescription_events, prescriptions};
use crate::error::{PharmacyError, PharmacyResult};
use crate::number::PrescriptionNumber;
use crate::parties::{self, Actor, HospitalId};
use crate::state::PrescriptionState;
use chrono::{DateTime, Duration, Months, Utc};
use holdfast_core::cards::{self, CardId, CardNumber};
use holdfast_core::challenge::{self, ChallengePurpose, ChallengeStatus};
use holdfast_core::db::MinorUnits;
use holdfast_core::escrow::{self, CaseEvent, CaseState, EscrowCase};
use holdfast_core::ids::{ChallengeId, PartyId};
use holdfast_core::order_number::OrderNumber;
use holdfast_core::outbox::{self, PhoneMessage};
use holdfast_core::text::{MultilineText, Text};
use holdfast_core::{Core, CoreError, Currency, Money, events, timers};
use sea_orm::entity::prelude::*;
use sea_orm::{
    ActiveValue::Set, Condition, ConnectionTrait, DatabaseTransaction, QueryOrder, QuerySelect,
};
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use utoipa::ToSchema;

mod issue;
mod rows;
mod views;

pub use issue::*;
pub use rows::*;
pub use views::*;

pub const MAX_ITEMS: usize = 20;
pub const MAX_NOTES_CHARS: usize = 2_000;
pub const MAX_DRUG_CODE_CHARS: usize = 32;
pub const MAX_DRUG_NAME_CHARS: usize = 200;
pub const MAX_STRENGTH_CHARS: usize = 64;
pub const MAX_DOSE_CHARS: usize = 500;
pub const MAX_UNIT_CHARS: usize = 32;
pub type DrugCode = Text<1, MAX_DRUG_CODE_CHARS>;
pub type DrugName = Text<1, MAX_DRUG_NAME_CHARS>;
pub type Strength = Text<0, MAX_STRENGTH_CHARS>;
/// Dosage instructions, on one line (the patient's phone shows them in a text).
pub type Dose = Text<1, MAX_DOSE_CHARS>;
pub type Unit = Text<0, MAX_UNIT_CHARS>;
pub type PrescriptionNotes = MultilineText<0, MAX_NOTES_CHARS>;
pub const MAX_QUANTITY: u32 = 10_000;
pub const MAX_DAYS: u32 = 366;
/// A prescription is valid six months unless shorter (UK, NHS EPS).
pub const DEFAULT_VALIDITY_MONTHS: u32 = 6;
/// Controlled drugs (UK Schedule 2–4) are valid 28 days.
pub const CONTROLLED_VALIDITY_DAYS: i64 = 28;
pub const MAX_VALIDITY_DAYS: u32 = 183;

/// The class of a drug, which bounds how long a prescription of it stays valid.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[sea_orm(
    rs_type = "String",
    db_type = "String(StringLen::N(16))",
    rename_all = "snake_case"
)]
#[serde(rename_all = "snake_case")]
#[schema(as = PrescriptionDrugClass)]
pub enum DrugClass {
    /// Valid six months.
    #[default]
    Standard,
    /// A controlled drug (Schedule 2–4): valid 28 days.
    Controlled,
}

/// How the patient pays.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[sea_orm(
    rs_type = "String",
    db_type = "String(StringLen::N(16))",
    rename_all = "snake_case"
)]
#[serde(rename_all = "snake_case")]
#[schema(as = PrescriptionPaymentMethod)]
pub enum PaymentMethod {
    /// The whole amount, held in escrow.
    LumpSum,
    /// The whole amount is held in escrow like a lump sum; the card company runs the monthly
    /// plan, whose number of months the patient confirms on the phone.
    Installments,
    /// In cash at the counter: nothing is held; the choice is recorded.
    Cash,
}

/// How the medicine reached the patient.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[sea_orm(
    rs_type = "String",
    db_type = "String(StringLen::N(32))",
    rename_all = "snake_case"
)]
#[serde(rename_all = "snake_case")]
#[schema(as = PrescriptionHandover)]
pub enum Handover {
    /// The patient collected it at the drugstore.
    #[default]
    CollectedAtCounter,
    /// The drugstore delivered it to the hospital, where the patient received it.
    DeliveredToHospital,
}

/// One item as the prescriber enters it.
#[derive(Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewPrescriptionItem)]
pub struct NewItem {
    /// The drug's code in the national catalogue (letters, digits, '.', '-').
    #[schema(example = "641400260")]
    pub drug_code: DrugCode,
    #[schema(example = "Amoxicillin")]
    pub name: DrugName,
    #[serde(default)]
    #[schema(example = "500 mg capsules")]
    pub strength: Strength,
    /// Dosage instructions, as the patient reads them.
    #[schema(example = "1 capsule 3 times a day")]
    pub dose: Dose,
    pub quantity: u32,
    #[serde(default)]
    #[schema(example = "capsule")]
    pub unit: Unit,
    /// Days of treatment.
    pub days: u32,
    #[serde(default)]
    pub class: DrugClass,
}

impl std::fmt::Debug for NewItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewItem(…)")
    }
}

/// A prescription as the prescriber enters it.
#[derive(Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPrescription {
    /// The patient's medical card number (an EC card): it identifies the patient, whose phone
    /// and funding source stay on the server.
    pub card_number: CardNumber,
    pub items: Vec<NewItem>,
    pub notes: Option<PrescriptionNotes>,
    /// Shorter validity than the default (six months; 28 days with a controlled drug).
    pub validity_days: Option<u32>,
    /// The member drugstore the patient chose to receive it (flow A). Recorded as the
    /// patient's choice; a prescriber must not steer it. Without one, the prescription waits
    /// in the pool for any member drugstore the patient presents the card to (flow B).
    pub patient_chosen_drugstore_id: Option<PartyId>,
}

impl std::fmt::Debug for NewPrescription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewPrescription")
            .field("card_number", &self.card_number)
            .field("items", &self.items.len())
            .finish_non_exhaustive()
    }
}

fn length_between(value: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&value.chars().count()) && !value.chars().any(char::is_control)
}

/// Checks what was entered. Messages name the rule, never the value.
fn validate(new: &NewPrescription) -> PharmacyResult<()> {
    if new.items.is_empty() || new.items.len() > MAX_ITEMS {
        return Err(PharmacyError::invalid(format!(
            "a prescription has 1 to {MAX_ITEMS} items"
        )));
    }
    for (index, item) in new.items.iter().enumerate() {
        let line = index + 1;
        let code_ok = length_between(item.drug_code.trim(), 1, MAX_DRUG_CODE_CHARS)
            && item
                .drug_code
                .trim()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'));
        if !code_ok {
            return Err(PharmacyError::invalid(format!(
                "item {line}: a drug code has 1 to {MAX_DRUG_CODE_CHARS} letters, digits, '.' or '-'"
            )));
        }
        if !length_between(item.name.trim(), 1, MAX_DRUG_NAME_CHARS) {
            return Err(PharmacyError::invalid(format!(
                "item {line}: a drug name has 1 to {MAX_DRUG_NAME_CHARS} characters"
            )));
        }
        if !length_between(item.strength.trim(), 0, MAX_STRENGTH_CHARS) {
            return Err(PharmacyError::invalid(format!(
                "item {line}: a strength has at most {MAX_STRENGTH_CHARS} characters"
            )));
        }
        if !length_between(item.dose.trim(), 1, MAX_DOSE_CHARS) {
            return Err(PharmacyError::invalid(format!(
                "item {line}: a dose has 1 to {MAX_DOSE_CHARS} characters"
            )));
        }
        if !length_between(item.unit.trim(), 0, MAX_UNIT_CHARS) {
            return Err(PharmacyError::invalid(format!(
                "item {line}: a unit has at most {MAX_UNIT_CHARS} characters"
            )));
        }
        if item.quantity == 0 || item.quantity > MAX_QUANTITY {
            return Err(PharmacyError::invalid(format!(
                "item {line}: a quantity is 1 to {MAX_QUANTITY}"
            )));
        }
        if item.days == 0 || item.days > MAX_DAYS {
            return Err(PharmacyError::invalid(format!(
                "item {line}: a treatment lasts 1 to {MAX_DAYS} days"
            )));
        }
    }
    if let Some(notes) = &new.notes
        && notes.chars().count() > MAX_NOTES_CHARS
    {
        return Err(PharmacyError::invalid(format!(
            "notes have at most {MAX_NOTES_CHARS} characters"
        )));
    }
    if let Some(days) = new.validity_days
        && (days == 0 || days > MAX_VALIDITY_DAYS)
    {
        return Err(PharmacyError::invalid(format!(
            "a validity is 1 to {MAX_VALIDITY_DAYS} days"
        )));
    }
    Ok(())
}

/// The end of the validity: six months, at most 28 days with a controlled drug, and no later
/// than the prescriber asked.
pub fn valid_until(
    issued_at: DateTime<Utc>,
    classes: impl IntoIterator<Item = DrugClass>,
    validity_days: Option<u32>,
) -> DateTime<Utc> {
    let mut until = issued_at
        .checked_add_months(Months::new(DEFAULT_VALIDITY_MONTHS))
        .unwrap_or(issued_at + Duration::days(i64::from(MAX_VALIDITY_DAYS)));
    if classes.into_iter().any(|c| c == DrugClass::Controlled) {
        until = until.min(issued_at + Duration::days(CONTROLLED_VALIDITY_DAYS));
    }
    if let Some(days) = validity_days {
        until = until.min(issued_at + Duration::days(i64::from(days)));
    }
    until
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = PharmacyNamed)]
pub struct Named {
    pub id: Uuid,
    pub name: String,
}

#[derive(Clone, Serialize, ToSchema)]
#[schema(as = PrescriptionItem)]
pub struct ItemView {
    pub line_no: i32,
    pub drug_code: String,
    pub name: String,
    pub strength: String,
    pub dose: String,
    pub quantity: i32,
    pub unit: String,
    pub days: i32,
    pub class: DrugClass,
}

impl From<items::Model> for ItemView {
    fn from(row: items::Model) -> Self {
        ItemView {
            line_no: row.line_no,
            drug_code: row.drug_code,
            name: row.name,
            strength: row.strength,
            dose: row.dose,
            quantity: row.quantity,
            unit: row.unit,
            days: row.days,
            class: row.class,
        }
    }
}

/// A confirmation the patient's phone was asked for and has not answered yet.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = PrescriptionPendingConfirmation)]
pub struct PendingConfirmation {
    pub challenge_id: ChallengeId,
    pub purpose: ChallengePurpose,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = PrescriptionPayment)]
pub struct PaymentView {
    pub method: PaymentMethod,
    pub installment_months: Option<i32>,
    /// What the patient confirmed besides the amount ("lump sum", "3 monthly installments").
    pub terms: Option<String>,
    /// The escrow payment's order number: the patient hands it to the drugstore on delivery,
    /// so the drugstore is shown it only once it was handed over.
    pub order_number: Option<OrderNumber>,
    /// Where the money is (card payments).
    pub escrow_state: Option<CaseState>,
}

/// A prescription with its content, for those allowed to read it.
#[derive(Clone, Serialize, ToSchema)]
pub struct PrescriptionView {
    pub prescription_number: PrescriptionNumber,
    pub state: PrescriptionState,
    pub hospital: Named,
    pub prescriber: Named,
    /// The patient's medical card, masked.
    #[schema(example = "9000-21••-••••-7897")]
    pub patient_card: String,
    pub valid_from: DateTime<Utc>,
    pub valid_until: DateTime<Utc>,
    /// The drugstore the patient chose when it was prescribed (the patient's choice).
    pub routed_to: Option<Named>,
    /// The drugstore holding the claim (or, while the patient is asked, asking for it).
    pub held_by: Option<Named>,
    pub claimed_at: Option<DateTime<Utc>>,
    pub items: Vec<ItemView>,
    pub notes: Option<String>,
    pub price: Option<Money>,
    pub payment: Option<PaymentView>,
    pub dispensed_at: Option<DateTime<Utc>>,
    pub handover: Option<Handover>,
    /// For the patient only: the confirmation its phone is asked for now.
    pub pending_confirmation: Option<PendingConfirmation>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for PrescriptionView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrescriptionView")
            .field("prescription_number", &self.prescription_number)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// Where a prescription stands after a change, without its content: what every request that
/// changes a prescription answers. Its items and notes are read with
/// `GET /v1/pharmacy/prescriptions/{number}`, which writes the read to the patient's access log;
/// an answer to a change is not logged, and may be kept as an idempotency record and replayed,
/// so it must never hold them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PrescriptionReceipt {
    pub prescription_number: PrescriptionNumber,
    pub state: PrescriptionState,
    pub valid_from: DateTime<Utc>,
    pub valid_until: DateTime<Utc>,
    /// The drugstore the patient chose when it was prescribed (the patient's choice).
    pub routed_to: Option<Named>,
    /// The drugstore holding the claim (or, while the patient is asked, asking for it).
    pub held_by: Option<Named>,
    pub price: Option<Money>,
    pub payment: Option<PaymentView>,
    pub dispensed_at: Option<DateTime<Utc>>,
    pub handover: Option<Handover>,
    /// For the patient only: the confirmation its phone is asked for now.
    pub pending_confirmation: Option<PendingConfirmation>,
}

/// A prescription without its content: what lists show.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PrescriptionSummary {
    pub prescription_number: PrescriptionNumber,
    pub state: PrescriptionState,
    pub item_count: u64,
    pub valid_until: DateTime<Utc>,
    pub held_by: Option<Named>,
    pub price: Option<Money>,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn validity_is_six_months_or_28_days_with_a_controlled_drug() {
        let issued = Utc.with_ymd_and_hms(2026, 1, 31, 9, 0, 0).unwrap();
        assert_eq!(
            valid_until(issued, [DrugClass::Standard], None),
            Utc.with_ymd_and_hms(2026, 7, 31, 9, 0, 0).unwrap()
        );
        assert_eq!(
            valid_until(issued, [DrugClass::Standard, DrugClass::Controlled], None),
            issued + Duration::days(28)
        );
        assert_eq!(
            valid_until(issued, [DrugClass::Controlled], Some(60)),
            issued + Duration::days(28),
            "a prescriber cannot lengthen a controlled drug's validity"
        );
        assert_eq!(
            valid_until(issued, [DrugClass::Standard], Some(3)),
            issued + Duration::days(3)
        );
    }

    #[test]
    fn the_escrow_case_moves_a_payment_on() {
        use PrescriptionState as P;
        assert_eq!(
            effective_state(
                P::PaymentPending,
                Some(CaseState::AwaitingOrderConfirmation)
            ),
            P::PaymentPending
        );
        assert_eq!(
            effective_state(P::PaymentPending, Some(CaseState::Frozen)),
            P::Paid
        );
        assert_eq!(
            effective_state(P::PaymentPending, Some(CaseState::Denied)),
            P::Priced
        );
        assert_eq!(
            effective_state(P::PaymentPending, Some(CaseState::Expired)),
            P::Priced
        );
        assert_eq!(
            effective_state(P::Dispensed, Some(CaseState::SettlementRequested)),
            P::Dispensed
        );
        assert_eq!(
            effective_state(P::Dispensed, Some(CaseState::Settled)),
            P::Settled
        );
        assert_eq!(
            effective_state(P::Dispensed, Some(CaseState::Disputed)),
            P::Dispensed
        );
        assert_eq!(effective_state(P::Claimed, None), P::Claimed);
    }
}
