//! Sellers: suppliers, and card holders who also sell (auctions). The operator sets each
//! seller's commission (the default for its commodities) and its default carrier.

use crate::catalogue::CommissionRate;
use crate::entities::sellers;
use crate::error::RetailResult;
use holdfast_core::ids::PartyId;
use holdfast_core::ledger::{self, AccountKind};
use holdfast_core::onboarding::{StaffCredentials, create_staff_in_txn};
use holdfast_core::parties::{self, Role};
use holdfast_core::{Clock, CoreError};
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, ConnectionTrait, DatabaseTransaction};
use serde::Serialize;
use utoipa::ToSchema;

/// The platform's commission when the operator set none for a seller: 5 %.
pub const DEFAULT_COMMISSION_BPS: u16 = 500;

#[derive(Debug, Clone, Copy)]
pub struct SellerTerms {
    pub commission: CommissionRate,
    /// The carrier a new order's parcel is given to.
    pub default_distributor: Option<PartyId>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SellerTermsView {
    pub seller_id: PartyId,
    #[schema(example = "0.05")]
    pub commission_rate: String,
    pub default_distributor_id: Option<PartyId>,
}

impl SellerTerms {
    pub fn view(&self, seller: PartyId) -> SellerTermsView {
        SellerTermsView {
            seller_id: seller,
            commission_rate: self.commission.as_decimal().to_string(),
            default_distributor_id: self.default_distributor,
        }
    }
}

/// The commission of a new seller: the rate the operator gave, or the platform's default.
pub fn commission_or_default(given: Option<CommissionRate>) -> RetailResult<CommissionRate> {
    match given {
        Some(rate) => Ok(rate),
        None => CommissionRate::from_basis_points(i32::from(DEFAULT_COMMISSION_BPS)),
    }
}

pub async fn terms_of(db: &impl ConnectionTrait, seller: PartyId) -> RetailResult<SellerTerms> {
    Ok(
        match sellers::Entity::find_by_id(seller.uuid()).one(db).await? {
            Some(row) => SellerTerms {
                commission: CommissionRate::from_basis_points(row.commission_bps)?,
                default_distributor: row.default_distributor_party_id.map(PartyId::from_uuid),
            },
            None => SellerTerms {
                commission: CommissionRate::from_basis_points(i32::from(DEFAULT_COMMISSION_BPS))?,
                default_distributor: None,
            },
        },
    )
}

/// Whether `party` may list goods: a supplier, or a card holder with a withdrawal account.
pub async fn may_sell(db: &impl ConnectionTrait, party: PartyId) -> RetailResult<bool> {
    let found = parties::get_party(db, party).await?;
    Ok(match found.role {
        Role::Supplier => true,
        Role::Shopper => ledger::accounts_of(db, party)
            .await?
            .iter()
            .any(|a| a.kind == AccountKind::Withdrawal),
        _ => false,
    })
}

/// Sets a seller's commission and default carrier (the operator's decision).
#[tracing::instrument(name = "retail.set_seller_terms", skip_all)]
pub async fn set_terms_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    seller: PartyId,
    terms: SellerTerms,
) -> RetailResult<SellerTerms> {
    if !may_sell(txn, seller).await? {
        return Err(CoreError::invalid(
            "only suppliers and card holders who sell have seller terms",
        )
        .into());
    }
    if let Some(distributor) = terms.default_distributor {
        let party = parties::get_party(txn, distributor).await?;
        if party.role != Role::Distributor {
            return Err(CoreError::invalid("the default carrier must be a distributor").into());
        }
    }
    let row = sellers::ActiveModel {
        party_id: Set(seller.uuid()),
        commission_bps: Set(terms.commission.basis_points()),
        default_distributor_party_id: Set(terms.default_distributor.map(|d| d.uuid())),
        created_at: Set(clock.now()),
    };
    if sellers::Entity::find_by_id(seller.uuid())
        .one(txn)
        .await?
        .is_some()
    {
        sellers::ActiveModel {
            created_at: sea_orm::ActiveValue::NotSet,
            ..row
        }
        .update(txn)
        .await?;
    } else {
        sellers::Entity::insert(row)
            .exec_without_returning(txn)
            .await?;
    }
    Ok(terms)
}

/// Onboards a supplier with its commission and default carrier. Its passwords are hashed
/// before the transaction ([`StaffCredentials::hash`]: argon2 is slow on purpose).
#[tracing::instrument(name = "retail.onboard_supplier", skip_all)]
pub async fn onboard_supplier_in_txn(
    txn: &DatabaseTransaction,
    core: &holdfast_core::Core,
    display_name: &str,
    credentials: StaffCredentials,
    terms: SellerTerms,
) -> RetailResult<(parties::Party, String, SellerTerms)> {
    let (party, username) =
        create_staff_in_txn(txn, core, Role::Supplier, display_name, credentials).await?;
    let terms = set_terms_in_txn(txn, &core.clock, party.id, terms).await?;
    Ok((party, username, terms))
}
