//! Blobs in an S3 bucket. A join streams the parts into a multipart upload,
//! holding at most one upload part (5 MiB, S3's minimum) in memory.

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;

use crate::app::files::blobs::{Blobs, Hasher, Joined, check_key};
use crate::error::{Error, Result};

/// S3's smallest part but the last.
const UPLOAD_PART_BYTES: usize = 5 * 1024 * 1024;

pub struct S3Blobs {
    client: Client,
    bucket: String,
}

fn failed<E: std::error::Error + 'static>(operation: &str, e: E) -> Error {
    Error::Storage(format!("S3 {operation}: {}", DisplayErrorContext(e)))
}

impl S3Blobs {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self { client, bucket: bucket.into() }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Creates the bucket if it does not exist (local runs and tests).
    pub async fn create_bucket(&self) -> Result<()> {
        match self.client.create_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.code(), Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")) => Ok(()),
            Err(e) => Err(failed("CreateBucket", e)),
        }
    }

    async fn upload_parts(&self, parts: &[String], key: &str, upload_id: &str) -> Result<(Joined, Vec<CompletedPart>)> {
        let mut hasher = Hasher::new();
        let mut size = 0u64;
        let mut buffer: Vec<u8> = Vec::with_capacity(UPLOAD_PART_BYTES);
        let mut completed = Vec::new();
        for part in parts {
            check_key(part)?;
            let object = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(part)
                .send()
                .await
                .map_err(|e| failed("GetObject", e))?;
            let mut body = object.body;
            while let Some(chunk) = body.try_next().await.map_err(|e| failed("GetObject", e))? {
                hasher.update(&chunk);
                size += chunk.len() as u64;
                buffer.extend_from_slice(&chunk);
                if buffer.len() >= UPLOAD_PART_BYTES {
                    let full = std::mem::replace(&mut buffer, Vec::with_capacity(UPLOAD_PART_BYTES));
                    completed.push(self.upload_part(key, upload_id, completed.len() as i32 + 1, full).await?);
                }
            }
        }
        if !buffer.is_empty() || completed.is_empty() {
            completed.push(self.upload_part(key, upload_id, completed.len() as i32 + 1, buffer).await?);
        }
        Ok((Joined { size, sha256: hasher.finish() }, completed))
    }

    async fn upload_part(&self, key: &str, upload_id: &str, number: i32, bytes: Vec<u8>) -> Result<CompletedPart> {
        let uploaded = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| failed("UploadPart", e))?;
        Ok(CompletedPart::builder().set_e_tag(uploaded.e_tag).part_number(number).build())
    }
}

#[async_trait]
impl Blobs for S3Blobs {
    async fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
        check_key(key)?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| failed("PutObject", e))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        check_key(key)?;
        match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(object) => {
                let bytes = object.body.collect().await.map_err(|e| failed("GetObject", e))?;
                Ok(Some(bytes.into_bytes()))
            }
            Err(e) if e.code() == Some("NoSuchKey") => Ok(None),
            Err(e) => Err(failed("GetObject", e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| failed("DeleteObject", e))?;
        Ok(())
    }

    async fn join(&self, parts: &[String], key: &str) -> Result<Joined> {
        check_key(key)?;
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| failed("CreateMultipartUpload", e))?;
        let upload_id = created.upload_id.ok_or_else(|| Error::Storage("S3 gave no upload id".into()))?;
        let outcome = match self.upload_parts(parts, key, &upload_id).await {
            Ok((joined, completed)) => {
                let upload = CompletedMultipartUpload::builder().set_parts(Some(completed)).build();
                self.client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .multipart_upload(upload)
                    .send()
                    .await
                    .map(|_| joined)
                    .map_err(|e| failed("CompleteMultipartUpload", e))
            }
            Err(e) => Err(e),
        };
        if outcome.is_err() {
            // Nothing half-uploaded is left to pay for.
            let abort = self.client.abort_multipart_upload().bucket(&self.bucket).key(key).upload_id(&upload_id);
            if let Err(e) = abort.send().await {
                tracing::warn!(error = %DisplayErrorContext(e), "could not abort a multipart upload");
            }
        }
        outcome
    }
}
