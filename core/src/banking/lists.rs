//! What the bank side shows: an institution's imported statements and reconciliations, and the
//! bank entries waiting for an operator.

use crate::banking::statements::EntryStatus;
use crate::entities::{bank_entries, bank_statements, reconciliations};
use crate::error::CoreResult;
use crate::ids::PartyId;
use crate::paging::{Page, Paged};
use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::{ConnectionTrait, QueryFilter, QueryOrder, QuerySelect};

/// An imported camt.053 or camt.054.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatementRecord {
    pub id: Uuid,
    pub message_id: String,
    /// `end_of_day` (camt.053) or `notification` (camt.054).
    pub kind: String,
    pub entries: i32,
    pub imported_at: DateTime<Utc>,
}

/// `institution`'s imported statements, newest first.
pub async fn statements_of(
    db: &impl ConnectionTrait,
    institution: PartyId,
    page: &Page,
) -> CoreResult<Paged<StatementRecord>> {
    let select = bank_statements::Entity::find()
        .filter(bank_statements::Column::InstitutionPartyId.eq(institution.uuid()));
    let rows = page
        .apply(
            select,
            bank_statements::Column::ImportedAt,
            bank_statements::Column::Id,
        )
        .all(db)
        .await?;
    Ok(page
        .finish(rows, |row| (row.imported_at, row.id))
        .map(|row| StatementRecord {
            id: row.id,
            message_id: row.message_id,
            kind: row.kind,
            entries: row.entries,
            imported_at: row.imported_at,
        }))
}

/// A booked bank entry as an operator sees it.
#[derive(Clone, PartialEq, Eq)]
pub struct EntryRecord {
    pub id: Uuid,
    pub institution: PartyId,
    pub currency: String,
    /// Signed minor units as it moved the bank account: positive money in.
    pub amount: i64,
    pub booking_date: Option<NaiveDate>,
    pub end_to_end_id: Option<String>,
    pub remittance: Option<String>,
    pub return_reason: Option<String>,
    pub status: EntryStatus,
    pub note: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for EntryRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntryRecord")
            .field("id", &self.id)
            .field("status", &self.status)
            .field("amount", &self.amount)
            .finish_non_exhaustive()
    }
}

impl From<bank_entries::Model> for EntryRecord {
    fn from(row: bank_entries::Model) -> Self {
        EntryRecord {
            id: row.id,
            institution: PartyId::from_uuid(row.institution_party_id),
            currency: row.currency,
            amount: row.amount.0,
            booking_date: row.booking_date,
            end_to_end_id: row.end_to_end_id,
            remittance: row.remittance,
            return_reason: row.return_reason,
            status: row.status,
            note: row.note,
            created_at: row.created_at,
        }
    }
}

/// Bank entries of every institution waiting for an operator, newest first.
pub async fn open_entries(
    db: &impl ConnectionTrait,
    page: &Page,
) -> CoreResult<Paged<EntryRecord>> {
    let select =
        bank_entries::Entity::find().filter(bank_entries::Column::Status.is_in(EntryStatus::OPEN));
    let rows = page
        .apply(
            select,
            bank_entries::Column::CreatedAt,
            bank_entries::Column::Id,
        )
        .all(db)
        .await?;
    Ok(page
        .finish(rows, |row| (row.created_at, row.id))
        .map(EntryRecord::from))
}

/// The entry `id`, of any institution (an operator acts on it for its institution).
pub async fn entry(db: &impl ConnectionTrait, id: Uuid) -> CoreResult<EntryRecord> {
    bank_entries::Entity::find_by_id(id)
        .one(db)
        .await?
        .map(EntryRecord::from)
        .ok_or(crate::error::CoreError::NotFound("bank entry"))
}

/// A stored reconciliation run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReconciliationRecord {
    pub currency: String,
    pub day: NaiveDate,
    pub bank_closing: Option<i64>,
    pub ledger_balance: i64,
    pub open_items: i32,
    pub clean: bool,
    pub reconciled_at: DateTime<Utc>,
}

/// `institution`'s latest `limit` reconciliation runs (one per currency and day), newest day
/// first.
pub async fn reconciliations_of(
    db: &impl ConnectionTrait,
    institution: PartyId,
    limit: u64,
) -> CoreResult<Vec<ReconciliationRecord>> {
    Ok(reconciliations::Entity::find()
        .filter(reconciliations::Column::InstitutionPartyId.eq(institution.uuid()))
        .order_by_desc(reconciliations::Column::Day)
        .order_by_asc(reconciliations::Column::Currency)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(|row| ReconciliationRecord {
            currency: row.currency,
            day: row.day,
            bank_closing: row.bank_closing.map(|m| m.0),
            ledger_balance: row.ledger_balance.0,
            open_items: row.open_items,
            clean: row.clean,
            reconciled_at: row.reconciled_at,
        })
        .collect())
}
