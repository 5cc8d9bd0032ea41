//! Hookline core: everything that is not a process entry point.
//!
//! The function crates and the `hookline` binary build an [`api::AppState`] and
//! serve the routers from [`api`]; there is one implementation of every endpoint.

pub mod api;
pub mod auth;
pub mod blobs;
pub mod bootstrap;
pub mod config;
pub mod delivery;
pub mod devtoken;
pub mod engine;
pub mod error;
pub mod files;
pub mod ids;
pub mod protocol;
pub mod queue;
pub mod session;
pub mod store;
pub mod telemetry;
pub mod turn;
pub mod worker;

pub use error::Error;
