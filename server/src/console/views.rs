//! Small helpers that turn the use cases' views into what a page prints. Presentation only:
//! no rule lives here.

use super::page::PageError;
use chrono::{DateTime, NaiveDate, Utc};
use holdfast_core::CoreError;
use holdfast_core::escrow::CaseEvent;
use holdfast_core::ledger::{self, Account};
use holdfast_core::paging::{CreatedRange, ListFilter, ListKind, Page};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// An enum's API name for people: `settlement_requested` → "settlement requested".
pub fn label(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name.replace('_', " "),
        _ => String::new(),
    }
}

/// A time as pages print it.
pub fn when(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// A short fingerprint of what a live fragment shows: polling it with the same fingerprint
/// answers 204, and htmx then leaves the page (and anything being typed) alone.
pub fn fingerprint(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hex::encode(&hasher.finalize()[..8])
}

/// The rows of one page of a list.
pub const PAGE: u64 = 20;

/// `?state=…&from=…&to=…&cursor=…` of a list page: the filter form's fields and the cursor of
/// the "Next page" link (the same keyset cursor the API gives in `Next-Cursor`).
#[derive(serde::Deserialize, Default, Debug)]
pub struct ListParams {
    pub state: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub cursor: Option<String>,
    /// Rows per page, 1–100 (default [`PAGE`]). A string, so the struct can be flattened into
    /// another query (serde's flatten hands every value over as text).
    pub limit: Option<String>,
}

impl ListParams {
    /// The page asked for; a cursor the list did not give out is refused (`invalid_cursor`).
    pub fn page(&self, kind: ListKind) -> Result<Page, PageError> {
        Ok(
            Page::parse(kind, Some(self.limit()?), self.cursor.as_deref())
                .map_err(CoreError::from)?,
        )
    }

    fn limit(&self) -> Result<u64, PageError> {
        match self
            .limit
            .as_deref()
            .map(str::trim)
            .filter(|l| !l.is_empty())
        {
            None => Ok(PAGE),
            Some(raw) => raw.parse().map_err(|_| {
                PageError::from(crate::error::ApiError::invalid(format!(
                    "{raw:?} is not a number of rows"
                )))
            }),
        }
    }

    /// The state (blank: any) and creation dates (blank: open) to keep.
    pub fn filter<S: serde::de::DeserializeOwned>(&self) -> Result<ListFilter<S>, PageError> {
        let state = super::forms::optional_choice(self.state.as_deref())?;
        Ok(ListFilter {
            state,
            created: CreatedRange::new(day(self.from.as_deref())?, day(self.to.as_deref())?),
        })
    }

    /// The "Next page" link of a list under `path` that has no filter.
    pub fn pager(&self, path: impl Into<String>, next_cursor: Option<String>) -> ListNav {
        self.nav(
            path,
            std::iter::empty::<()>(),
            &ListFilter::default(),
            next_cursor,
        )
    }

    /// The filter form and the "Next page" link of a list under `path`, whose states are `all`.
    pub fn nav<S: Serialize + PartialEq>(
        &self,
        path: impl Into<String>,
        all: impl IntoIterator<Item = S>,
        filter: &ListFilter<S>,
        next_cursor: Option<String>,
    ) -> ListNav {
        let path = path.into();
        let text = |day: Option<NaiveDate>| day.map(|d| d.to_string()).unwrap_or_default();
        let (from, to) = (text(filter.created.from), text(filter.created.to));
        let chosen = filter
            .state
            .as_ref()
            .map(super::forms::label)
            .unwrap_or_default();
        let limit = self.limit.clone().unwrap_or_default();
        let next = next_cursor.map(|cursor| {
            // Form-encoded: nothing typed in the filter can break out of its parameter.
            let pairs = [
                ("state", chosen.as_str()),
                ("from", &from),
                ("to", &to),
                ("limit", limit.trim()),
                ("cursor", &cursor),
            ];
            let query = serde_urlencoded::to_string(
                pairs
                    .iter()
                    .filter(|(_, v)| !v.is_empty())
                    .collect::<Vec<_>>(),
            )
            .unwrap_or_default();
            format!("{path}?{query}")
        });
        ListNav {
            path,
            states: all
                .into_iter()
                .map(|s| {
                    let code = super::forms::label(&s);
                    StateChoice {
                        label: code.replace('_', " "),
                        selected: code == chosen,
                        code,
                    }
                })
                .collect(),
            from,
            to,
            next,
        }
    }
}

/// A `YYYY-MM-DD` from a date field; blank is none.
fn day(raw: Option<&str>) -> Result<Option<NaiveDate>, PageError> {
    match raw.map(str::trim).filter(|r| !r.is_empty()) {
        None => Ok(None),
        Some(raw) => NaiveDate::parse_from_str(raw, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| {
                PageError::from(crate::error::ApiError::invalid(format!(
                    "{raw:?} is not a date (YYYY-MM-DD)"
                )))
            }),
    }
}

/// What `console/list_filter.html` and `console/list_pager.html` print for a list.
pub struct ListNav {
    pub path: String,
    pub states: Vec<StateChoice>,
    pub from: String,
    pub to: String,
    pub next: Option<String>,
}

impl ListNav {
    /// Whether the list shows only some rows (an empty list then says "none that match").
    pub fn is_filtered(&self) -> bool {
        self.states.iter().any(|s| s.selected) || !self.from.is_empty() || !self.to.is_empty()
    }
}

pub struct StateChoice {
    pub code: String,
    pub label: String,
    pub selected: bool,
}

/// An amount typed in a form, in `currency`; blank is none.
pub fn money_field(
    amount: &str,
    currency: &str,
) -> Result<Option<holdfast_core::Money>, super::page::PageError> {
    let amount = amount.trim();
    if amount.is_empty() {
        return Ok(None);
    }
    let currency = <holdfast_core::Currency as std::str::FromStr>::from_str(currency)
        .map_err(holdfast_core::CoreError::from)?;
    let money =
        holdfast_core::Money::parse(amount, currency).map_err(holdfast_core::CoreError::from)?;
    Ok(Some(money))
}

/// One account's line on a balances page.
pub struct AccountLine {
    pub kind: String,
    /// Signed, with its currency: "-79.90 USD".
    pub balance: String,
    pub available: String,
}

impl From<&Account> for AccountLine {
    fn from(account: &Account) -> Self {
        AccountLine {
            kind: label(&account.kind),
            balance: format!(
                "{} {}",
                ledger::signed_decimal(account.balance, account.currency),
                account.currency
            ),
            available: account.available().to_string(),
        }
    }
}

/// One entry of an order's timeline.
pub struct TimelineEntry {
    pub at: String,
    pub what: String,
    pub to_state: String,
    pub detail: String,
}

impl From<&CaseEvent> for TimelineEntry {
    fn from(event: &CaseEvent) -> Self {
        TimelineEntry {
            at: when(event.at),
            what: event.kind.replace('_', " "),
            to_state: event
                .to_state
                .as_deref()
                .map(|s| s.replace('_', " "))
                .unwrap_or_default(),
            detail: event.detail.clone().unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast_core::escrow::CaseState;

    #[test]
    fn an_enum_is_printed_by_its_api_name_in_words() {
        assert_eq!(
            label(&CaseState::SettlementRequested),
            "settlement requested"
        );
        assert_eq!(label(&CaseState::Frozen), "frozen");
    }

    #[test]
    fn a_fingerprint_changes_with_what_is_shown() {
        assert_eq!(fingerprint(&["a", "b"]), fingerprint(&["a", "b"]));
        assert_ne!(fingerprint(&["a", "b"]), fingerprint(&["ab", ""]));
    }
}
