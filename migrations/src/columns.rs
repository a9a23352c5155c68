//! Column helpers shared by the migrations.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

/// A money column in integer minor units: exact `NUMERIC(20,0)` on PostgreSQL, 64-bit
/// `INTEGER` on SQLite (never REAL).
pub fn money<T: IntoIden>(manager: &SchemaManager, name: T) -> ColumnDef {
    let mut column = ColumnDef::new(name);
    match manager.get_database_backend() {
        DbBackend::Postgres => column.decimal_len(20, 0),
        _ => column.big_integer(),
    };
    column.not_null().to_owned()
}

pub fn money_null<T: IntoIden>(manager: &SchemaManager, name: T) -> ColumnDef {
    let mut column = ColumnDef::new(name);
    match manager.get_database_backend() {
        DbBackend::Postgres => column.decimal_len(20, 0),
        _ => column.big_integer(),
    };
    column.null().to_owned()
}

pub fn id<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name)
        .uuid()
        .not_null()
        .primary_key()
        .to_owned()
}

pub fn uuid<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).uuid().not_null().to_owned()
}

pub fn uuid_null<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).uuid().null().to_owned()
}

pub fn string<T: IntoIden>(name: T, len: u32) -> ColumnDef {
    ColumnDef::new(name).string_len(len).not_null().to_owned()
}

pub fn string_null<T: IntoIden>(name: T, len: u32) -> ColumnDef {
    ColumnDef::new(name).string_len(len).null().to_owned()
}

pub fn text<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).text().not_null().to_owned()
}

pub fn text_null<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).text().null().to_owned()
}

pub fn int<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).integer().not_null().to_owned()
}

pub fn boolean<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).boolean().not_null().to_owned()
}

pub fn timestamp<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

pub fn timestamp_null<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name)
        .timestamp_with_time_zone()
        .null()
        .to_owned()
}

pub fn index<T: IntoIden + 'static>(
    table: T,
    name: &str,
    columns: &[&'static str],
) -> IndexCreateStatement {
    let mut statement = Index::create();
    statement.name(name).table(table);
    for column in columns {
        statement.col(*column);
    }
    statement.to_owned()
}

pub fn unique_index<T: IntoIden + 'static>(
    table: T,
    name: &str,
    columns: &[&'static str],
) -> IndexCreateStatement {
    let mut statement = index(table, name, columns);
    statement.unique();
    statement
}
