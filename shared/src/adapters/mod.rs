//! Adapters: the ports of the application served by real systems (DynamoDB,
//! SQS, S3, outbound HTTP) and by memory for the embedded mode. They depend
//! on the application's ports and records, never on its drivers or the API.

pub mod blobs;
pub mod outbound;
pub mod queue;
pub mod store;
