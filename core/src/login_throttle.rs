//! Throttling password guesses, instead of locking accounts (OWASP Authentication Cheat Sheet:
//! a lockout lets anyone who knows a username lock its owner out).
//!
//! Two counters, both on the service clock:
//! - per (username, client address): [`FREE_FAILURES`] wrong passwords are free; each one after
//!   that closes the pair for a window that doubles from [`FIRST_DELAY_SECS`] up to
//!   [`MAX_DELAY_SECS`]. The owner at another address is not affected.
//! - per client address across usernames: [`MAX_FAILURES_PER_CLIENT`] wrong passwords per
//!   [`CLIENT_WINDOW_SECS`], then the address waits for the window to end (password spraying).
//!
//! The state is in memory: no database write per failed guess (a flood of guesses would
//! otherwise queue on the write lock), nothing to clean up, and deterministic under a manual
//! clock. It is bounded — at most [`MAX_TRACKED`] entries per table, the stalest evicted first —
//! and per instance: behind a load balancer each instance counts on its own, and a restart
//! forgets. A client address is the TCP peer: IPv6 addresses count per /64, since one host
//! typically holds a whole /64. Behind a reverse proxy every client has the proxy's address.

use crate::clock::Clock;
use crate::error::{CoreError, CoreResult};
use chrono::{DateTime, Duration, Utc};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

pub const FREE_FAILURES: u32 = 5;
pub const FIRST_DELAY_SECS: i64 = 15;
pub const MAX_DELAY_SECS: i64 = 15 * 60;
pub const MAX_FAILURES_PER_CLIENT: u32 = 50;
pub const CLIENT_WINDOW_SECS: i64 = 10 * 60;
/// Entries kept per table (a few hundred kilobytes at most).
pub const MAX_TRACKED: usize = 10_000;

/// Where a login attempt comes from: an address (IPv6 by /64), or unknown (no peer address,
/// as in tests that call the router directly) — one shared bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientKey(Option<IpAddr>);

impl ClientKey {
    pub fn unknown() -> ClientKey {
        ClientKey(None)
    }

    pub fn of(address: IpAddr) -> ClientKey {
        let address = match address {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let mut segments = v6.segments();
                    segments[4..].fill(0);
                    IpAddr::V6(segments.into())
                }
            },
            v4 => v4,
        };
        ClientKey(Some(address))
    }
}

#[derive(Clone, Copy, Debug)]
struct PairEntry {
    failures: u32,
    last_failure: DateTime<Utc>,
    blocked_until: Option<DateTime<Utc>>,
}

#[derive(Clone, Copy, Debug)]
struct ClientEntry {
    failures: u32,
    window_start: DateTime<Utc>,
    last_failure: DateTime<Utc>,
}

/// How a password attempt ended, for [`LoginThrottle::settle_attempt`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    RightPassword,
    WrongPassword,
    /// Not checked (a busy database, hashing refused).
    NotChecked,
}

#[derive(Debug, Default)]
struct Tables {
    pairs: HashMap<(String, ClientKey), PairEntry>,
    clients: HashMap<ClientKey, ClientEntry>,
}

#[derive(Debug)]
pub struct LoginThrottle {
    clock: Clock,
    max_tracked: usize,
    tables: Mutex<Tables>,
}

fn secs_until(until: DateTime<Utc>, now: DateTime<Utc>) -> u64 {
    let millis = (until - now).num_milliseconds().max(0);
    u64::try_from((millis + 999) / 1000).unwrap_or(1).max(1)
}

/// Removes the entry least recently failed, if `map` is full and `key` is new — one that is
/// not holding anyone back if there is such an entry, so that flooding the table with fresh
/// addresses does not lift a block that is running.
fn make_room<K: Clone + Eq + std::hash::Hash, V>(
    map: &mut HashMap<K, V>,
    key: &K,
    max: usize,
    last: impl Fn(&V) -> DateTime<Utc>,
    holding: impl Fn(&V) -> bool,
) {
    if map.len() < max || map.contains_key(key) {
        return;
    }
    let oldest_idle = map
        .iter()
        .filter(|(_, v)| !holding(v))
        .min_by_key(|(_, v)| last(v))
        .map(|(k, _)| k.clone());
    let oldest = oldest_idle.or_else(|| {
        map.iter()
            .min_by_key(|(_, v)| last(v))
            .map(|(k, _)| k.clone())
    });
    if let Some(oldest) = oldest {
        map.remove(&oldest);
    }
}

impl LoginThrottle {
    pub fn new(clock: Clock) -> LoginThrottle {
        LoginThrottle::with_capacity(clock, MAX_TRACKED)
    }

    pub fn with_capacity(clock: Clock, max_tracked: usize) -> LoginThrottle {
        LoginThrottle {
            clock,
            max_tracked: max_tracked.max(1),
            tables: Mutex::new(Tables::default()),
        }
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Refuses (`Throttled`, with the seconds to wait) if `username` from `client` must wait.
    pub fn check(&self, username: &str, client: ClientKey) -> CoreResult<()> {
        let now = self.clock.now();
        let tables = self.tables();
        Self::check_in(&tables, username, client, now)
    }

    /// Checks and, if the attempt may go on, counts it as a failure at once, under one lock:
    /// guesses sent side by side are each counted before any of them is hashed, so a client
    /// cannot run more than the limit in parallel. [`LoginThrottle::settle_attempt`] gives the
    /// count back when the password was right (or was never checked).
    pub fn begin_attempt(&self, username: &str, client: ClientKey) -> CoreResult<()> {
        let now = self.clock.now();
        let mut tables = self.tables();
        Self::check_in(&tables, username, client, now)?;
        self.record_failure_in(&mut tables, username, client, now);
        Ok(())
    }

    /// Ends an attempt begun with [`LoginThrottle::begin_attempt`]: a wrong password keeps its
    /// count; a right one clears the pair and gives the client its count back; an attempt that
    /// could not be checked (the database was busy) gives both back.
    pub fn settle_attempt(&self, username: &str, client: ClientKey, outcome: AttemptOutcome) {
        if outcome == AttemptOutcome::WrongPassword {
            return;
        }
        let mut tables = self.tables();
        let key = (normalise(username), client);
        match outcome {
            AttemptOutcome::RightPassword => {
                tables.pairs.remove(&key);
            }
            _ => {
                if let Some(entry) = tables.pairs.get_mut(&key) {
                    entry.failures = entry.failures.saturating_sub(1);
                    if entry.failures < FREE_FAILURES {
                        entry.blocked_until = None;
                    }
                }
            }
        }
        if let Some(entry) = tables.clients.get_mut(&client) {
            entry.failures = entry.failures.saturating_sub(1);
        }
    }

    fn check_in(
        tables: &Tables,
        username: &str,
        client: ClientKey,
        now: DateTime<Utc>,
    ) -> CoreResult<()> {
        if let Some(entry) = tables.clients.get(&client)
            && entry.failures >= MAX_FAILURES_PER_CLIENT
        {
            let until = entry.window_start + Duration::seconds(CLIENT_WINDOW_SECS);
            if until > now {
                return Err(CoreError::Throttled {
                    retry_after_secs: secs_until(until, now),
                });
            }
        }
        if let Some(entry) = tables.pairs.get(&(normalise(username), client))
            && let Some(until) = entry.blocked_until
            && until > now
        {
            return Err(CoreError::Throttled {
                retry_after_secs: secs_until(until, now),
            });
        }
        Ok(())
    }

    /// Counts a wrong password (or unknown username) for `username` from `client`.
    pub fn record_failure(&self, username: &str, client: ClientKey) {
        let now = self.clock.now();
        let mut tables = self.tables();
        self.record_failure_in(&mut tables, username, client, now);
    }

    fn record_failure_in(
        &self,
        tables: &mut Tables,
        username: &str,
        client: ClientKey,
        now: DateTime<Utc>,
    ) {
        let max = self.max_tracked;
        let key = (normalise(username), client);
        make_room(
            &mut tables.pairs,
            &key,
            max,
            |e| e.last_failure,
            |e| e.blocked_until.is_some_and(|until| until > now),
        );
        let fresh = PairEntry {
            failures: 0,
            last_failure: now,
            blocked_until: None,
        };
        let entry = tables.pairs.entry(key).or_insert(fresh);
        // Quiet for longer than the longest delay: start over.
        if entry.blocked_until.is_none_or(|until| until <= now)
            && now - entry.last_failure > Duration::seconds(MAX_DELAY_SECS)
        {
            *entry = fresh;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last_failure = now;
        if entry.failures >= FREE_FAILURES {
            let doublings = (entry.failures - FREE_FAILURES).min(16);
            let delay = (FIRST_DELAY_SECS << doublings).min(MAX_DELAY_SECS);
            entry.blocked_until = Some(now + Duration::seconds(delay));
        }

        make_room(
            &mut tables.clients,
            &client,
            max,
            |e| e.last_failure,
            |e| {
                e.failures >= MAX_FAILURES_PER_CLIENT
                    && now - e.window_start < Duration::seconds(CLIENT_WINDOW_SECS)
            },
        );
        let entry = tables.clients.entry(client).or_insert(ClientEntry {
            failures: 0,
            window_start: now,
            last_failure: now,
        });
        if now - entry.window_start >= Duration::seconds(CLIENT_WINDOW_SECS) {
            entry.failures = 0;
            entry.window_start = now;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last_failure = now;
    }

    /// A right password: the pair starts over (the client's count stands; it was spraying or
    /// not regardless of one success).
    pub fn record_success(&self, username: &str, client: ClientKey) {
        self.tables().pairs.remove(&(normalise(username), client));
    }

    /// Entries held (pairs, clients).
    pub fn tracked(&self) -> (usize, usize) {
        let tables = self.tables();
        (tables.pairs.len(), tables.clients.len())
    }
}

fn normalise(username: &str) -> String {
    username
        .trim()
        .chars()
        .take(crate::parties::MAX_USERNAME_CHARS)
        .collect::<String>()
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::net::Ipv4Addr;

    fn client(last: u8) -> ClientKey {
        ClientKey::of(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)))
    }

    fn wait_of(result: CoreResult<()>) -> Option<u64> {
        match result {
            Err(CoreError::Throttled { retry_after_secs }) => Some(retry_after_secs),
            _ => None,
        }
    }

    fn start() -> DateTime<Utc> {
        use chrono::TimeZone;
        Utc.with_ymd_and_hms(2026, 3, 11, 9, 30, 0).unwrap()
    }

    #[test]
    fn guesses_sent_side_by_side_are_counted_before_any_is_checked() {
        let throttle = LoginThrottle::new(Clock::manual(start()));
        // Five attempts in flight at once pass; the sixth is refused before it is hashed.
        for _ in 0..FREE_FAILURES {
            assert!(throttle.begin_attempt("alice", client(7)).is_ok());
        }
        assert!(matches!(
            throttle.begin_attempt("alice", client(7)),
            Err(CoreError::Throttled { .. })
        ));
        // The owner from elsewhere is not affected; a right password clears its pair.
        assert!(throttle.begin_attempt("alice", client(8)).is_ok());
        throttle.settle_attempt("alice", client(8), AttemptOutcome::RightPassword);
        assert_eq!(throttle.tracked().0, 1);
    }

    #[test]
    fn an_attempt_that_could_not_be_checked_is_given_back() {
        let throttle = LoginThrottle::new(Clock::manual(start()));
        for _ in 0..20 {
            throttle.begin_attempt("bob", client(9)).unwrap();
            throttle.settle_attempt("bob", client(9), AttemptOutcome::NotChecked);
        }
        assert!(throttle.begin_attempt("bob", client(9)).is_ok());
    }

    #[test]
    fn delays_double_after_the_free_failures_up_to_the_cap() {
        let clock = Clock::manual(start());
        let throttle = LoginThrottle::new(clock.clone());
        let mut waits = Vec::new();
        for _ in 0..12 {
            assert_eq!(wait_of(throttle.check("Alice", client(1))), None);
            throttle.record_failure("alice", client(1));
            let wait = wait_of(throttle.check("alice ", client(1)));
            waits.push(wait);
            if let Some(secs) = wait {
                clock.advance(Duration::seconds(i64::try_from(secs).unwrap()));
            }
        }
        assert_eq!(
            waits,
            [
                None,
                None,
                None,
                None,
                Some(15),
                Some(30),
                Some(60),
                Some(120),
                Some(240),
                Some(480),
                Some(900),
                Some(900)
            ]
        );
        // Another address is not held up; a success starts the pair over.
        assert_eq!(wait_of(throttle.check("alice", client(2))), None);
        throttle.record_success("alice", client(1));
        assert_eq!(wait_of(throttle.check("alice", client(1))), None);
    }

    #[test]
    fn one_address_spraying_many_usernames_waits_for_its_window() {
        let clock = Clock::manual(start());
        let throttle = LoginThrottle::new(clock.clone());
        for n in 0..MAX_FAILURES_PER_CLIENT {
            assert_eq!(
                wait_of(throttle.check(&format!("user{n}"), client(3))),
                None
            );
            throttle.record_failure(&format!("user{n}"), client(3));
        }
        assert_eq!(
            wait_of(throttle.check("someone-else", client(3))),
            Some(u64::try_from(CLIENT_WINDOW_SECS).unwrap())
        );
        assert_eq!(wait_of(throttle.check("someone-else", client(4))), None);
        clock.advance(Duration::seconds(CLIENT_WINDOW_SECS));
        assert_eq!(wait_of(throttle.check("someone-else", client(3))), None);
    }

    #[test]
    fn the_tables_stay_bounded_and_forget_the_stalest_first() {
        let clock = Clock::manual(start());
        let throttle = LoginThrottle::with_capacity(clock.clone(), 3);
        for n in 0..10u8 {
            throttle.record_failure(&format!("user{n}"), client(n));
            clock.advance(Duration::seconds(1));
        }
        assert_eq!(throttle.tracked(), (3, 3));
        let tables = throttle.tables();
        assert!(tables.clients.contains_key(&client(9)));
        assert!(!tables.clients.contains_key(&client(0)));
    }

    #[test]
    fn a_running_block_is_not_flushed_out_by_fresh_addresses() {
        let clock = Clock::manual(start());
        let throttle = LoginThrottle::with_capacity(clock.clone(), 3);
        for _ in 0..FREE_FAILURES {
            throttle.record_failure("alice", client(1));
        }
        assert!(throttle.check("alice", client(1)).is_err());
        // An attacker with many addresses fills the table with new entries.
        for n in 10..40u8 {
            clock.advance(Duration::milliseconds(10));
            throttle.record_failure(&format!("spray{n}"), client(n));
        }
        assert!(
            throttle.check("alice", client(1)).is_err(),
            "the block must still run"
        );
    }

    #[test]
    fn ipv6_addresses_count_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ClientKey::of(a), ClientKey::of(b));
        assert_ne!(ClientKey::of(a), ClientKey::of(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(ClientKey::of(mapped), client(1));
    }
}
