//! ISO 20022 `pain.001.001.09` (customer credit transfer initiation): the file a bank run
//! hands to the paying institution, one credit transfer per payout, each carrying the payout's
//! end-to-end id so the bank's statements can name it. One payment information block per
//! currency. Pure: the caller gathers the payouts and keeps the file.

use crate::banking::destinations::BankAccount;
use crate::error::{CoreError, CoreResult};
use crate::money::{Currency, Money};
use chrono::{DateTime, NaiveDate, Utc};
use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};
use std::collections::BTreeMap;
use std::io;

pub const NAMESPACE: &str = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09";

/// ISO 20022 `Max35Text` (identifiers) and `Max140Text` (names, remittance text).
const MAX_ID_CHARS: usize = 35;
const MAX_TEXT_CHARS: usize = 140;

/// The account the money leaves from: the paying institution's, as it knows it.
#[derive(Clone, Debug)]
pub struct Debtor {
    pub name: String,
    pub account: BankAccount,
    /// The paying bank's BIC, if it has one; `NOTPROVIDED` is written otherwise.
    pub bic: Option<String>,
}

#[derive(Clone, Debug)]
pub struct CreditTransfer {
    pub end_to_end_id: String,
    pub amount: Money,
    pub creditor_name: String,
    pub creditor_account: BankAccount,
    /// What the payee's statement shows.
    pub remittance: String,
}

#[derive(Clone, Debug)]
pub struct Initiation {
    /// Unique per file: a bank refuses a message id it has seen, which makes handing the same
    /// file over twice harmless.
    pub message_id: String,
    pub created_at: DateTime<Utc>,
    pub execution_date: NaiveDate,
    pub initiating_party: String,
    pub debtor: Debtor,
    pub transfers: Vec<CreditTransfer>,
}

/// The file, as UTF-8 XML.
pub fn write(initiation: &Initiation) -> CoreResult<String> {
    if initiation.transfers.is_empty() {
        return Err(CoreError::invalid(
            "a credit transfer file needs a transfer",
        ));
    }
    for id in std::iter::once(&initiation.message_id)
        .chain(initiation.transfers.iter().map(|t| &t.end_to_end_id))
    {
        if id.is_empty() || id.chars().count() > MAX_ID_CHARS {
            return Err(CoreError::invalid(
                "ISO 20022 identifiers have 1 to 35 characters",
            ));
        }
    }
    let mut by_currency: BTreeMap<&str, Vec<&CreditTransfer>> = BTreeMap::new();
    for transfer in &initiation.transfers {
        by_currency
            .entry(transfer.amount.currency().code())
            .or_default()
            .push(transfer);
    }
    let mut writer = Writer::new_with_indent(Vec::new(), b' ', 2);
    write_document(&mut writer, initiation, &by_currency)
        .map_err(|_| CoreError::Internal("could not write the credit transfer file"))?;
    String::from_utf8(writer.into_inner())
        .map_err(|_| CoreError::Internal("the credit transfer file is not UTF-8"))
}

type Xml = Writer<Vec<u8>>;

fn write_document(
    w: &mut Xml,
    initiation: &Initiation,
    by_currency: &BTreeMap<&str, Vec<&CreditTransfer>>,
) -> io::Result<()> {
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    w.create_element("Document")
        .with_attribute(("xmlns", NAMESPACE))
        .write_inner_content(|w| {
            w.create_element("CstmrCdtTrfInitn")
                .write_inner_content(|w| {
                    group_header(w, initiation)?;
                    for (index, transfers) in by_currency.values().enumerate() {
                        payment_information(w, initiation, index + 1, transfers)?;
                    }
                    Ok(())
                })
                .map(|_| ())
        })?;
    Ok(())
}

fn group_header(w: &mut Xml, initiation: &Initiation) -> io::Result<()> {
    let all: Vec<&CreditTransfer> = initiation.transfers.iter().collect();
    w.create_element("GrpHdr").write_inner_content(|w| {
        text(w, "MsgId", &initiation.message_id)?;
        text(
            w,
            "CreDtTm",
            &initiation
                .created_at
                .format("%Y-%m-%dT%H:%M:%S%:z")
                .to_string(),
        )?;
        text(w, "NbOfTxs", &all.len().to_string())?;
        text(w, "CtrlSum", &control_sum(&all))?;
        w.create_element("InitgPty")
            .write_inner_content(|w| text(w, "Nm", &initiation.initiating_party))?;
        Ok(())
    })?;
    Ok(())
}

fn payment_information(
    w: &mut Xml,
    initiation: &Initiation,
    block: usize,
    transfers: &[&CreditTransfer],
) -> io::Result<()> {
    w.create_element("PmtInf").write_inner_content(|w| {
        // Unique within the message; the message id is unique across them.
        let id = format!("{}-{block}", initiation.message_id);
        text(w, "PmtInfId", &clip(&id, MAX_ID_CHARS))?;
        text(w, "PmtMtd", "TRF")?;
        text(w, "NbOfTxs", &transfers.len().to_string())?;
        text(w, "CtrlSum", &control_sum(transfers))?;
        w.create_element("ReqdExctnDt").write_inner_content(|w| {
            text(
                w,
                "Dt",
                &initiation.execution_date.format("%Y-%m-%d").to_string(),
            )
        })?;
        party(w, "Dbtr", &initiation.debtor.name)?;
        account(w, "DbtrAcct", &initiation.debtor.account)?;
        w.create_element("DbtrAgt").write_inner_content(|w| {
            w.create_element("FinInstnId")
                .write_inner_content(|w| match &initiation.debtor.bic {
                    Some(bic) => text(w, "BICFI", bic),
                    None => w
                        .create_element("Othr")
                        .write_inner_content(|w| text(w, "Id", "NOTPROVIDED"))
                        .map(|_| ()),
                })
                .map(|_| ())
        })?;
        // Each side pays its own bank's charges, as SEPA requires.
        text(w, "ChrgBr", "SLEV")?;
        for transfer in transfers {
            credit_transfer(w, transfer)?;
        }
        Ok(())
    })?;
    Ok(())
}

fn credit_transfer(w: &mut Xml, transfer: &CreditTransfer) -> io::Result<()> {
    w.create_element("CdtTrfTxInf").write_inner_content(|w| {
        w.create_element("PmtId")
            .write_inner_content(|w| text(w, "EndToEndId", &transfer.end_to_end_id))?;
        w.create_element("Amt").write_inner_content(|w| {
            w.create_element("InstdAmt")
                .with_attribute(("Ccy", transfer.amount.currency().code()))
                .write_text_content(BytesText::new(&amount(transfer.amount)))
                .map(|_| ())
        })?;
        // A domestic account is reached through its bank's clearing code.
        if let BankAccount::Domestic { bank_code, .. } = &transfer.creditor_account {
            w.create_element("CdtrAgt").write_inner_content(|w| {
                w.create_element("FinInstnId")
                    .write_inner_content(|w| {
                        w.create_element("ClrSysMmbId")
                            .write_inner_content(|w| text(w, "MmbId", bank_code))
                            .map(|_| ())
                    })
                    .map(|_| ())
            })?;
        }
        party(w, "Cdtr", &transfer.creditor_name)?;
        account(w, "CdtrAcct", &transfer.creditor_account)?;
        w.create_element("RmtInf").write_inner_content(|w| {
            text(w, "Ustrd", &clip(&transfer.remittance, MAX_TEXT_CHARS))
        })?;
        Ok(())
    })?;
    Ok(())
}

fn party(w: &mut Xml, element: &str, name: &str) -> io::Result<()> {
    w.create_element(element)
        .write_inner_content(|w| text(w, "Nm", &clip(name, MAX_TEXT_CHARS)))?;
    Ok(())
}

fn account(w: &mut Xml, element: &str, bank_account: &BankAccount) -> io::Result<()> {
    w.create_element(element).write_inner_content(|w| {
        w.create_element("Id")
            .write_inner_content(|w| match bank_account {
                BankAccount::Iban(iban) => text(w, "IBAN", iban),
                BankAccount::Domestic { account_number, .. } => w
                    .create_element("Othr")
                    .write_inner_content(|w| text(w, "Id", account_number))
                    .map(|_| ()),
            })
            .map(|_| ())
    })?;
    Ok(())
}

fn text(w: &mut Xml, element: &str, value: &str) -> io::Result<()> {
    w.create_element(element)
        .write_text_content(BytesText::new(value))?;
    Ok(())
}

fn clip(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

/// An amount in its currency's scale: `30.00`, `1500` (KRW).
fn amount(money: Money) -> String {
    money.amount().to_string()
}

/// ISO 20022's control sum: the plain sum of the amounts, whatever their currencies.
fn control_sum(transfers: &[&CreditTransfer]) -> String {
    let sum: rust_decimal::Decimal = transfers.iter().map(|t| t.amount.amount()).sum();
    let scale = transfers
        .iter()
        .map(|t| t.amount.currency().scale())
        .max()
        .unwrap_or(Currency::USD.scale());
    let mut sum = sum;
    sum.rescale(scale);
    sum.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn initiation() -> Initiation {
        Initiation {
            message_id: "HF-RUN-20261206-0001".into(),
            created_at: Utc.with_ymd_and_hms(2026, 12, 6, 2, 0, 0).unwrap(),
            execution_date: NaiveDate::from_ymd_opt(2026, 12, 7).unwrap(),
            initiating_party: "Holdfast".into(),
            debtor: Debtor {
                name: "Holdfast <Payouts> & Co".into(),
                account: BankAccount::iban("DE89 3704 0044 0532 0130 00").unwrap(),
                bic: Some("COBADEFFXXX".into()),
            },
            transfers: vec![
                CreditTransfer {
                    end_to_end_id: "HF0001".into(),
                    amount: Money::from_minor(30_00, Currency::EUR).unwrap(),
                    creditor_name: "Seller Ltd".into(),
                    creditor_account: BankAccount::iban("DE44500105175407324931").unwrap(),
                    remittance: "Holdfast payout HF0001".into(),
                },
                CreditTransfer {
                    end_to_end_id: "HF0002".into(),
                    amount: Money::from_minor(15_000, Currency::KRW).unwrap(),
                    creditor_name: "Drugstore".into(),
                    creditor_account: BankAccount::domestic("088", "110123456789").unwrap(),
                    remittance: "Holdfast payout HF0002".into(),
                },
            ],
        }
    }

    #[test]
    fn a_file_has_one_block_per_currency_and_escapes_what_it_carries() {
        let xml = write(&initiation()).unwrap();
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"));
        assert!(xml.contains(NAMESPACE));
        assert_eq!(xml.matches("<PmtInf>").count(), 2);
        assert!(xml.contains("<NbOfTxs>2</NbOfTxs>"));
        assert!(xml.contains("<InstdAmt Ccy=\"EUR\">30.00</InstdAmt>"));
        assert!(xml.contains("<InstdAmt Ccy=\"KRW\">15000</InstdAmt>"));
        assert!(xml.contains("<MmbId>088</MmbId>"));
        assert!(xml.contains("<EndToEndId>HF0002</EndToEndId>"));
        assert!(xml.contains("Holdfast &lt;Payouts&gt; &amp; Co"));
        assert!(xml.contains("<CreDtTm>2026-12-06T02:00:00+00:00</CreDtTm>"));
    }

    /// Writes the example file where `PAIN001_EXAMPLE` says, for the XSD check in CI.
    #[test]
    fn the_example_file_can_be_written_for_the_schema_check() {
        if let Some(path) = std::env::var_os("PAIN001_EXAMPLE") {
            std::fs::write(path, write(&initiation()).unwrap()).unwrap();
        }
    }

    #[test]
    fn identifiers_too_long_for_iso_20022_are_refused() {
        let mut long = initiation();
        long.transfers[0].end_to_end_id = "X".repeat(36);
        assert!(write(&long).is_err());
        let mut empty = initiation();
        empty.transfers.clear();
        assert!(write(&empty).is_err());
    }
}
