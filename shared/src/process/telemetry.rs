//! JSON-lines logs. Every line logged while serving a request carries its
//! trace_id (from the request span).

use tracing_subscriber::EnvFilter;

/// Level from HOOKLINE_LOG (an env-filter directive), default `info`.
pub fn init() {
    let filter = EnvFilter::try_from_env("HOOKLINE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Ignore the error when a subscriber is already set (tests, embedding).
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .flatten_event(true)
        .with_writer(std::io::stderr)
        .try_init();
}
