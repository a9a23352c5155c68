//! Keyset paging for every list: newest first by `(created_at, id)`, continued by an opaque
//! cursor that names the last row shown.
//!
//! A cursor is base64url (no padding) of 30 bytes:
//!
//! ```text
//! version (1) | list kind (1) | created_at, ns since the epoch, big-endian (8) | id (16) | check (4)
//! ```
//!
//! The check is the first four bytes of SHA-256 over the rest, so a cursor that was cut short or
//! edited is refused (`invalid_cursor`) instead of silently starting somewhere else; a cursor of
//! another list is refused by its kind byte. A cursor is a position, not a permission: whoever
//! forges one still sees only the rows the list's own filter lets it see, so the check needs
//! no secret.
//!
//! Why a keyset and not an offset: a row inserted while someone pages is newer than every row
//! already shown, so it sorts before the cursor and neither appears on a later page nor pushes
//! a row shown before onto it (an offset would show that row twice).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::sea_query::IntoCondition;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Rows on a page when the caller names no limit.
pub const DEFAULT_LIMIT: u64 = 20;
/// The most rows one page holds; a larger limit is clamped to it.
pub const MAX_LIMIT: u64 = 100;

const VERSION: u8 = 1;
const CURSOR_BYTES: usize = 30;

/// Which list a cursor belongs to. The discriminants are written into cursors: never reuse one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ListKind {
    /// A party's escrow cases of one vertical (retail orders, the supplier's settlement status).
    Cases = 1,
    /// The operator's disputes of every vertical.
    Disputes = 2,
    Holds = 3,
    Cards = 4,
    Parcels = 5,
    Prescriptions = 6,
    Policies = 7,
    Authorisations = 8,
    Certificates = 9,
    ArmedApprovals = 10,
    /// The delivery log of one webhook endpoint.
    WebhookDeliveries = 11,
    /// The shop's catalogue and a seller's own goods.
    Commodities = 12,
    /// A payee's payout destinations (their history).
    PayoutDestinations = 14,
    /// A payee's payouts.
    Payouts = 15,
    /// Timers the worker gave up on, for an operator.
    FailedTimers = 13,
    /// An institution's imported bank statements.
    BankStatements = 16,
    /// Bank entries waiting for an operator (unmatched or mismatched).
    OpenBankEntries = 17,
}

impl ListKind {
    fn from_byte(byte: u8) -> Option<ListKind> {
        use ListKind::*;
        [
            Cases,
            Disputes,
            Holds,
            Cards,
            Parcels,
            Prescriptions,
            Policies,
            Authorisations,
            Certificates,
            ArmedApprovals,
            WebhookDeliveries,
            Commodities,
            PayoutDestinations,
            Payouts,
            FailedTimers,
            BankStatements,
            OpenBankEntries,
        ]
        .into_iter()
        .find(|kind| *kind as u8 == byte)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PagingError {
    #[error("the cursor is not one this list gave out")]
    InvalidCursor,
}

impl PagingError {
    pub fn code(&self) -> &'static str {
        match self {
            PagingError::InvalidCursor => "invalid_cursor",
        }
    }
}

/// The last row of a page: where the next page continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    kind: ListKind,
    created_at: DateTime<Utc>,
    id: Uuid,
}

impl Cursor {
    pub fn new(kind: ListKind, created_at: DateTime<Utc>, id: Uuid) -> Cursor {
        Cursor {
            kind,
            created_at,
            id,
        }
    }

    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(CURSOR_BYTES);
        bytes.push(VERSION);
        bytes.push(self.kind as u8);
        // Times the database stores fit in i64 nanoseconds (years 1677–2262); one outside
        // would be a bug upstream, and saturating keeps it ordered rather than panicking.
        let nanos = self.created_at.timestamp_nanos_opt().unwrap_or(i64::MAX);
        bytes.extend_from_slice(&nanos.to_be_bytes());
        bytes.extend_from_slice(self.id.as_bytes());
        let check = Sha256::digest(&bytes);
        bytes.extend_from_slice(&check[..4]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Reads a cursor of list `kind`; anything else is `invalid_cursor`.
    pub fn decode(kind: ListKind, text: &str) -> Result<Cursor, PagingError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| PagingError::InvalidCursor)?;
        if bytes.len() != CURSOR_BYTES || bytes[0] != VERSION {
            return Err(PagingError::InvalidCursor);
        }
        let (body, check) = bytes.split_at(CURSOR_BYTES - 4);
        if Sha256::digest(body)[..4] != *check {
            return Err(PagingError::InvalidCursor);
        }
        if ListKind::from_byte(body[1]) != Some(kind) {
            return Err(PagingError::InvalidCursor);
        }
        let nanos = i64::from_be_bytes(
            body[2..10]
                .try_into()
                .map_err(|_| PagingError::InvalidCursor)?,
        );
        let id = Uuid::from_slice(&body[10..26]).map_err(|_| PagingError::InvalidCursor)?;
        Ok(Cursor {
            kind,
            created_at: DateTime::from_timestamp_nanos(nanos),
            id,
        })
    }
}

/// One page request: how many rows, and after which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    kind: ListKind,
    limit: u64,
    cursor: Option<Cursor>,
}

impl Page {
    /// The first page of `kind` with `limit` rows (clamped to 1..=[`MAX_LIMIT`]).
    pub fn first(kind: ListKind, limit: u64) -> Page {
        Page {
            kind,
            limit: limit.clamp(1, MAX_LIMIT),
            cursor: None,
        }
    }

    /// A page of `kind` with `limit` rows (clamped) after `cursor`.
    pub fn new(kind: ListKind, limit: u64, cursor: Option<Cursor>) -> Page {
        Page {
            cursor,
            ..Page::first(kind, limit)
        }
    }

    /// A page as a client asks for it: no limit means [`DEFAULT_LIMIT`]; a cursor must be one
    /// this list gave out.
    pub fn parse(
        kind: ListKind,
        limit: Option<u64>,
        cursor: Option<&str>,
    ) -> Result<Page, PagingError> {
        let cursor = match cursor.map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(Cursor::decode(kind, text)?),
        };
        Ok(Page {
            cursor,
            ..Page::first(kind, limit.unwrap_or(DEFAULT_LIMIT))
        })
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn kind(&self) -> ListKind {
        self.kind
    }

    pub fn cursor(&self) -> Option<&Cursor> {
        self.cursor.as_ref()
    }

    /// Orders `select` newest first, keeps the rows after the cursor and asks for one row more
    /// than the page holds (so [`Page::finish`] knows whether another page follows).
    pub fn apply<E: EntityTrait>(
        &self,
        select: Select<E>,
        created_at: E::Column,
        id: E::Column,
    ) -> Select<E> {
        let select = match &self.cursor {
            Some(cursor) => select.filter(self.after_cursor(cursor, created_at, id)),
            None => select,
        };
        select
            .order_by_desc(created_at)
            .order_by_desc(id)
            .limit(self.limit + 1)
    }

    /// `(created_at, id) < (cursor)`, spelt out: row values are not portable to every SQLite.
    fn after_cursor<C: ColumnTrait>(&self, cursor: &Cursor, created_at: C, id: C) -> Condition {
        Condition::any().add(created_at.lt(cursor.created_at)).add(
            Condition::all()
                .add(created_at.eq(cursor.created_at))
                .add(id.lt(cursor.id))
                .into_condition(),
        )
    }

    /// Cuts the rows of an [`Page::apply`]d query to the page; `key` gives a row's creation
    /// time and id.
    pub fn finish<T>(
        &self,
        mut rows: Vec<T>,
        key: impl Fn(&T) -> (DateTime<Utc>, Uuid),
    ) -> Paged<T> {
        let more = rows.len() as u64 > self.limit;
        rows.truncate(usize::try_from(self.limit).unwrap_or(usize::MAX));
        let next_cursor = more.then(|| rows.last()).flatten().map(|last| {
            let (created_at, id) = key(last);
            Cursor::new(self.kind, created_at, id).encode()
        });
        Paged {
            items: rows,
            next_cursor,
        }
    }
}

/// One page of a list and the cursor of the next, if there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Paged<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Paged<U> {
        Paged {
            items: self.items.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }

    pub fn try_map<U, E>(self, f: impl FnMut(T) -> Result<U, E>) -> Result<Paged<U>, E> {
        Ok(Paged {
            items: self.items.into_iter().map(f).collect::<Result<_, _>>()?,
            next_cursor: self.next_cursor,
        })
    }

    pub fn empty() -> Paged<T> {
        Paged {
            items: Vec::new(),
            next_cursor: None,
        }
    }
}

/// Created on or after `from` and on or before `to`, both whole UTC days.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CreatedRange {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
}

impl CreatedRange {
    pub fn new(from: Option<NaiveDate>, to: Option<NaiveDate>) -> CreatedRange {
        CreatedRange { from, to }
    }

    /// The condition on a creation-time column: `from`'s midnight ≤ t < the midnight after `to`.
    pub fn condition<C: ColumnTrait>(&self, created_at: C) -> Condition {
        let mut condition = Condition::all();
        if let Some(from) = self.from {
            condition =
                condition.add(created_at.gte(from.and_time(chrono::NaiveTime::MIN).and_utc()));
        }
        if let Some(to) = self.to {
            condition = match to.succ_opt() {
                Some(next) => {
                    condition.add(created_at.lt(next.and_time(chrono::NaiveTime::MIN).and_utc()))
                }
                // The last day chrono knows: nothing is created after it.
                None => condition,
            };
        }
        condition
    }

    /// Whether `at` lies in the range (for rows filtered after reading).
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        let day = at.date_naive();
        self.from.is_none_or(|from| day >= from) && self.to.is_none_or(|to| day <= to)
    }
}

/// What a list keeps: a state (each list its own type) and a creation-date range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListFilter<S> {
    pub state: Option<S>,
    pub created: CreatedRange,
}

impl<S> Default for ListFilter<S> {
    fn default() -> Self {
        ListFilter {
            state: None,
            created: CreatedRange::default(),
        }
    }
}

impl<S> ListFilter<S> {
    pub fn state(state: Option<S>) -> Self {
        ListFilter {
            state,
            created: CreatedRange::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(nanos: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_nanos(nanos)
    }

    #[test]
    fn a_cursor_reads_back_as_written() {
        let cursor = Cursor::new(
            ListKind::Holds,
            at(1_780_000_000_123_456_789),
            Uuid::now_v7(),
        );
        assert_eq!(
            Cursor::decode(ListKind::Holds, &cursor.encode()),
            Ok(cursor)
        );
    }

    #[test]
    fn a_cursor_of_another_list_is_refused() {
        let text = Cursor::new(ListKind::Holds, at(5), Uuid::now_v7()).encode();
        assert_eq!(
            Cursor::decode(ListKind::Cases, &text),
            Err(PagingError::InvalidCursor)
        );
    }

    #[test]
    fn an_edited_or_cut_cursor_is_refused() {
        let text = Cursor::new(ListKind::Cases, at(5), Uuid::now_v7()).encode();
        for i in 0..text.len() {
            let mut edited: Vec<char> = text.chars().collect();
            edited[i] = if edited[i] == 'A' { 'B' } else { 'A' };
            let edited: String = edited.into_iter().collect();
            assert_eq!(
                Cursor::decode(ListKind::Cases, &edited),
                Err(PagingError::InvalidCursor),
                "{i}"
            );
        }
        assert!(Cursor::decode(ListKind::Cases, &text[..text.len() - 1]).is_err());
        assert!(Cursor::decode(ListKind::Cases, "not a cursor!").is_err());
        assert!(Cursor::decode(ListKind::Cases, "").is_err());
    }

    #[test]
    fn a_limit_is_clamped_and_defaults_to_twenty() {
        assert_eq!(
            Page::parse(ListKind::Cases, None, None).map(|p| p.limit()),
            Ok(20)
        );
        assert_eq!(
            Page::parse(ListKind::Cases, Some(0), None).map(|p| p.limit()),
            Ok(1)
        );
        assert_eq!(
            Page::parse(ListKind::Cases, Some(5000), None).map(|p| p.limit()),
            Ok(100)
        );
        assert_eq!(
            Page::parse(ListKind::Cases, None, Some(" ")).map(|p| p.cursor),
            Ok(None)
        );
    }

    #[test]
    fn a_date_range_takes_whole_days() {
        let day = |d| NaiveDate::from_ymd_opt(2026, 12, d);
        let range = CreatedRange::new(day(3), day(4));
        assert!(!range.contains("2026-12-02T23:59:59.999Z".parse().unwrap()));
        assert!(range.contains("2026-12-03T00:00:00Z".parse().unwrap()));
        assert!(range.contains("2026-12-04T23:59:59.999Z".parse().unwrap()));
        assert!(!range.contains("2026-12-05T00:00:00Z".parse().unwrap()));
    }

    /// Pages an in-memory list the way [`Page::apply`] pages a table: rows before the cursor,
    /// newest first, one more than the limit.
    fn page_of(rows: &[(DateTime<Utc>, Uuid)], page: &Page) -> Paged<(DateTime<Utc>, Uuid)> {
        let mut sorted: Vec<_> = rows
            .iter()
            .copied()
            .filter(|row| page.cursor().is_none_or(|c| *row < (c.created_at, c.id)))
            .collect();
        sorted.sort_by(|a, b| b.cmp(a));
        sorted.truncate(usize::try_from(page.limit() + 1).unwrap());
        page.finish(sorted, |row| *row)
    }

    proptest! {
        /// Every row is shown exactly once and in order, whatever the limit, also when rows
        /// arrive between pages (they are newer than the cursor, so no page after the first
        /// shows them and the rows still to come do not shift).
        #[test]
        fn paging_shows_each_row_once_in_order_while_rows_arrive(
            times in proptest::collection::vec(0i64..50, 0..60),
            limit in 1u64..12,
            arrivals in proptest::collection::vec(0usize..4, 0..20),
        ) {
            let mut clock = 1_000i64;
            let mut rows: Vec<(DateTime<Utc>, Uuid)> =
                times.iter().map(|t| (at(*t), Uuid::now_v7())).collect();
            let mut expected = rows.clone();
            expected.sort_by(|a, b| b.cmp(a));

            let mut shown = Vec::new();
            let mut page = Page::first(ListKind::Cases, limit);
            let mut turn = 0;
            loop {
                let result = page_of(&rows, &page);
                shown.extend(result.items.iter().copied());
                let Some(next) = result.next_cursor else { break };
                page = Page::parse(ListKind::Cases, Some(limit), Some(&next)).unwrap();
                // New rows come in after the page was read, each newer than any before.
                for _ in 0..arrivals.get(turn).copied().unwrap_or(0) {
                    clock += 1;
                    rows.push((at(clock), Uuid::now_v7()));
                }
                turn += 1;
            }
            prop_assert_eq!(shown, expected);
        }
    }
}
