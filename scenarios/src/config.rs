//! proptest configuration: few cases by default so `cargo test` stays quick (each case drives a
//! live system); a deep mode (`SCENARIOS_DEPTH=deep`, the chaos week's nightly run) with many
//! more cases and longer sequences to find rare bugs; `PROPTEST_CASES` overrides both; a seed
//! always printed, and replayable with `PROPTEST_RNG_SEED`.

use std::ops::Range;

use proptest::test_runner::{Config, FileFailurePersistence, RngSeed};

/// Whether this run is the deep one (`SCENARIOS_DEPTH=deep`).
pub fn deep() -> bool {
    std::env::var("SCENARIOS_DEPTH").is_ok_and(|d| d == "deep")
}

/// A property's case count in this mode: `fast` for `cargo test`, `deep` for the deep run.
pub fn cases(fast: u32, deep_cases: u32) -> u32 {
    if deep() {
        deep_cases
    } else {
        fast
    }
}

/// How much longer generated sequences may grow in the deep run.
pub const DEEP_LENGTH: usize = 4;

/// A sequence length range in this mode: the deep run lets it grow to [`DEEP_LENGTH`] times.
pub fn length(fast: Range<usize>) -> Range<usize> {
    if deep() {
        fast.start..fast.end * DEEP_LENGTH
    } else {
        fast
    }
}

/// Configuration of a property expected to hold: `default_cases` unless `PROPTEST_CASES` says
/// otherwise; failures are persisted under the crate's `proptest-regressions/` (mirroring the
/// test's path) and replayed first on the next run.
#[track_caller]
pub fn holds(name: &str, default_cases: u32) -> Config {
    let mut c = base(name, default_cases);
    // proptest only persists failures when it knows the test's source file.
    c.source_file = Some(std::panic::Location::caller().file());
    c.failure_persistence = Some(Box::new(FileFailurePersistence::SourceParallel(
        "proptest-regressions",
    )));
    c
}

/// Configuration of a property run against a naive variant to show that it fails: stops at
/// the first failure, shrinks briefly (cases cost seconds), persists nothing.
pub fn finds_weakness(name: &str, max_cases: u32) -> Config {
    let mut c = base(name, max_cases);
    c.failure_persistence = None;
    c.max_shrink_iters = 12;
    c.max_shrink_time = 120_000;
    c
}

fn base(name: &str, default_cases: u32) -> Config {
    let mut c = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = default_cases;
    }
    c.max_shrink_iters = c.max_shrink_iters.min(64);
    c.max_shrink_time = 300_000;
    let s = seed(&c.rng_seed);
    c.rng_seed = RngSeed::Fixed(s);
    eprintln!(
        "property {name}: {} cases, seed {s} (replay with PROPTEST_RNG_SEED={s})",
        c.cases
    );
    c
}

/// The seed from `PROPTEST_RNG_SEED`, else a fresh one.
fn seed(configured: &RngSeed) -> u64 {
    match configured {
        RngSeed::Fixed(s) => *s,
        RngSeed::Random => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            (nanos as u64) ^ u64::from(std::process::id()).rotate_left(32)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_mode_is_the_default() {
        if !deep() {
            assert_eq!(cases(5, 50), 5);
            assert_eq!(length(2..8), 2..8);
        }
    }

    #[test]
    fn every_run_has_a_fixed_seed() {
        assert!(matches!(holds("t", 3).rng_seed, RngSeed::Fixed(_)));
        assert!(finds_weakness("t", 3).failure_persistence.is_none());
    }
}
