//! The storage ports on DynamoDB (single table) and in memory.

mod dynamodb;
mod memory;

pub use dynamodb::{DynamoStore, OWES, STATE, owed_in_image};
pub use memory::{DEFAULT_MAX_BYTES, MemoryStore};
