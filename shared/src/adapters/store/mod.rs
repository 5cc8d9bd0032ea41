//! The storage ports on DynamoDB (single table) and in memory.

mod dynamodb;
mod memory;

pub use dynamodb::{DynamoStore, ItemFormat, OWES, STATE, owed_in_image};
pub use memory::{DEFAULT_MAX_BYTES, MemoryStore};
