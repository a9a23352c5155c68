//! Append-only accounts against a model ledger that updates every balance at once: any
//! interleaving of transfers, holds and folds gives the same exact balances, accepts and
//! refuses the same debits, and, once everything is folded, the same cached balances.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{TimeZone, Utc};
use holdfast_core::clock::Clock;
use holdfast_core::db::{self, PoolSize};
use holdfast_core::entities::accounts;
use holdfast_core::holds::{self, HoldMode, Payout, PlaceHold};
use holdfast_core::ids::{AccountId, HoldId, PartyId};
use holdfast_core::ledger::{self, AccountKind, Leg, NewAccount, NewTransfer, TransferKind};
use holdfast_core::parties::{self, NewParty, Role};
use holdfast_core::{CoreError, Currency, Money};
use holdfast_migrations::{Migrator, MigratorTrait};
use proptest::prelude::*;
use sea_orm::{DatabaseConnection, EntityTrait, TransactionTrait};

const CURRENCY: Currency = Currency::USD;
const START_BALANCE: i64 = 5_000;

/// The accounts, in the order the ops name them: two locked funding accounts, then the
/// append-only ones (a withdrawal account, the commission, the external source, a freezing
/// account).
const FUNDING_A: usize = 0;
const FUNDING_B: usize = 1;
const WITHDRAWAL: usize = 2;
const COMMISSION: usize = 3;
const EXTERNAL: usize = 4;
const FREEZING: usize = 5;
const ACCOUNTS: usize = 6;

struct World {
    db: DatabaseConnection,
    clock: Clock,
    institution: PartyId,
    accounts: [AccountId; ACCOUNTS],
}

fn money(minor: i64) -> Money {
    Money::from_minor(minor, CURRENCY).unwrap()
}

async fn world() -> World {
    let db = db::connect(
        "sqlite::memory:",
        PoolSize {
            sqlite: 1,
            postgres: 1,
        },
    )
    .await
    .unwrap();
    Migrator::up(&db, None).await.unwrap();
    let clock = Clock::manual(Utc.with_ymd_and_hms(2026, 3, 10, 9, 0, 0).unwrap());
    let txn = db.begin().await.unwrap();
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
    let institution = party(Role::Institution).await;
    let customer = party(Role::Shopper).await;
    let seller = party(Role::Supplier).await;
    let mut ids = Vec::new();
    for (kind, owner) in [
        (AccountKind::Prepaid, customer),
        (AccountKind::Prepaid, customer),
        (AccountKind::Withdrawal, seller),
        (AccountKind::Commission, institution),
        (AccountKind::External, institution),
        (AccountKind::Freezing, institution),
    ] {
        let account = ledger::open_account_in_txn(
            &txn,
            &clock,
            NewAccount {
                key: None,
                kind,
                owner,
                institution: Some(institution),
                currency: CURRENCY,
                credit_limit: money(0),
                credit_class: None,
            },
        )
        .await
        .unwrap();
        assert_eq!(account.kind.is_append_only(), ids.len() >= WITHDRAWAL);
        ids.push(account.id);
    }
    txn.commit().await.unwrap();
    World {
        db,
        clock,
        institution,
        accounts: ids.try_into().unwrap(),
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// `amount` from one account to one or two others (the second gets `split`‰ of it).
    Transfer {
        from: usize,
        to: usize,
        also: usize,
        split: i64,
        amount: i64,
    },
    /// A hold from a funding account into the freezing account.
    Hold {
        from: usize,
        amount: i64,
    },
    /// Posts `percent` of a hold: nine tenths to the withdrawal account, the rest commission.
    Post {
        hold: usize,
        percent: i64,
    },
    Void {
        hold: usize,
    },
    /// Folds at most `limit` postings of one account.
    Fold {
        account: usize,
        limit: u64,
    },
    FoldAll,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..ACCOUNTS - 1, 0..ACCOUNTS - 1, 0..ACCOUNTS - 1, 0i64..1_000, 1i64..3_000).prop_map(
            |(from, to, also, split, amount)| Op::Transfer { from, to, also, split, amount }
        ),
        2 => (0..2usize, 1i64..2_000).prop_map(|(from, amount)| Op::Hold { from, amount }),
        2 => (0..8usize, 0i64..=100).prop_map(|(hold, percent)| Op::Post { hold, percent }),
        1 => (0..8usize).prop_map(|hold| Op::Void { hold }),
        3 => (0..ACCOUNTS, 1u64..4).prop_map(|(account, limit)| Op::Fold { account, limit }),
        1 => Just(Op::FoldAll),
    ]
}

/// The model: every balance updated at once, as a ledger without append-only accounts would.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Model {
    balances: [i64; ACCOUNTS],
    /// Pending holds: (id, funding account, amount).
    holds: Vec<(HoldId, usize, i64)>,
}

impl Model {
    /// Applies the legs if every debited account that must not go below zero can pay.
    fn transfer(&mut self, legs: &[(usize, i64)]) -> bool {
        let mut after = self.balances;
        for &(account, amount) in legs {
            after[account] += amount;
        }
        let ok =
            (0..ACCOUNTS).all(|a| a == EXTERNAL || after[a] >= 0 || after[a] >= self.balances[a]);
        if ok {
            self.balances = after;
        }
        ok
    }
}

async fn fold_everything(w: &World) {
    loop {
        let accounts = ledger::accounts_to_fold(&w.db, 100).await.unwrap();
        if accounts.is_empty() {
            return;
        }
        for account in accounts {
            let txn = db::begin_write(&w.db).await.unwrap();
            ledger::fold_account_in_txn(&txn, account, ledger::MAX_FOLD_BATCH)
                .await
                .unwrap();
            txn.commit().await.unwrap();
        }
    }
}

fn refused(error: &CoreError) -> bool {
    matches!(error, CoreError::InsufficientFunds { .. })
}

async fn run(ops: Vec<Op>) {
    let w = world().await;
    let mut model = Model {
        balances: [0; ACCOUNTS],
        holds: Vec::new(),
    };
    let mut holds_placed: Vec<(HoldId, usize, i64, bool)> = Vec::new();
    // Deposits from the external account, appended to it.
    for funding in [FUNDING_A, FUNDING_B] {
        let txn = db::begin_write(&w.db).await.unwrap();
        ledger::post_transfer_in_txn(
            &txn,
            &w.clock,
            NewTransfer {
                key: format!("deposit-{funding}"),
                kind: TransferKind::Deposit,
                currency: CURRENCY,
                legs: vec![
                    Leg::debit(w.accounts[EXTERNAL], money(START_BALANCE)),
                    Leg::credit(w.accounts[funding], money(START_BALANCE)),
                ],
                hold: None,
                case: None,
            },
        )
        .await
        .unwrap();
        txn.commit().await.unwrap();
        assert!(model.transfer(&[(EXTERNAL, -START_BALANCE), (funding, START_BALANCE)]));
    }

    for (n, op) in ops.iter().enumerate() {
        let txn = db::begin_write(&w.db).await.unwrap();
        match op {
            Op::Transfer {
                from,
                to,
                also,
                split,
                amount,
            } => {
                let second = amount * split / 1_000;
                let mut legs = vec![(*from, -amount), (*to, amount - second)];
                if second > 0 {
                    legs.push((*also, second));
                }
                let result = ledger::post_transfer_in_txn(
                    &txn,
                    &w.clock,
                    NewTransfer {
                        key: format!("t-{n}"),
                        kind: TransferKind::Deposit,
                        currency: CURRENCY,
                        legs: legs
                            .iter()
                            .map(|&(a, m)| Leg {
                                account: w.accounts[a],
                                amount: m,
                            })
                            .collect(),
                        hold: None,
                        case: None,
                    },
                )
                .await;
                // Legs that net to nothing on every account are refused as malformed.
                let mut net = [0i64; ACCOUNTS];
                for &(a, m) in &legs {
                    net[a] += m;
                }
                let moves = net.iter().filter(|m| **m != 0).count() >= 2;
                let mut expected = model.clone();
                let accepted = moves && expected.transfer(&legs);
                match result {
                    Ok(_) => {
                        assert!(accepted, "{op:?} was accepted; the model refuses it");
                        model = expected;
                        txn.commit().await.unwrap();
                    }
                    Err(error) => {
                        assert!(!accepted, "{op:?} refused: {error:?}; the model accepts it");
                        assert!(
                            refused(&error) || (!moves && matches!(error, CoreError::Invalid(_))),
                            "{op:?}: {error:?}"
                        );
                        txn.rollback().await.unwrap();
                    }
                }
            }
            Op::Hold { from, amount } => {
                let result = holds::place_hold_in_txn(
                    &txn,
                    &w.clock,
                    PlaceHold {
                        key: format!("h-{n}"),
                        funding_account: w.accounts[*from],
                        freezing_account: w.accounts[FREEZING],
                        institution: w.institution,
                        amount: money(*amount),
                        mode: HoldMode::Move,
                        expires_at: None,
                        case: None,
                    },
                )
                .await;
                let mut expected = model.clone();
                let accepted = expected.transfer(&[(*from, -amount), (FREEZING, *amount)]);
                match result {
                    Ok(hold) => {
                        assert!(accepted, "{op:?}");
                        model = expected;
                        let id = hold.into_inner().id;
                        model.holds.push((id, *from, *amount));
                        holds_placed.push((id, *from, *amount, true));
                        txn.commit().await.unwrap();
                    }
                    Err(error) => {
                        assert!(!accepted && refused(&error), "{op:?}: {error:?}");
                        txn.rollback().await.unwrap();
                    }
                }
            }
            Op::Post { hold, percent } => {
                let Some(&(id, from, amount, pending)) = holds_placed.get(*hold) else {
                    txn.rollback().await.unwrap();
                    continue;
                };
                let posted = amount * percent / 100;
                let commission = posted / 10;
                let result = holds::post_hold_in_txn(
                    &txn,
                    &w.clock,
                    id,
                    "post",
                    money(posted),
                    &[
                        Payout {
                            account: w.accounts[WITHDRAWAL],
                            amount: money(posted - commission),
                        },
                        Payout {
                            account: w.accounts[COMMISSION],
                            amount: money(commission),
                        },
                    ],
                )
                .await;
                match result {
                    Ok(applied) if pending => {
                        assert!(applied.is_new());
                        assert!(model.transfer(&[
                            (FREEZING, -amount),
                            (WITHDRAWAL, posted - commission),
                            (COMMISSION, commission),
                            (from, amount - posted),
                        ]));
                        model.holds.retain(|h| h.0 != id);
                        holds_placed[*hold].3 = false;
                        txn.commit().await.unwrap();
                    }
                    Ok(applied) => {
                        assert!(!applied.is_new(), "{op:?} resolved a hold twice");
                        txn.rollback().await.unwrap();
                    }
                    Err(error) => {
                        assert!(!pending, "{op:?}: {error:?}");
                        txn.rollback().await.unwrap();
                    }
                }
            }
            Op::Void { hold } => {
                let Some(&(id, from, amount, pending)) = holds_placed.get(*hold) else {
                    txn.rollback().await.unwrap();
                    continue;
                };
                let result = holds::void_hold_in_txn(&txn, &w.clock, id, "void").await;
                match result {
                    Ok(applied) if pending => {
                        assert!(applied.is_new());
                        assert!(model.transfer(&[(FREEZING, -amount), (from, amount)]));
                        model.holds.retain(|h| h.0 != id);
                        holds_placed[*hold].3 = false;
                        txn.commit().await.unwrap();
                    }
                    Ok(applied) => {
                        assert!(!applied.is_new(), "{op:?} resolved a hold twice");
                        txn.rollback().await.unwrap();
                    }
                    Err(error) => {
                        assert!(!pending, "{op:?}: {error:?}");
                        txn.rollback().await.unwrap();
                    }
                }
            }
            Op::Fold { account, limit } => {
                let folded = ledger::fold_account_in_txn(&txn, w.accounts[*account], *limit)
                    .await
                    .unwrap()
                    .expect("nobody else holds the account");
                assert!(folded.postings <= *limit);
                if *account < WITHDRAWAL {
                    assert_eq!(folded.postings, 0, "a locked account has nothing to fold");
                }
                txn.commit().await.unwrap();
            }
            Op::FoldAll => {
                txn.rollback().await.unwrap();
                fold_everything(&w).await;
            }
        }

        for (i, id) in w.accounts.iter().enumerate() {
            let account = ledger::get_account(&w.db, *id).await.unwrap();
            assert_eq!(
                account.balance, model.balances[i],
                "account {i} after {op:?}"
            );
        }
        let audit = ledger::audit(&w.db).await.unwrap();
        assert!(audit.is_clean(), "after {op:?}: {audit:?}");
    }

    // Folded to the end, the cached balances are the model's, and nothing is left to fold.
    fold_everything(&w).await;
    for (i, id) in w.accounts.iter().enumerate() {
        let row = accounts::Entity::find_by_id(id.uuid())
            .one(&w.db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.balance.0, model.balances[i], "account {i} folded");
    }
    let pending: i64 = model.holds.iter().map(|h| h.2).sum();
    assert_eq!(model.balances[FREEZING], pending);
    let audit = ledger::audit(&w.db).await.unwrap();
    assert!(audit.is_clean(), "{audit:?}");
    assert_eq!(audit.unfolded_postings, 0);
    assert_eq!(
        audit.net_by_currency.get("USD").map(String::as_str),
        Some("0.00")
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_interleaving_of_postings_and_folds_matches_immediate_updates(
        ops in prop::collection::vec(op(), 1..50)
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(run(ops));
    }
}

#[tokio::test]
async fn a_fold_run_twice_adds_nothing_the_second_time() {
    let w = world().await;
    let txn = db::begin_write(&w.db).await.unwrap();
    ledger::post_transfer_in_txn(
        &txn,
        &w.clock,
        NewTransfer {
            key: "pay-in".into(),
            kind: TransferKind::Deposit,
            currency: CURRENCY,
            legs: vec![
                Leg::debit(w.accounts[EXTERNAL], money(700)),
                Leg::credit(w.accounts[COMMISSION], money(700)),
            ],
            hold: None,
            case: None,
        },
    )
    .await
    .unwrap();
    txn.commit().await.unwrap();
    let row = |id: AccountId| {
        let db = w.db.clone();
        async move {
            accounts::Entity::find_by_id(id.uuid())
                .one(&db)
                .await
                .unwrap()
                .unwrap()
                .balance
                .0
        }
    };
    // Appended: the row is untouched, the exact balance counts the posting.
    assert_eq!(row(w.accounts[COMMISSION]).await, 0);
    let exact = ledger::get_account(&w.db, w.accounts[COMMISSION])
        .await
        .unwrap();
    assert_eq!(exact.balance, 700);
    for expected in [1, 0] {
        let txn = db::begin_write(&w.db).await.unwrap();
        let folded = ledger::fold_account_in_txn(&txn, w.accounts[COMMISSION], 10)
            .await
            .unwrap()
            .unwrap();
        txn.commit().await.unwrap();
        assert_eq!(folded.postings, expected);
        assert_eq!(row(w.accounts[COMMISSION]).await, 700);
    }
    // A fold that rolls back (a crash before commit) leaves the posting unfolded.
    let txn = db::begin_write(&w.db).await.unwrap();
    ledger::post_transfer_in_txn(
        &txn,
        &w.clock,
        NewTransfer {
            key: "pay-in-2".into(),
            kind: TransferKind::Deposit,
            currency: CURRENCY,
            legs: vec![
                Leg::debit(w.accounts[EXTERNAL], money(50)),
                Leg::credit(w.accounts[COMMISSION], money(50)),
            ],
            hold: None,
            case: None,
        },
    )
    .await
    .unwrap();
    txn.commit().await.unwrap();
    let txn = db::begin_write(&w.db).await.unwrap();
    ledger::fold_account_in_txn(&txn, w.accounts[COMMISSION], 10)
        .await
        .unwrap();
    txn.rollback().await.unwrap();
    assert_eq!(row(w.accounts[COMMISSION]).await, 700);
    let audit = ledger::audit(&w.db).await.unwrap();
    assert_eq!(audit.unfolded_postings, 3, "{audit:?}");
    assert!(audit.is_clean(), "{audit:?}");
    fold_everything(&w).await;
    assert_eq!(row(w.accounts[COMMISSION]).await, 750);
    assert_eq!(row(w.accounts[EXTERNAL]).await, -750);
}

#[tokio::test]
async fn a_debit_of_an_append_only_account_counts_its_unfolded_credits_and_no_more() {
    let w = world().await;
    let transfer = |key: &str, from: usize, to: usize, amount: i64| NewTransfer {
        key: key.into(),
        kind: TransferKind::Deposit,
        currency: CURRENCY,
        legs: vec![
            Leg::debit(w.accounts[from], money(amount)),
            Leg::credit(w.accounts[to], money(amount)),
        ],
        hold: None,
        case: None,
    };
    for (key, amount) in [("a", 300), ("b", 200)] {
        let txn = db::begin_write(&w.db).await.unwrap();
        ledger::post_transfer_in_txn(&txn, &w.clock, transfer(key, EXTERNAL, WITHDRAWAL, amount))
            .await
            .unwrap();
        txn.commit().await.unwrap();
    }
    // 500 unfolded: a payout of 501 is refused, 500 is paid (and folded at once).
    let txn = db::begin_write(&w.db).await.unwrap();
    let refused = ledger::post_transfer_in_txn(
        &txn,
        &w.clock,
        transfer("too-much", WITHDRAWAL, EXTERNAL, 501),
    )
    .await;
    assert!(
        matches!(refused, Err(CoreError::InsufficientFunds { available }) if available == money(500)),
        "{refused:?}"
    );
    txn.rollback().await.unwrap();
    let txn = db::begin_write(&w.db).await.unwrap();
    ledger::post_transfer_in_txn(
        &txn,
        &w.clock,
        transfer("payout", WITHDRAWAL, EXTERNAL, 500),
    )
    .await
    .unwrap();
    txn.commit().await.unwrap();
    let account = ledger::get_account(&w.db, w.accounts[WITHDRAWAL])
        .await
        .unwrap();
    assert_eq!(account.balance, 0);
    let audit = ledger::audit(&w.db).await.unwrap();
    assert!(audit.is_clean(), "{audit:?}");
    // A reservation on an append-only account is refused outright.
    let txn = db::begin_write(&w.db).await.unwrap();
    let reserve = ledger::reserve_in_txn(&txn, w.accounts[COMMISSION], money(1)).await;
    assert!(matches!(reserve, Err(CoreError::Invalid(_))), "{reserve:?}");
}
