//! Reconciling an institution's own bank account against the ledger: entries counted on the
//! day the bank booked them whenever they are imported, every open item listed, nothing
//! corrected without an operator, and a clean day once each item has a recorded reason.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bank;

use bank::*;
use chrono::{NaiveDate, TimeZone, Utc};
use holdfast_core::banking::payouts::PayoutAmount;
use holdfast_core::banking::reconciliation::{self, DifferenceKind};
use holdfast_core::banking::runs;
use holdfast_core::banking::statements;
use holdfast_core::entities::party_events;
use holdfast_core::ledger;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, 10).unwrap()
}

/// A camt.053 of the bank's own account for the world's day.
fn end_of_day(message_id: &str, opening: &str, closing: &str, entries: &str) -> String {
    format!(
        r#"<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08">
  <BkToCstmrStmt>
    <GrpHdr><MsgId>{message_id}</MsgId></GrpHdr>
    <Stmt><Id>{message_id}-1</Id>
      <Acct><Id><IBAN>DE89370400440532013000</IBAN></Id><Ccy>USD</Ccy></Acct>
      <Bal><Tp><CdOrPrtry><Cd>OPBD</Cd></CdOrPrtry></Tp><Amt Ccy="USD">{opening}</Amt><CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2026-03-10</Dt></Dt></Bal>
      <Bal><Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp><Amt Ccy="USD">{closing}</Amt><CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2026-03-10</Dt></Dt></Bal>
      {entries}
    </Stmt>
  </BkToCstmrStmt>
</Document>"#
    )
}

#[tokio::test]
async fn a_day_reconciles_once_every_difference_has_a_reason() {
    let w = world().await;
    w.confirmed_destination().await;
    w.own_account().await;
    let (prepaid, reference) = w.prepaid_with_reference().await;
    let paid = w
        .pay_out("k1", PayoutAmount::Exactly(usd(30_00)))
        .await
        .unwrap()
        .into_inner();
    w.write(async |txn| runs::prepare_run_in_txn(txn, &w.clock, w.bank).await)
        .await
        .unwrap();
    let reconcile = async || {
        reconciliation::reconcile(&w.db, w.bank, USD, day())
            .await
            .unwrap()
    };

    // No end-of-day statement yet: not clean, whatever else.
    assert!(!reconcile().await.is_clean());

    // During the day: the payout paid, and a deposit with its reference.
    let paid_entry = entry(
        "B1",
        "30.00",
        "DBIT",
        &format!(
            "<Refs><EndToEndId>{}</EndToEndId></Refs>",
            paid.end_to_end_id
        ),
    );
    let deposit_entry = entry(
        "B3",
        "12.50",
        "CRDT",
        &format!("<RmtInf><Ustrd>{reference}</Ustrd></RmtInf>"),
    );
    let during_the_day = notification("N1", &format!("{paid_entry}{deposit_entry}"));
    w.write(async |txn| statements::import_in_txn(txn, &w.clock, w.bank, &during_the_day).await)
        .await
        .unwrap();

    // The end-of-day statement arrives the next morning, with a credit nobody can place.
    w.clock
        .set(Utc.with_ymd_and_hms(2026, 3, 11, 8, 0, 0).unwrap());
    let stray = entry(
        "B4",
        "7.00",
        "CRDT",
        "<RmtInf><Ustrd>for my card</Ustrd></RmtInf>",
    );
    let eod = end_of_day(
        "EOD1",
        "100.00",
        "89.50",
        &format!("{paid_entry}{deposit_entry}{stray}"),
    );
    w.write(async |txn| statements::import_in_txn(txn, &w.clock, w.bank, &eod).await)
        .await
        .unwrap();

    let found = w
        .write(async |txn| reconciliation::run_in_txn(txn, &w.clock, w.bank, USD, day()).await)
        .await
        .unwrap();
    // The ledger: 100.00 brought in by hand (no bank entry) − 30.00 paid + 12.50 deposited.
    assert_eq!(found.ledger_balance, 82_50);
    assert_eq!(found.bank_closing, Some(89_50));
    assert_eq!(found.balance_difference(), Some(7_00));
    let kinds: Vec<_> = found
        .differences
        .iter()
        .map(|d| (d.kind, d.amount))
        .collect();
    assert_eq!(
        kinds,
        [
            (DifferenceKind::MissingOnOurSide, 7_00),
            (DifferenceKind::MissingAtBank, 10_000),
        ]
    );
    assert!(!found.is_clean());
    // Raised to the institution.
    let raised = party_events::Entity::find()
        .filter(party_events::Column::PartyId.eq(w.bank.uuid()))
        .filter(party_events::Column::Kind.eq("reconciliation.discrepancy"))
        .all(&w.db)
        .await
        .unwrap();
    assert_eq!(raised.len(), 1);

    // Nothing moved by itself.
    assert_eq!(
        ledger::get_account(&w.db, prepaid.id)
            .await
            .unwrap()
            .balance,
        12_50
    );

    // An operator places the stray credit on the account it was for, and explains the rest.
    let operator = holdfast_core::ids::PartyId::new();
    let stray_id = found.differences[0].bank_entry.unwrap();
    let no_reason = w
        .write(async |txn| {
            reconciliation::assign_entry_in_txn(
                txn, &w.clock, w.bank, stray_id, prepaid.id, operator, " ",
            )
            .await
        })
        .await
        .unwrap_err();
    assert_eq!(no_reason.code(), "invalid_request");
    w.write(async |txn| {
        reconciliation::assign_entry_in_txn(
            txn,
            &w.clock,
            w.bank,
            stray_id,
            prepaid.id,
            operator,
            "the shopper's transfer without its reference (phoned in)",
        )
        .await
    })
    .await
    .unwrap();
    assert_eq!(
        ledger::get_account(&w.db, prepaid.id)
            .await
            .unwrap()
            .balance,
        19_50
    );
    let again = w
        .write(async |txn| {
            reconciliation::resolve_entry_in_txn(txn, &w.clock, w.bank, stray_id, operator, "twice")
                .await
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), "invalid_state");

    let by_hand = found.differences[1].transfer.unwrap();
    w.write(async |txn| {
        reconciliation::resolve_transfer_in_txn(
            txn,
            &w.clock,
            w.bank,
            USD,
            by_hand,
            operator,
            "opening balance brought over from the bank's books before Holdfast",
        )
        .await
    })
    .await
    .unwrap();

    let clean = w
        .write(async |txn| reconciliation::run_in_txn(txn, &w.clock, w.bank, USD, day()).await)
        .await
        .unwrap();
    assert_eq!(clean.ledger_balance, 89_50);
    assert!(clean.is_clean(), "{clean:?}");
    w.assert_audit_clean().await;
}
