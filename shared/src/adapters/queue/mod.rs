//! The queue port on SQS FIFO and in process.

mod memory;
mod sqs;

pub use memory::MemoryQueue;
pub use sqs::{SqsMessage, SqsQueue};
