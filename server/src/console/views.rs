//! Small helpers that turn the use cases' views into what a page prints. Presentation only:
//! no rule lives here.

use chrono::{DateTime, Utc};
use holdfast_core::escrow::CaseEvent;
use holdfast_core::ledger::{self, Account};
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

/// The default page of a list, and the most a "Show more" link grows it to.
pub const PAGE: u64 = 20;
pub const MAX_PAGE: u64 = 100;

/// `?limit=` of a list that its use case pages by a limit only: "Show more" asks for more.
#[derive(serde::Deserialize, Default)]
pub struct More {
    pub limit: Option<u64>,
}

impl More {
    pub fn limit(&self) -> u64 {
        self.limit.unwrap_or(PAGE).clamp(1, MAX_PAGE)
    }

    /// The limit of the "Show more" link, if a full page came back.
    pub fn next(&self, shown: usize) -> Option<u64> {
        let limit = self.limit();
        (shown as u64 == limit && limit < MAX_PAGE).then_some(limit + PAGE)
    }
}

/// The `after` of the "Next page" link of a list paged by id: the last id of a full page.
pub fn next_after<T, Id>(list: &[T], page: u64, id: impl Fn(&T) -> Id) -> Option<Id> {
    (list.len() as u64 == page)
        .then(|| list.last().map(id))
        .flatten()
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
