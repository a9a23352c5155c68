//! Webhook endpoints: where a supplier, carrier or institution wants its events POSTed. Each
//! delivery is signed `t=<unix>,v1=<HMAC-SHA256 of "t.body">` with the endpoint's own secret,
//! shown once at registration.

use crate::challenge::keyed_mac;
use crate::clock::Clock;
use crate::entities;
use crate::entities::webhook_endpoints;
use crate::error::{CoreError, CoreResult};
use crate::ids::PartyId;
use crate::outbox::{Channel, DeliveryRecord, DeliveryStatus};
use crate::paging::{ListFilter, Page, Paged};
use crate::webhook_target::{self, TargetError, TargetPolicy};
use hmac::Mac;
use rand::Rng;
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, ConnectionTrait, DatabaseTransaction, QueryFilter, QueryOrder};
use serde::Serialize;
use utoipa::ToSchema;

pub const MAX_URL_CHARS: usize = 500;
pub const MAX_ENDPOINTS_PER_PARTY: usize = 10;
pub const SIGNATURE_HEADER: &str = "Holdfast-Signature";

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Endpoint {
    pub id: Uuid,
    pub url: String,
    pub active: bool,
}

/// A registered endpoint and its signing secret (shown this once).
#[derive(Clone, Serialize, ToSchema)]
pub struct Registered {
    pub endpoint: Endpoint,
    pub secret: String,
}

impl std::fmt::Debug for Registered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registered")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// An http(s) URL of at most [`MAX_URL_CHARS`] characters, whose host `policy` allows (see
/// [`crate::webhook_target`]).
fn validate_url(url: &str, policy: TargetPolicy) -> CoreResult<String> {
    let url = url.trim();
    if url.chars().count() > MAX_URL_CHARS
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(CoreError::invalid(format!(
            "a webhook URL is an http(s) URL of at most {MAX_URL_CHARS} characters"
        )));
    }
    match webhook_target::check_url(url, policy) {
        Ok(_) => Ok(url.to_owned()),
        Err(TargetError::Malformed(why)) => Err(CoreError::invalid(format!(
            "{why}: a webhook URL is an http(s) URL of at most {MAX_URL_CHARS} characters"
        ))),
        Err(TargetError::Forbidden(why)) => Err(CoreError::WebhookTargetForbidden(why)),
    }
}

pub async fn register_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    party: PartyId,
    url: &str,
    policy: TargetPolicy,
) -> CoreResult<Registered> {
    let url = validate_url(url, policy)?;
    let existing = endpoints_of(txn, party).await?;
    if existing.iter().filter(|e| e.active).count() >= MAX_ENDPOINTS_PER_PARTY {
        return Err(CoreError::invalid(format!(
            "a party has at most {MAX_ENDPOINTS_PER_PARTY} webhook endpoints"
        )));
    }
    let secret: [u8; 32] = rand::rng().random();
    let secret = hex::encode(secret);
    let id = Uuid::now_v7();
    webhook_endpoints::Entity::insert(webhook_endpoints::ActiveModel {
        id: Set(id),
        party_id: Set(party.uuid()),
        url: Set(url.clone()),
        secret: Set(secret.clone()),
        active: Set(true),
        created_at: Set(clock.now()),
    })
    .exec_without_returning(txn)
    .await?;
    crate::write_buffer::forget_endpoints(txn, party.uuid());
    Ok(Registered {
        endpoint: Endpoint {
            id,
            url,
            active: true,
        },
        secret,
    })
}

pub async fn endpoints_of(db: &impl ConnectionTrait, party: PartyId) -> CoreResult<Vec<Endpoint>> {
    Ok(webhook_endpoints::Entity::find()
        .filter(webhook_endpoints::Column::PartyId.eq(party.uuid()))
        .order_by_asc(webhook_endpoints::Column::CreatedAt)
        .all(db)
        .await?
        .into_iter()
        .map(|row| Endpoint {
            id: row.id,
            url: row.url,
            active: row.active,
        })
        .collect())
}

/// Stops deliveries to an endpoint (queued ones are still attempted).
pub async fn deactivate_in_txn(
    txn: &DatabaseTransaction,
    party: PartyId,
    id: Uuid,
) -> CoreResult<()> {
    let row = owned(txn, party, id).await?;
    webhook_endpoints::ActiveModel {
        id: Set(row.id),
        active: Set(false),
        ..Default::default()
    }
    .update(txn)
    .await?;
    crate::write_buffer::forget_endpoints(txn, party.uuid());
    Ok(())
}

async fn owned(
    db: &impl ConnectionTrait,
    party: PartyId,
    id: Uuid,
) -> CoreResult<webhook_endpoints::Model> {
    webhook_endpoints::Entity::find_by_id(id)
        .one(db)
        .await?
        .filter(|row| row.party_id == party.uuid())
        .ok_or(CoreError::NotFound("webhook endpoint"))
}

/// The delivery log of one of the party's endpoints, newest first: in the filter's status and
/// created in its date range.
pub async fn deliveries(
    db: &impl ConnectionTrait,
    party: PartyId,
    id: Uuid,
    filter: &ListFilter<DeliveryStatus>,
    page: &Page,
) -> CoreResult<Paged<DeliveryRecord>> {
    owned(db, party, id).await?;
    let mut query = entities::outbox::Entity::find()
        .filter(entities::outbox::Column::Channel.eq(Channel::Webhook))
        .filter(entities::outbox::Column::Destination.eq(id.to_string()))
        .filter(
            filter
                .created
                .condition(entities::outbox::Column::CreatedAt),
        );
    if let Some(status) = filter.state {
        query = query.filter(entities::outbox::Column::Status.eq(status));
    }
    let rows = page
        .apply(
            query,
            entities::outbox::Column::CreatedAt,
            entities::outbox::Column::Id,
        )
        .all(db)
        .await?;
    Ok(page
        .finish(rows, |row| (row.created_at, row.id))
        .map(DeliveryRecord::from))
}

/// Where and how to deliver to an endpoint (for the sender).
#[derive(Clone)]
pub struct Target {
    pub url: String,
    pub secret: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

pub async fn target(db: &impl ConnectionTrait, id: Uuid) -> CoreResult<Option<Target>> {
    Ok(webhook_endpoints::Entity::find_by_id(id)
        .one(db)
        .await?
        .map(|row| Target {
            url: row.url,
            secret: row.secret,
        }))
}

/// `t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`.
pub fn signature(secret: &str, unix_seconds: i64, body: &[u8]) -> String {
    let mut mac = keyed_mac(secret.as_bytes());
    mac.update(unix_seconds.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={unix_seconds},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}
