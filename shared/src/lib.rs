//! Hookline core: everything that is not a process entry point, in layers
//! that depend only inward (`scripts/check-layers` keeps it so):
//!
//! | layer | modules | what it holds |
//! | --- | --- | --- |
//! | leaves | [`error`], [`ids`], [`text`], [`signing`] | the one error, ids and the conversation key, trigger matching and templates, webhook signatures |
//! | data | [`protocol`], [`definition`] | the Webhook channel's wire format; bot definitions, validated and compiled |
//! | engine | [`engine`] | the dialog engine: pure, (bot, session, input) to (messages, session, effects) |
//! | application | [`app`] | turns, jobs, the worker, files, auth; the ports it needs (conversations, polls, files, blobs, queue, outbound) |
//! | adapters | [`adapters`] | the ports on DynamoDB, SQS, S3, reqwest, and in memory |
//! | HTTP | [`api`] | the routers, the error envelope, each endpoint family's state |
//! | wiring | [`process`] | settings, clients, each function's state, the embedded server |
//!
//! A request: `api` authenticates it (`app::auth`), reads the body
//! (`app::inbound`) and hands the turn to `app::turn`, which loads the
//! conversation, runs `engine`, makes the calls the flow waits for, and saves
//! the turn with its log in one conditional write; the jobs the turn leaves
//! (`app::jobs`) go to the queue.
//!
//! A job: the queue hands it to `app::worker`, which runs a queued turn,
//! continues a polled one after its call, or delivers a signed POST.

pub mod adapters;
pub mod api;
pub mod app;
pub mod definition;
pub mod engine;
pub mod error;
pub mod ids;
pub mod metrics;
pub mod process;
pub mod protocol;
pub mod signing;
pub mod text;

pub use error::Error;
