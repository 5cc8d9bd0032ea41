//! What the process has done, counted: requests answered (by status),
//! turns and their latency, outbound calls and theirs, deliveries, their
//! retries and dead letters. Process-wide, so that each layer records where
//! the thing happens without being handed a registry. `hookline serve`
//! shows them at `/metrics` in Prometheus' text format; the Lambda functions
//! print what each invocation added as CloudWatch Embedded Metric Format
//! lines, which CloudWatch turns into metrics.

use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
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
    keep_value(|values| &mut values.turns, took);
}

/// An outbound call (a node's, or a delivery's), answered or not.
pub fn call(took: Duration, answered: bool) {
    METRICS.calls.observe(took);
    keep_value(|values| &mut values.calls, took);
    if !answered {
        METRICS.call_failures.fetch_add(1, Relaxed);
    }
}

/// A delivery its receiver took (2xx, or 410 Gone).
pub fn delivered() {
    METRICS.deliveries.fetch_add(1, Relaxed);
}

/// A job attempt that failed: it is tried again, or dead-lettered after its
/// last (the in-process queue's count; on AWS, SQS moves it).
pub fn retried() {
    METRICS.retries.fetch_add(1, Relaxed);
}

/// A job that failed its every attempt, in the in-process queue (on AWS the
/// dead-letter queue's depth counts them).
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
        "Job attempts that failed (tried again, or dead-lettered after the last).",
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

/// The Embedded Metric Format takes at most this many values of a metric a line.
const MAX_VALUES: usize = 100;

/// The latencies since the last invocation's lines, in milliseconds: kept
/// only by a process that prints them (`None` in `hookline serve`).
#[derive(Default)]
struct Values {
    turns: Vec<f64>,
    calls: Vec<f64>,
}

static VALUES: Mutex<Option<Values>> = Mutex::new(None);

/// The counters as the last invocation's lines left them.
struct Printed {
    cold_start: bool,
    responses: [u64; STATUSES],
    turns: u64,
    calls: u64,
    call_failures: u64,
    deliveries: u64,
    retries: u64,
}

static PRINTED: Mutex<Printed> = Mutex::new(Printed {
    cold_start: true,
    responses: [0; STATUSES],
    turns: 0,
    calls: 0,
    call_failures: 0,
    deliveries: 0,
    retries: 0,
});

static KEEPING: AtomicBool = AtomicBool::new(false);

fn keep_value(of: impl FnOnce(&mut Values) -> &mut Vec<f64>, took: Duration) {
    if !KEEPING.load(Relaxed) {
        return;
    }
    if let Some(values) = VALUES.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).as_mut() {
        let values = of(values);
        if values.len() < MAX_VALUES {
            values.push(took.as_secs_f64() * 1000.0);
        }
    }
}

/// For a Lambda function, from its cold start on: [`embedded_metrics`] then
/// gives each invocation's latencies too.
pub fn keep_invocation_values() {
    *VALUES.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Values::default());
    KEEPING.store(true, Relaxed);
}

/// What happened since the last call, as CloudWatch Embedded Metric Format
/// lines (dimension `Function`): one with the counts (`ColdStart` is 1 on a
/// process's first; `ServerErrors` counts 5xx answers) and the latencies,
/// and one per error status answered (`Errors`, dimensions `Function` and
/// `Status`). A count that is 0 is left out, and a line with nothing in it:
/// CloudWatch Logs bills every byte, and a period without a point reads as
/// none (the template's alarm fills it with 0).
pub fn embedded_metrics(namespace: &str, function: &str, timestamp_ms: i64) -> Vec<String> {
    let mut printed = PRINTED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let values = VALUES.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).as_mut().map(std::mem::take);
    let values = values.unwrap_or_default();
    let since = |counter: &AtomicU64, before: &mut u64| {
        let now = counter.load(Relaxed);
        let delta = now.saturating_sub(*before);
        *before = now;
        delta
    };
    let errors: Vec<(u16, u64)> = (100..)
        .zip(&METRICS.responses)
        .zip(printed.responses.iter_mut())
        .map(|((status, count), before)| (status, since(count, before)))
        .filter(|&(status, count)| status >= 400 && count > 0)
        .collect();
    let counts = [
        ("ColdStart", u64::from(std::mem::take(&mut printed.cold_start))),
        ("Turns", since(&METRICS.turns.count, &mut printed.turns)),
        ("ServerErrors", errors.iter().filter(|(status, _)| *status >= 500).map(|(_, count)| count).sum()),
        ("Calls", since(&METRICS.calls.count, &mut printed.calls)),
        ("CallFailures", since(&METRICS.call_failures, &mut printed.call_failures)),
        ("Deliveries", since(&METRICS.deliveries, &mut printed.deliveries)),
        ("Retries", since(&METRICS.retries, &mut printed.retries)),
    ];
    let mut names = Vec::new();
    let mut line = serde_json::Map::new();
    line.insert("Function".into(), function.into());
    for (name, count) in counts.into_iter().filter(|&(_, count)| count > 0) {
        names.push(serde_json::json!({"Name": name, "Unit": "Count"}));
        line.insert(name.into(), count.into());
    }
    for (name, latencies) in [("TurnLatency", values.turns), ("CallLatency", values.calls)] {
        if !latencies.is_empty() {
            names.push(serde_json::json!({"Name": name, "Unit": "Milliseconds"}));
            line.insert(name.into(), latencies.into());
        }
    }
    let envelope = |dimensions: serde_json::Value, metrics: serde_json::Value| {
        serde_json::json!({"Timestamp": timestamp_ms, "CloudWatchMetrics": [
            {"Namespace": namespace, "Dimensions": dimensions, "Metrics": metrics}
        ]})
    };
    let mut lines = Vec::new();
    if !names.is_empty() {
        line.insert("_aws".into(), envelope(serde_json::json!([["Function"]]), names.into()));
        lines.push(serde_json::Value::Object(line).to_string());
    }
    for (status, count) in errors {
        let metrics = serde_json::json!([{"Name": "Errors", "Unit": "Count"}]);
        let aws = envelope(serde_json::json!([["Function", "Status"]]), metrics);
        let line =
            serde_json::json!({"_aws": aws, "Function": function, "Status": status.to_string(), "Errors": count});
        lines.push(line.to_string());
    }
    lines
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
