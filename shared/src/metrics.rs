//! What the process has done, counted: requests answered (by status),
//! turns and their latency, outbound calls and theirs, deliveries, their
//! retries and dead letters. Process-wide, so that each layer records where
//! the thing happens without being handed a registry; `hookline serve`
//! shows them at `/metrics` in Prometheus' text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// The latency histograms' bucket bounds, in seconds.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

struct Histogram {
    /// Observations at most each bound (not cumulative; summed when shown).
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    const fn new() -> Self {
        Self {
            buckets: [const { AtomicU64::new(0) }; BUCKETS.len()],
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        if let Some(bucket) = BUCKETS.iter().position(|&bound| seconds <= bound) {
            self.buckets[bucket].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    fn write(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let sum = self.sum_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {sum}\n{name}_count {count}");
    }
}

/// HTTP statuses are 100 to 599.
const STATUSES: usize = 500;

struct Metrics {
    /// By status, from 100: no lock on the request path.
    responses: [AtomicU64; STATUSES],
    turns: Histogram,
    calls: Histogram,
    call_failures: AtomicU64,
    deliveries: AtomicU64,
    retries: AtomicU64,
    dead_letters: AtomicU64,
}

static METRICS: Metrics = Metrics {
    responses: [const { AtomicU64::new(0) }; STATUSES],
    turns: Histogram::new(),
    calls: Histogram::new(),
    call_failures: AtomicU64::new(0),
    deliveries: AtomicU64::new(0),
    retries: AtomicU64::new(0),
    dead_letters: AtomicU64::new(0),
};

/// An HTTP answer, with its status.
pub fn responded(status: u16) {
    if let Some(count) = METRICS.responses.get(usize::from(status).wrapping_sub(100)) {
        count.fetch_add(1, Relaxed);
    }
}

/// A turn run to its end (answered or failed), and how long it took.
pub fn turn(took: Duration) {
    METRICS.turns.observe(took);
}

/// An outbound call (a node's, or a delivery's), answered or not.
pub fn call(took: Duration, answered: bool) {
    METRICS.calls.observe(took);
    if !answered {
        METRICS.call_failures.fetch_add(1, Relaxed);
    }
}

/// A delivery its receiver took (2xx, or 410 Gone).
pub fn delivered() {
    METRICS.deliveries.fetch_add(1, Relaxed);
}

/// A job that failed this attempt and will be tried again or dead-lettered.
pub fn retried() {
    METRICS.retries.fetch_add(1, Relaxed);
}

/// A job that failed its every attempt.
pub fn dead_lettered() {
    METRICS.dead_letters.fetch_add(1, Relaxed);
}

/// Everything, in Prometheus' text exposition format.
pub fn prometheus() -> String {
    let mut out = String::new();
    let counter = |out: &mut String, name: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
    };
    let _ = writeln!(
        out,
        "# HELP hookline_responses_total HTTP answers, by status.\n# TYPE hookline_responses_total counter"
    );
    for (status, count) in (100..).zip(&METRICS.responses) {
        let count = count.load(Relaxed);
        if count > 0 {
            let _ = writeln!(out, "hookline_responses_total{{status=\"{status}\"}} {count}");
        }
    }
    METRICS.turns.write("hookline_turn_seconds", "Turns run, by how long they took.", &mut out);
    METRICS.calls.write(
        "hookline_call_seconds",
        "Outbound calls (nodes' and deliveries'), by how long they took.",
        &mut out,
    );
    counter(
        &mut out,
        "hookline_call_failures_total",
        "Outbound calls without an answer.",
        METRICS.call_failures.load(Relaxed),
    );
    counter(&mut out, "hookline_deliveries_total", "Deliveries their receiver took.", METRICS.deliveries.load(Relaxed));
    counter(
        &mut out,
        "hookline_retries_total",
        "Job attempts that failed and were tried again.",
        METRICS.retries.load(Relaxed),
    );
    counter(
        &mut out,
        "hookline_dead_letters_total",
        "Jobs that failed every attempt.",
        METRICS.dead_letters.load(Relaxed),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_shows_cumulative_buckets_its_sum_and_count() {
        let histogram = Histogram::new();
        for ms in [3, 7, 7, 20_000] {
            histogram.observe(Duration::from_millis(ms));
        }
        let mut out = String::new();
        histogram.write("x_seconds", "X.", &mut out);
        assert!(out.starts_with("# HELP x_seconds X.\n# TYPE x_seconds histogram\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"0.005\"} 1\nx_seconds_bucket{le=\"0.01\"} 3\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"10\"} 3\nx_seconds_bucket{le=\"+Inf\"} 4\n"), "{out}");
        assert!(out.ends_with("x_seconds_sum 20.017\nx_seconds_count 4\n"), "{out}");
    }
}
