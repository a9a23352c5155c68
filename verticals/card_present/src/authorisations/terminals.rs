//! Shop terminals and the merchants they take payments for.

use super::*;

/// Registers a terminal for `merchant` (a supplier): a party of role `terminal` that logs in
/// with its own username and password, as a merchant device.
#[tracing::instrument(name = "card_present.register_terminal", skip_all)]
pub async fn register_terminal_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    merchant: PartyId,
    label: &str,
    credentials: StaffCredentials,
) -> CoreResult<Terminal> {
    let label = label.trim();
    if label.is_empty() || label.chars().count() > MAX_LABEL_CHARS {
        return Err(CoreError::invalid(format!(
            "a terminal label has 1 to {MAX_LABEL_CHARS} characters"
        )));
    }
    let owner = parties::get_party(txn, merchant)
        .await
        .map_err(|_| CoreError::NotFound("merchant"))?;
    if owner.role != Role::Supplier {
        return Err(CoreError::invalid(
            "terminals belong to merchants (suppliers)",
        ));
    }
    let (party, username) = onboarding::create_staff_in_txn(
        txn,
        core,
        Role::Terminal,
        &format!("{} terminal {label}", owner.display_name),
        credentials,
    )
    .await?;
    terminal_rows::Entity::insert(terminal_rows::ActiveModel {
        party_id: Set(party.id.uuid()),
        merchant_party_id: Set(merchant.uuid()),
        label: Set(label.to_owned()),
        created_at: Set(core.clock.now()),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(Terminal {
        terminal_id: party.id,
        merchant_id: merchant,
        merchant_name: owner.display_name,
        label: label.to_owned(),
        username,
    })
}

pub(super) async fn terminal_row(
    db: &impl ConnectionTrait,
    terminal: PartyId,
) -> CoreResult<terminal_rows::Model> {
    terminal_rows::Entity::find_by_id(terminal.uuid())
        .one(db)
        .await?
        .ok_or(CoreError::NotFound("terminal"))
}

pub(super) async fn merchant_name(db: &impl ConnectionTrait, merchant: Uuid) -> CoreResult<String> {
    Ok(parties::get_party(db, PartyId::from_uuid(merchant))
        .await?
        .display_name)
}

/// Merchants with at least one terminal, by name (for a holder arming an approval).
pub async fn merchants(db: &impl ConnectionTrait, limit: u64) -> CoreResult<Vec<Merchant>> {
    let rows = terminal_rows::Entity::find()
        .order_by_asc(terminal_rows::Column::MerchantPartyId)
        .limit(1_000)
        .all(db)
        .await?;
    let mut ids: Vec<Uuid> = rows.into_iter().map(|r| r.merchant_party_id).collect();
    ids.dedup();
    let mut list = Vec::with_capacity(ids.len());
    for id in ids {
        list.push(Merchant {
            merchant_id: PartyId::from_uuid(id),
            name: merchant_name(db, id).await?,
        });
    }
    list.sort_by(|a, b| a.name.cmp(&b.name));
    list.truncate(usize::try_from(limit.clamp(1, MAX_PAGE)).unwrap_or(100));
    Ok(list)
}

// ---------------------------------------------------------------------------------------
// Authorisations
// ---------------------------------------------------------------------------------------
