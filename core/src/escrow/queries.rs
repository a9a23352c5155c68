//! Reading cases for the people who act on them: a state's queue, the disputes, a party's
//! cases.

use super::*;

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

/// Disputed cases of every vertical, the longest waiting first: the operator's mediation queue.
pub async fn disputed_cases(db: &impl ConnectionTrait, limit: u64) -> CoreResult<Vec<EscrowCase>> {
    escrow_cases::Entity::find()
        .filter(escrow_cases::Column::State.eq(CaseState::Disputed))
        .order_by_asc(escrow_cases::Column::UpdatedAt)
        .limit(limit.clamp(1, 100))
        .all(db)
        .await?
        .into_iter()
        .map(EscrowCase::try_from)
        .collect()
}

/// The most recent cases of a party in `vertical`, as payer or payee, newest first.
pub async fn cases_of(
    db: &impl ConnectionTrait,
    party: PartyId,
    vertical: crate::vertical::Vertical,
    limit: u64,
) -> CoreResult<Vec<EscrowCase>> {
    use sea_orm::Condition;
    escrow_cases::Entity::find()
        .filter(
            Condition::any()
                .add(escrow_cases::Column::PayerPartyId.eq(party.uuid()))
                .add(escrow_cases::Column::PayeePartyId.eq(party.uuid())),
        )
        .filter(escrow_cases::Column::Vertical.eq(vertical))
        .order_by_desc(escrow_cases::Column::CreatedAt)
        .limit(limit.clamp(1, 100))
        .all(db)
        .await?
        .into_iter()
        .map(EscrowCase::try_from)
        .collect()
}
