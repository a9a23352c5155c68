//! Typed identifiers. Every id is a UUIDv7 (time-ordered, so indexes stay compact) wrapped in
//! `Id<Kind>`, so an order id cannot be passed where a party id is expected.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::str::FromStr;
use uuid::Uuid;

/// What an [`Id`] identifies; implemented by the uninhabited marker types below.
pub trait IdKind {
    /// A short prefix for `Debug` output, e.g. `party`.
    const NAME: &'static str;
}

pub struct Id<K: IdKind> {
    uuid: Uuid,
    kind: PhantomData<fn() -> K>,
}

impl<K: IdKind> Id<K> {
    /// A fresh UUIDv7.
    pub fn new() -> Self {
        Self::from_uuid(Uuid::now_v7())
    }

    pub const fn from_uuid(uuid: Uuid) -> Self {
        Id {
            uuid,
            kind: PhantomData,
        }
    }

    pub const fn uuid(&self) -> Uuid {
        self.uuid
    }
}

impl<K: IdKind> Default for Id<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: IdKind> Clone for Id<K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K: IdKind> Copy for Id<K> {}

impl<K: IdKind> PartialEq for Id<K> {
    fn eq(&self, other: &Self) -> bool {
        self.uuid == other.uuid
    }
}

impl<K: IdKind> Eq for Id<K> {}

impl<K: IdKind> PartialOrd for Id<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<K: IdKind> Ord for Id<K> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.uuid.cmp(&other.uuid)
    }
}

impl<K: IdKind> Hash for Id<K> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.uuid.hash(state);
    }
}

impl<K: IdKind> fmt::Display for Id<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.uuid, f)
    }
}

impl<K: IdKind> fmt::Debug for Id<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", K::NAME, self.uuid)
    }
}

impl<K: IdKind> FromStr for Id<K> {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self::from_uuid)
    }
}

impl<K: IdKind> From<Id<K>> for Uuid {
    fn from(id: Id<K>) -> Uuid {
        id.uuid
    }
}

impl<K: IdKind> Serialize for Id<K> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.uuid.serialize(serializer)
    }
}

impl<'de, K: IdKind> Deserialize<'de> for Id<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Uuid::deserialize(deserializer).map(Self::from_uuid)
    }
}

impl<K: IdKind> utoipa::PartialSchema for Id<K> {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
            .into()
    }
}

impl<K: IdKind> utoipa::ToSchema for Id<K> {}

/// Declares the marker kinds; each is uninhabited, existing only as a type.
pub mod kind {
    use super::IdKind;

    #[derive(Debug)]
    pub enum Party {}
    impl IdKind for Party {
        const NAME: &'static str = "party";
    }

    #[derive(Debug)]
    pub enum Account {}
    impl IdKind for Account {
        const NAME: &'static str = "account";
    }

    #[derive(Debug)]
    pub enum Transfer {}
    impl IdKind for Transfer {
        const NAME: &'static str = "transfer";
    }

    #[derive(Debug)]
    pub enum Hold {}
    impl IdKind for Hold {
        const NAME: &'static str = "hold";
    }

    #[derive(Debug)]
    pub enum Challenge {}
    impl IdKind for Challenge {
        const NAME: &'static str = "challenge";
    }

    #[derive(Debug)]
    pub enum EscrowCase {}
    impl IdKind for EscrowCase {
        const NAME: &'static str = "case";
    }

    #[derive(Debug)]
    pub enum Timer {}
    impl IdKind for Timer {
        const NAME: &'static str = "timer";
    }

    #[derive(Debug)]
    pub enum OutboxMessage {}
    impl IdKind for OutboxMessage {
        const NAME: &'static str = "outbox";
    }

    #[derive(Debug)]
    pub enum PayoutDestination {}
    impl IdKind for PayoutDestination {
        const NAME: &'static str = "payout_destination";
    }

    #[derive(Debug)]
    pub enum Payout {}
    impl IdKind for Payout {
        const NAME: &'static str = "payout";
    }
}

pub type PartyId = Id<kind::Party>;
pub type AccountId = Id<kind::Account>;
pub type TransferId = Id<kind::Transfer>;
pub type HoldId = Id<kind::Hold>;
pub type ChallengeId = Id<kind::Challenge>;
pub type CaseId = Id<kind::EscrowCase>;
pub type TimerId = Id<kind::Timer>;
pub type OutboxMessageId = Id<kind::OutboxMessage>;
pub type PayoutDestinationId = Id<kind::PayoutDestination>;
pub type PayoutId = Id<kind::Payout>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_serialize_as_plain_uuids_and_debug_with_their_kind() {
        let id = PartyId::new();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{}\"", id.uuid()));
        assert!(format!("{id:?}").starts_with("party:"));
        let back: PartyId = serde_json::from_str(&json).unwrap();
        assert_eq!(back, id);
    }

    #[test]
    fn new_ids_are_time_ordered() {
        let first = CaseId::new();
        let second = CaseId::new();
        assert!(first < second);
    }
}
