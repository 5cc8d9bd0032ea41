//! The application: what Hookline does with a request or a job, over ports
//! it defines and adapters implement.
//!
//! - [`turn`] runs a user's turn (the engine, the calls it waits for, the
//!   conditional write) and [`jobs`] builds the work a saved turn leaves;
//! - [`worker`] runs queued jobs: turns, polled continuations, deliveries;
//!   [`relay`] queues what each saved turn owes (the outbox);
//! - [`files`] takes uploads; [`auth`] checks callers; [`inbound`] reads
//!   request bodies into turn requests;
//! - ports: [`store`], [`queue`], [`outbound`], [`files::FileStore`] and
//!   [`files::Blobs`], with the records they hold in [`records`].

pub mod auth;
pub mod files;
pub mod idempotency;
pub mod inbound;
pub(crate) mod jobs;
pub mod outbound;
pub mod queue;
pub mod rate;
pub mod records;
pub mod relay;
pub mod store;
pub mod turn;
pub mod worker;
