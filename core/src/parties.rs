//! Parties — everyone who takes part: operators, shoppers, suppliers, institutions, the
//! platform itself — and the passwords of those who log in with one.

use crate::clock::Clock;
use crate::entities::{credentials, parties};
use crate::error::{CoreError, CoreResult};
use crate::ids::PartyId;
use crate::passwords::PasswordWork;
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, ConnectionTrait, DatabaseTransaction, QueryFilter};
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;
use utoipa::ToSchema;

/// The JWT `role` claim, and what a party is.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[sea_orm(
    rs_type = "String",
    db_type = "String(StringLen::N(24))",
    rename_all = "snake_case"
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Operator,
    Shopper,
    Supplier,
    Distributor,
    Prescriber,
    Drugstore,
    Insurer,
    Institution,
    /// A shop's card terminal, authenticated as a merchant device (card-present payments).
    Terminal,
    /// Holdfast itself: owns the commission accounts.
    Platform,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Shopper => "shopper",
            Role::Supplier => "supplier",
            Role::Distributor => "distributor",
            Role::Prescriber => "prescriber",
            Role::Drugstore => "drugstore",
            Role::Insurer => "insurer",
            Role::Institution => "institution",
            Role::Terminal => "terminal",
            Role::Platform => "platform",
        }
    }
}

/// The platform party has a fixed id so that every server instance agrees on it without a
/// lookup race at start.
pub const PLATFORM_PARTY: PartyId =
    PartyId::from_uuid(Uuid::from_u128(0x0000_0000_0000_7000_8000_0000_0000_0001));

#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Party {
    pub id: PartyId,
    pub role: Role,
    pub display_name: String,
}

impl From<parties::Model> for Party {
    fn from(row: parties::Model) -> Self {
        Party {
            id: PartyId::from_uuid(row.id),
            role: row.role,
            display_name: row.display_name,
        }
    }
}

/// Limits on what a person may type.
pub const MAX_DISPLAY_NAME_CHARS: usize = 200;
pub const MAX_USERNAME_CHARS: usize = 64;
pub const MIN_PASSWORD_CHARS: usize = 10;
pub const MAX_PASSWORD_CHARS: usize = 256;

#[derive(Debug, Clone)]
pub struct NewParty {
    pub role: Role,
    pub display_name: String,
}

pub fn validate_display_name(name: &str) -> CoreResult<String> {
    let trimmed = name.trim();
    if trimmed.is_empty() || trimmed.chars().count() > MAX_DISPLAY_NAME_CHARS {
        return Err(CoreError::invalid(format!(
            "a name must have 1 to {MAX_DISPLAY_NAME_CHARS} characters"
        )));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(CoreError::invalid(
            "a name must not contain control characters",
        ));
    }
    Ok(trimmed.to_owned())
}

pub async fn create_party_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    new: NewParty,
) -> CoreResult<Party> {
    let display_name = validate_display_name(&new.display_name)?;
    let id = PartyId::new();
    parties::ActiveModel {
        id: Set(id.uuid()),
        role: Set(new.role),
        display_name: Set(display_name.clone()),
        created_at: Set(clock.now()),
    }
    .insert(txn)
    .await?;
    Ok(Party {
        id,
        role: new.role,
        display_name,
    })
}

/// Creates the platform party if this database has none yet; safe to run from every instance.
pub async fn ensure_platform_in_txn(txn: &DatabaseTransaction, clock: &Clock) -> CoreResult<()> {
    let row = parties::ActiveModel {
        id: Set(PLATFORM_PARTY.uuid()),
        role: Set(Role::Platform),
        display_name: Set("Holdfast".to_owned()),
        created_at: Set(clock.now()),
    };
    parties::Entity::insert(row)
        .on_conflict_do_nothing()
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

pub async fn find_party(db: &impl ConnectionTrait, id: PartyId) -> CoreResult<Option<Party>> {
    Ok(parties::Entity::find_by_id(id.uuid())
        .one(db)
        .await?
        .map(Party::from))
}

/// Parties of one role, by name, at most `limit` (1–100): what a seller chooses a carrier
/// from.
pub async fn parties_with_role(
    db: &impl ConnectionTrait,
    role: Role,
    limit: u64,
) -> CoreResult<Vec<Party>> {
    use sea_orm::{QueryOrder, QuerySelect};
    Ok(parties::Entity::find()
        .filter(parties::Column::Role.eq(role))
        .order_by_asc(parties::Column::DisplayName)
        .order_by_asc(parties::Column::Id)
        .limit(limit.clamp(1, 100))
        .all(db)
        .await?
        .into_iter()
        .map(Party::from)
        .collect())
}

pub async fn get_party(db: &impl ConnectionTrait, id: PartyId) -> CoreResult<Party> {
    find_party(db, id)
        .await?
        .ok_or(CoreError::NotFound("party"))
}

fn validate_username(username: &str) -> CoreResult<String> {
    let username = username.trim();
    let valid = !username.is_empty()
        && username.chars().count() <= MAX_USERNAME_CHARS
        && username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if valid {
        Ok(username.to_ascii_lowercase())
    } else {
        Err(CoreError::invalid(format!(
            "a username has 1 to {MAX_USERNAME_CHARS} characters: letters, digits, '.', '_', '-', '@'"
        )))
    }
}

fn validate_password(password: &str) -> CoreResult<()> {
    let length = password.chars().count();
    if (MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&length) {
        Ok(())
    } else {
        Err(CoreError::invalid(format!(
            "a password has {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters"
        )))
    }
}

pub fn hash_password(password: &str) -> CoreResult<String> {
    validate_password(password)?;
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|_| CoreError::invalid("the password could not be hashed"))
}

fn password_matches(password: &str, stored_hash: &str) -> bool {
    PasswordHash::new(stored_hash)
        .map(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash to verify against when the username is unknown, so that the answer takes as long as
/// for a known one and does not reveal which usernames exist.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| hash_password("decoy-password-never-matches").unwrap_or_default())
}

/// Gives `party` a username and the (already hashed) password, and optionally the second
/// password a supplier needs to change its information. Usernames are unique,
/// case-insensitive.
pub async fn store_credentials_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    party: PartyId,
    username: &str,
    password_hash: String,
    second_password_hash: Option<String>,
) -> CoreResult<String> {
    let username = validate_username(username)?;
    let row = credentials::ActiveModel {
        party_id: Set(party.uuid()),
        username: Set(username.clone()),
        password_hash: Set(password_hash),
        second_password_hash: Set(second_password_hash),
        failed_logins: Set(0),
        locked_until: Set(None),
        created_at: Set(clock.now()),
    };
    // The unique index decides who gets a username, also under a race.
    let inserted = credentials::Entity::insert(row)
        .on_conflict_do_nothing_on([credentials::Column::Username])
        .exec_without_returning(txn)
        .await?;
    if !matches!(inserted, sea_orm::TryInsertResult::Inserted(n) if n > 0) {
        return Err(CoreError::UsernameTaken);
    }
    Ok(username)
}

/// Replaces a party's second password (the demo hands its supplier a fresh one on each start,
/// to confirm a payout destination with).
pub async fn reset_second_password_in_txn(
    txn: &DatabaseTransaction,
    party: PartyId,
    second_password_hash: String,
) -> CoreResult<()> {
    let updated = credentials::Entity::update_many()
        .col_expr(
            credentials::Column::SecondPasswordHash,
            sea_orm::sea_query::Expr::value(second_password_hash),
        )
        .filter(credentials::Column::PartyId.eq(party.uuid()))
        .exec(txn)
        .await?;
    if updated.rows_affected == 0 {
        return Err(CoreError::NotFound("user"));
    }
    Ok(())
}

/// Replaces a party's password (the demo uses it to hand out fresh passwords on each start).
pub async fn reset_password_in_txn(
    txn: &DatabaseTransaction,
    username: &str,
    password_hash: String,
) -> CoreResult<PartyId> {
    let username = validate_username(username)?;
    let row = credentials::Entity::find()
        .filter(credentials::Column::Username.eq(username))
        .one(txn)
        .await?
        .ok_or(CoreError::NotFound("user"))?;
    let party = PartyId::from_uuid(row.party_id);
    credentials::ActiveModel {
        party_id: Set(row.party_id),
        password_hash: Set(password_hash),
        ..Default::default()
    }
    .update(txn)
    .await?;
    Ok(party)
}

/// The party that `username` and `password` identify, or `BadCredentials` (the same answer,
/// after the same work, for an unknown username as for a wrong password). Nothing is locked
/// here: guessing is throttled per client address by [`crate::login_throttle`], so a stranger
/// cannot lock the owner out. The hash is checked off the async workers.
pub async fn verify_password(
    db: &sea_orm::DatabaseConnection,
    work: &PasswordWork,
    username: &str,
    password: &str,
) -> CoreResult<Party> {
    let username = username.trim().to_ascii_lowercase();
    let found = credentials::Entity::find()
        .filter(credentials::Column::Username.eq(username))
        .one(db)
        .await?;
    let (party, stored_hash) = match found {
        Some(credentials) => (Some(credentials.party_id), Some(credentials.password_hash)),
        None => (None, None),
    };
    let password = password.to_owned();
    let matches = work
        .run(move || match stored_hash {
            Some(hash) => password_matches(&password, &hash),
            // The decoy is hashed once, lazily: on the blocking pool too.
            None => {
                let _ = password_matches(&password, decoy_hash());
                false
            }
        })
        .await?;
    match party {
        Some(party) if matches => get_party(db, PartyId::from_uuid(party)).await,
        _ => Err(CoreError::BadCredentials),
    }
}

/// [`hash_password`] off the async workers.
pub async fn hash_password_off_thread(work: &PasswordWork, password: &str) -> CoreResult<String> {
    // Refuse a bad length before queueing for a hash.
    validate_password(password)?;
    let password = password.to_owned();
    work.run(move || hash_password(&password)).await?
}

/// Checks the second password that guards a party's information change.
pub async fn verify_second_password(
    db: &impl ConnectionTrait,
    work: &PasswordWork,
    party: PartyId,
    second_password: &str,
) -> CoreResult<()> {
    let credentials = credentials::Entity::find_by_id(party.uuid())
        .one(db)
        .await?
        .ok_or(CoreError::BadCredentials)?;
    let Some(hash) = credentials.second_password_hash else {
        return Err(CoreError::BadCredentials);
    };
    let second_password = second_password.to_owned();
    if work
        .run(move || password_matches(&second_password, &hash))
        .await?
    {
        Ok(())
    } else {
        Err(CoreError::BadCredentials)
    }
}

/// Changes a party's name. A supplier's information is guarded by its second password: the
/// caller checks it first with [`verify_second_password`], outside the transaction (argon2 is
/// slow, and SQLite's write lock should not wait on it).
pub async fn change_display_name_in_txn(
    txn: &DatabaseTransaction,
    party: PartyId,
    display_name: &str,
) -> CoreResult<Party> {
    let display_name = validate_display_name(display_name)?;
    parties::ActiveModel {
        id: Set(party.uuid()),
        display_name: Set(display_name),
        ..Default::default()
    }
    .update(txn)
    .await?;
    get_party(txn, party).await
}
