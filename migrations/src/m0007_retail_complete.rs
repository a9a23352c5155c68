//! Retail, complete: sellers' commission and carriers, parcels and their tracking, party
//! events and webhook endpoints, card fees, partial settlement, and auctions.

use crate::columns::*;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // What a card company or department store keeps of a settlement its card paid.
        m.alter_table(
            Table::alter()
                .table("institutions")
                .add_column(int("card_fee_bps").default(0).to_owned())
                .to_owned(),
        )
        .await?;

        // The amount the seller asked to be paid (part of the order, or all of it), and whether
        // delivery was recorded when it asked.
        m.alter_table(
            Table::alter()
                .table("escrow_cases")
                .add_column(money_null(m, "settlement_amount"))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table("escrow_cases")
                .add_column(timestamp_null("delivered_at"))
                .to_owned(),
        )
        .await?;

        // A line the phone shows with a confirmation (delivery evidence, a deadline).
        m.alter_table(
            Table::alter()
                .table("challenges")
                .add_column(string_null("note", 300))
                .to_owned(),
        )
        .await?;

        // Everything a party is told: the feed behind webhooks.
        m.create_table(
            Table::create()
                .table("party_events")
                .col(id("id"))
                .col(uuid("party_id"))
                .col(string("kind", 48))
                .col(text("payload"))
                .col(timestamp("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "party_events",
            "party_events_party",
            &["party_id", "created_at"],
        ))
        .await?;

        m.create_table(
            Table::create()
                .table("webhook_endpoints")
                .col(id("id"))
                .col(uuid("party_id"))
                .col(string("url", 500))
                .col(string("secret", 64))
                .col(boolean("active"))
                .col(timestamp("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "webhook_endpoints",
            "webhook_endpoints_party",
            &["party_id"],
        ))
        .await?;
        m.alter_table(
            Table::alter()
                .table("outbox")
                .add_column(
                    ColumnDef::new("last_status_code")
                        .integer()
                        .null()
                        .to_owned(),
                )
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table("outbox")
                .add_column(uuid_null("event_id"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "outbox",
            "outbox_destination",
            &["channel", "destination", "created_at"],
        ))
        .await?;

        // Sellers: suppliers, and card holders who sell (auctions).
        m.create_table(
            Table::create()
                .table("retail_sellers")
                .col(id("party_id"))
                .col(int("commission_bps"))
                .col(uuid_null("default_distributor_party_id"))
                .col(timestamp("created_at"))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("retail_parcels")
                .col(id("id"))
                .col(uuid("case_id").unique_key().to_owned())
                .col(uuid_null("distributor_party_id"))
                .col(text("destination"))
                .col(string("status", 24))
                .col(timestamp_null("delivered_at"))
                .col(timestamp("created_at"))
                .col(timestamp("updated_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "retail_parcels",
            "retail_parcels_distributor",
            &["distributor_party_id", "status"],
        ))
        .await?;
        m.create_table(
            Table::create()
                .table("retail_tracking_events")
                .col(id("id"))
                .col(uuid("parcel_id"))
                .col(string("kind", 24))
                .col(string("location", 200))
                .col(text_null("note"))
                .col(timestamp("at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "retail_tracking_events",
            "retail_tracking_events_parcel",
            &["parcel_id", "at"],
        ))
        .await?;

        m.create_table(
            Table::create()
                .table("retail_auctions")
                .col(id("id"))
                .col(uuid("commodity_id").unique_key().to_owned())
                .col(uuid("seller_party_id"))
                .col(money(m, "reserve_price"))
                .col(string("currency", 3))
                .col(timestamp("closes_at"))
                .col(string("status", 16))
                .col(uuid_null("winning_bid_id"))
                .col(string_null("order_number", 20))
                .col(timestamp("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("retail_bids")
                .col(id("id"))
                .col(uuid("auction_id"))
                .col(uuid("bidder_party_id"))
                .col(uuid("card_id"))
                .col(money(m, "amount"))
                .col(timestamp("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "retail_bids",
            "retail_bids_auction",
            &["auction_id", "amount"],
        ))
        .await?;
        Ok(())
    }
}
