//! The catalogue: what suppliers sell, at what price and commission.

use crate::entities::commodities;
use crate::error::{RetailError, RetailResult};
use chrono::{DateTime, Utc};
use holdfast_core::cards::{self, AgeClass, CardId, PurchaseType};
use holdfast_core::db::MinorUnits;
use holdfast_core::ids::{Id, IdKind, PartyId};
use holdfast_core::paging::{ListFilter, Page, Paged};
use holdfast_core::{Core, CoreError, Currency, Money};
use rust_decimal::Decimal;
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, ConnectionTrait, DatabaseTransaction, QueryFilter};
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use utoipa::ToSchema;

/// Who may see and buy a commodity, by the class of the card they shop with.
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
    Default,
)]
#[sea_orm(
    rs_type = "String",
    db_type = "String(StringLen::N(16))",
    rename_all = "snake_case"
)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    #[default]
    All,
    /// Hidden from adolescent cards.
    AdultOnly,
    /// For business-purchase cards only.
    BusinessOnly,
}

impl Audience {
    pub fn admits(self, age: AgeClass, purchase: PurchaseType) -> bool {
        match self {
            Audience::All => true,
            Audience::AdultOnly => age == AgeClass::Adult,
            Audience::BusinessOnly => purchase == PurchaseType::Business,
        }
    }

    /// Every audience a card of this class belongs to.
    pub fn admitting(age: AgeClass, purchase: PurchaseType) -> Vec<Audience> {
        [Audience::All, Audience::AdultOnly, Audience::BusinessOnly]
            .into_iter()
            .filter(|audience| audience.admits(age, purchase))
            .collect()
    }
}

/// Who is looking at the catalogue.
#[derive(Debug, Clone, Copy)]
pub enum Viewer {
    /// A shopper, through the card they logged in with.
    Card(AgeClass, PurchaseType),
    /// Suppliers and operators see everything.
    Staff,
}

#[derive(Debug)]
pub enum CommodityKind {}
impl IdKind for CommodityKind {
    const NAME: &'static str = "commodity";
}
pub type CommodityId = Id<CommodityKind>;

/// A commission rate: a fraction of the price in `[0, 1)`, to a basis point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommissionRate {
    basis_points: u16,
}

impl CommissionRate {
    pub fn parse(input: &str) -> RetailResult<CommissionRate> {
        let rate =
            Decimal::from_str_exact(input.trim()).map_err(|_| RetailError::CommissionRate)?;
        CommissionRate::from_decimal(rate)
    }

    pub fn from_decimal(rate: Decimal) -> RetailResult<CommissionRate> {
        let rate = rate.normalize();
        if rate.is_sign_negative() || rate >= Decimal::ONE || rate.scale() > 4 {
            return Err(RetailError::CommissionRate);
        }
        let basis_points = (rate * Decimal::from(10_000))
            .trunc()
            .to_string()
            .parse::<u16>()
            .map_err(|_| RetailError::CommissionRate)?;
        Ok(CommissionRate { basis_points })
    }

    pub fn basis_points(self) -> i32 {
        i32::from(self.basis_points)
    }

    pub fn from_basis_points(basis_points: i32) -> RetailResult<CommissionRate> {
        CommissionRate::from_stored(basis_points)
    }

    fn from_stored(basis_points: i32) -> RetailResult<CommissionRate> {
        u16::try_from(basis_points)
            .ok()
            .filter(|bps| *bps < 10_000)
            .map(|basis_points| CommissionRate { basis_points })
            .ok_or(RetailError::CommissionRate)
    }

    pub fn as_decimal(self) -> Decimal {
        Decimal::new(i64::from(self.basis_points), 4).normalize()
    }

    /// The commission on `amount`, rounded half-up to the currency's minor unit.
    pub fn of(self, amount: Money) -> RetailResult<Money> {
        Ok(amount.share_rounded_half_up(self.as_decimal())?)
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Commodity {
    pub id: CommodityId,
    pub supplier_id: PartyId,
    pub name: String,
    pub manufacturer: String,
    pub description: String,
    pub price: Money,
    /// The platform's share of the price, as a decimal fraction (`"0.05"` is 5 %).
    #[schema(example = "0.05")]
    pub commission_rate: String,
    pub audience: Audience,
    pub created_at: DateTime<Utc>,
    #[serde(skip)]
    pub rate: CommissionRate,
    #[serde(skip)]
    pub active: bool,
}

impl TryFrom<commodities::Model> for Commodity {
    type Error = RetailError;

    fn try_from(row: commodities::Model) -> RetailResult<Self> {
        let currency = Currency::from_str(&row.currency).map_err(CoreError::from)?;
        let rate = CommissionRate::from_stored(row.commission_bps)?;
        Ok(Commodity {
            id: CommodityId::from_uuid(row.id),
            supplier_id: PartyId::from_uuid(row.supplier_party_id),
            name: row.name,
            manufacturer: row.manufacturer,
            description: row.description,
            price: Money::from_minor(row.price.0, currency)?,
            commission_rate: rate.as_decimal().to_string(),
            audience: row.audience,
            created_at: row.created_at,
            rate,
            active: row.active,
        })
    }
}

#[derive(Debug, Clone)]
pub struct NewCommodity {
    pub name: String,
    pub manufacturer: String,
    pub description: String,
    pub price: Money,
    pub audience: Audience,
}

/// What a seller may change of its commodity (the commission is the operator's). A new price
/// applies to new orders only: an order keeps the price its buyer confirmed.
#[derive(Debug, Clone, Default)]
pub struct CommodityChange {
    pub name: Option<String>,
    pub manufacturer: Option<String>,
    pub description: Option<String>,
    pub price: Option<Money>,
    pub audience: Option<Audience>,
    pub active: Option<bool>,
}

pub const MAX_DESCRIPTION_CHARS: usize = 2_000;
/// A commodity's or auction's description, over several lines if need be.
pub type Description = holdfast_core::text::MultilineText<0, MAX_DESCRIPTION_CHARS>;
pub const MAX_PAGE: u64 = 100;

fn text_field(value: &str, what: &str, max: usize, required: bool) -> RetailResult<String> {
    let trimmed = value.trim();
    if (required && trimmed.is_empty()) || trimmed.chars().count() > max {
        return Err(CoreError::invalid(format!("{what} must have 1 to {max} characters")).into());
    }
    Ok(trimmed.to_owned())
}

#[tracing::instrument(name = "retail.create_commodity", skip_all)]
pub async fn create_commodity_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    supplier: PartyId,
    new: NewCommodity,
) -> RetailResult<Commodity> {
    let name = text_field(&new.name, "a name", 200, true)?;
    let manufacturer = text_field(&new.manufacturer, "a manufacturer", 200, false)?;
    let description = text_field(
        &new.description,
        "a description",
        MAX_DESCRIPTION_CHARS,
        false,
    )?;
    if new.price.is_zero() {
        return Err(CoreError::invalid("a price must be more than zero").into());
    }
    if !crate::sellers::may_sell(txn, supplier).await? {
        return Err(CoreError::Forbidden(
            "only suppliers and card holders who sell list commodities",
        )
        .into());
    }
    let terms = crate::sellers::terms_of(txn, supplier).await?;
    let row = commodities::ActiveModel {
        id: Set(CommodityId::new().uuid()),
        supplier_party_id: Set(supplier.uuid()),
        name: Set(name),
        manufacturer: Set(manufacturer),
        description: Set(description),
        price: Set(MinorUnits(new.price.minor())),
        currency: Set(new.price.currency().code().to_owned()),
        commission_bps: Set(terms.commission.basis_points()),
        active: Set(true),
        audience: Set(new.audience),
        created_at: Set(core.clock.now()),
    }
    .insert(txn)
    .await?;
    Commodity::try_from(row)
}

/// Whether a commodity is on sale (a seller may withdraw one); the state a list of commodities
/// filters by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Listing {
    OnSale,
    Withdrawn,
}

impl Listing {
    pub const ALL: [Listing; 2] = [Listing::OnSale, Listing::Withdrawn];
}

/// Pages `query` newest first, keeping the filter's listing and creation dates.
async fn page_of(
    db: &impl ConnectionTrait,
    query: Select<commodities::Entity>,
    filter: &ListFilter<Listing>,
    page: &Page,
) -> RetailResult<Paged<Commodity>> {
    let mut query = query.filter(filter.created.condition(commodities::Column::CreatedAt));
    if let Some(listing) = filter.state {
        query = query.filter(commodities::Column::Active.eq(listing == Listing::OnSale));
    }
    let rows = page
        .apply(
            query,
            commodities::Column::CreatedAt,
            commodities::Column::Id,
        )
        .all(db)
        .await?;
    page.finish(rows, |row| (row.created_at, row.id))
        .try_map(Commodity::try_from)
}

/// Commodities for sale that `viewer` may see, newest first, in the filter's date range (a
/// withdrawn one is never for sale, so `withdrawn` lists none).
pub async fn list_commodities(
    db: &impl ConnectionTrait,
    viewer: Viewer,
    filter: &ListFilter<Listing>,
    page: &Page,
) -> RetailResult<Paged<Commodity>> {
    let mut query = commodities::Entity::find().filter(commodities::Column::Active.eq(true));
    if let Viewer::Card(age, purchase) = viewer {
        query =
            query.filter(commodities::Column::Audience.is_in(Audience::admitting(age, purchase)));
    }
    page_of(db, query, filter, page).await
}

/// How the catalogue is seen by a shopper signed in with `card` (through the card's age class
/// and purchase type), or, without a card, by staff (everything).
pub async fn viewer(db: &impl ConnectionTrait, card: Option<CardId>) -> RetailResult<Viewer> {
    Ok(match card {
        Some(card) => {
            let card = cards::get_card(db, card).await?;
            Viewer::Card(card.age_class, card.purchase_type)
        }
        None => Viewer::Staff,
    })
}

/// A seller's own commodities, on sale or withdrawn as the filter says, newest first.
pub async fn commodities_of_seller(
    db: &impl ConnectionTrait,
    seller: PartyId,
    filter: &ListFilter<Listing>,
    page: &Page,
) -> RetailResult<Paged<Commodity>> {
    let query =
        commodities::Entity::find().filter(commodities::Column::SupplierPartyId.eq(seller.uuid()));
    page_of(db, query, filter, page).await
}

pub async fn get_commodity(db: &impl ConnectionTrait, id: CommodityId) -> RetailResult<Commodity> {
    commodities::Entity::find_by_id(id.uuid())
        .one(db)
        .await?
        .ok_or(RetailError::Core(CoreError::NotFound("commodity")))
        .and_then(Commodity::try_from)
}

/// Changes a seller's own commodity.
#[tracing::instrument(name = "retail.update_commodity", skip_all, fields(commodity_id = %id))]
pub async fn update_commodity_in_txn(
    txn: &DatabaseTransaction,
    seller: PartyId,
    id: CommodityId,
    change: CommodityChange,
) -> RetailResult<Commodity> {
    let current = get_commodity(txn, id).await?;
    if current.supplier_id != seller {
        return Err(RetailError::Core(CoreError::NotFound("commodity")));
    }
    let mut row = commodities::ActiveModel {
        id: Set(id.uuid()),
        ..Default::default()
    };
    if let Some(name) = change.name {
        row.name = Set(text_field(&name, "a name", 200, true)?);
    }
    if let Some(manufacturer) = change.manufacturer {
        row.manufacturer = Set(text_field(&manufacturer, "a manufacturer", 200, false)?);
    }
    if let Some(description) = change.description {
        row.description = Set(text_field(
            &description,
            "a description",
            MAX_DESCRIPTION_CHARS,
            false,
        )?);
    }
    if let Some(price) = change.price {
        if price.is_zero() || price.currency() != current.price.currency() {
            return Err(
                CoreError::invalid("a new price is more than zero, in the same currency").into(),
            );
        }
        row.price = Set(MinorUnits(price.minor()));
    }
    if let Some(audience) = change.audience {
        row.audience = Set(audience);
    }
    if let Some(active) = change.active {
        row.active = Set(active);
    }
    Commodity::try_from(row.update(txn).await?)
}

/// Sets a commodity's commission (the operator's decision; overrides the seller's default).
#[tracing::instrument(name = "retail.set_commission", skip_all, fields(commodity_id = %id))]
pub async fn set_commission_in_txn(
    txn: &DatabaseTransaction,
    id: CommodityId,
    rate: CommissionRate,
) -> RetailResult<Commodity> {
    get_commodity(txn, id).await?;
    let row = commodities::ActiveModel {
        id: Set(id.uuid()),
        commission_bps: Set(rate.basis_points()),
        ..Default::default()
    }
    .update(txn)
    .await?;
    Commodity::try_from(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commission_rates_are_fractions_below_one_to_a_basis_point() {
        assert_eq!(CommissionRate::parse("0.05").unwrap().basis_points, 500);
        assert_eq!(CommissionRate::parse("0.1234").unwrap().basis_points, 1234);
        assert_eq!(CommissionRate::parse("0").unwrap().basis_points, 0);
        assert!(CommissionRate::parse("0.12345").is_err());
        assert!(CommissionRate::parse("1").is_err());
        assert!(CommissionRate::parse("-0.1").is_err());
        assert!(CommissionRate::parse("abc").is_err());
        assert_eq!(
            CommissionRate::parse("0.050")
                .unwrap()
                .as_decimal()
                .to_string(),
            "0.05"
        );
    }

    #[test]
    fn adolescents_see_no_adult_goods_and_only_businesses_see_business_goods() {
        use AgeClass::*;
        use PurchaseType::*;
        assert!(Audience::All.admits(Adolescent, Personal));
        assert!(!Audience::AdultOnly.admits(Adolescent, Personal));
        assert!(!Audience::AdultOnly.admits(Adolescent, Business));
        assert!(Audience::AdultOnly.admits(Adult, Personal));
        assert!(!Audience::BusinessOnly.admits(Adult, Personal));
        assert!(Audience::BusinessOnly.admits(Adult, Business));
        assert_eq!(
            Audience::admitting(Adolescent, Personal),
            vec![Audience::All]
        );
    }

    #[test]
    fn commission_is_rounded_half_up() {
        let rate = CommissionRate::parse("0.05").unwrap();
        let price = Money::parse("10.10", Currency::USD).unwrap();
        assert_eq!(rate.of(price).unwrap().minor(), 51);
    }
}
