//! Process wiring: settings and clients from the environment, the state of
//! each deployed function, the embedded server's services, logging, and the
//! worker on SQS. The only layer that knows every other.

pub mod aws;
mod embedded;
pub mod functions;
mod settings;
pub mod sqs_worker;
pub mod telemetry;

pub use embedded::{Embedded, IDLE_SWEEP_EVERY, sweep_idle_sessions};
pub use settings::{ConfigError, Settings};
