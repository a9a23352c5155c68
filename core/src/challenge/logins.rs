//! Login challenges' limits per holder (or per card number for decoys), and the decoys a number
//! that cannot log in gets instead of a real challenge.

use super::*;

/// Whether `challenge` is a decoy: a login challenge of the platform itself, which never logs
/// in.
pub fn is_decoy(challenge: &Challenge) -> bool {
    challenge.purpose == ChallengePurpose::Login
        && challenge.party == crate::parties::PLATFORM_PARTY
}

/// A MAC no code can produce: the decoy's code was never chosen.
pub(super) fn unmatchable_mac() -> String {
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    hex::encode(bytes)
}

/// A login challenge for a card number that cannot log in (unknown, blocked or replaced): it
/// looks and answers like a real one — the same limits per number, wrong codes counted, locked
/// after as many tries, expired as late, voided by the next — but nothing is sent anywhere and
/// no code opens it. So neither starting a login nor answering it tells whether a card exists.
pub async fn issue_decoy_login_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    policy: &ChallengePolicy,
    subject: Uuid,
) -> CoreResult<Challenge> {
    prepare_login_in_txn(txn, clock, policy, LoginsOf::Decoy(subject)).await?;
    let id = ChallengeId::new();
    let now = clock.now();
    let party = crate::parties::PLATFORM_PARTY;
    let row = challenges::ActiveModel {
        id: Set(id.uuid()),
        purpose: Set(ChallengePurpose::Login),
        party_id: Set(party.uuid()),
        // No phone: nothing is ever sent for a decoy.
        phone_e164: Set(String::new()),
        subject_id: Set(Some(subject)),
        amount: Set(None),
        currency: Set(None),
        payee: Set(None),
        order_number: Set(None),
        digest: Set(ChallengeBinding::default().digest(ChallengePurpose::Login, party)),
        code_mac: Set(unmatchable_mac()),
        status: Set(ChallengeStatus::Pending),
        failed_attempts: Set(0),
        max_attempts: Set(policy.max_failed_attempts),
        sends: Set(1),
        expires_at: Set(now + policy.ttl(ChallengePurpose::Login)),
        created_at: Set(now),
        resolved_at: Set(None),
        note: Set(None),
        terms: Set(None),
    };
    challenges::Entity::insert(row)
        .exec_without_returning(txn)
        .await?;
    get_challenge(txn, id).await
}

#[derive(Debug, FromQueryResult)]
pub(super) struct RecentLogins {
    failures: i64,
    issued: i64,
}

impl RecentLogins {
    fn check(&self, policy: &ChallengePolicy) -> CoreResult<()> {
        if self.failures >= i64::from(policy.max_login_failures)
            || self.issued >= i64::try_from(policy.max_login_challenges).unwrap_or(i64::MAX)
        {
            Err(CoreError::TooManyAttempts)
        } else {
            Ok(())
        }
    }
}

/// Whose login challenges to count: a real party's, or the decoys of one card number.
#[derive(Clone, Copy, Debug)]
pub(super) enum LoginsOf {
    Party(PartyId),
    Decoy(Uuid),
}

impl LoginsOf {
    /// The challenges column that says whose a login is, and its value.
    fn column_and_key(self) -> (challenges::Column, Uuid) {
        match self {
            LoginsOf::Party(party) => (challenges::Column::PartyId, party.uuid()),
            LoginsOf::Decoy(subject) => (challenges::Column::SubjectId, subject),
        }
    }
}

/// Before a login challenge, real or decoy: refuses past the limits, then voids the pending
/// ones before it (one login code at a time).
pub(super) async fn prepare_login_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    policy: &ChallengePolicy,
    of: LoginsOf,
) -> CoreResult<()> {
    recent_logins(txn, clock, of).await?.check(policy)?;
    let (column, key) = of.column_and_key();
    challenges::Entity::update_many()
        .col_expr(
            challenges::Column::Status,
            Expr::value(ChallengeStatus::Voided),
        )
        .col_expr(challenges::Column::ResolvedAt, Expr::value(clock.now()))
        .filter(column.eq(key))
        .filter(challenges::Column::Purpose.eq(ChallengePurpose::Login))
        .filter(challenges::Column::Status.eq(ChallengeStatus::Pending))
        .exec(txn)
        .await?;
    Ok(())
}

/// Wrong login codes and login challenges of `party` within the failure window: the failure
/// count belongs to the party, so asking for a new code does not reset it.
pub(super) async fn recent_logins(
    db: &impl ConnectionTrait,
    clock: &Clock,
    of: LoginsOf,
) -> CoreResult<RecentLogins> {
    let backend = db.get_database_backend();
    let (sum, placeholders) = match backend {
        sea_orm::DbBackend::Postgres => (
            "CAST(COALESCE(SUM(failed_attempts), 0) AS BIGINT)",
            ("$1", "$2"),
        ),
        _ => ("COALESCE(SUM(failed_attempts), 0)", ("?", "?")),
    };
    let (column, key) = of.column_and_key();
    let column = sea_orm::IdenStatic::as_str(&column);
    let sql = format!(
        "SELECT {sum} AS failures, COUNT(*) AS issued FROM challenges \
         WHERE {column} = {} AND purpose = 'login' AND created_at >= {}",
        placeholders.0, placeholders.1
    );
    let since = clock.now() - Duration::minutes(FAILURE_WINDOW_MINUTES);
    let row = RecentLogins::find_by_statement(Statement::from_sql_and_values(
        backend,
        sql,
        [key.into(), since.into()],
    ))
    .one(db)
    .await?;
    Ok(row.unwrap_or(RecentLogins {
        failures: 0,
        issued: 0,
    }))
}
