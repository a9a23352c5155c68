//! The one source of "now". Production reads the system clock; tests set and advance a manual
//! clock so months pass in milliseconds.

use chrono::{DateTime, Duration, DurationRound, Months, Utc};
use std::sync::{Arc, Mutex, PoisonError};

#[derive(Clone, Debug)]
pub struct Clock {
    manual: Option<Arc<Mutex<DateTime<Utc>>>>,
}

impl Clock {
    pub fn system() -> Clock {
        Clock { manual: None }
    }

    /// A clock that stands still at `start` until told otherwise.
    pub fn manual(start: DateTime<Utc>) -> Clock {
        Clock {
            manual: Some(Arc::new(Mutex::new(truncate(start)))),
        }
    }

    /// Now, to the microsecond: the precision both databases keep, so a time written and read
    /// back compares equal.
    pub fn now(&self) -> DateTime<Utc> {
        match &self.manual {
            Some(time) => *time.lock().unwrap_or_else(PoisonError::into_inner),
            None => truncate(Utc::now()),
        }
    }

    pub fn is_manual(&self) -> bool {
        self.manual.is_some()
    }

    /// Moves a manual clock forward; a system clock ignores it.
    pub fn advance(&self, by: Duration) {
        if let Some(time) = &self.manual {
            let mut now = time.lock().unwrap_or_else(PoisonError::into_inner);
            *now = truncate(*now + by);
        }
    }

    /// Moves a manual clock forward by calendar months: the same day and time of day, or the
    /// month's last day where the month is shorter (31 January + 1 month = 28 or 29 February).
    /// Months are not a fixed number of days, so a test that means "a month later" says so.
    pub fn advance_months(&self, months: u32) {
        if let Some(time) = &self.manual {
            let mut now = time.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(later) = now.checked_add_months(Months::new(months)) {
                *now = truncate(later);
            }
        }
    }

    pub fn set(&self, to: DateTime<Utc>) {
        if let Some(time) = &self.manual {
            *time.lock().unwrap_or_else(PoisonError::into_inner) = truncate(to);
        }
    }
}

fn truncate(time: DateTime<Utc>) -> DateTime<Utc> {
    time.duration_trunc(Duration::microseconds(1))
        .unwrap_or(time)
}

#[cfg(test)]
mod tests {
    use super::*;

    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0)
            .single()
            .unwrap_or_default()
    }

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let start = at(2026, 3, 10, 9, 0);
        let clock = Clock::manual(start);
        let first = clock.now();
        assert_eq!(clock.now(), first);
        clock.advance(Duration::days(31));
        assert_eq!(clock.now() - first, Duration::days(31));
    }

    #[test]
    fn a_month_on_keeps_the_day_or_clamps_to_the_months_end() {
        let cases = [
            (at(2027, 1, 31, 12, 0), at(2027, 2, 28, 12, 0)),
            (at(2028, 1, 31, 12, 0), at(2028, 2, 29, 12, 0)),
            (at(2028, 2, 29, 8, 0), at(2028, 3, 29, 8, 0)),
            (at(2026, 12, 31, 23, 59), at(2027, 1, 31, 23, 59)),
            (at(2026, 7, 31, 0, 0), at(2026, 8, 31, 0, 0)),
            (at(2026, 8, 31, 0, 0), at(2026, 9, 30, 0, 0)),
        ];
        for (start, expected) in cases {
            let clock = Clock::manual(start);
            clock.advance_months(1);
            assert_eq!(clock.now(), expected, "a month after {start}");
        }
    }

    #[test]
    fn a_system_clock_ignores_advances() {
        let clock = Clock::system();
        let before = clock.now();
        clock.advance_months(12);
        assert!(clock.now() - before < Duration::days(1));
    }
}
