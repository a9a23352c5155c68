//! The reliability suites' audit: proves from the rows themselves, after any amount of random
//! load, crashes and replays, that no money was created, lost or moved twice.

use anyhow::Context;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use serde_json::Value;

use crate::driver::Api;

/// Everything wrong that the audit found; empty when the books are right.
#[derive(Debug, Default)]
pub struct Findings {
    pub problems: Vec<String>,
    pub transfers: u64,
    pub holds: u64,
    pub cases: u64,
}

impl Findings {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

async fn ids(db: &DatabaseConnection, sql: &str) -> anyhow::Result<Vec<String>> {
    let rows = db
        .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .with_context(|| format!("audit query failed: {sql}"))?;
    rows.iter()
        .map(|row| {
            row.try_get_by_index::<uuid::Uuid>(0)
                .map(|id| id.to_string())
                .or_else(|_| row.try_get_by_index::<String>(0))
                .context("audit row")
        })
        .collect()
}

async fn count(db: &DatabaseConnection, sql: &str) -> anyhow::Result<u64> {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?
        .context("no count")?;
    Ok(u64::try_from(row.try_get_by_index::<i64>(0)?).unwrap_or(0))
}

/// The checks, each a query that lists what breaks it.
const CHECKS: &[(&str, &str)] = &[
    (
        // A hold resolves once: pending holds have moved nothing back or out; a posted one has
        // exactly one settlement (none for reserved credit posted at zero); a voided or
        // expired one returned its moved money exactly once.
        "hold resolved other than exactly once",
        "SELECT h.id FROM holds h LEFT JOIN transfers t ON t.hold_id = h.id AND t.kind IN ('settle', 'unfreeze') \
         GROUP BY h.id, h.status, h.mode, h.posted_amount \
         HAVING (h.status = 'pending' AND COUNT(t.id) <> 0) \
             OR (h.status = 'posted' AND h.mode = 'move' AND COUNT(t.id) <> 1) \
             OR (h.status = 'posted' AND h.mode = 'reserve' AND COUNT(t.id) <> CASE WHEN h.posted_amount > 0 THEN 1 ELSE 0 END) \
             OR (h.status IN ('voided', 'expired') AND h.mode = 'move' AND COUNT(t.id) <> 1) \
             OR (h.status IN ('voided', 'expired') AND h.mode = 'reserve' AND COUNT(t.id) <> 0)",
    ),
    (
        // What a posted hold released went to the payee, the commission and the card fee —
        // all of it, and nothing else.
        "payout + commission + fee differs from the amount released",
        "SELECT h.id FROM holds h \
         LEFT JOIN transfers t ON t.hold_id = h.id AND t.kind = 'settle' \
         LEFT JOIN postings p ON p.transfer_id = t.id \
         LEFT JOIN accounts a ON a.id = p.account_id AND a.kind IN ('withdrawal', 'commission', 'institution_fee') \
         WHERE h.status = 'posted' \
         GROUP BY h.id, h.posted_amount \
         HAVING COALESCE(SUM(CASE WHEN a.id IS NULL THEN 0 ELSE p.amount END), 0) <> h.posted_amount",
    ),
    (
        // An escrow case and its hold agree: settled ⇒ posted; ended without payment ⇒ the
        // money went back; still open ⇒ the money is still held.
        "escrow case and hold disagree",
        "SELECT c.id FROM escrow_cases c JOIN holds h ON h.id = c.hold_id \
         WHERE (c.state = 'settled' AND h.status <> 'posted') \
            OR (c.state IN ('denied', 'expired', 'cancelled', 'refused') AND h.status NOT IN ('voided', 'expired')) \
            OR (c.state IN ('awaiting_order_confirmation', 'frozen', 'in_delivery', 'delivered', \
                            'settlement_requested', 'disputed') AND h.status <> 'pending')",
    ),
    (
        // A settled case released exactly what was asked (all of it unless a part was) — or,
        // after a dispute, what the operator's mediation decided.
        "settled case released another amount",
        "SELECT c.id FROM escrow_cases c JOIN holds h ON h.id = c.hold_id \
         WHERE c.state = 'settled' AND h.posted_amount <> COALESCE(c.settlement_amount, c.amount) \
           AND NOT EXISTS (SELECT 1 FROM case_events e WHERE e.case_id = c.id AND e.kind = 'mediated')",
    ),
    (
        // Auto-settlement and order expiry fire once per case, whichever process runs them.
        "a case timer fired twice",
        "SELECT case_id FROM case_events WHERE kind IN ('auto_settled', 'order_expired') \
         GROUP BY case_id, kind HAVING COUNT(*) > 1",
    ),
    (
        // Postings to append-only accounts skip the account's row, so their currency is checked
        // in code only: prove it from the rows.
        "posting in another currency than its account",
        "SELECT p.id FROM postings p JOIN accounts a ON a.id = p.account_id \
         WHERE p.currency <> a.currency",
    ),
    (
        "a case left twice by its final transition",
        "SELECT case_id FROM case_events WHERE to_state IN ('settled', 'denied', 'expired', 'cancelled', 'refused') \
         GROUP BY case_id HAVING COUNT(*) > 1",
    ),
];

/// Runs every check against the database at `url`, and the server's own ledger audit.
pub async fn audit(url: &str, api: &Api, operator: &str) -> anyhow::Result<Findings> {
    let db = Database::connect(url).await?;
    let mut findings = Findings::default();
    for (what, sql) in CHECKS {
        for id in ids(&db, sql).await? {
            findings.problems.push(format!("{what}: {id}"));
        }
    }
    findings.transfers = count(&db, "SELECT COUNT(*) FROM transfers").await?;
    findings.holds = count(&db, "SELECT COUNT(*) FROM holds").await?;
    findings.cases = count(&db, "SELECT COUNT(*) FROM escrow_cases").await?;
    db.close().await?;

    // Σ debits = Σ credits per transfer, every folded balance = its folded postings (and only
    // append-only accounts have unfolded ones), no account's exact balance (folded + unfolded)
    // below what it may owe, freezing accounts = their pending holds, reservations = theirs.
    let ledger = api
        .get("/v1/operator/ledger/audit", Some(operator))
        .await?
        .ok()?;
    for list in [
        "unbalanced_transfers",
        "balance_mismatches",
        "unfolded_on_locked_accounts",
        "overdrawn_accounts",
        "freezing_mismatches",
        "reservation_mismatches",
    ] {
        for id in ledger[list].as_array().into_iter().flatten() {
            findings.problems.push(format!("{list}: {id}"));
        }
    }
    if let Some(nets) = ledger["net_by_currency"].as_object() {
        for (currency, net) in nets {
            let zero = net
                .as_str()
                .is_some_and(|n| n.trim_start_matches(['0', '.']).is_empty());
            if !zero {
                findings
                    .problems
                    .push(format!("money created or lost: {currency} nets to {net}"));
            }
        }
    }
    if ledger.get("transfers").and_then(Value::as_u64).is_none() {
        findings
            .problems
            .push(format!("unexpected audit answer: {ledger}"));
    }
    Ok(findings)
}
