//! Append-only (hot) accounts. Accounts that many transactions credit at once — freezing
//! shards, the platform's commission, each seller's withdrawal account, institution fees,
//! penalties and the institutions' external accounts — no longer have their cached balance
//! updated by each transfer: their postings are written unfolded, and a background step folds
//! them into the balance in order. An account's exact balance is its folded `balance` plus its
//! unfolded postings; the ledger audit proves `balance` equals its folded postings.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("accounts")
                .add_column(
                    ColumnDef::new("append_only")
                        .boolean()
                        .not_null()
                        .default(false)
                        .to_owned(),
                )
                .to_owned(),
        )
        .await?;
        // Existing postings are already in their account's balance.
        m.alter_table(
            Table::alter()
                .table("postings")
                .add_column(
                    ColumnDef::new("folded")
                        .boolean()
                        .not_null()
                        .default(true)
                        .to_owned(),
                )
                .to_owned(),
        )
        .await?;
        let db = m.get_connection();
        db.execute_unprepared(
            "UPDATE accounts SET append_only = true WHERE kind IN \
             ('freezing', 'withdrawal', 'commission', 'institution_fee', 'penalty', 'external')",
        )
        .await?;
        // Readers add an account's unfolded postings to its balance, and the fold step walks
        // them in id order: both through this small index, which holds only the backlog.
        db.execute_unprepared(
            "CREATE INDEX postings_unfolded ON postings (account_id, id) WHERE folded = false",
        )
        .await?;
        Ok(())
    }
}
