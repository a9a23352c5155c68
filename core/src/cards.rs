//! EC card numbers: the alias a shopper types instead of any personal data. A number names its
//! issuing institution, the holder's age class and purchase type, a serial and a Luhn check
//! digit; server-side it maps to the holder's phone, e-mail, delivery address and one funding
//! source. Sellers and carriers only ever see it masked.
//!
//! ```text
//! 9000 2 1 123456789 7      shown as 9000-2112-3456-7897
//! │    │ │ │         └ Luhn check digit
//! │    │ │ └ serial
//! │    │ └ purchase type: 1 personal, 2 business
//! │    └ age class: 1 adolescent, 2 adult
//! └ institution code
//! ```

use crate::check_digit::{luhn_digit, luhn_valid};
use crate::clock::Clock;
use crate::entities::cards;
use crate::error::{CoreError, CoreResult};
use crate::ids::{AccountId, Id, IdKind, PartyId};
use crate::phone_number::PhoneNumber;
use rand::Rng;
use sea_orm::entity::prelude::*;
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseTransaction, QueryFilter, QueryOrder, QuerySelect,
};
use serde::{Deserialize, Serialize};
use std::fmt;
use utoipa::ToSchema;

#[derive(Debug)]
pub enum CardKind {}
impl IdKind for CardKind {
    const NAME: &'static str = "card";
}
pub type CardId = Id<CardKind>;

pub const CARD_NUMBER_DIGITS: usize = 16;
pub const INSTITUTION_CODE_DIGITS: usize = 4;
const SERIAL_DIGITS: usize = 9;

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
pub enum AgeClass {
    Adolescent,
    Adult,
}

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
pub enum PurchaseType {
    Personal,
    Business,
}

/// What a card number maps to: the seed's six EC card types, the department-store card, and
/// the EC prepayment account.
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
    db_type = "String(StringLen::N(40))",
    rename_all = "snake_case"
)]
#[serde(rename_all = "snake_case")]
pub enum MappingKind {
    /// An EC bank account with a credit line (adolescent, company purchase or general class).
    EcBankCreditLine,
    /// A normal bank account: spends its balance.
    BankAccount,
    /// A normal credit card: a hold reserves the card's limit.
    CreditCard,
    /// A normal credit card plus an EC-exclusive credit line; holds reserve the EC line only.
    CreditCardWithEcLine,
    /// A card whose only limit is the EC-exclusive credit line.
    EcCreditLineCard,
    /// A code carrying a credit line.
    CreditLineCode,
    /// A department store's card.
    StoreCard,
    /// An EC prepayment account: spends what was paid in.
    Prepaid,
}

impl MappingKind {
    pub const ALL: [MappingKind; 8] = [
        MappingKind::EcBankCreditLine,
        MappingKind::BankAccount,
        MappingKind::CreditCard,
        MappingKind::CreditCardWithEcLine,
        MappingKind::EcCreditLineCard,
        MappingKind::CreditLineCode,
        MappingKind::StoreCard,
        MappingKind::Prepaid,
    ];
}

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
pub enum CardStatus {
    Active,
    /// Reported lost or stolen, or stopped by the institution; may be unblocked.
    Blocked,
    /// Superseded by a new number; final.
    Replaced,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid EC card number (16 digits; check the digits)")]
pub struct InvalidCardNumber;

/// A card number that passed its check digit and carries a known class.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CardNumber(String);

impl CardNumber {
    /// Accepts the digits with any spaces or dashes between them.
    pub fn parse(input: &str) -> Result<CardNumber, InvalidCardNumber> {
        if input.len() > 40 {
            return Err(InvalidCardNumber);
        }
        let digits: String = input.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        let bytes = digits.as_bytes();
        let well_formed = digits.len() == CARD_NUMBER_DIGITS
            && bytes.iter().all(u8::is_ascii_digit)
            && matches!(bytes[INSTITUTION_CODE_DIGITS], b'1' | b'2')
            && matches!(bytes[INSTITUTION_CODE_DIGITS + 1], b'1' | b'2')
            && luhn_valid(&digits);
        if well_formed {
            Ok(CardNumber(digits))
        } else {
            Err(InvalidCardNumber)
        }
    }

    /// A new number for `institution_code` (4 digits) with a random serial.
    pub fn generate(
        institution_code: &str,
        age: AgeClass,
        purchase: PurchaseType,
    ) -> CoreResult<CardNumber> {
        if institution_code.len() != INSTITUTION_CODE_DIGITS
            || !institution_code.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(CoreError::invalid("an institution code is 4 digits"));
        }
        let mut payload = String::with_capacity(CARD_NUMBER_DIGITS);
        payload.push_str(institution_code);
        payload.push(match age {
            AgeClass::Adolescent => '1',
            AgeClass::Adult => '2',
        });
        payload.push(match purchase {
            PurchaseType::Personal => '1',
            PurchaseType::Business => '2',
        });
        let mut rng = rand::rng();
        for _ in 0..SERIAL_DIGITS {
            payload.push(char::from(b'0' + rng.random_range(0..10u8)));
        }
        let check = luhn_digit(&payload).unwrap_or(0);
        payload.push(char::from(b'0' + check));
        Ok(CardNumber(payload))
    }

    pub fn digits(&self) -> &str {
        &self.0
    }

    pub fn institution_code(&self) -> &str {
        &self.0[..INSTITUTION_CODE_DIGITS]
    }

    pub fn age_class(&self) -> AgeClass {
        if self.0.as_bytes()[INSTITUTION_CODE_DIGITS] == b'1' {
            AgeClass::Adolescent
        } else {
            AgeClass::Adult
        }
    }

    pub fn purchase_type(&self) -> PurchaseType {
        if self.0.as_bytes()[INSTITUTION_CODE_DIGITS + 1] == b'1' {
            PurchaseType::Personal
        } else {
            PurchaseType::Business
        }
    }

    /// `9000-21••-••••-7897`: what a seller may see.
    pub fn masked(&self) -> String {
        let d = &self.0;
        format!("{}-{}••-••••-{}", &d[0..4], &d[4..6], &d[12..16])
    }

    fn from_stored(digits: String) -> CardNumber {
        CardNumber(digits)
    }
}

impl fmt::Display for CardNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.0;
        write!(f, "{}-{}-{}-{}", &d[0..4], &d[4..8], &d[8..12], &d[12..16])
    }
}

impl fmt::Debug for CardNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CardNumber({})", self.masked())
    }
}

impl Serialize for CardNumber {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CardNumber {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        CardNumber::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for CardNumber {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "16 digits: institution code (4), age class (1 adolescent, 2 adult), purchase type \
                 (1 personal, 2 business), serial (9), Luhn check digit",
            ))
            .examples([serde_json::json!("9000-2112-3456-7897")])
            .into()
    }
}

impl utoipa::ToSchema for CardNumber {}

/// A card and its server-side mapping. Its `Debug` hides the personal data.
#[derive(Clone, PartialEq, Eq)]
pub struct Card {
    pub id: CardId,
    pub number: CardNumber,
    pub institution: PartyId,
    pub holder: PartyId,
    pub age_class: AgeClass,
    pub purchase_type: PurchaseType,
    pub mapping_kind: MappingKind,
    pub funding_account: AccountId,
    pub linked_account: Option<AccountId>,
    pub phone: PhoneNumber,
    pub email: Option<String>,
    pub delivery_address: Option<String>,
    pub status: CardStatus,
    pub replaced_by: Option<CardId>,
}

impl fmt::Debug for Card {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Card")
            .field("id", &self.id)
            .field("number", &self.number)
            .field("mapping_kind", &self.mapping_kind)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl From<cards::Model> for Card {
    fn from(row: cards::Model) -> Self {
        Card {
            id: CardId::from_uuid(row.id),
            number: CardNumber::from_stored(row.number),
            institution: PartyId::from_uuid(row.institution_party_id),
            holder: PartyId::from_uuid(row.holder_party_id),
            age_class: row.age_class,
            purchase_type: row.purchase_type,
            mapping_kind: row.mapping_kind,
            funding_account: AccountId::from_uuid(row.funding_account_id),
            linked_account: row.linked_account_id.map(AccountId::from_uuid),
            phone: PhoneNumber::from_stored(row.phone_e164),
            email: row.email,
            delivery_address: row.delivery_address,
            status: row.status,
            replaced_by: row.replaced_by.map(CardId::from_uuid),
        }
    }
}

impl Card {
    /// Refuses a card that may not order or confirm.
    pub fn ensure_active(&self) -> CoreResult<()> {
        match self.status {
            CardStatus::Active => Ok(()),
            _ => Err(CoreError::CardNotActive),
        }
    }
}

pub const MAX_EMAIL_CHARS: usize = 254;
pub const MAX_ADDRESS_CHARS: usize = 500;

/// A new card's mapping; the number is generated.
#[derive(Clone)]
pub struct NewCard {
    pub institution: PartyId,
    pub institution_code: String,
    pub holder: PartyId,
    pub age_class: AgeClass,
    pub purchase_type: PurchaseType,
    pub mapping_kind: MappingKind,
    pub funding_account: AccountId,
    pub linked_account: Option<AccountId>,
    pub phone: PhoneNumber,
    pub email: Option<String>,
    pub delivery_address: Option<String>,
}

fn validate_contact(email: &Option<String>, address: &Option<String>) -> CoreResult<()> {
    if let Some(email) = email {
        let plausible = email.len() <= MAX_EMAIL_CHARS
            && email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty() && domain.contains('.') && !email.chars().any(char::is_whitespace)
            });
        if !plausible {
            return Err(CoreError::invalid("not a valid e-mail address"));
        }
    }
    if let Some(address) = address
        && (address.trim().is_empty() || address.chars().count() > MAX_ADDRESS_CHARS)
    {
        return Err(CoreError::invalid(format!(
            "a delivery address has 1 to {MAX_ADDRESS_CHARS} characters"
        )));
    }
    Ok(())
}

/// Issues a card with a fresh, unused number.
pub async fn issue_card_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    new: NewCard,
) -> CoreResult<Card> {
    validate_contact(&new.email, &new.delivery_address)?;
    let number =
        unused_number(txn, &new.institution_code, new.age_class, new.purchase_type).await?;
    let id = CardId::new();
    let now = clock.now();
    cards::Entity::insert(cards::ActiveModel {
        id: Set(id.uuid()),
        number: Set(number.digits().to_owned()),
        institution_party_id: Set(new.institution.uuid()),
        holder_party_id: Set(new.holder.uuid()),
        age_class: Set(new.age_class),
        purchase_type: Set(new.purchase_type),
        mapping_kind: Set(new.mapping_kind),
        funding_account_id: Set(new.funding_account.uuid()),
        linked_account_id: Set(new.linked_account.map(|a| a.uuid())),
        phone_e164: Set(new.phone.e164().to_owned()),
        email: Set(new.email.map(|e| e.trim().to_owned())),
        delivery_address: Set(new.delivery_address.map(|a| a.trim().to_owned())),
        status: Set(CardStatus::Active),
        replaced_by: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_without_returning(txn)
    .await?;
    get_card(txn, id).await
}

async fn unused_number(
    txn: &DatabaseTransaction,
    institution_code: &str,
    age: AgeClass,
    purchase: PurchaseType,
) -> CoreResult<CardNumber> {
    for _ in 0..8 {
        let candidate = CardNumber::generate(institution_code, age, purchase)?;
        if find_by_number(txn, &candidate).await?.is_none() {
            return Ok(candidate);
        }
    }
    Err(CoreError::Busy)
}

/// The card, read once per writing call (a call that checks the paying card twice reads it
/// once; a change of the card in the call reads it again).
pub async fn get_card(db: &impl ConnectionTrait, id: CardId) -> CoreResult<Card> {
    if let Some(row) = crate::write_buffer::card_read_before(db, id.uuid()) {
        return Ok(Card::from(row));
    }
    let row = cards::Entity::find_by_id(id.uuid())
        .one(db)
        .await?
        .ok_or(CoreError::NotFound("card"))?;
    crate::write_buffer::card_read(db, &row);
    Ok(Card::from(row))
}

pub async fn find_by_number(
    db: &impl ConnectionTrait,
    number: &CardNumber,
) -> CoreResult<Option<Card>> {
    Ok(cards::Entity::find()
        .filter(cards::Column::Number.eq(number.digits()))
        .one(db)
        .await?
        .map(Card::from))
}

pub async fn lock_by_number_in_txn(
    txn: &DatabaseTransaction,
    number: &CardNumber,
) -> CoreResult<Card> {
    cards::Entity::find()
        .filter(cards::Column::Number.eq(number.digits()))
        .lock_exclusive()
        .one(txn)
        .await?
        .map(Card::from)
        .ok_or(CoreError::NotFound("card"))
}

pub async fn cards_of_holder(db: &impl ConnectionTrait, holder: PartyId) -> CoreResult<Vec<Card>> {
    Ok(cards::Entity::find()
        .filter(cards::Column::HolderPartyId.eq(holder.uuid()))
        .order_by_asc(cards::Column::CreatedAt)
        .limit(100)
        .all(db)
        .await?
        .into_iter()
        .map(Card::from)
        .collect())
}

pub async fn cards_of_institution(
    db: &impl ConnectionTrait,
    institution: PartyId,
    filter: &crate::paging::ListFilter<CardStatus>,
    page: &crate::paging::Page,
) -> CoreResult<crate::paging::Paged<Card>> {
    let mut select = cards::Entity::find()
        .filter(cards::Column::InstitutionPartyId.eq(institution.uuid()))
        .filter(filter.created.condition(cards::Column::CreatedAt));
    if let Some(status) = filter.state {
        select = select.filter(cards::Column::Status.eq(status));
    }
    let rows = page
        .apply(select, cards::Column::CreatedAt, cards::Column::Id)
        .all(db)
        .await?;
    Ok(page
        .finish(rows, |row| (row.created_at, row.id))
        .map(Card::from))
}

async fn set_status_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    card: &Card,
    status: CardStatus,
    replaced_by: Option<CardId>,
) -> CoreResult<()> {
    crate::write_buffer::forget_card(txn, card.id.uuid());
    cards::ActiveModel {
        id: Set(card.id.uuid()),
        status: Set(status),
        replaced_by: Set(replaced_by.map(|c| c.uuid())),
        updated_at: Set(clock.now()),
        ..Default::default()
    }
    .update(txn)
    .await?;
    Ok(())
}

/// Who may block a card: its holder (a lost card) or its institution.
fn may_manage(card: &Card, by: PartyId) -> bool {
    card.holder == by || card.institution == by
}

/// Blocks a card at once; it can no longer log in, order or confirm.
pub async fn block_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    number: &CardNumber,
    by: PartyId,
) -> CoreResult<Card> {
    let card = lock_by_number_in_txn(txn, number).await?;
    if !may_manage(&card, by) {
        return Err(CoreError::NotFound("card"));
    }
    match card.status {
        CardStatus::Replaced => Err(CoreError::CardNotActive),
        CardStatus::Blocked => Ok(card),
        CardStatus::Active => {
            set_status_in_txn(txn, clock, &card, CardStatus::Blocked, None).await?;
            get_card(txn, card.id).await
        }
    }
}

/// Lifts a block (the institution only: a holder who reported a card lost gets a new one).
pub async fn unblock_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    number: &CardNumber,
    institution: PartyId,
) -> CoreResult<Card> {
    let card = lock_by_number_in_txn(txn, number).await?;
    if card.institution != institution {
        return Err(CoreError::NotFound("card"));
    }
    if card.status != CardStatus::Blocked {
        return Err(CoreError::CardNotActive);
    }
    set_status_in_txn(txn, clock, &card, CardStatus::Active, None).await?;
    get_card(txn, card.id).await
}

/// Issues a new number with the same mapping and retires the old one for good.
pub async fn replace_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    number: &CardNumber,
    institution: PartyId,
) -> CoreResult<Card> {
    let old = lock_by_number_in_txn(txn, number).await?;
    if old.institution != institution {
        return Err(CoreError::NotFound("card"));
    }
    if old.status == CardStatus::Replaced {
        return Err(CoreError::CardNotActive);
    }
    let replacement = issue_card_in_txn(
        txn,
        clock,
        NewCard {
            institution: old.institution,
            institution_code: old.number.institution_code().to_owned(),
            holder: old.holder,
            age_class: old.age_class,
            purchase_type: old.purchase_type,
            mapping_kind: old.mapping_kind,
            funding_account: old.funding_account,
            linked_account: old.linked_account,
            phone: old.phone.clone(),
            email: old.email.clone(),
            delivery_address: old.delivery_address.clone(),
        },
    )
    .await?;
    set_status_in_txn(txn, clock, &old, CardStatus::Replaced, Some(replacement.id)).await?;
    Ok(replacement)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn age() -> impl Strategy<Value = AgeClass> {
        prop_oneof![Just(AgeClass::Adolescent), Just(AgeClass::Adult)]
    }

    fn purchase() -> impl Strategy<Value = PurchaseType> {
        prop_oneof![Just(PurchaseType::Personal), Just(PurchaseType::Business)]
    }

    #[test]
    fn a_number_shows_grouped_and_masks_its_middle() {
        let number = CardNumber::generate("9000", AgeClass::Adult, PurchaseType::Personal).unwrap();
        let shown = number.to_string();
        assert_eq!(shown.len(), 19);
        assert!(shown.starts_with("9000-21"));
        let masked = number.masked();
        assert!(masked.starts_with("9000-21••"));
        assert!(masked.ends_with(&number.digits()[12..]));
        assert!(!masked.contains(&number.digits()[6..12]));
    }

    #[test]
    fn institution_codes_are_four_digits() {
        assert!(CardNumber::generate("900", AgeClass::Adult, PurchaseType::Personal).is_err());
        assert!(CardNumber::generate("90a0", AgeClass::Adult, PurchaseType::Personal).is_err());
    }

    proptest! {
        #[test]
        fn a_generated_number_parses_back_with_its_class(
            code in "[0-9]{4}", age in age(), purchase in purchase(),
        ) {
            let number = CardNumber::generate(&code, age, purchase).unwrap();
            let parsed = CardNumber::parse(&number.to_string()).unwrap();
            prop_assert_eq!(&parsed, &number);
            prop_assert_eq!(parsed.institution_code(), code.as_str());
            prop_assert_eq!(parsed.age_class(), age);
            prop_assert_eq!(parsed.purchase_type(), purchase);
        }

        #[test]
        fn any_single_mistyped_digit_is_refused(
            code in "[0-9]{4}", age in age(), purchase in purchase(),
            position in 0usize..16, bump in 1u8..10,
        ) {
            let number = CardNumber::generate(&code, age, purchase).unwrap();
            let mut bytes = number.digits().as_bytes().to_vec();
            bytes[position] = b'0' + (bytes[position] - b'0' + bump) % 10;
            prop_assert!(CardNumber::parse(&String::from_utf8(bytes).unwrap()).is_err());
        }

        #[test]
        fn unknown_class_digits_are_refused(digit in prop::sample::select(vec![b'0', b'3', b'9'])) {
            let number = CardNumber::generate("9000", AgeClass::Adult, PurchaseType::Personal).unwrap();
            let mut payload = number.digits().as_bytes()[..15].to_vec();
            payload[4] = digit;
            let payload = String::from_utf8(payload).unwrap();
            let check = luhn_digit(&payload).unwrap();
            let candidate = format!("{payload}{check}");
            prop_assert!(CardNumber::parse(&candidate).is_err());
        }

        #[test]
        fn parsing_anything_never_panics(input in ".{0,50}") {
            let _ = CardNumber::parse(&input);
        }
    }
}
