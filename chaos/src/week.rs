//! The chaos week: the catalogue dealt over seven days (day 1 is Monday), so that each day runs
//! a slice that fits in half an hour and the week covers everything; each day's seed comes from
//! its date, so a run is replayable from the seed it prints.

use crate::catalogue::{Catalogue, Entry};

/// Experiments of `day` (1..=7): every seventh experiment of the sorted catalogue, starting
/// at the day's own.
pub fn slice(catalogue: &Catalogue, day: u8) -> Vec<&Entry> {
    let day = usize::from(day.clamp(1, 7)) - 1;
    catalogue
        .entries
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 7 == day)
        .map(|(_, e)| e)
        .collect()
}

/// Today's day of the week, 1 (Monday) to 7, in UTC.
pub fn today() -> u8 {
    time::OffsetDateTime::now_utc()
        .weekday()
        .number_from_monday()
}

/// The seed of a date: `YYYYMMDD`, so that a day's run is replayable from the date alone.
pub fn seed_of(date: time::Date) -> u64 {
    u64::from(date.year().unsigned_abs()) * 10_000
        + u64::from(u8::from(date.month())) * 100
        + u64::from(date.day())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_week_covers_the_catalogue_once() {
        let catalogue = Catalogue::load(&crate::catalogue::default_dir()).unwrap();
        let mut seen: Vec<&str> = (1..=7)
            .flat_map(|d| slice(&catalogue, d))
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(seen.len(), catalogue.entries.len());
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), catalogue.entries.len());
        assert!((1..=7).all(|d| slice(&catalogue, d).len() <= 4));
    }

    #[test]
    fn a_date_gives_its_seed() {
        let date = time::Date::from_calendar_date(2026, time::Month::December, 2).unwrap();
        assert_eq!(seed_of(date), 20261202);
    }
}
