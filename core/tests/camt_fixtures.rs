//! Hand-written camt statements (tests/fixtures/*.xml) for the cases a bank's files bring that
//! the generated ones do not: a payout paid then returned with the bank's reason, a debit that
//! names a payout with another amount, the day's camt.053 repeating a camt.054's entry, a
//! statement imported twice, and a deposit reference with mistyped check digits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bank;

use bank::*;
use holdfast_core::CoreError;
use holdfast_core::banking::payouts::{self, Payout, PayoutAmount, PayoutStatus};
use holdfast_core::banking::runs;
use holdfast_core::banking::statements::{self, EntryStatus, ImportSummary};
use holdfast_core::entities::{bank_balances, bank_entries};
use holdfast_core::ledger::{self, Applied};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

/// A fixture with its `{{NAME}}` placeholders filled in.
fn fixture(name: &str, values: &[(&str, &str)]) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let mut xml = std::fs::read_to_string(&path).expect("fixture");
    for (placeholder, value) in values {
        xml = xml.replace(&format!("{{{{{placeholder}}}}}"), value);
    }
    assert!(!xml.contains("{{"), "{name}: a placeholder left unfilled");
    xml
}

/// Payouts of 30.00 and 20.00, sent in one run.
async fn two_sent_payouts(w: &World) -> (Payout, Payout) {
    w.confirmed_destination().await;
    w.own_account().await;
    let first = w
        .pay_out("k1", PayoutAmount::Exactly(usd(30_00)))
        .await
        .unwrap()
        .into_inner();
    let second = w
        .pay_out("k2", PayoutAmount::Exactly(usd(20_00)))
        .await
        .unwrap()
        .into_inner();
    w.write(async |txn| runs::prepare_run_in_txn(txn, &w.clock, w.bank).await)
        .await
        .unwrap();
    (first, second)
}

async fn import(w: &World, xml: &str) -> Result<Applied<ImportSummary>, CoreError> {
    w.write(async |txn| statements::import_in_txn(txn, &w.clock, w.bank, xml).await)
        .await
}

async fn entry_by_reference(w: &World, reference: &str) -> bank_entries::Model {
    bank_entries::Entity::find()
        .filter(bank_entries::Column::Reference.eq(reference))
        .one(&w.db)
        .await
        .unwrap()
        .expect("the entry is stored")
}

async fn payout_now(w: &World, payout: &Payout) -> Payout {
    payouts::get(&w.db, w.seller, payout.id).await.unwrap()
}

#[tokio::test]
async fn a_payout_paid_then_returned_comes_back_with_the_banks_reason() {
    let w = world().await;
    let (payout, _) = two_sent_payouts(&w).await;
    let xml = fixture(
        "camt054_paid_then_returned.xml",
        &[("E2E", &payout.end_to_end_id)],
    );
    let summary = import(&w, &xml).await.unwrap().into_inner();
    assert_eq!((summary.payouts_paid, summary.payouts_returned), (1, 1));
    assert_eq!(summary.for_operator, 0);
    let now = payout_now(&w, &payout).await;
    assert_eq!(now.status, PayoutStatus::Returned);
    assert_eq!(now.return_reason.as_deref(), Some("AC04 Account closed"));
    let back = entry_by_reference(&w, "RET-BACK-1").await;
    assert_eq!(back.status, EntryStatus::Matched);
    assert_eq!(back.payout_id, Some(payout.id.uuid()));
    assert_eq!(back.return_reason.as_deref(), Some("AC04 Account closed"));
    // The 30.00 is back on the withdrawal account; the 20.00 is still with the bank.
    assert_eq!(w.balance(w.withdrawal).await, 80_00);
    assert_eq!(w.in_transit().await, 20_00);
    w.assert_audit_clean().await;
}

#[tokio::test]
async fn a_debit_of_another_amount_than_the_payout_is_a_mismatch_not_a_payment() {
    let w = world().await;
    let (payout, _) = two_sent_payouts(&w).await;
    let xml = fixture(
        "camt054_partial_match.xml",
        &[("E2E", &payout.end_to_end_id)],
    );
    let summary = import(&w, &xml).await.unwrap().into_inner();
    assert_eq!(
        summary,
        ImportSummary {
            entries: 1,
            duplicates: 0,
            payouts_paid: 0,
            payouts_returned: 0,
            deposits: 0,
            for_operator: 1,
        }
    );
    assert_eq!(payout_now(&w, &payout).await.status, PayoutStatus::Sent);
    let stored = entry_by_reference(&w, "PART-1").await;
    assert_eq!(stored.status, EntryStatus::Mismatch);
    assert_eq!(stored.amount.0, -25_00);
    assert!(stored.transfer_id.is_none() && stored.payout_id.is_none());
    assert!(stored.note.unwrap().contains(&payout.end_to_end_id));
    // Nothing left the ledger: both payouts' money is still in transit.
    assert_eq!(w.in_transit().await, 50_00);
    w.assert_audit_clean().await;
}

#[tokio::test]
async fn the_days_statement_repeating_a_notification_stores_each_entry_once_and_twice_is_nothing() {
    let w = world().await;
    let (early, late) = two_sent_payouts(&w).await;
    let values = [
        ("E2E", early.end_to_end_id.as_str()),
        ("E2E_LATE", late.end_to_end_id.as_str()),
    ];
    let intraday = fixture("camt054_intraday.xml", &values[..1]);
    let end_of_day = fixture("camt053_end_of_day.xml", &values);

    let first = import(&w, &intraday).await.unwrap().into_inner();
    assert_eq!((first.entries, first.payouts_paid), (1, 1));
    let day = import(&w, &end_of_day).await.unwrap();
    assert!(day.is_new());
    assert_eq!(
        day.into_inner(),
        ImportSummary {
            entries: 2,
            duplicates: 1,
            payouts_paid: 1,
            payouts_returned: 0,
            deposits: 0,
            for_operator: 0,
        }
    );
    let stored = bank_entries::Entity::find().all(&w.db).await.unwrap();
    assert_eq!(stored.len(), 2, "DAY-1 once, DAY-2 once");
    assert_eq!(payout_now(&w, &early).await.status, PayoutStatus::Paid);
    assert_eq!(payout_now(&w, &late).await.status, PayoutStatus::Paid);

    // Both files again: recognised by their message ids, nothing moves or is stored.
    for xml in [&intraday, &end_of_day] {
        let again = import(&w, xml).await.unwrap();
        assert_eq!(again, Applied::Already(ImportSummary::default()));
    }
    assert_eq!(
        bank_entries::Entity::find().all(&w.db).await.unwrap().len(),
        2
    );
    let balances = bank_balances::Entity::find().all(&w.db).await.unwrap();
    assert_eq!(balances.len(), 1);
    assert_eq!(balances[0].closing.0, 50_00);
    assert_eq!(w.in_transit().await, 0);
    assert_eq!(w.balance(w.withdrawal).await, 50_00);
    w.assert_audit_clean().await;
}

/// `reference` with other check digits: the same payload, refused by ISO 11649's mod 97.
fn with_wrong_check_digits(reference: &str) -> String {
    let digits: u32 = reference[2..4].parse().unwrap();
    let wrong = format!("RF{:02}{}", (digits + 1) % 97 + 2, &reference[4..]);
    assert_ne!(wrong, reference);
    wrong
}

#[tokio::test]
async fn a_credit_whose_reference_has_wrong_check_digits_is_no_deposit() {
    let w = world().await;
    w.own_account().await;
    let (prepaid, reference) = w.prepaid_with_reference().await;
    let wrong = with_wrong_check_digits(&reference);
    assert!(!statements::rf_valid(&wrong), "{wrong}");
    let xml = fixture(
        "camt054_wrong_check_digits.xml",
        &[("WRONG_REFERENCE", &wrong)],
    );
    let summary = import(&w, &xml).await.unwrap().into_inner();
    assert_eq!((summary.deposits, summary.for_operator), (0, 1));
    let stored = entry_by_reference(&w, "TYPO-1").await;
    assert_eq!(stored.status, EntryStatus::Unmatched);
    assert!(stored.transfer_id.is_none());
    assert_eq!(
        ledger::get_account(&w.db, prepaid.id)
            .await
            .unwrap()
            .balance,
        0
    );

    // The control: the same file with the right reference is a deposit.
    let right = fixture(
        "camt054_wrong_check_digits.xml",
        &[("WRONG_REFERENCE", &reference)],
    )
    .replace("NTF-TYPO-1", "NTF-RIGHT-1")
    .replace("TYPO-1", "RIGHT-1");
    let summary = import(&w, &right).await.unwrap().into_inner();
    assert_eq!(summary.deposits, 1);
    assert_eq!(
        ledger::get_account(&w.db, prepaid.id)
            .await
            .unwrap()
            .balance,
        12_50
    );
    w.assert_audit_clean().await;
}

#[tokio::test]
async fn a_credit_without_the_banks_own_reference_is_never_deposited_twice() {
    let w = world().await;
    w.own_account().await;
    let (prepaid, reference) = w.prepaid_with_reference().await;
    let sent_as = |message_id: &str| {
        fixture(
            "camt054_deposit_without_bank_reference.xml",
            &[("MSG_ID", message_id), ("REFERENCE", &reference)],
        )
    };
    // Without a reference of the bank's, a repeat cannot be told from a second transfer, so
    // neither is booked by itself: an operator decides.
    for message_id in ["NTF-NOREF-1", "EOD-NOREF-1"] {
        let summary = import(&w, &sent_as(message_id)).await.unwrap().into_inner();
        assert_eq!((summary.deposits, summary.for_operator), (0, 1));
    }
    assert_eq!(
        ledger::get_account(&w.db, prepaid.id)
            .await
            .unwrap()
            .balance,
        0
    );
    let waiting = bank_entries::Entity::find()
        .filter(bank_entries::Column::Status.eq(EntryStatus::Mismatch))
        .all(&w.db)
        .await
        .unwrap();
    assert_eq!(waiting.len(), 2);
    w.assert_audit_clean().await;
}

#[tokio::test]
async fn a_payout_debit_without_the_banks_own_reference_counts_once_in_the_books() {
    let w = world().await;
    let (payout, reported) = two_sent_payouts(&w).await;
    // The notification's entry stripped of the bank's reference, sent again as the day's
    // statement would (another message id): the second cannot be recognised as a repeat.
    let without_reference = |message_id: &str| {
        fixture("camt054_intraday.xml", &[("E2E", &payout.end_to_end_id)])
            .replace("<AcctSvcrRef>DAY-1</AcctSvcrRef>", "")
            .replace("NTF-DAY-1", message_id)
    };
    let first = import(&w, &without_reference("NTF-NOREF-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((first.payouts_paid, first.for_operator), (1, 0));
    let day = chrono::NaiveDate::from_ymd_opt(2026, 3, 10).unwrap();
    let books = async || {
        holdfast_core::banking::reconciliation::reconcile(&w.db, w.bank, USD, day)
            .await
            .unwrap()
            .ledger_balance
    };
    let before = books().await;
    let repeat = import(&w, &without_reference("EOD-NOREF-1"))
        .await
        .unwrap()
        .into_inner();
    // Not paid a second time, and not linked to the payout's transfer again (the books would
    // count its money twice): an operator sees the repeat.
    assert_eq!((repeat.payouts_paid, repeat.for_operator), (0, 1));
    assert_eq!(books().await, before);
    assert_eq!(payout_now(&w, &payout).await.status, PayoutStatus::Paid);
    assert_eq!(w.in_transit().await, 20_00);

    // An outcome reported before any statement (not through an entry): the statement's entry
    // is the first to account for its transfer, and is matched to it.
    w.report(&reported.end_to_end_id, payouts::BankOutcome::Paid)
        .await
        .unwrap();
    let statement = fixture("camt054_intraday.xml", &[("E2E", &reported.end_to_end_id)])
        .replace("30.00", "20.00")
        .replace("DAY-1", "DAY-2");
    let summary = import(&w, &statement).await.unwrap().into_inner();
    assert_eq!((summary.payouts_paid, summary.for_operator), (1, 0));
    let stored = entry_by_reference(&w, "DAY-2").await;
    assert_eq!(stored.status, EntryStatus::Matched);
    assert!(stored.transfer_id.is_some());
    assert_eq!(w.in_transit().await, 0);
    w.assert_audit_clean().await;
}
