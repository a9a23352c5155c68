//! The simulated bank stands for a separate system. It keeps its books in its own tables
//! (`simulated_bank_*`), each change in a transaction of its own, so it survives a crash of the
//! server like a bank would: a pain.001 it took is booked once (its message id is the key of
//! what it took), whatever the retries. It pays each credit transfer at once (a debit on the
//! institution's account), returns one when told to (with an ISO reason code), receives
//! incoming credits (a shopper's deposit), and writes what it booked as camt.054 notifications
//! and, when its day is closed, a camt.053 end-of-day statement with opening and closing
//! balances. Its statements reach Holdfast as a bank's would: imported like an uploaded file
//! ([`super::deliver_statements`]).

use chrono::NaiveDate;
use holdfast_core::banking::destinations::BankAccount;
use holdfast_core::banking::runs::{self, BankFile, BankGateway, BankGatewayError};
use holdfast_core::clock::Clock;
use holdfast_core::ids::PartyId;
use holdfast_core::{CoreError, CoreResult, Currency, Money};
use sea_orm::entity::prelude::*;
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseConnection, DatabaseTransaction, QueryFilter,
    QueryOrder, QuerySelect,
};
use std::fmt::Write as _;
use std::str::FromStr;

/// The simulated bank's tables: its own, never joined with Holdfast's.
mod tables {
    pub mod messages {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "simulated_bank_messages")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub message_id: String,
            pub institution_party_id: Uuid,
            pub transfers: i32,
            pub received_at: DateTimeUtc,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod entries {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "simulated_bank_entries")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: Uuid,
            pub institution_party_id: Uuid,
            pub account: String,
            pub currency: String,
            pub reference: String,
            pub amount: i64,
            pub booking_date: Date,
            pub end_to_end_id: Option<String>,
            pub remittance: Option<String>,
            pub return_reason: Option<String>,
            pub created_at: DateTimeUtc,
        }

        /// Accounts and remittance texts stay out of debug output.
        impl std::fmt::Debug for Model {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct("SimulatedEntry")
                    .field("id", &self.id)
                    .field("reference", &self.reference)
                    .field("amount", &self.amount)
                    .finish_non_exhaustive()
            }
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod statements {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "simulated_bank_statements")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub message_id: String,
            pub institution_party_id: Uuid,
            pub kind: String,
            pub xml: String,
            pub created_at: DateTimeUtc,
            pub delivered_at: Option<DateTimeUtc>,
        }

        impl std::fmt::Debug for Model {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct("SimulatedStatement")
                    .field("message_id", &self.message_id)
                    .field("kind", &self.kind)
                    .finish_non_exhaustive()
            }
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }
}

use tables::{entries, messages, statements as statement_rows};

/// The simulated bank: see the module's documentation.
#[derive(Debug, Clone)]
pub struct SimulatedBank {
    db: DatabaseConnection,
    clock: Clock,
}

/// What the bank did with a file handed to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Booked: one debit per credit transfer.
    Booked(u32),
    /// A message id it had taken before: nothing booked again.
    AlreadyTaken,
}

/// A pain.001 as far as the bank reads it.
mod pain {
    use serde::Deserialize;

    #[derive(Deserialize)]
    pub struct Document {
        #[serde(rename = "CstmrCdtTrfInitn")]
        pub initiation: Initiation,
    }

    #[derive(Deserialize)]
    pub struct Initiation {
        #[serde(rename = "GrpHdr")]
        pub header: Header,
        #[serde(rename = "PmtInf", default)]
        pub payments: Vec<Payment>,
    }

    #[derive(Deserialize)]
    pub struct Header {
        #[serde(rename = "MsgId")]
        pub message_id: String,
    }

    #[derive(Deserialize)]
    pub struct Payment {
        #[serde(rename = "DbtrAcct")]
        pub debtor_account: Account,
        #[serde(rename = "CdtTrfTxInf", default)]
        pub transfers: Vec<Transfer>,
    }

    #[derive(Deserialize)]
    pub struct Account {
        #[serde(rename = "Id")]
        pub id: AccountId,
    }

    #[derive(Deserialize)]
    pub struct AccountId {
        #[serde(rename = "IBAN")]
        pub iban: Option<String>,
        #[serde(rename = "Othr")]
        pub other: Option<Other>,
    }

    #[derive(Deserialize)]
    pub struct Other {
        #[serde(rename = "Id")]
        pub id: String,
    }

    #[derive(Deserialize)]
    pub struct Transfer {
        #[serde(rename = "PmtId")]
        pub payment_id: PaymentId,
        #[serde(rename = "Amt")]
        pub amount: Amount,
    }

    #[derive(Deserialize)]
    pub struct PaymentId {
        #[serde(rename = "EndToEndId")]
        pub end_to_end_id: String,
    }

    #[derive(Deserialize)]
    pub struct Amount {
        #[serde(rename = "InstdAmt")]
        pub instructed: Instructed,
    }

    #[derive(Deserialize)]
    pub struct Instructed {
        #[serde(rename = "@Ccy")]
        pub currency: String,
        #[serde(rename = "$text")]
        pub value: String,
    }
}

/// One booking to make.
struct Booking {
    account: String,
    amount: Money,
    /// Signed as it moves the account.
    signed: i64,
    reference: String,
    end_to_end_id: Option<String>,
    remittance: Option<String>,
    return_reason: Option<String>,
}

fn refused(what: &str) -> CoreError {
    CoreError::invalid(format!("simulated bank: {what}"))
}

impl SimulatedBank {
    pub fn new(db: DatabaseConnection, clock: Clock) -> SimulatedBank {
        SimulatedBank { db, clock }
    }

    /// Books a pain.001 (one transaction): a debit on the debtor's account per credit
    /// transfer, and a camt.054 of them. A message id taken before books nothing.
    pub async fn take_file(&self, institution: PartyId, content: &str) -> CoreResult<Taken> {
        let document: pain::Document =
            quick_xml::de::from_str(content).map_err(|_| refused("not a pain.001 document"))?;
        let message_id = document.initiation.header.message_id.trim().to_owned();
        let mut bookings = Vec::new();
        for payment in document.initiation.payments {
            let account = payment
                .debtor_account
                .id
                .iban
                .or(payment.debtor_account.id.other.map(|o| o.id))
                .ok_or_else(|| refused("a payment has no debtor account"))?;
            for transfer in payment.transfers {
                let currency = Currency::from_str(&transfer.amount.instructed.currency)?;
                let amount = Money::parse(transfer.amount.instructed.value.trim(), currency)
                    .map_err(|_| refused("an amount is malformed"))?;
                bookings.push(Booking {
                    account: account.clone(),
                    amount,
                    signed: -amount.minor(),
                    reference: format!("B{}", Uuid::now_v7().simple()),
                    end_to_end_id: Some(transfer.payment_id.end_to_end_id),
                    remittance: None,
                    return_reason: None,
                });
            }
        }
        let txn = holdfast_core::db::begin_write(&self.db).await?;
        let claimed = messages::Entity::insert(messages::ActiveModel {
            message_id: Set(message_id),
            institution_party_id: Set(institution.uuid()),
            transfers: Set(i32::try_from(bookings.len()).unwrap_or(i32::MAX)),
            received_at: Set(self.clock.now()),
        })
        .on_conflict_do_nothing()
        .exec_without_returning(&txn)
        .await?;
        if !matches!(claimed, sea_orm::TryInsertResult::Inserted(n) if n > 0) {
            return Ok(Taken::AlreadyTaken);
        }
        let booked = u32::try_from(bookings.len()).unwrap_or(u32::MAX);
        self.book_in_txn(&txn, institution, bookings).await?;
        txn.commit().await?;
        Ok(Taken::Booked(booked))
    }

    /// A credit from outside (a shopper's bank transfer) to `institution`'s account in
    /// `amount`'s currency, with the text the payer wrote. Returns the bank's reference.
    pub async fn receive_credit(
        &self,
        institution: PartyId,
        amount: Money,
        remittance: Option<String>,
    ) -> CoreResult<String> {
        if amount.minor() <= 0 {
            return Err(refused("a credit is a positive amount"));
        }
        let account = own_account(&self.db, institution, amount.currency()).await?;
        let reference = format!("C{}", Uuid::now_v7().simple());
        let txn = holdfast_core::db::begin_write(&self.db).await?;
        self.book_in_txn(
            &txn,
            institution,
            vec![Booking {
                account,
                amount,
                signed: amount.minor(),
                reference: reference.clone(),
                end_to_end_id: None,
                remittance: remittance.map(|r| r.chars().take(140).collect()),
                return_reason: None,
            }],
        )
        .await?;
        txn.commit().await?;
        Ok(reference)
    }

    /// The payee's bank sends the transfer with `end_to_end_id` back (`reason`: an ISO
    /// external return reason code such as `AC04`, closed account): the money is credited
    /// back. Once per transfer (the return's reference is derived from the debit's).
    pub async fn return_transfer(&self, end_to_end_id: &str, reason: &str) -> CoreResult<String> {
        if !(reason.len() == 4
            && reason
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()))
        {
            return Err(refused(
                "a return reason is a four-character ISO code such as AC04",
            ));
        }
        let debit = entries::Entity::find()
            .filter(entries::Column::EndToEndId.eq(end_to_end_id))
            .filter(entries::Column::Amount.lt(0))
            .one(&self.db)
            .await?
            .ok_or(CoreError::NotFound("booked transfer"))?;
        let currency = Currency::from_str(&debit.currency)?;
        let amount = Money::from_minor(-debit.amount, currency)?;
        let reference = format!("R{}", debit.id.simple());
        let txn = holdfast_core::db::begin_write(&self.db).await?;
        let returned = entries::Entity::find()
            .filter(entries::Column::Reference.eq(&reference))
            .one(&txn)
            .await?
            .is_some();
        if returned {
            return Err(CoreError::InvalidTransition {
                state: "returned",
                action: "return it",
            });
        }
        self.book_in_txn(
            &txn,
            PartyId::from_uuid(debit.institution_party_id),
            vec![Booking {
                account: debit.account,
                amount,
                signed: amount.minor(),
                reference: reference.clone(),
                end_to_end_id: Some(end_to_end_id.to_owned()),
                remittance: None,
                return_reason: Some(reason.to_ascii_uppercase()),
            }],
        )
        .await?;
        txn.commit().await?;
        Ok(reference)
    }

    async fn book_in_txn(
        &self,
        txn: &DatabaseTransaction,
        institution: PartyId,
        bookings: Vec<Booking>,
    ) -> CoreResult<()> {
        let now = self.clock.now();
        let today = now.date_naive();
        let mut body = String::new();
        let mut by_account: Vec<(String, Currency, String)> = Vec::new();
        for booking in bookings {
            let currency = booking.amount.currency();
            entries::ActiveModel {
                id: Set(Uuid::now_v7()),
                institution_party_id: Set(institution.uuid()),
                account: Set(booking.account.clone()),
                currency: Set(currency.code().to_owned()),
                reference: Set(booking.reference.clone()),
                amount: Set(booking.signed),
                booking_date: Set(today),
                end_to_end_id: Set(booking.end_to_end_id.clone()),
                remittance: Set(booking.remittance.clone()),
                return_reason: Set(booking.return_reason.clone()),
                created_at: Set(now),
            }
            .insert(txn)
            .await?;
            let xml = entry_xml(
                &booking.reference,
                booking.amount,
                booking.signed < 0,
                today,
                booking.end_to_end_id.as_deref(),
                booking.remittance.as_deref(),
                booking.return_reason.as_deref(),
            );
            match by_account
                .iter_mut()
                .find(|(a, c, _)| *a == booking.account && *c == currency)
            {
                Some((_, _, entries)) => entries.push_str(&xml),
                None => by_account.push((booking.account, currency, xml)),
            }
        }
        let message_id = format!("SN{}", Uuid::now_v7().simple());
        for (index, (account, currency, entries)) in by_account.iter().enumerate() {
            let _ = write!(
                body,
                "<Ntfctn><Id>{}</Id>{}{entries}</Ntfctn>",
                report_id(&message_id, index),
                account_xml(account, *currency)
            );
        }
        let xml = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.08"><BkToCstmrDbtCdtNtfctn><GrpHdr><MsgId>{message_id}</MsgId><CreDtTm>{}</CreDtTm></GrpHdr>{body}</BkToCstmrDbtCdtNtfctn></Document>"#,
            now.format("%Y-%m-%dT%H:%M:%S%:z")
        );
        self.store_statement_in_txn(txn, institution, &message_id, "notification", xml)
            .await
    }

    async fn store_statement_in_txn(
        &self,
        txn: &DatabaseTransaction,
        institution: PartyId,
        message_id: &str,
        kind: &str,
        xml: String,
    ) -> CoreResult<()> {
        statement_rows::Entity::insert(statement_rows::ActiveModel {
            message_id: Set(message_id.to_owned()),
            institution_party_id: Set(institution.uuid()),
            kind: Set(kind.to_owned()),
            xml: Set(xml),
            created_at: Set(self.clock.now()),
            delivered_at: Set(None),
        })
        .on_conflict_do_nothing()
        .exec_without_returning(txn)
        .await?;
        Ok(())
    }

    /// Closes `institution`'s day: a camt.053 with each of its accounts' opening and closing
    /// balances and the entries booked on `day`. Closing the same day again without new
    /// entries writes nothing new (the message id counts the entries). Returns its message id.
    pub async fn close_day(&self, institution: PartyId, day: NaiveDate) -> CoreResult<String> {
        let accounts = runs::institution_accounts(&self.db, institution).await?;
        if accounts.is_empty() {
            return Err(CoreError::NotFound(
                "the institution's account at the simulated bank",
            ));
        }
        let txn = holdfast_core::db::begin_write(&self.db).await?;
        let booked: Vec<entries::Model> = entries::Entity::find()
            .filter(entries::Column::InstitutionPartyId.eq(institution.uuid()))
            .filter(entries::Column::BookingDate.lte(day))
            .order_by_asc(entries::Column::CreatedAt)
            .order_by_asc(entries::Column::Id)
            .all(&txn)
            .await?;
        let message_id = format!(
            "SE{}{}-{}",
            day.format("%Y%m%d"),
            &institution.uuid().simple().to_string()[..12],
            booked.len()
        );
        let mut body = String::new();
        for (index, own) in accounts.iter().enumerate() {
            let number = own.account.number().to_owned();
            let of_account: Vec<&entries::Model> = booked
                .iter()
                .filter(|e| compact(&e.account) == number && e.currency == own.currency.code())
                .collect();
            let opening: i64 = of_account
                .iter()
                .filter(|e| e.booking_date < day)
                .map(|e| e.amount)
                .sum();
            let closing: i64 = of_account.iter().map(|e| e.amount).sum();
            let mut entries_xml = String::new();
            for entry in of_account.iter().filter(|e| e.booking_date == day) {
                let amount = Money::from_minor(entry.amount.abs(), own.currency)?;
                entries_xml.push_str(&entry_xml(
                    &entry.reference,
                    amount,
                    entry.amount < 0,
                    day,
                    entry.end_to_end_id.as_deref(),
                    entry.remittance.as_deref(),
                    entry.return_reason.as_deref(),
                ));
            }
            let _ = write!(
                body,
                "<Stmt><Id>{}</Id>{}{}{}{entries_xml}</Stmt>",
                report_id(&message_id, index),
                account_xml(&number, own.currency),
                balance_xml("OPBD", opening, own.currency, day)?,
                balance_xml("CLBD", closing, own.currency, day)?,
            );
        }
        let xml = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt><GrpHdr><MsgId>{message_id}</MsgId><CreDtTm>{}</CreDtTm></GrpHdr>{body}</BkToCstmrStmt></Document>"#,
            self.clock.now().format("%Y-%m-%dT%H:%M:%S%:z")
        );
        self.store_statement_in_txn(&txn, institution, &message_id, "end_of_day", xml)
            .await?;
        txn.commit().await?;
        Ok(message_id)
    }

    /// Statements not yet imported by Holdfast, oldest first.
    pub async fn undelivered(&self, limit: u64) -> CoreResult<Vec<(PartyId, String, String)>> {
        Ok(statement_rows::Entity::find()
            .filter(statement_rows::Column::DeliveredAt.is_null())
            .order_by_asc(statement_rows::Column::CreatedAt)
            .order_by_asc(statement_rows::Column::MessageId)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|row| {
                (
                    PartyId::from_uuid(row.institution_party_id),
                    row.message_id,
                    row.xml,
                )
            })
            .collect())
    }

    pub(super) async fn mark_delivered(&self, message_id: &str) -> CoreResult<()> {
        statement_rows::Entity::update_many()
            .col_expr(
                statement_rows::Column::DeliveredAt,
                sea_orm::sea_query::Expr::value(self.clock.now()),
            )
            .filter(statement_rows::Column::MessageId.eq(message_id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// How many entries the bank booked with `end_to_end_id` (tests: a file handed over twice
    /// is booked once).
    pub async fn entries_naming(&self, end_to_end_id: &str) -> CoreResult<u64> {
        Ok(entries::Entity::find()
            .filter(entries::Column::EndToEndId.eq(end_to_end_id))
            .count(&self.db)
            .await?)
    }
}

#[async_trait::async_trait]
impl BankGateway for SimulatedBank {
    fn name(&self) -> &'static str {
        "simulator"
    }

    async fn hand_over(&self, file: &BankFile) -> Result<(), BankGatewayError> {
        match self.take_file(file.institution, &file.content).await {
            Ok(Taken::Booked(_)) => Ok(()),
            Ok(Taken::AlreadyTaken) => {
                // A bank refuses a duplicate and the file counts as taken: nothing to redo.
                tracing::info!(message_id = %file.message_id, "the simulated bank had this file already");
                Ok(())
            }
            Err(CoreError::Database(error)) => {
                Err(BankGatewayError::Unreachable(error.to_string()))
            }
            Err(other) => Err(BankGatewayError::Refused(other.to_string())),
        }
    }
}

/// `institution`'s own account in `currency`, as the bank identifies it.
async fn own_account(
    db: &impl ConnectionTrait,
    institution: PartyId,
    currency: Currency,
) -> CoreResult<String> {
    runs::institution_accounts(db, institution)
        .await?
        .into_iter()
        .find(|a| a.currency == currency)
        .map(|a| a.account.number().to_owned())
        .ok_or(CoreError::NotFound(
            "the institution's account at the simulated bank in this currency",
        ))
}

/// A report's id within its message: ISO 20022 identifiers have at most 35 characters.
fn report_id(message_id: &str, index: usize) -> String {
    let head: String = message_id.chars().take(30).collect();
    format!("{head}-{}", index + 1)
}

/// Upper case, without the spaces and hyphens account numbers are written with.
fn compact(account: &str) -> String {
    account
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

fn escape(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}

fn account_xml(account: &str, currency: Currency) -> String {
    let id = if BankAccount::iban(account).is_ok() {
        format!("<IBAN>{}</IBAN>", escape(account))
    } else {
        format!("<Othr><Id>{}</Id></Othr>", escape(account))
    };
    format!("<Acct><Id>{id}</Id><Ccy>{}</Ccy></Acct>", currency.code())
}

fn balance_xml(code: &str, minor: i64, currency: Currency, day: NaiveDate) -> CoreResult<String> {
    let amount = Money::from_minor(minor.abs(), currency)?;
    Ok(format!(
        r#"<Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp><Amt Ccy="{}">{}</Amt><CdtDbtInd>{}</CdtDbtInd><Dt><Dt>{}</Dt></Dt></Bal>"#,
        currency.code(),
        amount.amount(),
        if minor < 0 { "DBIT" } else { "CRDT" },
        day.format("%Y-%m-%d")
    ))
}

fn entry_xml(
    reference: &str,
    amount: Money,
    debit: bool,
    day: NaiveDate,
    end_to_end_id: Option<&str>,
    remittance: Option<&str>,
    return_reason: Option<&str>,
) -> String {
    let mut details = String::new();
    if let Some(e2e) = end_to_end_id {
        let _ = write!(
            details,
            "<Refs><EndToEndId>{}</EndToEndId></Refs>",
            escape(e2e)
        );
    }
    if let Some(text) = remittance {
        let _ = write!(details, "<RmtInf><Ustrd>{}</Ustrd></RmtInf>", escape(text));
    }
    if let Some(code) = return_reason {
        let _ = write!(
            details,
            "<RtrInf><Rsn><Cd>{}</Cd></Rsn></RtrInf>",
            escape(code)
        );
    }
    format!(
        r#"<Ntry><Amt Ccy="{}">{}</Amt><CdtDbtInd>{}</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts><BookgDt><Dt>{}</Dt></BookgDt><AcctSvcrRef>{}</AcctSvcrRef><NtryDtls><TxDtls>{details}</TxDtls></NtryDtls></Ntry>"#,
        amount.currency().code(),
        amount.amount(),
        if debit { "DBIT" } else { "CRDT" },
        day.format("%Y-%m-%d"),
        escape(reference)
    )
}
