//! Files and uploads in the table.
//!
//! | item   | pk                 | sk             |
//! |--------|--------------------|----------------|
//! | file   | `FILE#{fileId}`    | `FILE`         |
//! | upload | `UPLOAD#{token}`   | `UPLOAD`       |
//! | chunk  | `UPLOAD#{token}`   | `CHUNK#{n:05}` |
//!
//! An upload's `fileId` attribute is set by its commit, in the same
//! transaction that puts the file, on the condition that it is not set yet.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{TransactWriteItem, Update};

use super::{Conditioned, DynamoStore, Item, json_attr, n, s, storage};
use crate::app::files::{ChunkRecord, FileRecord, FileStore, Upload};
use crate::error::{Error, Result};

const FILE_SK: &str = "FILE";
const UPLOAD_SK: &str = "UPLOAD";
/// Uploads stay readable this long past their expiry, to say so to the client.
const UPLOAD_GRACE_SECS: i64 = 86_400;

fn file_pk(file_id: &str) -> String {
    format!("FILE#{file_id}")
}

fn upload_pk(token: &str) -> String {
    format!("UPLOAD#{token}")
}

fn chunk_sk(chunk_no: u32) -> String {
    format!("CHUNK#{chunk_no:05}")
}

fn file_item(file: &FileRecord) -> Result<Item> {
    let body = serde_json::to_string(file).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(HashMap::from([
        ("pk".to_string(), s(file_pk(&file.file_id))),
        ("sk".to_string(), s(FILE_SK)),
        ("expiresAt".to_string(), n(file.expires_at)),
        ("file".to_string(), s(body)),
    ]))
}

fn number(item: &Item, name: &str) -> Result<u64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error::Storage(format!("item has no number {name}")))
}

#[async_trait]
impl FileStore for DynamoStore {
    async fn put_file(&self, file: &FileRecord) -> Result<()> {
        self.put_item(file_item(file)?).await
    }

    async fn get_file(&self, file_id: &str) -> Result<Option<FileRecord>> {
        let Some(item) = self.get_item(file_pk(file_id), FILE_SK).await? else {
            return Ok(None);
        };
        let file: FileRecord = json_attr(&item, "file")?;
        Ok((file.expires_at >= chrono::Utc::now().timestamp()).then_some(file))
    }

    async fn put_upload(&self, upload: &Upload) -> Result<()> {
        let body = serde_json::to_string(upload).map_err(|e| Error::Internal(e.to_string()))?;
        let item = HashMap::from([
            ("pk".to_string(), s(upload_pk(&upload.file_token))),
            ("sk".to_string(), s(UPLOAD_SK)),
            ("expiresAt".to_string(), n(upload.expires_at + UPLOAD_GRACE_SECS)),
            ("upload".to_string(), s(body)),
        ]);
        self.put_item(item).await
    }

    async fn get_upload(&self, file_token: &str) -> Result<Option<Upload>> {
        let Some(item) = self.get_item(upload_pk(file_token), UPLOAD_SK).await? else {
            return Ok(None);
        };
        let upload: Upload = json_attr(&item, "upload")?;
        let file_id = item.get("fileId").and_then(|v| v.as_s().ok()).cloned();
        Ok(Some(Upload { file_id, ..upload }))
    }

    async fn put_chunk(&self, file_token: &str, chunk: &ChunkRecord, expires_at: i64) -> Result<()> {
        let item = HashMap::from([
            ("pk".to_string(), s(upload_pk(file_token))),
            ("sk".to_string(), s(chunk_sk(chunk.chunk_no))),
            ("chunkNo".to_string(), n(chunk.chunk_no)),
            ("size".to_string(), n(chunk.size)),
            ("expiresAt".to_string(), n(expires_at + UPLOAD_GRACE_SECS)),
        ]);
        self.put_item(item).await
    }

    async fn chunks(&self, file_token: &str) -> Result<Vec<ChunkRecord>> {
        let mut chunks = Vec::new();
        let mut start_key = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :chunk)")
                .expression_attribute_values(":pk", s(upload_pk(file_token)))
                .expression_attribute_values(":chunk", s("CHUNK#"))
                .consistent_read(true)
                .set_exclusive_start_key(start_key)
                .send()
                .await
                .map_err(|e| storage("Query", e))?;
            for item in page.items() {
                let chunk_no = u32::try_from(number(item, "chunkNo")?).map_err(|e| Error::Storage(e.to_string()))?;
                chunks.push(ChunkRecord { chunk_no, size: number(item, "size")? });
            }
            start_key = page.last_evaluated_key;
            if start_key.is_none() {
                return Ok(chunks);
            }
        }
    }

    async fn commit_upload(&self, file_token: &str, file: &FileRecord) -> Result<bool> {
        let claim = Update::builder()
            .table_name(&self.table)
            .key("pk", s(upload_pk(file_token)))
            .key("sk", s(UPLOAD_SK))
            .update_expression("SET fileId = :file")
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(fileId)")
            .expression_attribute_values(":file", s(&file.file_id))
            .build()
            .map_err(|e| storage("TransactWriteItems", e))?;
        let items = vec![
            TransactWriteItem::builder().update(claim).build(),
            Conditioned::new(file_item(file)?, "attribute_not_exists(pk)").transact_item(&self.table)?,
        ];
        match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) => match e.into_err() {
                // Already committed, or being committed by a concurrent request.
                TransactWriteItemsError::TransactionCanceledException(cancelled)
                    if matches!(
                        cancelled.cancellation_reasons().first().and_then(|r| r.code()),
                        Some("ConditionalCheckFailed" | "TransactionConflict")
                    ) =>
                {
                    Ok(false)
                }
                other => Err(storage("TransactWriteItems", other)),
            },
            Err(e) => Err(storage("TransactWriteItems", e)),
        }
    }
}
