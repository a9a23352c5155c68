//! ISO 20022 statements as banks send them: `camt.053` (the end-of-day statement of an
//! account, with its opening and closing balances) and `camt.054` (debit and credit
//! notifications during the day). Only what the bank side uses is read — the account, its
//! balances, and per entry its amount, direction, status, booking date, the bank's reference,
//! the end-to-end id of a payout it settles or returns, the remittance text of a deposit and a
//! return's reason — and every version of either message is accepted (the elements read are the
//! same in `.001.02` to `.001.13`). Pure: importing what is read is the caller's.

use crate::error::{CoreError, CoreResult};
use crate::money::{Currency, Money};
use chrono::NaiveDate;
use std::str::FromStr;

/// The largest statement file accepted, far above a day of one institution's accounts.
pub const MAX_STATEMENT_BYTES: usize = 8 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatementKind {
    /// camt.053: the account's booked day, with balances.
    EndOfDay,
    /// camt.054: entries as they happen, without balances.
    Notification,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BankStatement {
    pub kind: StatementKind,
    /// The bank's message id: the same file imported twice has the same one.
    pub message_id: String,
    pub reports: Vec<AccountReport>,
}

/// One account's statement (camt.053 `Stmt`) or notification (camt.054 `Ntfctn`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountReport {
    pub id: String,
    /// The account's IBAN, or its other identification, as the bank writes it.
    pub account: String,
    pub currency: Option<Currency>,
    pub opening: Option<Balance>,
    pub closing: Option<Balance>,
    pub entries: Vec<Entry>,
}

/// A balance in minor units, signed (a debit balance is negative), and the day it is of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Balance {
    pub minor: i64,
    pub currency: Currency,
    pub date: NaiveDate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Credit,
    Debit,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The bank's reference for the entry (`AcctSvcrRef`, else `NtryRef`), if it gives one.
    pub reference: Option<String>,
    pub amount: Money,
    pub direction: Direction,
    /// A reversal of an earlier entry (`RvslInd`).
    pub reversal: bool,
    /// Booked (`BOOK`), rather than pending or information only.
    pub booked: bool,
    pub booking_date: Option<NaiveDate>,
    pub end_to_end_id: Option<String>,
    /// Unstructured remittance text, or the structured creditor reference.
    pub remittance: Option<String>,
    /// A return's reason code (`AC04`…) and text, when the entry returns a payment.
    pub return_reason: Option<String>,
}

impl Entry {
    /// The amount as it changes the account: negative for a debit.
    pub fn signed_minor(&self) -> i64 {
        match self.direction {
            Direction::Credit => self.amount.minor(),
            Direction::Debit => -self.amount.minor(),
        }
    }
}

/// Reads a camt.053 or camt.054 file.
pub fn parse(xml: &str) -> CoreResult<BankStatement> {
    if xml.len() > MAX_STATEMENT_BYTES {
        return Err(invalid("the statement is larger than 8 MiB"));
    }
    let document: xml::Document =
        quick_xml::de::from_str(xml).map_err(|_| invalid("not a camt.053 or camt.054 document"))?;
    let (kind, namespace_part, message) = match (document.statement, document.notification) {
        (Some(message), None) => (StatementKind::EndOfDay, "camt.053.", message),
        (None, Some(message)) => (StatementKind::Notification, "camt.054.", message),
        _ => return Err(invalid("not a camt.053 or camt.054 document")),
    };
    if !document.namespace.as_deref().is_some_and(|ns| {
        ns.starts_with(&format!("urn:iso:std:iso:20022:tech:xsd:{namespace_part}"))
    }) {
        return Err(invalid(
            "the document's namespace is not camt.053 or camt.054",
        ));
    }
    let reports = message
        .statements
        .into_iter()
        .chain(message.notifications)
        .map(report)
        .collect::<CoreResult<Vec<_>>>()?;
    if reports.is_empty() {
        return Err(invalid("the statement reports no account"));
    }
    Ok(BankStatement {
        kind,
        message_id: bounded_id(message.header.message_id)?,
        reports,
    })
}

fn invalid(what: &str) -> CoreError {
    CoreError::invalid(format!("statement: {what}"))
}

fn bounded_id(id: String) -> CoreResult<String> {
    let id = id.trim().to_owned();
    if id.is_empty() || id.chars().count() > 35 {
        return Err(invalid("an identifier has 1 to 35 characters"));
    }
    Ok(id)
}

fn report(raw: xml::Report) -> CoreResult<AccountReport> {
    let account = raw
        .account
        .id
        .iban
        .or(raw.account.id.other.map(|other| other.id))
        .ok_or_else(|| invalid("an account has no identification"))?;
    let currency = raw
        .account
        .currency
        .as_deref()
        .map(Currency::from_str)
        .transpose()?;
    let mut opening = None;
    let mut closing = None;
    for balance in raw.balances {
        let parsed = Balance {
            minor: signed_minor(&balance.amount, &balance.direction)?,
            currency: Currency::from_str(&balance.amount.currency)?,
            date: balance.date.date()?,
        };
        let code = balance.kind.code.code.unwrap_or_default();
        match code.as_str() {
            // Opening and closing booked; the interim ones are not reconciled.
            "OPBD" | "PRCD" => opening = Some(parsed),
            "CLBD" => closing = Some(parsed),
            _ => {}
        }
    }
    let entries = raw
        .entries
        .into_iter()
        .map(entry)
        .collect::<CoreResult<Vec<_>>>()?;
    Ok(AccountReport {
        id: bounded_id(raw.id)?,
        account: super::upper_without_spaces(&account),
        currency,
        opening,
        closing,
        entries,
    })
}

/// A balance in signed minor units: its sign from `CRDT`/`DBIT`.
fn signed_minor(amount: &xml::Amount, direction: &str) -> CoreResult<i64> {
    let money = Money::parse(amount.value.trim(), Currency::from_str(&amount.currency)?)?;
    match direction {
        "CRDT" => Ok(money.minor()),
        "DBIT" => Ok(-money.minor()),
        _ => Err(invalid("a credit/debit indicator is CRDT or DBIT")),
    }
}

fn entry(raw: xml::Entry) -> CoreResult<Entry> {
    let currency = Currency::from_str(&raw.amount.currency)?;
    let amount = Money::parse(raw.amount.value.trim(), currency)?;
    let direction = match raw.direction.as_str() {
        "CRDT" => Direction::Credit,
        "DBIT" => Direction::Debit,
        _ => return Err(invalid("a credit/debit indicator is CRDT or DBIT")),
    };
    // Status is a code (`<Sts><Cd>BOOK</Cd></Sts>`) from version 8, plain text before.
    let status = raw
        .status
        .and_then(|s| s.code.or(s.text))
        .unwrap_or_default();
    let details = raw.details.into_iter().flat_map(|d| d.transactions).next();
    let (end_to_end_id, remittance, return_reason, detail_reference) = match details {
        Some(tx) => {
            let references = tx.references.unwrap_or_default();
            let remittance = tx.remittance.and_then(|r| {
                r.unstructured.into_iter().next().or_else(|| {
                    r.structured
                        .into_iter()
                        .find_map(|s| s.creditor_reference.map(|c| c.reference))
                })
            });
            let return_reason = tx.return_info.map(|info| {
                let code = info.reason.and_then(|r| r.code).unwrap_or_default();
                let text = info.additional.into_iter().next().unwrap_or_default();
                format!("{code} {text}").trim().to_owned()
            });
            (
                references.end_to_end_id.filter(|id| id != "NOTPROVIDED"),
                remittance,
                return_reason,
                references.servicer_reference,
            )
        }
        None => (None, None, None, None),
    };
    Ok(Entry {
        reference: raw
            .servicer_reference
            .or(raw.entry_reference)
            .or(detail_reference),
        amount,
        direction,
        reversal: raw.reversal.as_deref() == Some("true"),
        booked: status == "BOOK",
        booking_date: raw.booking_date.map(|d| d.date()).transpose()?,
        end_to_end_id,
        remittance: remittance.map(|r| r.trim().to_owned()),
        return_reason,
    })
}

/// The documents' shape, as far as it is read.
mod xml {
    use super::{CoreResult, NaiveDate, invalid};
    use serde::Deserialize;

    #[derive(Deserialize)]
    pub struct Document {
        #[serde(rename = "@xmlns")]
        pub namespace: Option<String>,
        #[serde(rename = "BkToCstmrStmt")]
        pub statement: Option<Message>,
        #[serde(rename = "BkToCstmrDbtCdtNtfctn")]
        pub notification: Option<Message>,
    }

    #[derive(Deserialize)]
    pub struct Message {
        #[serde(rename = "GrpHdr")]
        pub header: Header,
        #[serde(rename = "Stmt", default)]
        pub statements: Vec<Report>,
        #[serde(rename = "Ntfctn", default)]
        pub notifications: Vec<Report>,
    }

    #[derive(Deserialize)]
    pub struct Header {
        #[serde(rename = "MsgId")]
        pub message_id: String,
    }

    #[derive(Deserialize)]
    pub struct Report {
        #[serde(rename = "Id")]
        pub id: String,
        #[serde(rename = "Acct")]
        pub account: Account,
        #[serde(rename = "Bal", default)]
        pub balances: Vec<BalanceXml>,
        #[serde(rename = "Ntry", default)]
        pub entries: Vec<Entry>,
    }

    #[derive(Deserialize)]
    pub struct Account {
        #[serde(rename = "Id")]
        pub id: AccountId,
        #[serde(rename = "Ccy")]
        pub currency: Option<String>,
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
    pub struct BalanceXml {
        #[serde(rename = "Tp")]
        pub kind: BalanceType,
        #[serde(rename = "Amt")]
        pub amount: Amount,
        #[serde(rename = "CdtDbtInd")]
        pub direction: String,
        #[serde(rename = "Dt")]
        pub date: DateChoice,
    }

    #[derive(Deserialize)]
    pub struct BalanceType {
        #[serde(rename = "CdOrPrtry")]
        pub code: CodeOrProprietary,
    }

    #[derive(Deserialize)]
    pub struct CodeOrProprietary {
        #[serde(rename = "Cd")]
        pub code: Option<String>,
    }

    #[derive(Deserialize)]
    pub struct Amount {
        #[serde(rename = "@Ccy")]
        pub currency: String,
        #[serde(rename = "$text")]
        pub value: String,
    }

    #[derive(Deserialize)]
    pub struct DateChoice {
        #[serde(rename = "Dt")]
        pub date: Option<String>,
        #[serde(rename = "DtTm")]
        pub date_time: Option<String>,
    }

    impl DateChoice {
        pub fn date(&self) -> CoreResult<NaiveDate> {
            let text = self
                .date
                .as_deref()
                .or(self.date_time.as_deref())
                .ok_or_else(|| invalid("a date is missing"))?;
            let day = text
                .get(..10)
                .ok_or_else(|| invalid("a date is malformed"))?;
            NaiveDate::parse_from_str(day, "%Y-%m-%d").map_err(|_| invalid("a date is malformed"))
        }
    }

    #[derive(Deserialize)]
    pub struct Entry {
        #[serde(rename = "NtryRef")]
        pub entry_reference: Option<String>,
        #[serde(rename = "Amt")]
        pub amount: Amount,
        #[serde(rename = "CdtDbtInd")]
        pub direction: String,
        #[serde(rename = "RvslInd")]
        pub reversal: Option<String>,
        #[serde(rename = "Sts")]
        pub status: Option<Status>,
        #[serde(rename = "BookgDt")]
        pub booking_date: Option<DateChoice>,
        #[serde(rename = "AcctSvcrRef")]
        pub servicer_reference: Option<String>,
        #[serde(rename = "NtryDtls", default)]
        pub details: Vec<EntryDetails>,
    }

    #[derive(Deserialize)]
    pub struct Status {
        #[serde(rename = "Cd")]
        pub code: Option<String>,
        #[serde(rename = "$text")]
        pub text: Option<String>,
    }

    #[derive(Deserialize)]
    pub struct EntryDetails {
        #[serde(rename = "TxDtls", default)]
        pub transactions: Vec<Transaction>,
    }

    #[derive(Deserialize)]
    pub struct Transaction {
        #[serde(rename = "Refs")]
        pub references: Option<References>,
        #[serde(rename = "RmtInf")]
        pub remittance: Option<Remittance>,
        #[serde(rename = "RtrInf")]
        pub return_info: Option<ReturnInfo>,
    }

    #[derive(Deserialize, Default)]
    pub struct References {
        #[serde(rename = "AcctSvcrRef")]
        pub servicer_reference: Option<String>,
        #[serde(rename = "EndToEndId")]
        pub end_to_end_id: Option<String>,
    }

    #[derive(Deserialize)]
    pub struct Remittance {
        #[serde(rename = "Ustrd", default)]
        pub unstructured: Vec<String>,
        #[serde(rename = "Strd", default)]
        pub structured: Vec<Structured>,
    }

    #[derive(Deserialize)]
    pub struct Structured {
        #[serde(rename = "CdtrRefInf")]
        pub creditor_reference: Option<CreditorReference>,
    }

    #[derive(Deserialize)]
    pub struct CreditorReference {
        #[serde(rename = "Ref")]
        pub reference: String,
    }

    #[derive(Deserialize)]
    pub struct ReturnInfo {
        #[serde(rename = "Rsn")]
        pub reason: Option<CodeOrProprietary>,
        #[serde(rename = "AddtlInf", default)]
        pub additional: Vec<String>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const END_OF_DAY: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08">
  <BkToCstmrStmt>
    <GrpHdr><MsgId>STMT-20261206-01</MsgId><CreDtTm>2026-12-06T18:00:00</CreDtTm></GrpHdr>
    <Stmt>
      <Id>S-1</Id>
      <CreDtTm>2026-12-06T18:00:00</CreDtTm>
      <Acct><Id><IBAN>DE89 3704 0044 0532 0130 00</IBAN></Id><Ccy>EUR</Ccy></Acct>
      <Bal><Tp><CdOrPrtry><Cd>OPBD</Cd></CdOrPrtry></Tp><Amt Ccy="EUR">100.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2026-12-06</Dt></Dt></Bal>
      <Bal><Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp><Amt Ccy="EUR">95.50</Amt><CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2026-12-06</Dt></Dt></Bal>
      <Ntry>
        <Amt Ccy="EUR">30.00</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>
        <BookgDt><Dt>2026-12-06</Dt></BookgDt><AcctSvcrRef>BANK-1</AcctSvcrRef>
        <BkTxCd/>
        <NtryDtls><TxDtls><Refs><EndToEndId>HF0001</EndToEndId></Refs></TxDtls></NtryDtls>
      </Ntry>
      <Ntry>
        <Amt Ccy="EUR">25.50</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>
        <BookgDt><DtTm>2026-12-06T10:00:00</DtTm></BookgDt><AcctSvcrRef>BANK-2</AcctSvcrRef>
        <NtryDtls><TxDtls>
          <Refs><EndToEndId>NOTPROVIDED</EndToEndId></Refs>
          <RmtInf><Strd><CdtrRefInf><Ref>RF18539007547034</Ref></CdtrRefInf></Strd></RmtInf>
        </TxDtls></NtryDtls>
      </Ntry>
    </Stmt>
  </BkToCstmrStmt>
</Document>"#;

    const NOTIFICATION: &str = r#"<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.02">
  <BkToCstmrDbtCdtNtfctn>
    <GrpHdr><MsgId>NTF-7</MsgId></GrpHdr>
    <Ntfctn>
      <Id>N-1</Id>
      <Acct><Id><Othr><Id>110-123-456789</Id></Othr></Id></Acct>
      <Ntry>
        <NtryRef>R-9</NtryRef>
        <Amt Ccy="KRW">15000</Amt><CdtDbtInd>CRDT</CdtDbtInd><RvslInd>true</RvslInd><Sts>BOOK</Sts>
        <NtryDtls><TxDtls>
          <Refs><EndToEndId>HF0002</EndToEndId></Refs>
          <RtrInf><Rsn><Cd>AC04</Cd></Rsn><AddtlInf>account closed</AddtlInf></RtrInf>
        </TxDtls></NtryDtls>
      </Ntry>
    </Ntfctn>
  </BkToCstmrDbtCdtNtfctn>
</Document>"#;

    #[test]
    fn an_end_of_day_statement_gives_balances_and_entries() {
        let statement = parse(END_OF_DAY).unwrap();
        assert_eq!(statement.kind, StatementKind::EndOfDay);
        assert_eq!(statement.message_id, "STMT-20261206-01");
        let report = &statement.reports[0];
        assert_eq!(report.account, "DE89370400440532013000");
        assert_eq!(report.currency, Some(Currency::EUR));
        assert_eq!(report.opening.unwrap().minor, 10_000);
        let closing = report.closing.unwrap();
        assert_eq!(closing.minor, 95_50);
        assert_eq!(closing.date, NaiveDate::from_ymd_opt(2026, 12, 6).unwrap());
        let [payout, deposit] = report.entries.as_slice() else {
            panic!("two entries: {:?}", report.entries);
        };
        assert_eq!(payout.signed_minor(), -30_00);
        assert_eq!(payout.end_to_end_id.as_deref(), Some("HF0001"));
        assert_eq!(payout.reference.as_deref(), Some("BANK-1"));
        assert!(payout.booked && !payout.reversal);
        assert_eq!(deposit.signed_minor(), 25_50);
        assert_eq!(deposit.end_to_end_id, None);
        assert_eq!(deposit.remittance.as_deref(), Some("RF18539007547034"));
        assert_eq!(deposit.booking_date, NaiveDate::from_ymd_opt(2026, 12, 6));
        // Opening + entries = closing.
        let moved: i64 = report.entries.iter().map(Entry::signed_minor).sum();
        assert_eq!(report.opening.unwrap().minor + moved, closing.minor);
    }

    #[test]
    fn a_notification_gives_a_return_with_its_reason() {
        let statement = parse(NOTIFICATION).unwrap();
        assert_eq!(statement.kind, StatementKind::Notification);
        let report = &statement.reports[0];
        assert_eq!(report.account, "110-123-456789");
        assert_eq!(report.closing, None);
        let entry = &report.entries[0];
        assert!(entry.booked && entry.reversal);
        assert_eq!(
            entry.amount,
            Money::from_minor(15_000, Currency::KRW).unwrap()
        );
        assert_eq!(entry.reference.as_deref(), Some("R-9"));
        assert_eq!(entry.return_reason.as_deref(), Some("AC04 account closed"));
    }

    #[test]
    fn what_is_not_a_statement_is_refused() {
        for bad in [
            "",
            "<Document/>",
            "not xml",
            &END_OF_DAY.replace("camt.053.001.08", "pain.001.001.09"),
            &END_OF_DAY.replace("<CdtDbtInd>DBIT</CdtDbtInd>", "<CdtDbtInd>X</CdtDbtInd>"),
            &END_OF_DAY.replace("30.00", "30.001"),
            &END_OF_DAY.replace("STMT-20261206-01", &"M".repeat(36)),
        ] {
            let error = parse(bad).unwrap_err();
            assert!(
                matches!(error, CoreError::Invalid(_) | CoreError::Money(_)),
                "{bad:.60}: {error:?}"
            );
        }
    }
}
