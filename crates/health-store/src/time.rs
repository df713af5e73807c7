//! Wall-clock times as the store keeps them: signed unix milliseconds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `time` as milliseconds since the unix epoch, rounded down (negative before it).
pub(crate) fn to_unix_ms(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        // Rounding down before the epoch means rounding the distance up.
        Err(before) => {
            let ms = before.duration().as_nanos().div_ceil(1_000_000);
            i64::try_from(ms).map_or(i64::MIN, |ms| -ms)
        }
    }
}

/// The time `ms` milliseconds after the unix epoch; `None` if the platform's
/// `SystemTime` cannot hold it.
pub(crate) fn from_unix_ms(ms: i64) -> Option<SystemTime> {
    let distance = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        UNIX_EPOCH.checked_add(distance)
    } else {
        UNIX_EPOCH.checked_sub(distance)
    }
}

/// `time` rounded down to a whole millisecond, as it reads back from the store.
pub(crate) fn whole_ms(time: SystemTime) -> SystemTime {
    from_unix_ms(to_unix_ms(time)).unwrap_or(time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_round_down_on_both_sides_of_the_epoch() {
        let cases = [
            (UNIX_EPOCH, 0),
            (UNIX_EPOCH + Duration::from_micros(1_999), 1),
            (
                UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
                1_700_000_000_123,
            ),
            (UNIX_EPOCH - Duration::from_micros(1), -1),
            (UNIX_EPOCH - Duration::from_micros(1_500), -2),
            (UNIX_EPOCH - Duration::from_millis(3), -3),
        ];
        for (time, ms) in cases {
            assert_eq!(to_unix_ms(time), ms, "{time:?}");
            assert_eq!(from_unix_ms(ms), Some(whole_ms(time)), "{time:?}");
        }
    }

    #[test]
    fn whole_milliseconds_survive_the_round_trip() {
        let time = UNIX_EPOCH + Duration::from_millis(1_700_000_000_456);
        assert_eq!(whole_ms(time), time);
        assert_eq!(whole_ms(time + Duration::from_nanos(999_999)), time);
    }
}
