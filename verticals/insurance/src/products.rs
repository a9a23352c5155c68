//! Insurers and the products they list: coverage, premium, term and payment plan, and the
//! service company that delivers their certificates.

use crate::entities::{insurers, products};
use crate::error::{InsuranceError, InsuranceResult};
use chrono::{DateTime, Utc};
use holdfast_core::db::MinorUnits;
use holdfast_core::ids::{Id, IdKind, PartyId};
use holdfast_core::onboarding::{self, StaffCredentials};
use holdfast_core::parties::{self, Party, Role};
use holdfast_core::{BasisPoints, Core, CoreError, Currency, Money};
use sea_orm::entity::prelude::*;
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseTransaction, QueryFilter, QueryOrder, QuerySelect,
};
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use utoipa::ToSchema;

#[derive(Debug)]
pub enum ProductKind {}
impl IdKind for ProductKind {
    const NAME: &'static str = "product";
}
pub type ProductId = Id<ProductKind>;

/// How the premium is paid.
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
    db_type = "String(StringLen::N(16))",
    rename_all = "snake_case"
)]
#[serde(rename_all = "snake_case")]
pub enum PaymentPlan {
    /// `premium` each month of the term, collected by a monthly cycle.
    Monthly,
    /// `premium` once, for the whole term.
    LumpSum,
}

pub const MAX_NAME_CHARS: usize = 120;
pub const MAX_COVERAGE_CHARS: usize = 2_000;
pub type ProductName = holdfast_core::text::Text<1, MAX_NAME_CHARS>;
pub type Coverage = holdfast_core::text::MultilineText<1, MAX_COVERAGE_CHARS>;
pub const MAX_TERM_MONTHS: i32 = 600;
/// Grace after a missed premium: at least 14 days' notice (7 for terms under a year), as
/// Korean practice requires before a lapse.
pub const DEFAULT_GRACE_DAYS: i32 = 14;
pub const MIN_GRACE_DAYS: i32 = 14;
pub const MIN_GRACE_DAYS_SHORT_TERM: i32 = 7;
pub const MAX_GRACE_DAYS: i32 = 90;
/// The free-look period, from the delivery of the certificate (15 days in Korea; 14 or 30 in
/// the UK; 10 to 30 in the US).
pub const DEFAULT_FREE_LOOK_DAYS: i32 = 15;
pub const MIN_FREE_LOOK_DAYS: i32 = 10;
pub const MAX_FREE_LOOK_DAYS: i32 = 30;
/// The platform's share of a premium when none is set, and the most it may be.
pub const DEFAULT_COMMISSION: BasisPoints = BasisPoints::of(500);
pub const MAX_COMMISSION: BasisPoints = BasisPoints::of(5_000);
pub const MAX_PAGE: u64 = 100;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Product {
    pub id: ProductId,
    pub insurer_id: PartyId,
    pub insurer_name: String,
    pub service_company_id: PartyId,
    pub name: String,
    /// What is covered, in the insurer's words.
    pub coverage: String,
    /// The sum insured.
    pub coverage_amount: Money,
    /// Per month (`monthly`) or for the whole term (`lump_sum`).
    pub premium: Money,
    pub term_months: i32,
    pub payment_plan: PaymentPlan,
    pub grace_days: i32,
    pub free_look_days: i32,
    pub active: bool,
    pub created_at: DateTime<Utc>,
}

/// A product as its insurer lists it.
#[derive(Debug, Clone)]
pub struct NewProduct {
    pub name: String,
    pub coverage: String,
    pub coverage_amount: Money,
    pub premium: Money,
    pub term_months: i32,
    pub payment_plan: PaymentPlan,
    pub service_company: PartyId,
    pub grace_days: Option<i32>,
    pub free_look_days: Option<i32>,
}

fn text(value: &str, what: &'static str, max: usize) -> InsuranceResult<String> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > max {
        return Err(InsuranceError::ProductText { what, max });
    }
    Ok(value.to_owned())
}

/// The grace period a product may have: at least 14 days, 7 for terms under a year.
pub fn grace_days_for(term_months: i32, requested: Option<i32>) -> InsuranceResult<i32> {
    let min = if term_months < 12 {
        MIN_GRACE_DAYS_SHORT_TERM
    } else {
        MIN_GRACE_DAYS
    };
    let days = requested.unwrap_or(DEFAULT_GRACE_DAYS);
    if (min..=MAX_GRACE_DAYS).contains(&days) {
        Ok(days)
    } else {
        Err(InsuranceError::GraceDays {
            min,
            max: MAX_GRACE_DAYS,
        })
    }
}

pub fn free_look_days_for(requested: Option<i32>) -> InsuranceResult<i32> {
    let days = requested.unwrap_or(DEFAULT_FREE_LOOK_DAYS);
    if (MIN_FREE_LOOK_DAYS..=MAX_FREE_LOOK_DAYS).contains(&days) {
        Ok(days)
    } else {
        Err(InsuranceError::FreeLookDays {
            min: MIN_FREE_LOOK_DAYS,
            max: MAX_FREE_LOOK_DAYS,
        })
    }
}

/// Onboards an insurer: a party of role `insurer` whose staff log in with a username and
/// password, and the platform's commission on its premiums. The password is hashed before the
/// transaction ([`StaffCredentials::hash`]).
#[tracing::instrument(name = "insurance.onboard_insurer", skip_all)]
pub async fn onboard_insurer_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    display_name: &str,
    credentials: StaffCredentials,
    commission: Option<BasisPoints>,
) -> InsuranceResult<(Party, String)> {
    let commission = commission.unwrap_or(DEFAULT_COMMISSION);
    if commission > MAX_COMMISSION {
        return Err(InsuranceError::Commission {
            max_bps: MAX_COMMISSION.get(),
        });
    }
    let (party, username) =
        onboarding::create_staff_in_txn(txn, core, Role::Insurer, display_name, credentials)
            .await?;
    insurers::Entity::insert(insurers::ActiveModel {
        party_id: Set(party.id.uuid()),
        commission_bps: Set(commission.get()),
        created_at: Set(core.clock.now()),
    })
    .exec_without_returning(txn)
    .await?;
    Ok((party, username))
}

/// The platform's commission on an insurer's premiums.
pub async fn commission_of(
    db: &impl ConnectionTrait,
    insurer: PartyId,
) -> InsuranceResult<BasisPoints> {
    let stored = insurers::Entity::find_by_id(insurer.uuid())
        .one(db)
        .await?
        .ok_or(CoreError::NotFound("insurer"))?
        .commission_bps;
    Ok(BasisPoints::new(stored).map_err(CoreError::Money)?)
}

async fn product_from_row(
    db: &impl ConnectionTrait,
    row: products::Model,
) -> InsuranceResult<Product> {
    let currency = Currency::from_str(&row.currency)?;
    let insurer = parties::get_party(db, PartyId::from_uuid(row.insurer_party_id)).await?;
    Ok(Product {
        id: ProductId::from_uuid(row.id),
        insurer_id: insurer.id,
        insurer_name: insurer.display_name,
        service_company_id: PartyId::from_uuid(row.service_company_party_id),
        name: row.name,
        coverage: row.coverage,
        coverage_amount: Money::from_minor(row.coverage_amount.0, currency)?,
        premium: Money::from_minor(row.premium.0, currency)?,
        term_months: row.term_months,
        payment_plan: row.payment_plan,
        grace_days: row.grace_days,
        free_look_days: row.free_look_days,
        active: row.active,
        created_at: row.created_at,
    })
}

/// An insurer lists a product.
#[tracing::instrument(name = "insurance.create_product", skip_all)]
pub async fn create_product_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    insurer: PartyId,
    new: NewProduct,
) -> InsuranceResult<Product> {
    let name = text(&new.name, "a product name", MAX_NAME_CHARS)?;
    let coverage = text(&new.coverage, "a coverage description", MAX_COVERAGE_CHARS)?;
    if new.premium.is_zero() || new.coverage_amount.is_zero() {
        return Err(CoreError::invalid("premium and coverage amount are more than zero").into());
    }
    if new.premium.currency() != new.coverage_amount.currency() {
        return Err(CoreError::invalid("premium and coverage amount are in one currency").into());
    }
    if !(1..=MAX_TERM_MONTHS).contains(&new.term_months) {
        return Err(InsuranceError::TermMonths {
            max: MAX_TERM_MONTHS,
        });
    }
    let grace_days = grace_days_for(new.term_months, new.grace_days)?;
    let free_look_days = free_look_days_for(new.free_look_days)?;
    let service = parties::find_party(txn, new.service_company)
        .await?
        .filter(|p| p.role == Role::Distributor)
        .ok_or(InsuranceError::ServiceCompany)?;
    commission_of(txn, insurer).await?;
    let id = ProductId::new();
    let now = core.clock.now();
    products::Entity::insert(products::ActiveModel {
        id: Set(id.uuid()),
        insurer_party_id: Set(insurer.uuid()),
        service_company_party_id: Set(service.id.uuid()),
        name: Set(name),
        coverage: Set(coverage),
        coverage_amount: Set(MinorUnits(new.coverage_amount.minor())),
        premium: Set(MinorUnits(new.premium.minor())),
        currency: Set(new.premium.currency().code().to_owned()),
        term_months: Set(new.term_months),
        payment_plan: Set(new.payment_plan),
        grace_days: Set(grace_days),
        free_look_days: Set(free_look_days),
        active: Set(true),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_without_returning(txn)
    .await?;
    get_product(txn, id).await
}

pub async fn get_product(db: &impl ConnectionTrait, id: ProductId) -> InsuranceResult<Product> {
    let row = products::Entity::find_by_id(id.uuid())
        .one(db)
        .await?
        .ok_or(CoreError::NotFound("product"))?;
    product_from_row(db, row).await
}

/// Takes a product off sale or back on (its insurer). Policies already sold keep their terms.
#[tracing::instrument(name = "insurance.set_product_active", skip_all, fields(product_id = %id, active))]
pub async fn set_active_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    insurer: PartyId,
    id: ProductId,
    active: bool,
) -> InsuranceResult<Product> {
    let result = products::Entity::update_many()
        .col_expr(products::Column::Active, Expr::value(active))
        .col_expr(products::Column::UpdatedAt, Expr::value(core.clock.now()))
        .filter(products::Column::Id.eq(id.uuid()))
        .filter(products::Column::InsurerPartyId.eq(insurer.uuid()))
        .exec(txn)
        .await?;
    if result.rows_affected != 1 {
        return Err(CoreError::NotFound("product").into());
    }
    get_product(txn, id).await
}

/// Who is looking at the product list.
#[derive(Debug, Clone, Copy)]
pub enum ProductViewer {
    /// An insurer sees its own products, on sale or not.
    Insurer(PartyId),
    /// Everyone else sees what is on sale.
    Buyer,
}

/// Products, newest first, `after` the last id of the previous page.
pub async fn list_products(
    db: &impl ConnectionTrait,
    viewer: ProductViewer,
    after: Option<ProductId>,
    limit: u64,
) -> InsuranceResult<Vec<Product>> {
    let mut query = products::Entity::find()
        .order_by_desc(products::Column::Id)
        .limit(limit.clamp(1, MAX_PAGE));
    query = match viewer {
        ProductViewer::Insurer(insurer) => {
            query.filter(products::Column::InsurerPartyId.eq(insurer.uuid()))
        }
        ProductViewer::Buyer => query.filter(products::Column::Active.eq(true)),
    };
    if let Some(after) = after {
        query = query.filter(products::Column::Id.lt(after.uuid()));
    }
    let rows = query.all(db).await?;
    let mut list = Vec::with_capacity(rows.len());
    for row in rows {
        list.push(product_from_row(db, row).await?);
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_is_at_least_fourteen_days_or_seven_for_short_terms() {
        assert_eq!(grace_days_for(12, None).unwrap(), 14);
        assert!(grace_days_for(12, Some(10)).is_err());
        assert_eq!(grace_days_for(6, Some(7)).unwrap(), 7);
        assert!(grace_days_for(6, Some(6)).is_err());
        assert!(grace_days_for(24, Some(91)).is_err());
    }

    #[test]
    fn free_look_defaults_to_fifteen_days() {
        assert_eq!(free_look_days_for(None).unwrap(), 15);
        assert_eq!(free_look_days_for(Some(30)).unwrap(), 30);
        assert!(free_look_days_for(Some(9)).is_err());
        assert!(free_look_days_for(Some(31)).is_err());
    }
}
