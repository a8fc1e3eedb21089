//! Periods: rolling windows cut into buckets, and calendar periods aligned
//! to UTC hours, days, ISO weeks (from Monday) and months, which reset at
//! their boundaries.
//!
//! Every period maps a time to a bucket key. A rolling period keeps
//! [`ROLLING_BUCKETS`] consecutive keys; a calendar period keeps one, the
//! current hour, day, week or month, so its counters start again at zero
//! when the key changes.

use serde::{Deserialize, Serialize};

use crate::TimestampMs;

/// The buckets a rolling period is cut into. A rolling sum covers between
/// 15/16 and all of the period: finer buckets would be closer but cost 16
/// bytes each per owner and quota, read on every check.
pub const ROLLING_BUCKETS: usize = 16;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// The window a rate is measured over and a burst allowance is spent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Period {
    /// The last `length_ms`, sliding.
    Rolling {
        /// The window's length, at least [`ROLLING_BUCKETS`] ms.
        length_ms: u64,
    },
    /// Each UTC hour.
    Hourly,
    /// Each UTC day.
    Daily,
    /// Each ISO week, from Monday 00:00 UTC.
    Weekly,
    /// Each calendar month, UTC.
    Monthly,
}

impl Period {
    /// Returns how many consecutive bucket keys make up the period.
    pub(crate) fn span(self) -> usize {
        match self {
            Period::Rolling { .. } => ROLLING_BUCKETS,
            _ => 1,
        }
    }

    /// Returns the bucket key of `now`.
    #[inline]
    pub(crate) fn key(self, now: TimestampMs) -> i64 {
        match self {
            Period::Rolling { length_ms } => {
                // Validation keeps the width at 1 ms or more.
                let width = (length_ms / ROLLING_BUCKETS as u64).max(1) as i64;
                now.div_euclid(width)
            }
            Period::Hourly => now.div_euclid(HOUR_MS),
            Period::Daily => now.div_euclid(DAY_MS),
            // 1970-01-01 was a Thursday: Monday 1969-12-29 is day -3.
            Period::Weekly => (now.div_euclid(DAY_MS) + 3).div_euclid(7),
            Period::Monthly => {
                let (y, m, _) = civil_from_days(now.div_euclid(DAY_MS));
                y * 12 + i64::from(m) - 1
            }
        }
    }

    /// Returns when the current calendar period ends and its counters
    /// start again; a rolling period never resets as a whole.
    pub fn next_reset(self, now: TimestampMs) -> Option<TimestampMs> {
        let next = self.key(now) + 1;
        match self {
            Period::Rolling { .. } => None,
            Period::Hourly => Some(next * HOUR_MS),
            Period::Daily => Some(next * DAY_MS),
            Period::Weekly => Some((next * 7 - 3) * DAY_MS),
            Period::Monthly => {
                let (y, m) = (next.div_euclid(12), next.rem_euclid(12) + 1);
                Some(days_from_civil(y, m as u32, 1) * DAY_MS)
            }
        }
    }

    /// Returns the period's shortest length (a month is 28 days at least).
    pub(crate) fn shortest_ms(self) -> u64 {
        match self {
            Period::Rolling { length_ms } => length_ms,
            Period::Hourly => HOUR_MS as u64,
            Period::Daily => DAY_MS as u64,
            Period::Weekly => 7 * DAY_MS as u64,
            Period::Monthly => 28 * DAY_MS as u64,
        }
    }

    /// Returns why this period cannot work.
    pub(crate) fn problem(self) -> Option<String> {
        match self {
            Period::Rolling { length_ms } if length_ms < ROLLING_BUCKETS as u64 => Some(format!(
                "a rolling period must last at least {ROLLING_BUCKETS} ms (it is cut into \
                 {ROLLING_BUCKETS} buckets), not {length_ms} ms"
            )),
            _ => None,
        }
    }
}

/// Returns (year, month 1–12, day 1–31) of a day counted from 1970-01-01
/// (Howard Hinnant's `civil_from_days`, proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Returns the day, counted from 1970-01-01, of a civil date; the inverse of
/// [`civil_from_days`].
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-02-29T23:59:59.999Z, the last instant of a leap-year February.
    const LEAP_END: i64 = 1_709_251_199_999;

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(days_from_civil(2024, 3, 1) * DAY_MS, LEAP_END + 1);
        for day in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
    }

    #[test]
    fn monthly_resets_at_the_first_of_the_month_utc() {
        let p = Period::Monthly;
        assert_ne!(p.key(LEAP_END), p.key(LEAP_END + 1));
        assert_eq!(p.key(LEAP_END + 1), p.key(LEAP_END + 30 * DAY_MS));
        assert_eq!(p.next_reset(LEAP_END), Some(LEAP_END + 1));
        // December rolls into the next year.
        let dec_31 = days_from_civil(2023, 12, 31) * DAY_MS;
        assert_eq!(
            p.next_reset(dec_31),
            Some(days_from_civil(2024, 1, 1) * DAY_MS)
        );
    }

    #[test]
    fn weekly_periods_start_on_monday() {
        let p = Period::Weekly;
        // 2024-03-04 was a Monday.
        let monday = days_from_civil(2024, 3, 4) * DAY_MS;
        assert_eq!(p.key(monday - 1) + 1, p.key(monday));
        assert_eq!(p.key(monday), p.key(monday + 7 * DAY_MS - 1));
        assert_eq!(p.next_reset(monday - 1), Some(monday));
        assert_eq!(p.next_reset(monday), Some(monday + 7 * DAY_MS));
    }

    #[test]
    fn hourly_and_daily_align_to_utc() {
        assert_eq!(Period::Hourly.next_reset(HOUR_MS - 1), Some(HOUR_MS));
        assert_eq!(Period::Daily.next_reset(DAY_MS + 5), Some(2 * DAY_MS));
        assert_eq!(Period::Daily.key(-1), -1);
    }

    #[test]
    fn rolling_periods_cut_into_buckets_and_never_reset() {
        let p = Period::Rolling { length_ms: 16_000 };
        assert_eq!(p.key(999), 0);
        assert_eq!(p.key(1_000), 1);
        assert_eq!(p.span(), ROLLING_BUCKETS);
        assert_eq!(p.next_reset(5), None);
        assert!(Period::Rolling { length_ms: 15 }.problem().is_some());
        assert!(p.problem().is_none());
    }
}
