//! File upload endpoints, as Kore's client SDKs call them: one-shot uploads
//! (POST /api/public/uploadfile and /api/attachments/file/{streamId}/{channelType})
//! and chunked ones (token, chunk, commit) under /api/attachments/{streamId}/{channelType}.
//! Bodies are JSON or multipart/form-data.

use std::sync::Arc;

use axum::Json;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Query, Request, State};
use axum::handler::Handler;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{HeaderMap, Method, header};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{FilesState, Routes, authenticate, bearer_token, every_app, idempotency_key, read_body, replayed};
use crate::app::auth;
use crate::app::files::{Described, FileRecord, MAX_CHUNK_BYTES, Owner, check_channel_type};
use crate::app::idempotency::{self, Claim, KeyAnswer, KeyRecord};
use crate::definition::{Bot, Registry};
use crate::error::{Error, Result};
use crate::ids::ConversationKey;

/// Room for multipart boundaries, part headers and the text fields.
const FORM_OVERHEAD_BYTES: usize = 64 * 1024;
/// Token and commit requests carry a few short fields.
const SMALL_BODY_BYTES: usize = 64 * 1024;
/// A chunk's request: its base64 and the fields around it.
const CHUNK_BODY_BYTES: usize = MAX_CHUNK_BYTES.div_ceil(3) * 4 + FORM_OVERHEAD_BYTES;
// Lambda's 6 MB holds the event, where a multipart body is base64-encoded.
const _: () = assert!(CHUNK_BODY_BYTES.div_ceil(3) * 4 < 6_000_000, "a chunk request must fit Lambda's payload");
/// The channelType of uploads through /api/public/uploadfile.
const PUBLIC_CHANNEL: &str = "public";

pub fn router(state: FilesState) -> Routes {
    let whole = DefaultBodyLimit::max(state.files.limits().max_upload_bytes + FORM_OVERHEAD_BYTES);
    let (chunk, small) = (DefaultBodyLimit::max(CHUNK_BODY_BYTES), DefaultBodyLimit::max(SMALL_BODY_BYTES));
    Routes::new()
        .add(Method::POST, "/api/public/uploadfile", upload_file.layer(whole))
        .add(Method::POST, "/api/attachments/file/{stream_id}/{channel_type}", upload_single.layer(whole))
        .add(Method::POST, "/api/attachments/{stream_id}/{channel_type}/token", open_upload.layer(small))
        .add(Method::POST, "/api/attachments/{stream_id}/{channel_type}/token/{token}/chunk", put_chunk.layer(chunk))
        .add(Method::PUT, "/api/attachments/{stream_id}/{channel_type}/token/{token}/chunk", commit.layer(small))
        .add(Method::PUT, "/api/attachments/{stream_id}/{channel_type}/token/{token}", commit.layer(small))
        .with_state(state)
}

#[derive(Deserialize)]
struct UploadPath {
    stream_id: String,
    channel_type: String,
    #[serde(default)]
    token: Option<String>,
}

impl FilesState {
    /// The bot in the URL and the owner the caller's token makes: any of the
    /// bot's apps may upload, as on Kore.
    async fn caller(&self, path: &UploadPath, headers: &HeaderMap) -> Result<(Arc<Bot>, Owner)> {
        check_channel_type(&path.channel_type)?;
        let bot = self.bots.require(&path.stream_id)?;
        let owner = self.owner(&bot, headers).await?;
        Ok((bot, owner))
    }

    async fn owner(&self, bot: &Bot, headers: &HeaderMap) -> Result<Owner> {
        let caller = authenticate(&*self.seen_tokens, bot, &every_app(bot), headers).await?;
        let user_id = auth::token_user(&caller)?;
        Ok(Owner { bot_id: bot.id().to_string(), user_id, app: auth::own_users(&caller) })
    }
}

fn stored(file: FileRecord) -> Json<Value> {
    Json(json!({"fileId": file.file_id, "hash": file.hash}))
}

#[derive(Deserialize)]
struct PublicQuery {
    #[serde(default, rename = "streamId")]
    stream_id: Option<String>,
}

/// POST /api/public/uploadfile: the URL names no bot, so the token's app
/// does (or `?streamId=` when one app serves several bots).
async fn upload_file(
    State(api): State<FilesState>,
    Query(query): Query<PublicQuery>,
    request: Request,
) -> Result<Json<Value>> {
    let bot = match query.stream_id {
        Some(stream_id) => api.bots.require(&stream_id)?,
        None => bot_of_app(&api.bots, request.headers())?,
    };
    let owner = api.owner(&bot, request.headers()).await?;
    whole_file(&api, owner, PUBLIC_CHANNEL, request).await
}

fn bot_of_app(bots: &Registry, headers: &HeaderMap) -> Result<Arc<Bot>> {
    let app_id = auth::unverified_app_id(bearer_token(headers)?)?;
    let mut bots = bots.bots().filter(|b| b.app(&app_id).is_some());
    match (bots.next(), bots.next()) {
        (Some(bot), None) => Ok(bot.clone()),
        (Some(_), Some(_)) => Err(Error::InvalidPayload("the token's app serves several bots: add ?streamId=".into())),
        (None, _) => Err(Error::Unauthorized("the token's app may not call this bot".into())),
    }
}

/// POST /api/attachments/file/{streamId}/{channelType}.
async fn upload_single(
    State(api): State<FilesState>,
    Path(path): Path<UploadPath>,
    request: Request,
) -> Result<Json<Value>> {
    let (_, owner) = api.caller(&path, request.headers()).await?;
    whole_file(&api, owner, &path.channel_type, request).await
}

async fn whole_file(api: &FilesState, owner: Owner, channel_type: &str, request: Request) -> Result<Json<Value>> {
    let limit = api.files.limits().max_upload_bytes + FORM_OVERHEAD_BYTES;
    let form = read_form(request, limit).await?;
    let described = form.described();
    let bytes = form.file.ok_or_else(|| Error::InvalidPayload("no file part in the form".into()))?;
    let max = api.files.limits().max_upload_bytes;
    if bytes.len() > max {
        return Err(Error::PayloadTooLarge { limit: max });
    }
    Ok(stored(api.files.store_whole(owner, channel_type, described, bytes).await?))
}

/// POST .../token: opens a chunked upload.
async fn open_upload(
    State(api): State<FilesState>,
    Path(path): Path<UploadPath>,
    headers: HeaderMap,
) -> Result<Json<Value>> {
    let (_, owner) = api.caller(&path, &headers).await?;
    let upload = api.files.open_upload(owner, &path.channel_type).await?;
    Ok(Json(json!({"fileToken": upload.file_token, "expiresOn": upload.expires_at * 1000})))
}

/// POST .../token/{token}/chunk: `chunk` (base64, or a binary file part)
/// and `chunkNo`, echoed as the client sent it.
async fn put_chunk(
    State(api): State<FilesState>,
    Path(path): Path<UploadPath>,
    request: Request,
) -> Result<Json<Value>> {
    let (_, owner) = api.caller(&path, request.headers()).await?;
    let token = path.token.unwrap_or_default();
    let form = read_form(request, CHUNK_BODY_BYTES).await?;
    let chunk_no = form.fields.get("chunkno").cloned().unwrap_or(Value::Null);
    let number =
        whole_number(&chunk_no).ok_or_else(|| Error::InvalidPayload("chunkNo must be a whole number".into()))?;
    let bytes = match (form.file, form.fields.get("chunk")) {
        (Some(bytes), _) => bytes,
        (None, Some(Value::String(text))) => decode_base64(text, "chunk")?,
        (None, _) => return Err(Error::InvalidPayload("chunk is required (base64)".into())),
    };
    api.files.put_chunk(&owner, &token, number, bytes).await?;
    Ok(Json(json!({"fileToken": token, "chunkNo": chunk_no})))
}

/// PUT .../token/{token}/chunk or .../token/{token}: joins the chunks.
async fn commit(State(api): State<FilesState>, Path(path): Path<UploadPath>, request: Request) -> Result<Response> {
    let (_, owner) = api.caller(&path, request.headers()).await?;
    let key = idempotency_key(request.headers())?.map(String::from);
    let token = path.token.unwrap_or_default();
    let form = read_form(request, SMALL_BODY_BYTES).await?;
    let total = form.fields.get("totalchunks").and_then(whole_number);
    let total = total.ok_or_else(|| Error::InvalidPayload("totalChunks must be a whole number".into()))?;
    let described = form.described();
    let Some(key) = key else {
        return Ok(stored(api.files.commit(&owner, &token, described, total).await?).into_response());
    };
    // A repeated commit of a token gets its file anyway; with a key, a repeat
    // of another request, or one while the first runs, is told so.
    let user = ConversationKey::new(&owner.bot_id, owner.user_id.clone().unwrap_or_default()).in_app(owner.app.clone());
    let request = json!({"token": token, "fields": form.fields}).to_string();
    let now = chrono::Utc::now().timestamp();
    let record = KeyRecord::new(&user, &key, request.as_bytes(), "", now)?;
    let record = match idempotency::claim(&*api.keys, record, now).await? {
        Claim::Done(KeyRecord { answer: Some(KeyAnswer::File { body }), .. }) => {
            return Ok(replayed(Json(body).into_response()));
        }
        Claim::Done(_) => return Err(Error::KeyReused),
        Claim::New(record) => record,
    };
    match api.files.commit(&owner, &token, described, total).await {
        Ok(file) => {
            let Json(body) = stored(file);
            if let Err(e) = api.keys.put_key(&record.done(KeyAnswer::File { body: body.clone() })).await {
                tracing::warn!(error = %e, "the Idempotency-Key's answer was not recorded");
            }
            Ok(Json(body).into_response())
        }
        Err(e) => {
            if let Err(e) = api.keys.forget_key(&record).await {
                tracing::warn!(error = %e, "the Idempotency-Key of a failed commit is still marked running");
            }
            Err(e)
        }
    }
}

/// A number, or a string of digits (clients send both).
fn whole_number(value: &Value) -> Option<u32> {
    match value {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Base64 with or without a `data:...;base64,` prefix and line breaks.
fn decode_base64(text: &str, field: &str) -> Result<Bytes> {
    let text = text.split_once(";base64,").filter(|(head, _)| head.starts_with("data:")).map_or(text, |(_, b)| b);
    let clean: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    STANDARD.decode(clean).map(Bytes::from).map_err(|_| Error::InvalidPayload(format!("{field} is not valid base64")))
}

/// A request's fields (names lowercased) and its file part, if any, with
/// the name its Content-Disposition gives.
struct Form {
    fields: Map<String, Value>,
    file: Option<Bytes>,
    part_file_name: Option<String>,
}

impl Form {
    fn text(&self, name: &str) -> Option<String> {
        self.fields.get(name).and_then(Value::as_str).map(String::from)
    }

    fn described(&self) -> Described {
        Described {
            // A filename field wins; `curl -F file=@report.pdf` sends only the part's.
            file_name: self.text("filename").or_else(|| self.part_file_name.clone()),
            file_extension: self.text("fileextension"),
            file_context: self.text("filecontext"),
        }
    }
}

async fn read_form(request: Request, limit: usize) -> Result<Form> {
    let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(Error::PayloadTooLarge { limit });
    }
    match essence.as_str() {
        "application/json" => {
            let (parts, body) = request.into_parts();
            let body = read_body(body, &parts.headers, limit).await?;
            let fields = match serde_json::from_slice::<Value>(&body) {
                Ok(Value::Object(fields)) => fields,
                _ => return Err(Error::InvalidPayload("the body must be a JSON object".into())),
            };
            let fields = fields.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
            Ok(Form { fields, file: None, part_file_name: None })
        }
        "multipart/form-data" => read_multipart(request, limit).await,
        _ => Err(Error::UnsupportedMediaType("application/json or multipart/form-data")),
    }
}

/// Parts with a filename are the file (decoded when sent with
/// Content-Transfer-Encoding: base64); the others are text fields.
async fn read_multipart(request: Request, limit: usize) -> Result<Form> {
    let failed = |e: axum::extract::multipart::MultipartError| {
        if e.status() == http::StatusCode::PAYLOAD_TOO_LARGE {
            Error::PayloadTooLarge { limit }
        } else {
            Error::InvalidPayload(format!("malformed multipart body: {}", e.body_text()))
        }
    };
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|e| Error::InvalidPayload(format!("malformed multipart body: {}", e.body_text())))?;
    let mut form = Form { fields: Map::new(), file: None, part_file_name: None };
    while let Some(field) = multipart.next_field().await.map_err(failed)? {
        let name = field.name().unwrap_or_default().to_ascii_lowercase();
        let part_file_name = field.file_name().map(String::from);
        let is_file = part_file_name.is_some() || name == "file";
        let base64 = field
            .headers()
            .get("content-transfer-encoding")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("base64"));
        let bytes = field.bytes().await.map_err(failed)?;
        if is_file {
            if form.file.is_some() {
                return Err(Error::InvalidPayload("send one file per request".into()));
            }
            form.file = Some(if base64 { decode_base64(&String::from_utf8_lossy(&bytes), &name)? } else { bytes });
            form.part_file_name = part_file_name;
        } else {
            let text = String::from_utf8(bytes.to_vec())
                .map_err(|_| Error::InvalidPayload(format!("form field {name} is not UTF-8 text")))?;
            form.fields.insert(name, Value::String(text));
        }
    }
    Ok(form)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_numbers_come_as_numbers_or_strings() {
        assert_eq!(whole_number(&json!(3)), Some(3));
        assert_eq!(whole_number(&json!("12")), Some(12));
        assert_eq!(whole_number(&json!(-1)), None);
        assert_eq!(whole_number(&json!(1.5)), None);
        assert_eq!(whole_number(&json!("two")), None);
        assert_eq!(whole_number(&Value::Null), None);
    }

    #[test]
    fn base64_may_be_a_data_url_with_line_breaks() {
        assert_eq!(decode_base64("aGVs\r\nbG8=", "chunk").unwrap(), Bytes::from_static(b"hello"));
        assert_eq!(decode_base64("data:image/png;base64,aGVsbG8=", "chunk").unwrap(), Bytes::from_static(b"hello"));
        assert!(decode_base64("not base64!", "chunk").is_err());
    }
}
