//! File bytes on S3 and in a local directory.

mod local;
mod s3;

pub use local::LocalBlobs;
pub use s3::S3Blobs;
