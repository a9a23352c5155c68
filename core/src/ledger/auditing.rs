//! The ledger audit: every balance proved from its postings, folded and unfolded.

use super::*;
use sea_orm::Statement;

/// What the ledger audit found. Every list is empty and every total zero on a healthy ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct LedgerAudit {
    pub transfers: u64,
    pub postings: u64,
    /// Transfers whose postings do not sum to zero.
    pub unbalanced_transfers: Vec<String>,
    /// Postings not yet folded into their append-only account's balance (not a fault: the
    /// fold step's backlog; every check below counts them).
    pub unfolded_postings: u64,
    /// Accounts whose folded balance differs from the sum of their folded postings.
    pub balance_mismatches: Vec<String>,
    /// Accounts updated in place (not append-only) that have unfolded postings, which their
    /// debit checks would not see.
    pub unfolded_on_locked_accounts: Vec<String>,
    /// Accounts below zero available (exact balance) without being allowed to be.
    pub overdrawn_accounts: Vec<String>,
    /// Per currency, the sum of every account's exact balance (zero: money is neither created
    /// nor destroyed, only moved).
    pub net_by_currency: BTreeMap<String, String>,
    /// Accounts whose reservations differ from their pending reserving holds.
    pub reservation_mismatches: Vec<String>,
    /// Freezing accounts whose balance differs from the money of their pending holds.
    pub freezing_mismatches: Vec<String>,
}

impl LedgerAudit {
    pub fn is_clean(&self) -> bool {
        self.unbalanced_transfers.is_empty()
            && self.balance_mismatches.is_empty()
            && self.unfolded_on_locked_accounts.is_empty()
            && self.overdrawn_accounts.is_empty()
            && self.reservation_mismatches.is_empty()
            && self.freezing_mismatches.is_empty()
            && self
                .net_by_currency
                .values()
                .all(|net| Decimal::from_str(net).map(|d| d.is_zero()).unwrap_or(false))
    }
}

#[derive(Debug, FromQueryResult)]
struct IdRow {
    id: Uuid,
}

#[derive(Debug, FromQueryResult)]
struct NetRow {
    currency: String,
    net: Option<MinorUnits>,
}

#[derive(Debug, FromQueryResult)]
struct CountRow {
    n: i64,
}

/// Proves the ledger's invariants from the rows themselves. Each check is one statement, so it
/// sees one snapshot even while folds commit: a fold moves postings from unfolded to folded
/// and their sum into the balance at once.
pub async fn audit(db: &impl ConnectionTrait) -> CoreResult<LedgerAudit> {
    let backend = db.get_database_backend();
    let ids = |sql: &str| Statement::from_string(backend, sql.to_owned());
    let list = |rows: Vec<IdRow>| rows.into_iter().map(|r| r.id.to_string()).collect();

    let unbalanced = IdRow::find_by_statement(ids(
        "SELECT transfer_id AS id FROM postings GROUP BY transfer_id HAVING SUM(amount) <> 0",
    ))
    .all(db)
    .await?;
    let mismatched = IdRow::find_by_statement(ids(
        "SELECT a.id AS id FROM accounts a LEFT JOIN postings p ON p.account_id = a.id \
         AND p.folded = true \
         GROUP BY a.id, a.balance HAVING a.balance <> COALESCE(SUM(p.amount), 0)",
    ))
    .all(db)
    .await?;
    let unfolded_on_locked = IdRow::find_by_statement(ids(
        "SELECT DISTINCT a.id AS id FROM accounts a JOIN postings p ON p.account_id = a.id \
         WHERE p.folded = false AND a.append_only = false",
    ))
    .all(db)
    .await?;
    let overdrawn = IdRow::find_by_statement(ids(&format!(
        "SELECT id FROM accounts WHERE unbounded = false \
         AND (balance + COALESCE({UNFOLDED_OF_ROW}, 0) - reserved + credit_limit < 0 \
              OR reserved < 0)"
    )))
    .all(db)
    .await?;
    let reservations =
        IdRow::find_by_statement(ids("SELECT a.id AS id FROM accounts a LEFT JOIN holds h \
         ON h.funding_account_id = a.id AND h.status = 'pending' AND h.mode = 'reserve' \
         GROUP BY a.id, a.reserved HAVING a.reserved <> COALESCE(SUM(h.amount), 0)"))
        .all(db)
        .await?;
    let freezing =
        IdRow::find_by_statement(ids("SELECT a.id AS id FROM accounts a LEFT JOIN holds h \
         ON h.freezing_account_id = a.id AND h.status = 'pending' AND h.mode = 'move' \
         WHERE a.kind = 'freezing' \
         GROUP BY a.id, a.balance HAVING a.balance + COALESCE((SELECT SUM(p.amount) \
           FROM postings p WHERE p.account_id = a.id AND p.folded = false), 0) \
           <> COALESCE(SUM(h.amount), 0)"))
        .all(db)
        .await?;
    let nets = NetRow::find_by_statement(ids(&format!(
        "SELECT currency, SUM(balance + COALESCE({UNFOLDED_OF_ROW}, 0)) AS net \
         FROM accounts GROUP BY currency"
    )))
    .all(db)
    .await?;
    let unfolded = CountRow::find_by_statement(ids(
        "SELECT COUNT(*) AS n FROM postings WHERE folded = false",
    ))
    .one(db)
    .await?
    .map_or(0, |r| r.n);
    let transfers = CountRow::find_by_statement(ids("SELECT COUNT(*) AS n FROM transfers"))
        .one(db)
        .await?
        .map_or(0, |r| r.n);
    let postings = CountRow::find_by_statement(ids("SELECT COUNT(*) AS n FROM postings"))
        .one(db)
        .await?
        .map_or(0, |r| r.n);

    let mut net_by_currency = BTreeMap::new();
    for row in nets {
        let currency = Currency::from_str(&row.currency)?;
        net_by_currency.insert(
            row.currency,
            signed_decimal(row.net.map_or(0, |n| n.0), currency),
        );
    }
    Ok(LedgerAudit {
        transfers: u64::try_from(transfers).unwrap_or(0),
        postings: u64::try_from(postings).unwrap_or(0),
        unfolded_postings: u64::try_from(unfolded).unwrap_or(0),
        unbalanced_transfers: list(unbalanced),
        balance_mismatches: list(mismatched),
        unfolded_on_locked_accounts: list(unfolded_on_locked),
        overdrawn_accounts: list(overdrawn),
        net_by_currency,
        reservation_mismatches: list(reservations),
        freezing_mismatches: list(freezing),
    })
}
