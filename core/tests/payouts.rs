//! Payout destinations and payouts against a real schema: a destination pays only once
//! confirmed, a payout takes its money once whatever the retries, the bank's outcome moves it
//! once whatever the re-imports, and the ledger audit stays clean throughout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bank;

use bank::*;
use holdfast_core::banking::destinations::{self, BankAccount, DestinationStatus};
use holdfast_core::banking::payouts::{self, BankOutcome, PayoutAmount, PayoutStatus};
use holdfast_core::banking::runs::{self, InstitutionBankAccount};
use holdfast_core::banking::statements;
use holdfast_core::ids::PartyId;
use holdfast_core::ledger::{self, Applied};
use holdfast_core::paging::{ListFilter, ListKind, Page};

#[tokio::test]
async fn a_destination_pays_only_once_confirmed_and_a_change_keeps_its_history() {
    let w = world().await;
    let first = w
        .write(async |txn| {
            destinations::register_in_txn(
                txn,
                &w.clock,
                w.seller,
                BankAccount::iban(IBAN)?,
                "Seller Ltd",
            )
            .await
        })
        .await
        .unwrap();
    assert_eq!(first.status, DestinationStatus::Pending);
    let refused = w
        .pay_out("k1", PayoutAmount::Exactly(usd(10_00)))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "payout_destination_required");

    w.write(async |txn| destinations::confirm_in_txn(txn, &w.clock, w.seller, first.id).await)
        .await
        .unwrap();
    // Confirmed once: again is refused, and changes nothing.
    let again = w
        .write(async |txn| destinations::confirm_in_txn(txn, &w.clock, w.seller, first.id).await)
        .await
        .unwrap_err();
    assert_eq!(again.code(), "invalid_state");

    // A change is pending until confirmed; payouts still go to the first account.
    let second = w
        .write(async |txn| {
            destinations::register_in_txn(
                txn,
                &w.clock,
                w.seller,
                BankAccount::domestic("088", "110-123-456789")?,
                "Seller Ltd",
            )
            .await
        })
        .await
        .unwrap();
    let paid_to = w
        .pay_out("k2", PayoutAmount::Exactly(usd(10_00)))
        .await
        .unwrap()
        .into_inner()
        .destination;
    assert_eq!(paid_to, first.id);
    w.write(async |txn| destinations::confirm_in_txn(txn, &w.clock, w.seller, second.id).await)
        .await
        .unwrap();
    let active = destinations::active(&w.db, w.seller)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(active.id, second.id);

    let history = destinations::history(
        &w.db,
        w.seller,
        &ListFilter::default(),
        &Page::first(ListKind::PayoutDestinations, 10),
    )
    .await
    .unwrap();
    let statuses: Vec<_> = history.items.iter().map(|d| d.status).collect();
    assert_eq!(
        statuses,
        [DestinationStatus::Active, DestinationStatus::Superseded]
    );
    // Another payee cannot see or confirm them.
    let stranger = PartyId::new();
    assert_eq!(
        destinations::get(&w.db, stranger, first.id)
            .await
            .unwrap_err()
            .code(),
        "not_found"
    );
    w.assert_audit_clean().await;
}

#[tokio::test]
async fn a_payout_takes_its_money_once_whatever_the_retries() {
    let w = world().await;
    w.confirmed_destination().await;

    let first = w
        .pay_out("k1", PayoutAmount::Exactly(usd(30_00)))
        .await
        .unwrap();
    assert!(first.is_new());
    let first = first.into_inner();
    assert_eq!(first.status, PayoutStatus::Pending);
    assert_eq!(w.balance(w.withdrawal).await, 70_00);
    assert_eq!(w.in_transit().await, 30_00);

    // The same request again: the same payout, no money moved.
    let replay = w
        .pay_out("k1", PayoutAmount::Exactly(usd(30_00)))
        .await
        .unwrap();
    assert_eq!(replay, Applied::Already(first.clone()));
    assert_eq!(w.balance(w.withdrawal).await, 70_00);
    // The same key for another amount is refused.
    let reused = w
        .pay_out("k1", PayoutAmount::Exactly(usd(31_00)))
        .await
        .unwrap_err();
    assert_eq!(reused.code(), "idempotency_key_reused");

    // More than is there: refused, nothing recorded.
    let too_much = w
        .pay_out("k2", PayoutAmount::Exactly(usd(70_01)))
        .await
        .unwrap_err();
    assert_eq!(too_much.code(), "insufficient_funds");
    // Everything that is there.
    let all = w
        .pay_out("k3", PayoutAmount::All(USD))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.amount, usd(70_00));
    assert_eq!(w.balance(w.withdrawal).await, 0);
    let nothing_left = w.pay_out("k4", PayoutAmount::All(USD)).await.unwrap_err();
    assert_eq!(nothing_left.code(), "insufficient_funds");
    // The refused key was not spent: it works once there is money again.
    assert_eq!(
        w.pay_out("k2", PayoutAmount::Exactly(usd(1)))
            .await
            .unwrap_err()
            .code(),
        "insufficient_funds"
    );

    let listed = payouts::payouts_of(
        &w.db,
        w.seller,
        &ListFilter::default(),
        &Page::first(ListKind::Payouts, 10),
    )
    .await
    .unwrap();
    assert_eq!(listed.items.len(), 2);
    w.assert_audit_clean().await;
}

#[tokio::test]
async fn the_banks_outcome_moves_the_money_once() {
    let w = world().await;
    w.confirmed_destination().await;
    let paid = w
        .pay_out("k1", PayoutAmount::Exactly(usd(30_00)))
        .await
        .unwrap()
        .into_inner();
    let returned = w
        .pay_out("k2", PayoutAmount::Exactly(usd(20_00)))
        .await
        .unwrap()
        .into_inner();

    // The bank cannot report a payout it was never sent.
    let early = w
        .report(&paid.end_to_end_id, BankOutcome::Paid)
        .await
        .unwrap_err();
    assert_eq!(early.code(), "invalid_state");

    let pending = payouts::pending_of_institution(&w.db, w.bank, 10)
        .await
        .unwrap();
    assert_eq!(pending.len(), 2);
    let ids: Vec<_> = pending.iter().map(|p| p.id).collect();
    let sent = w
        .write(async |txn| payouts::mark_sent_in_txn(txn, &w.clock, &ids).await)
        .await
        .unwrap();
    assert_eq!(sent.len(), 2);
    // A second run finds nothing left to send.
    let again = w
        .write(async |txn| payouts::mark_sent_in_txn(txn, &w.clock, &ids).await)
        .await
        .unwrap();
    assert!(again.is_empty());

    let outcome = w
        .report(&paid.end_to_end_id, BankOutcome::Paid)
        .await
        .unwrap();
    assert!(outcome.is_new());
    assert_eq!(outcome.into_inner().status, PayoutStatus::Paid);
    // The same statement imported again.
    assert!(
        !w.report(&paid.end_to_end_id, BankOutcome::Paid)
            .await
            .unwrap()
            .is_new()
    );

    let back = BankOutcome::Returned {
        reason: "AC04 account closed".into(),
    };
    let outcome = w
        .report(&returned.end_to_end_id, back.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(outcome.status, PayoutStatus::Returned);
    assert_eq!(
        outcome.return_reason.as_deref(),
        Some("AC04 account closed")
    );
    assert!(
        !w.report(&returned.end_to_end_id, back)
            .await
            .unwrap()
            .is_new()
    );
    // Returned is final.
    let late = w
        .report(&returned.end_to_end_id, BankOutcome::Paid)
        .await
        .unwrap_err();
    assert_eq!(late.code(), "invalid_state");

    // 100 earned − 30 paid out − 20 sent and returned.
    assert_eq!(w.balance(w.withdrawal).await, 70_00);
    assert_eq!(w.in_transit().await, 0);

    // A return after the bank reported the payout paid brings the money back too.
    let late_return = BankOutcome::Returned {
        reason: "MS03 not specified".into(),
    };
    w.report(&paid.end_to_end_id, late_return).await.unwrap();
    assert_eq!(w.balance(w.withdrawal).await, 10_000);
    assert_eq!(
        w.report("HF-unknown", BankOutcome::Paid)
            .await
            .unwrap_err()
            .code(),
        "not_found"
    );
    w.assert_audit_clean().await;
}

#[tokio::test]
async fn a_bank_run_sends_each_payout_once_from_the_institutions_account() {
    let w = world().await;
    w.confirmed_destination().await;
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
    let run = async || {
        w.write(async |txn| runs::prepare_run_in_txn(txn, &w.clock, w.bank).await)
            .await
            .unwrap()
    };

    // Without an account of its own at its bank, the institution cannot send: payouts wait.
    assert!(run().await.is_empty());
    assert_eq!(
        payouts::pending_of_institution(&w.db, w.bank, 10)
            .await
            .unwrap()
            .len(),
        2
    );
    let own = InstitutionBankAccount {
        institution: w.bank,
        currency: USD,
        account: BankAccount::iban("DE89 3704 0044 0532 0130 00").unwrap(),
        bic: Some("COBADEFFXXX".into()),
        holder_name: "Bank & Trust <Payouts>".into(),
    };
    let bad_bic = InstitutionBankAccount {
        bic: Some("cobadeff".into()),
        ..own.clone()
    };
    let refused = w
        .write(async |txn| runs::set_institution_account_in_txn(txn, &w.clock, &bad_bic).await)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "invalid_bank_account");
    w.write(async |txn| runs::set_institution_account_in_txn(txn, &w.clock, &own).await)
        .await
        .unwrap();

    let files = run().await;
    let [file] = files.as_slice() else {
        panic!("one file: {files:?}");
    };
    assert_eq!(file.transfers, 2);
    assert_eq!(file.format, "pain.001.001.09");
    for payout in [&first, &second] {
        assert!(file.content.contains(&payout.end_to_end_id));
    }
    assert!(file.content.contains("Bank &amp; Trust &lt;Payouts&gt;"));
    if let Some(path) = std::env::var_os("PAIN001_RUN_FILE") {
        std::fs::write(path, &file.content).unwrap();
    }
    let carried = runs::payouts_in_file(&w.db, file.id).await.unwrap();
    assert_eq!(carried.len(), 2);
    assert!(
        carried
            .iter()
            .all(|p| p.status == PayoutStatus::Sent && p.bank_file == Some(file.id))
    );

    // Nothing is sent twice.
    assert!(run().await.is_empty());
    assert_eq!(runs::files_to_hand_over(&w.db, 10).await.unwrap().len(), 1);
    w.write(async |txn| runs::mark_handed_over_in_txn(txn, &w.clock, file.id).await)
        .await
        .unwrap();
    assert!(
        runs::files_to_hand_over(&w.db, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // The next payout goes in the next file, under a message id of its own.
    w.pay_out("k3", PayoutAmount::Exactly(usd(5_00)))
        .await
        .unwrap();
    let next = run().await;
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].transfers, 1);
    assert_ne!(next[0].message_id, file.message_id);
    w.assert_audit_clean().await;
}

#[tokio::test]
async fn statements_settle_payouts_credit_deposits_and_leave_the_rest_to_an_operator() {
    let w = world().await;
    w.confirmed_destination().await;
    w.own_account().await;
    let paid = w
        .pay_out("k1", PayoutAmount::Exactly(usd(30_00)))
        .await
        .unwrap()
        .into_inner();
    let returned = w
        .pay_out("k2", PayoutAmount::Exactly(usd(20_00)))
        .await
        .unwrap()
        .into_inner();
    w.write(async |txn| runs::prepare_run_in_txn(txn, &w.clock, w.bank).await)
        .await
        .unwrap();
    let (prepaid, reference) = w.prepaid_with_reference().await;
    assert!(statements::rf_valid(&reference), "{reference}");
    let again = w
        .write(async |txn| statements::deposit_reference_in_txn(txn, &w.clock, prepaid.id).await)
        .await
        .unwrap();
    assert_eq!(again, reference);

    let entries = [
        entry(
            "B1",
            "30.00",
            "DBIT",
            &format!(
                "<Refs><EndToEndId>{}</EndToEndId></Refs>",
                paid.end_to_end_id
            ),
        ),
        entry(
            "B2",
            "20.00",
            "CRDT",
            &format!(
                "<Refs><EndToEndId>{}</EndToEndId></Refs><RtrInf><Rsn><Cd>AC04</Cd></Rsn></RtrInf>",
                returned.end_to_end_id
            ),
        ),
        entry(
            "B3",
            "12.50",
            "CRDT",
            &format!("<RmtInf><Ustrd>{reference}</Ustrd></RmtInf>"),
        ),
        // A credit nobody can place, and a wrong reference.
        entry(
            "B4",
            "7.00",
            "CRDT",
            "<RmtInf><Ustrd>thanks</Ustrd></RmtInf>",
        ),
        entry(
            "B5",
            "1.00",
            "CRDT",
            "<RmtInf><Ustrd>RF00BADREF</Ustrd></RmtInf>",
        ),
    ]
    .concat();
    let import = async |xml: String| {
        w.write(async |txn| statements::import_in_txn(txn, &w.clock, w.bank, &xml).await)
            .await
    };
    let summary = import(notification("N1", &entries)).await.unwrap();
    assert!(summary.is_new());
    assert_eq!(
        summary.into_inner(),
        statements::ImportSummary {
            entries: 5,
            duplicates: 0,
            payouts_paid: 1,
            payouts_returned: 1,
            deposits: 1,
            for_operator: 2,
        }
    );
    assert_eq!(
        ledger::get_account(&w.db, prepaid.id)
            .await
            .unwrap()
            .balance,
        12_50
    );
    // 100 − 30 paid − 20 sent and returned.
    assert_eq!(w.balance(w.withdrawal).await, 70_00);
    assert_eq!(w.in_transit().await, 0);

    // The same file again: nothing happens.
    let replay = import(notification("N1", &entries)).await.unwrap();
    assert!(!replay.is_new());
    // The day's statement repeats the entries under another message id: each is known.
    let repeated = import(notification("EOD1", &entries))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((repeated.entries, repeated.duplicates), (5, 5));
    assert_eq!(
        ledger::get_account(&w.db, prepaid.id)
            .await
            .unwrap()
            .balance,
        12_50
    );

    // A statement of an account Holdfast does not mirror is refused whole.
    let foreign = notification("N2", &entry("B9", "1.00", "CRDT", ""))
        .replace("DE89370400440532013000", "DE44500105175407324931");
    assert_eq!(import(foreign).await.unwrap_err().code(), "invalid_request");
    w.assert_audit_clean().await;
}
