//! Reading cases for the people who act on them: a state's queue, the disputes, a party's
//! cases.

use super::*;
use crate::paging::{CreatedRange, ListFilter, Page, Paged};
use sea_orm::Select;

/// The oldest cases of `vertical` in `state` (an operator's queue).
pub async fn cases_in_state(
    db: &impl ConnectionTrait,
    vertical: crate::vertical::Vertical,
    state: CaseState,
    limit: u64,
) -> CoreResult<Vec<EscrowCase>> {
    escrow_cases::Entity::find()
        .filter(escrow_cases::Column::Vertical.eq(vertical))
        .filter(escrow_cases::Column::State.eq(state))
        .order_by_asc(escrow_cases::Column::UpdatedAt)
        .limit(limit.clamp(1, 100))
        .all(db)
        .await?
        .into_iter()
        .map(EscrowCase::try_from)
        .collect()
}

/// Disputed cases of every vertical, newest first, created in `created`: the operator's
/// mediation queue, paged (the oldest waiting are on the last page).
pub async fn disputed_cases(
    db: &impl ConnectionTrait,
    created: &CreatedRange,
    page: &Page,
) -> CoreResult<Paged<EscrowCase>> {
    let select = escrow_cases::Entity::find()
        .filter(escrow_cases::Column::State.eq(CaseState::Disputed))
        .filter(created.condition(escrow_cases::Column::CreatedAt));
    page_of_cases(db, select, page).await
}

/// A party's cases in `vertical`, as payer or payee, newest first, in the filter's state and
/// created in its date range.
pub async fn cases_of(
    db: &impl ConnectionTrait,
    party: PartyId,
    vertical: crate::vertical::Vertical,
    filter: &ListFilter<CaseState>,
    page: &Page,
) -> CoreResult<Paged<EscrowCase>> {
    use sea_orm::Condition;
    let mut select = escrow_cases::Entity::find()
        .filter(
            Condition::any()
                .add(escrow_cases::Column::PayerPartyId.eq(party.uuid()))
                .add(escrow_cases::Column::PayeePartyId.eq(party.uuid())),
        )
        .filter(escrow_cases::Column::Vertical.eq(vertical))
        .filter(filter.created.condition(escrow_cases::Column::CreatedAt));
    if let Some(state) = filter.state {
        select = select.filter(escrow_cases::Column::State.eq(state));
    }
    page_of_cases(db, select, page).await
}

async fn page_of_cases(
    db: &impl ConnectionTrait,
    select: Select<escrow_cases::Entity>,
    page: &Page,
) -> CoreResult<Paged<EscrowCase>> {
    let rows = page
        .apply(
            select,
            escrow_cases::Column::CreatedAt,
            escrow_cases::Column::Id,
        )
        .all(db)
        .await?;
    page.finish(rows, |row| (row.created_at, row.id))
        .try_map(EscrowCase::try_from)
}
