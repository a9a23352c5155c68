//! Which vertical an escrow case belongs to. A closed set: every place that decides by
//! vertical matches it exhaustively, so a new vertical cannot be forgotten by a silent default.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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
    db_type = "String(StringLen::N(32))",
    rename_all = "snake_case"
)]
#[serde(rename_all = "snake_case")]
pub enum Vertical {
    /// Shops, suppliers, carriers and auctions.
    Retail,
    /// Prescriptions between hospital and drugstore.
    Pharmacy,
    /// Policies and their premiums.
    Insurance,
    /// A shop terminal's authorisation confirmed on the phone (holds, no escrow case).
    CardPresent,
}

impl Vertical {
    pub fn as_str(self) -> &'static str {
        match self {
            Vertical::Retail => "retail",
            Vertical::Pharmacy => "pharmacy",
            Vertical::Insurance => "insurance",
            Vertical::CardPresent => "card_present",
        }
    }
}

impl std::fmt::Display for Vertical {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::{ActiveEnum, Iterable};

    #[test]
    fn a_vertical_is_stored_and_shown_by_the_same_name() {
        for vertical in Vertical::iter() {
            assert_eq!(vertical.to_value(), vertical.as_str());
            assert_eq!(
                serde_json::to_value(vertical).ok(),
                Some(serde_json::Value::String(vertical.as_str().to_owned()))
            );
        }
    }
}
