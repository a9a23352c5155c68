//! Retail vertical: catalogue, orders and their lines.

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
        m.create_table(
            Table::create()
                .table("retail_commodities")
                .col(id("id"))
                .col(uuid("supplier_party_id"))
                .col(string("name", 200))
                .col(string("manufacturer", 200))
                .col(text("description"))
                .col(money(m, "price"))
                .col(string("currency", 3))
                .col(int("commission_bps"))
                .col(boolean("active"))
                .col(timestamp("created_at"))
                .check(Expr::col("price").gt(0))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "retail_commodities",
            "retail_commodities_supplier",
            &["supplier_party_id"],
        ))
        .await?;

        m.create_table(
            Table::create()
                .table("retail_orders")
                .col(id("id"))
                .col(uuid("case_id").unique_key().to_owned())
                .col(uuid("shopper_party_id"))
                .col(uuid("supplier_party_id"))
                .col(timestamp("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "retail_orders",
            "retail_orders_shopper",
            &["shopper_party_id", "created_at"],
        ))
        .await?;
        m.create_index(index(
            "retail_orders",
            "retail_orders_supplier",
            &["supplier_party_id", "created_at"],
        ))
        .await?;

        m.create_table(
            Table::create()
                .table("retail_order_lines")
                .col(id("id"))
                .col(uuid("order_id"))
                .col(int("line_no"))
                .col(uuid("commodity_id"))
                .col(string("name", 200))
                .col(money(m, "unit_price"))
                .col(int("quantity"))
                .col(money(m, "commission"))
                .to_owned(),
        )
        .await?;
        m.create_index(unique_index(
            "retail_order_lines",
            "retail_order_lines_order",
            &["order_id", "line_no"],
        ))
        .await?;
        Ok(())
    }
}
