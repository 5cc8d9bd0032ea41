//! Property tests: whatever a client sends (request bodies, uploads) and
//! whatever an operator writes (bot definitions, templates, trigger
//! patterns), Hookline answers or refuses and never panics. Refusals over
//! HTTP are the protocol's error envelope with a 4xx status.
//!
//! Each property runs a bounded number of cases (set per property, so the
//! suite stays well within a minute in a debug build); PROPTEST_CASES
//! overrides them all, for a longer run.

mod definitions;
mod harness;
mod requests;
mod strategies;
mod text;
mod uploads;

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestCaseResult, TestRunner};

/// `cases` per property unless PROPTEST_CASES says otherwise. A failure's
/// seed is saved under tests/proptest-regressions/, by the calling module,
/// and tried first on the next run.
fn config(cases: u32, source_file: &'static str) -> Config {
    let defaults = Config::default();
    let cases = if std::env::var_os("PROPTEST_CASES").is_some() { defaults.cases } else { cases };
    Config { cases, source_file: Some(source_file), ..defaults }
}

/// Runs `test` on `cases` values of `strategy`; a failure is shrunk to a
/// minimal input, which the panic message shows.
#[track_caller]
fn check<S: Strategy>(cases: u32, strategy: S, test: impl Fn(S::Value) -> TestCaseResult) {
    let mut runner = TestRunner::new(config(cases, std::panic::Location::caller().file()));
    if let Err(failure) = runner.run(&strategy, test) {
        panic!("{failure}\n{runner}");
    }
}
