//! Attachments that name a fileId: checked against the file's owner, and
//! completed with what is known about the file, so flows can read it.

use serde_json::{Value, json};

use super::FileStore;
use crate::error::{Error, Result};
use crate::ids::ConversationKey;

/// Checks each `message.attachments[i].fileId` of `payload` and adds the
/// file's metadata (fileName and fileType only when the client gave none).
/// A file that is unknown, expired, or another bot's or user's is a 400,
/// the same for all so no one learns which ids exist.
pub async fn resolve_attachments(store: &dyn FileStore, user: &ConversationKey, payload: &mut Value) -> Result<()> {
    let Some(attachments) = payload.pointer_mut("/message/attachments").and_then(Value::as_array_mut) else {
        return Ok(());
    };
    let now = chrono::Utc::now().timestamp();
    for (i, attachment) in attachments.iter_mut().enumerate() {
        let Some(file_id) = attachment.get("fileId").and_then(Value::as_str).map(str::trim).map(String::from) else {
            continue;
        };
        let no_file = || Error::InvalidPayload(format!("message.attachments[{i}].fileId: no such file for this bot"));
        let file = match super::is_id(&file_id) {
            true => store.get_file(&file_id).await?,
            false => None,
        };
        let file = file.filter(|f| f.owner.admits(user) && f.expires_at >= now).ok_or_else(no_file)?;
        let Some(fields) = attachment.as_object_mut() else {
            continue;
        };
        fields.entry("fileName").or_insert_with(|| json!(file.file_name));
        fields.entry("fileType").or_insert_with(|| json!(file.file_type));
        fields.insert("fileExtension".into(), json!(file.file_extension));
        fields.insert("mimeType".into(), json!(file.mime_type));
        fields.insert("size".into(), json!(file.size));
        fields.insert("hash".into(), json!(file.hash));
    }
    Ok(())
}
