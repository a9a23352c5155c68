//! The use cases above, each in a write transaction of its own.

use super::*;

/// [`register_terminal_in_txn`] in a transaction of its own (the password is hashed before).
pub async fn register_terminal(
    db: &DatabaseConnection,
    core: &Core,
    merchant: PartyId,
    label: &str,
    username: &str,
    password: &str,
) -> CoreResult<Terminal> {
    let credentials = StaffCredentials::hash(&core.passwords, username, password, None).await?;
    let txn = holdfast_core::db::begin_write(db).await?;
    let result = register_terminal_in_txn(&txn, core, merchant, label, credentials).await?;
    txn.commit().await?;
    core.wake_outbox();
    Ok(result)
}

/// [`authorise_in_txn`] in a transaction of its own.
pub async fn authorise(
    db: &DatabaseConnection,
    core: &Core,
    terminal: PartyId,
    request: AuthoriseRequest,
) -> CoreResult<Authorisation> {
    let txn = holdfast_core::db::begin_write(db).await?;
    let result = authorise_in_txn(&txn, core, terminal, request).await?;
    txn.commit().await?;
    core.wake_outbox();
    Ok(result)
}

/// [`capture_in_txn`] in a transaction of its own.
pub async fn capture(
    db: &DatabaseConnection,
    core: &Core,
    terminal: PartyId,
    reference: &str,
    amount: Option<Money>,
) -> CoreResult<Authorisation> {
    let txn = holdfast_core::db::begin_write(db).await?;
    let result = capture_in_txn(&txn, core, terminal, reference, amount).await?;
    txn.commit().await?;
    core.wake_outbox();
    Ok(result)
}

/// [`void_in_txn`] in a transaction of its own.
pub async fn void(
    db: &DatabaseConnection,
    core: &Core,
    terminal: PartyId,
    reference: &str,
) -> CoreResult<Authorisation> {
    let txn = holdfast_core::db::begin_write(db).await?;
    let result = void_in_txn(&txn, core, terminal, reference).await?;
    txn.commit().await?;
    core.wake_outbox();
    Ok(result)
}

/// [`arm_in_txn`] in a transaction of its own.
pub async fn arm(
    db: &DatabaseConnection,
    core: &Core,
    holder: PartyId,
    card: CardId,
    request: ArmRequest,
) -> CoreResult<ArmedApproval> {
    let txn = holdfast_core::db::begin_write(db).await?;
    let result = arm_in_txn(&txn, core, holder, card, request).await?;
    txn.commit().await?;
    core.wake_outbox();
    Ok(result)
}

/// [`cancel_armed_in_txn`] in a transaction of its own.
pub async fn cancel_armed(
    db: &DatabaseConnection,
    core: &Core,
    holder: PartyId,
    id: ArmedApprovalId,
) -> CoreResult<ArmedApproval> {
    let txn = holdfast_core::db::begin_write(db).await?;
    let result = cancel_armed_in_txn(&txn, core, holder, id).await?;
    txn.commit().await?;
    core.wake_outbox();
    Ok(result)
}
