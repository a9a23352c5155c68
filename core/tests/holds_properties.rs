//! Random sequences of holds, posts, voids, expiries and replays against a real database: money
//! is conserved, no hold resolves twice, nothing panics, and a refused command changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{Duration, TimeZone, Utc};
use holdfast_core::clock::Clock;
use holdfast_core::db::{self, PoolSize};
use holdfast_core::holds::{self, HoldMode, HoldStatus, Payout, PlaceHold};
use holdfast_core::ids::{AccountId, HoldId, PartyId};
use holdfast_core::ledger::{self, AccountKind, Leg, NewAccount, NewTransfer, TransferKind};
use holdfast_core::parties::{self, NewParty, Role};
use holdfast_core::{CoreError, Currency, Money};
use holdfast_migrations::{Migrator, MigratorTrait};
use proptest::prelude::*;
use sea_orm::{DatabaseConnection, TransactionTrait};
use std::collections::HashMap;

const CURRENCY: Currency = Currency::USD;
const START_BALANCE: i64 = 10_000;

struct World {
    db: DatabaseConnection,
    clock: Clock,
    institution: PartyId,
    funding: AccountId,
    credit_line: AccountId,
    freezing: AccountId,
    payee: AccountId,
    commission: AccountId,
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
    let party = |role| {
        let txn = &txn;
        let clock = &clock;
        async move {
            parties::create_party_in_txn(
                txn,
                clock,
                NewParty {
                    role,
                    display_name: "someone".into(),
                },
            )
            .await
            .unwrap()
            .id
        }
    };
    let institution = party(Role::Institution).await;
    let customer = party(Role::Shopper).await;
    let seller = party(Role::Supplier).await;
    let open = |kind, owner, limit: i64| {
        let txn = &txn;
        let clock = &clock;
        async move {
            ledger::open_account_in_txn(
                txn,
                clock,
                NewAccount {
                    key: None,
                    kind,
                    owner,
                    institution: Some(institution),
                    currency: CURRENCY,
                    credit_limit: money(limit),
                    credit_class: None,
                },
            )
            .await
            .unwrap()
            .id
        }
    };
    let external = open(AccountKind::External, institution, 0).await;
    let funding = open(AccountKind::Prepaid, customer, 0).await;
    let credit_line = open(AccountKind::Prepaid, customer, 3_000).await;
    let freezing = open(AccountKind::Freezing, institution, 0).await;
    let payee = open(AccountKind::Withdrawal, seller, 0).await;
    let commission = open(AccountKind::Commission, institution, 0).await;
    ledger::post_transfer_in_txn(
        &txn,
        &clock,
        NewTransfer {
            key: "deposit".into(),
            kind: TransferKind::Deposit,
            currency: CURRENCY,
            legs: vec![
                Leg::debit(external, money(START_BALANCE)),
                Leg::credit(funding, money(START_BALANCE)),
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
        institution,
        funding,
        credit_line,
        freezing,
        payee,
        commission,
    }
}

#[derive(Debug, Clone)]
enum Op {
    Place {
        key: u8,
        amount: i64,
        reserve: bool,
        ttl_secs: i64,
    },
    Post {
        hold: u8,
        percent: i64,
        key: u8,
    },
    Void {
        hold: u8,
        key: u8,
    },
    Expire {
        hold: u8,
    },
    Advance {
        secs: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..12, 1i64..4_000, any::<bool>(), 1i64..120).prop_map(
            |(key, amount, reserve, ttl_secs)| Op::Place {
                key,
                amount,
                reserve,
                ttl_secs
            }
        ),
        (0u8..12, 0i64..=110, 0u8..3).prop_map(|(hold, percent, key)| Op::Post {
            hold,
            percent,
            key
        }),
        (0u8..12, 0u8..3).prop_map(|(hold, key)| Op::Void { hold, key }),
        (0u8..12).prop_map(|hold| Op::Expire { hold }),
        (1i64..90).prop_map(|secs| Op::Advance { secs }),
    ]
}

/// Errors a correct ledger may answer with; anything else (a database error) fails the test.
fn expected_refusal(error: &CoreError) -> bool {
    matches!(
        error,
        CoreError::InsufficientFunds { .. }
            | CoreError::HoldAlreadyResolved { .. }
            | CoreError::IdempotencyConflict
            | CoreError::Invalid(_)
            | CoreError::NotFound(_)
    )
}

async fn run(ops: Vec<Op>) {
    let w = world().await;
    // What each hold resolved to, the first time it did.
    let mut resolved: HashMap<HoldId, HoldStatus> = HashMap::new();
    let mut placed: Vec<HoldId> = Vec::new();
    for op in ops {
        let before = ledger::audit(&w.db).await.unwrap();
        let txn = db::begin_write(&w.db).await.unwrap();
        let result: Result<Option<holds::Hold>, CoreError> = match &op {
            Op::Place {
                key,
                amount,
                reserve,
                ttl_secs,
            } => holds::place_hold_in_txn(
                &txn,
                &w.clock,
                PlaceHold {
                    key: format!("hold-{key}"),
                    funding_account: if *reserve { w.credit_line } else { w.funding },
                    freezing_account: w.freezing,
                    institution: w.institution,
                    amount: money(*amount),
                    mode: if *reserve {
                        HoldMode::Reserve
                    } else {
                        HoldMode::Move
                    },
                    expires_at: Some(w.clock.now() + Duration::seconds(*ttl_secs)),
                    case: None,
                },
            )
            .await
            .map(|applied| Some(applied.into_inner())),
            Op::Post { hold, percent, key } => match placed.get(usize::from(*hold)) {
                None => Ok(None),
                Some(&id) => {
                    let hold = holds::get_hold(&txn, id).await.unwrap();
                    let amount = money(hold.amount.minor() * percent / 100);
                    let commission = money(amount.minor() / 10);
                    let payouts = [
                        Payout {
                            account: w.payee,
                            amount: amount.checked_sub(&commission).unwrap(),
                        },
                        Payout {
                            account: w.commission,
                            amount: commission,
                        },
                    ];
                    holds::post_hold_in_txn(
                        &txn,
                        &w.clock,
                        id,
                        &format!("post-{key}"),
                        amount,
                        &payouts,
                    )
                    .await
                    .map(|applied| Some(applied.into_inner()))
                }
            },
            Op::Void { hold, key } => match placed.get(usize::from(*hold)) {
                None => Ok(None),
                Some(&id) => holds::void_hold_in_txn(&txn, &w.clock, id, &format!("void-{key}"))
                    .await
                    .map(|applied| Some(applied.into_inner())),
            },
            Op::Expire { hold } => match placed.get(usize::from(*hold)) {
                None => Ok(None),
                Some(&id) => holds::expire_hold_in_txn(&txn, &w.clock, id)
                    .await
                    .map(|applied| Some(applied.into_inner())),
            },
            Op::Advance { secs } => {
                w.clock.advance(Duration::seconds(*secs));
                Ok(None)
            }
        };
        match result {
            Ok(hold) => {
                txn.commit().await.unwrap();
                if let Some(hold) = hold
                    && !placed.contains(&hold.id)
                {
                    placed.push(hold.id);
                }
            }
            Err(error) => {
                assert!(
                    expected_refusal(&error),
                    "{op:?} failed unexpectedly: {error:?}"
                );
                txn.rollback().await.unwrap();
                let after = ledger::audit(&w.db).await.unwrap();
                assert_eq!(before, after, "a refused {op:?} changed the ledger");
            }
        }

        let audit = ledger::audit(&w.db).await.unwrap();
        assert!(audit.is_clean(), "after {op:?}: {audit:?}");
        for &id in &placed {
            let hold = holds::get_hold(&w.db, id).await.unwrap();
            if hold.status != HoldStatus::Pending {
                let first = *resolved.entry(id).or_insert(hold.status);
                assert_eq!(first, hold.status, "hold {id:?} resolved twice");
            }
        }
    }
    let funding = ledger::get_account(&w.db, w.funding).await.unwrap();
    assert!(funding.balance >= 0);
    let line = ledger::get_account(&w.db, w.credit_line).await.unwrap();
    assert!(line.balance - line.reserved + line.credit_limit >= 0);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_hold_sequences_conserve_money_and_resolve_once(ops in prop::collection::vec(op(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(run(ops));
    }
}

#[tokio::test]
async fn a_hold_posts_in_part_and_the_rest_returns() {
    let w = world().await;
    let txn = db::begin_write(&w.db).await.unwrap();
    let hold = holds::place_hold_in_txn(
        &txn,
        &w.clock,
        PlaceHold {
            key: "h".into(),
            funding_account: w.funding,
            freezing_account: w.freezing,
            institution: w.institution,
            amount: money(1_000),
            mode: HoldMode::Move,
            expires_at: None,
            case: None,
        },
    )
    .await
    .unwrap()
    .into_inner();
    let posted = holds::post_hold_in_txn(
        &txn,
        &w.clock,
        hold.id,
        "post",
        money(600),
        &[Payout {
            account: w.payee,
            amount: money(600),
        }],
    )
    .await
    .unwrap();
    assert!(posted.is_new());
    // The same post again is a replay, not a second payment.
    let replay = holds::post_hold_in_txn(
        &txn,
        &w.clock,
        hold.id,
        "post",
        money(600),
        &[Payout {
            account: w.payee,
            amount: money(600),
        }],
    )
    .await
    .unwrap();
    assert!(!replay.is_new());
    let void = holds::void_hold_in_txn(&txn, &w.clock, hold.id, "void").await;
    assert!(matches!(
        void,
        Err(CoreError::HoldAlreadyResolved { status: "posted" })
    ));
    txn.commit().await.unwrap();

    let funding = ledger::get_account(&w.db, w.funding).await.unwrap();
    assert_eq!(funding.balance, START_BALANCE - 600);
    let payee = ledger::get_account(&w.db, w.payee).await.unwrap();
    assert_eq!(payee.balance, 600);
    let freezing = ledger::get_account(&w.db, w.freezing).await.unwrap();
    assert_eq!(freezing.balance, 0);
    assert!(ledger::audit(&w.db).await.unwrap().is_clean());
}

#[tokio::test]
async fn a_hold_never_takes_more_than_is_available() {
    let w = world().await;
    let txn = db::begin_write(&w.db).await.unwrap();
    let result = holds::place_hold_in_txn(
        &txn,
        &w.clock,
        PlaceHold {
            key: "too-much".into(),
            funding_account: w.funding,
            freezing_account: w.freezing,
            institution: w.institution,
            amount: money(START_BALANCE + 1),
            mode: HoldMode::Move,
            expires_at: None,
            case: None,
        },
    )
    .await;
    match result {
        Err(CoreError::InsufficientFunds { available }) => {
            assert_eq!(available, money(START_BALANCE))
        }
        other => panic!("expected insufficient funds, got {other:?}"),
    }
}
