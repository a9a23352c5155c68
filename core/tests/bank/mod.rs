//! The world the bank-side tests share: a bank, a seller whose withdrawal account holds
//! 100.00, and helpers to pay out, report the bank's outcomes and write statements. Each test
//! has a database of its own: an in-memory SQLite one, or — when `TEST_DATABASE_URL` names a
//! PostgreSQL server — a fresh PostgreSQL database created for the test and dropped after it.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use chrono::{TimeZone, Utc};
use holdfast_core::banking::destinations::{self, BankAccount};
use holdfast_core::banking::payouts::{self, BankOutcome, PayoutAmount, PayoutRequest};
use holdfast_core::banking::runs::{self, InstitutionBankAccount};
use holdfast_core::banking::statements;
use holdfast_core::clock::Clock;
use holdfast_core::db::{self, PoolSize};
use holdfast_core::ids::{AccountId, PartyId};
use holdfast_core::ledger::{
    self, AccountKind, Applied, Leg, NewAccount, NewTransfer, TransferKind,
};
use holdfast_core::parties::{self, NewParty, Role};
use holdfast_core::{CoreError, Currency, Money};
use holdfast_migrations::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction};

pub const USD: Currency = Currency::USD;
pub const IBAN: &str = "DE44 5001 0517 5407 3249 31";

pub fn usd(minor: i64) -> Money {
    Money::from_minor(minor, USD).unwrap()
}

/// The PostgreSQL server the tests run on, when `TEST_DATABASE_URL` names one.
pub fn postgres_url() -> Option<String> {
    std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|url| url.starts_with("postgres"))
}

/// A PostgreSQL database made for one test, dropped (whoever is still connected) with it.
pub struct PostgresDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl PostgresDatabase {
    pub async fn create(admin_url: &str) -> PostgresDatabase {
        let name = format!("holdfast_core_test_{}", uuid::Uuid::new_v4().simple());
        let admin = Database::connect(admin_url)
            .await
            .expect("TEST_DATABASE_URL");
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap();
        admin.close().await.unwrap();
        let mut url = url::Url::parse(admin_url).expect("TEST_DATABASE_URL is a URL");
        url.set_path(&format!("/{name}"));
        PostgresDatabase {
            admin_url: admin_url.to_owned(),
            name,
            url: url.to_string(),
        }
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop cannot await; a short-lived runtime on its own thread can.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                if let Ok(admin) = Database::connect(&admin_url).await {
                    let _ = admin
                        .execute_unprepared(&format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        ))
                        .await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}

pub struct World {
    pub db: DatabaseConnection,
    pub clock: Clock,
    pub bank: PartyId,
    pub seller: PartyId,
    pub withdrawal: AccountId,
    /// Declared last, so the pool closes before the database is dropped.
    _postgres: Option<PostgresDatabase>,
}

/// A bank, and a seller whose withdrawal account holds 100.00 (credited from the bank's
/// external account, as a settlement would from a freezing account).
pub async fn world() -> World {
    let postgres = match postgres_url() {
        Some(admin_url) => Some(PostgresDatabase::create(&admin_url).await),
        None => None,
    };
    let url = postgres
        .as_ref()
        .map_or("sqlite::memory:", |pg| pg.url.as_str());
    // Several PostgreSQL connections, so the race tests' transactions really overlap.
    let db = db::connect(
        url,
        PoolSize {
            sqlite: 1,
            postgres: 10,
        },
    )
    .await
    .unwrap();
    Migrator::up(&db, None).await.unwrap();
    let clock = Clock::manual(Utc.with_ymd_and_hms(2026, 3, 10, 9, 0, 0).unwrap());
    let txn = db::begin_write(&db).await.unwrap();
    parties::ensure_platform_in_txn(&txn, &clock).await.unwrap();
    let party = async |role| {
        parties::create_party_in_txn(
            &txn,
            &clock,
            NewParty {
                role,
                display_name: "someone".into(),
            },
        )
        .await
        .unwrap()
        .id
    };
    let bank = party(Role::Institution).await;
    let seller = party(Role::Supplier).await;
    let open = async |key: String, kind, owner| {
        ledger::get_or_open_keyed_account_in_txn(
            &txn,
            &clock,
            NewAccount {
                key: Some(key),
                kind,
                owner,
                institution: Some(bank),
                currency: USD,
                credit_limit: usd(0),
                credit_class: None,
            },
        )
        .await
        .unwrap()
        .id
    };
    let external = open(
        ledger::keys::external(bank, USD),
        AccountKind::External,
        bank,
    )
    .await;
    let withdrawal = open(
        ledger::keys::withdrawal(seller, USD),
        AccountKind::Withdrawal,
        seller,
    )
    .await;
    ledger::post_transfer_in_txn(
        &txn,
        &clock,
        NewTransfer {
            key: "earned".into(),
            kind: TransferKind::Deposit,
            currency: USD,
            legs: vec![
                Leg::debit(external, usd(10_000)),
                Leg::credit(withdrawal, usd(10_000)),
            ],
            hold: None,
            case: None,
        },
    )
    .await
    .unwrap();
    txn.commit().await.unwrap();
    World {
        db,
        clock,
        bank,
        seller,
        withdrawal,
        _postgres: postgres,
    }
}

impl World {
    /// Runs `step` in a transaction of its own, committed only when it succeeds.
    pub async fn write<T>(
        &self,
        step: impl AsyncFnOnce(&DatabaseTransaction) -> Result<T, CoreError>,
    ) -> Result<T, CoreError> {
        let txn = db::begin_write(&self.db).await.unwrap();
        let result = step(&txn).await;
        if result.is_ok() {
            txn.commit().await.unwrap();
        }
        result
    }

    pub async fn balance(&self, account: AccountId) -> i64 {
        ledger::get_account(&self.db, account)
            .await
            .unwrap()
            .balance
    }

    pub async fn in_transit(&self) -> i64 {
        let key = ledger::keys::payouts_in_transit(self.bank, USD);
        match ledger::find_keyed_account(&self.db, &key).await.unwrap() {
            Some(account) => account.balance,
            None => 0,
        }
    }

    pub fn request(&self, key: &str, amount: PayoutAmount) -> PayoutRequest {
        PayoutRequest {
            party: self.seller,
            amount,
            key: key.into(),
            institution: self.bank,
        }
    }

    pub async fn pay_out(
        &self,
        key: &str,
        amount: PayoutAmount,
    ) -> Result<Applied<payouts::Payout>, CoreError> {
        let request = self.request(key, amount);
        self.write(async |txn| payouts::request_in_txn(txn, &self.clock, request).await)
            .await
    }

    pub async fn report(
        &self,
        e2e: &str,
        outcome: BankOutcome,
    ) -> Result<Applied<payouts::Payout>, CoreError> {
        self.write(async |txn| payouts::record_outcome_in_txn(txn, &self.clock, e2e, outcome).await)
            .await
    }

    pub async fn confirmed_destination(&self) {
        let pending = self
            .write(async |txn| {
                destinations::register_in_txn(
                    txn,
                    &self.clock,
                    self.seller,
                    BankAccount::iban(IBAN)?,
                    "Seller Ltd",
                )
                .await
            })
            .await
            .unwrap();
        self.write(async |txn| {
            destinations::confirm_in_txn(txn, &self.clock, self.seller, pending.id).await
        })
        .await
        .unwrap();
    }

    pub async fn assert_audit_clean(&self) {
        let audit = ledger::audit(&self.db).await.unwrap();
        assert!(audit.is_clean(), "{audit:?}");
    }
}

/// A camt.054 of the bank's own account with `entries` (already `<Ntry>` elements).
pub fn notification(message_id: &str, entries: &str) -> String {
    format!(
        r#"<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.08">
  <BkToCstmrDbtCdtNtfctn>
    <GrpHdr><MsgId>{message_id}</MsgId></GrpHdr>
    <Ntfctn><Id>{message_id}-1</Id>
      <Acct><Id><IBAN>DE89370400440532013000</IBAN></Id><Ccy>USD</Ccy></Acct>
      {entries}
    </Ntfctn>
  </BkToCstmrDbtCdtNtfctn>
</Document>"#
    )
}

pub fn entry(reference: &str, amount: &str, direction: &str, details: &str) -> String {
    format!(
        r#"<Ntry><Amt Ccy="USD">{amount}</Amt><CdtDbtInd>{direction}</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>
        <BookgDt><Dt>2026-03-10</Dt></BookgDt><AcctSvcrRef>{reference}</AcctSvcrRef>
        <NtryDtls><TxDtls>{details}</TxDtls></NtryDtls></Ntry>"#
    )
}

/// The bank's own account in the statements below.
pub const OWN_IBAN: &str = "DE89 3704 0044 0532 0130 00";

impl World {
    /// Gives the bank its own account (where payouts leave from and deposits arrive).
    pub async fn own_account(&self) {
        let own = InstitutionBankAccount {
            institution: self.bank,
            currency: USD,
            account: BankAccount::iban(OWN_IBAN).unwrap(),
            bic: None,
            holder_name: "Bank".into(),
        };
        self.write(async |txn| runs::set_institution_account_in_txn(txn, &self.clock, &own).await)
            .await
            .unwrap();
    }

    /// A shopper's prepaid account at the bank, and the deposit reference it was told to use.
    pub async fn prepaid_with_reference(&self) -> (ledger::Account, String) {
        let prepaid = self
            .write(async |txn| {
                ledger::open_account_in_txn(
                    txn,
                    &self.clock,
                    NewAccount {
                        key: None,
                        kind: AccountKind::Prepaid,
                        owner: self.seller,
                        institution: Some(self.bank),
                        currency: USD,
                        credit_limit: usd(0),
                        credit_class: None,
                    },
                )
                .await
            })
            .await
            .unwrap();
        let reference = self
            .write(async |txn| {
                statements::deposit_reference_in_txn(txn, &self.clock, prepaid.id).await
            })
            .await
            .unwrap();
        (prepaid, reference)
    }
}
