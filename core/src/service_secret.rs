//! The service secret kept in the database: generated once from the operating system's random
//! source, so that no secret is compiled into the binary and every instance on one database
//! agrees on it.

use crate::clock::Clock;
use crate::error::{CoreError, CoreResult};
use rand::TryRngCore;
use sea_orm::{ConnectionTrait, DbBackend, Statement};

/// Bytes of a generated secret.
pub const GENERATED_SECRET_BYTES: usize = 32;

/// The secret stored in `db`, storing a fresh random one first if there is none. Two instances
/// starting together both try to insert; the primary key lets one win and both read the winner.
pub async fn load_or_create(db: &impl ConnectionTrait, clock: &Clock) -> CoreResult<Vec<u8>> {
    let mut candidate = [0u8; GENERATED_SECRET_BYTES];
    rand::rngs::OsRng
        .try_fill_bytes(&mut candidate)
        .map_err(|_| CoreError::invalid("the operating system's random source failed"))?;
    let backend = db.get_database_backend();
    let insert = match backend {
        DbBackend::Postgres => {
            "INSERT INTO service_secrets (id, secret, created_at) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO NOTHING"
        }
        _ => {
            "INSERT INTO service_secrets (id, secret, created_at) VALUES (1, ?, ?) \
             ON CONFLICT (id) DO NOTHING"
        }
    };
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        insert,
        [hex::encode(candidate).into(), clock.now().into()],
    ))
    .await?;
    let row = db
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT secret FROM service_secrets WHERE id = 1",
        ))
        .await?
        .ok_or(CoreError::NotFound("service secret"))?;
    let stored: String = row.try_get("", "secret")?;
    let secret = hex::decode(stored.trim())
        .map_err(|_| CoreError::invalid("the stored service secret is not hex"))?;
    if secret.len() < GENERATED_SECRET_BYTES {
        return Err(CoreError::invalid("the stored service secret is too short"));
    }
    Ok(secret)
}
