//! The one source of "now". Production reads the system clock; tests set and advance a manual
//! clock so months pass in milliseconds.

use chrono::{DateTime, Duration, DurationRound, Utc};
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

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let start = Utc::now();
        let clock = Clock::manual(start);
        let first = clock.now();
        assert_eq!(clock.now(), first);
        clock.advance(Duration::days(31));
        assert_eq!(clock.now() - first, Duration::days(31));
    }
}
