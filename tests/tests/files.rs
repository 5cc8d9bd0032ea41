//! File uploads over HTTP, as Kore's client SDKs send them: single-shot and
//! uploadfile (multipart, base64 parts), chunked (token, chunks, commit), the
//! limits and errors, and files sent in messages. Each runs on memory with a
//! directory and on DynamoDB with S3 (moto's server).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hookline_core::adapters::blobs::S3Blobs;
use hookline_core::adapters::store::MemoryStore;
use hookline_core::app::files::{ChunkRecord, FileLimits, FileRecord, FileStore, MAX_CHUNK_BYTES, Upload};
use hookline_core::app::store::Stores;
use hookline_core::process::{Settings, aws};
use hookline_tests::{proxy, *};
use jsonwebtoken::Algorithm;
use reqwest::Method;
use serde_json::{Value, json};

const FILES_BOT: &str = "st-files-bot";
const FILES_SECRET: &str = "files-bot-secret-0123456789-abcdefgh";
const FILES_ANY_SECRET: &str = "files-bot-any-secret-0123456789-abcd";
const MIB: usize = 1024 * 1024;

async fn server(backend: Backend, files: FileLimits) -> Server {
    let registry = registry_with(&[("files-bot.yaml".into(), include_str!("../fixtures/bots/files-bot.yaml").into())]);
    Server::start_on(backend, registry, Settings { files, ..Settings::default() }).await
}

/// A token of the files bot naming `user`.
fn token(user: &str) -> String {
    sign_hs(Algorithm::HS256, FILES_SECRET, &claims("cs-files", user))
}

/// A token of the files bot that names no user.
fn bot_token() -> String {
    sign_hs(Algorithm::HS256, FILES_ANY_SECRET, &json!({"appId": "cs-files-any", "iat": now(), "exp": now() + 600}))
}

async fn send_form(server: &Server, method: Method, path: &str, token: &str, parts: &[Part<'_>]) -> Reply {
    let (content_type, body) = multipart(parts);
    let request = server
        .request(method, path)
        .header("Authorization", format!("bearer {token}"))
        .header("Content-Type", content_type)
        .body(body);
    Server::send(request).await
}

async fn send_json(server: &Server, method: Method, path: &str, token: &str, body: &Value) -> Reply {
    Server::send(server.request(method, path).header("Authorization", format!("bearer {token}")).json(body)).await
}

fn single_path(bot: &str) -> String {
    format!("/api/attachments/file/{bot}/rtm")
}

fn token_path(bot: &str) -> String {
    format!("/api/attachments/{bot}/rtm/token")
}

/// Uploads `bytes` in one request; the reply.
async fn upload(server: &Server, token: &str, name: &str, bytes: &[u8]) -> Reply {
    let ext = name.rsplit_once('.').map_or("", |(_, e)| e);
    let parts = [
        field("fileContext", "workflows"),
        field("fileExtension", ext),
        field("filename", name),
        file_part(name, bytes),
    ];
    send_form(server, Method::POST, &single_path(FILES_BOT), token, &parts).await
}

/// Opens a chunked upload; its fileToken.
async fn open(server: &Server, token: &str) -> String {
    let reply = send_json(server, Method::POST, &token_path(FILES_BOT), token, &json!({})).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let expires_on = reply.body["expiresOn"].as_i64().unwrap();
    // Milliseconds since the epoch, within the token's lifetime (an hour at most here).
    assert!(expires_on >= (now() - 1) * 1000 && expires_on <= (now() + 3601) * 1000, "{}", reply.body);
    reply.body["fileToken"].as_str().unwrap().to_string()
}

async fn chunk(server: &Server, token: &str, file_token: &str, chunk_no: Value, bytes: &[u8]) -> Reply {
    let path = format!("{}/{file_token}/chunk", token_path(FILES_BOT));
    let body = json!({"chunk": STANDARD.encode(bytes), "chunkNo": chunk_no});
    send_json(server, Method::POST, &path, token, &body).await
}

async fn commit(server: &Server, token: &str, path: &str, name: &str, total: Value) -> Reply {
    let ext = name.rsplit_once('.').map_or("", |(_, e)| e);
    let body = json!({"fileContext": "workflows", "filename": name, "totalChunks": total, "fileExtension": ext});
    send_json(server, Method::PUT, path, token, &body).await
}

fn commit_paths(file_token: &str) -> [String; 2] {
    let base = format!("{}/{file_token}", token_path(FILES_BOT));
    [format!("{base}/chunk"), base]
}

/// What the server stored for a reply's fileId: the bytes, and the hash it reported.
async fn stored(server: &Server, reply: &Reply) -> (Vec<u8>, String) {
    assert_eq!(reply.status, 200, "{}", reply.body);
    let file_id = reply.body["fileId"].as_str().unwrap();
    assert_eq!(file_id.len(), 32, "{}", reply.body);
    let bytes = server.blobs.get(&format!("files/{file_id}")).await.unwrap().expect("the file's bytes");
    (bytes.to_vec(), reply.body["hash"].as_str().unwrap().to_string())
}

async fn single_shot_upload_round_trips_binary(backend: Backend) {
    let server = server(backend, FileLimits::default()).await;
    let bytes = content(3, 300_000);
    let reply = upload(&server, &token("ann"), "receipt.pdf", &bytes).await;
    assert_eq!(reply.body.as_object().unwrap().len(), 2, "{}", reply.body);
    let (stored_bytes, hash) = stored(&server, &reply).await;
    assert!(stored_bytes == bytes, "the bytes round-trip");
    assert_eq!(hash, sha256_by_python(&bytes));

    let file = server.stores.files.get_file(reply.body["fileId"].as_str().unwrap()).await.unwrap().unwrap();
    assert_eq!((file.file_name.as_str(), file.file_extension.as_str()), ("receipt.pdf", "pdf"));
    assert_eq!((file.file_type.as_str(), file.mime_type.as_str()), ("attachment", "application/pdf"));
    assert_eq!((file.size, file.file_context.as_str(), file.channel_type.as_str()), (300_000, "workflows", "rtm"));
    assert_eq!((file.owner.bot_id.as_str(), file.owner.user_id.as_deref()), (FILES_BOT, Some("ann")));

    // Only the file part, as `curl -F file=@notes.txt` sends it: its name is the file's.
    let parts = [file_part("notes.txt", b"plain notes")];
    let reply = send_form(&server, Method::POST, &single_path(FILES_BOT), &token("ann"), &parts).await;
    assert_eq!(stored(&server, &reply).await.0, b"plain notes");
    let file = server.stores.files.get_file(reply.body["fileId"].as_str().unwrap()).await.unwrap().unwrap();
    assert_eq!((file.file_name.as_str(), file.file_extension.as_str()), ("notes.txt", "txt"));
}

/// /api/public/uploadfile names no bot: the token's app does. Parts may come
/// base64-encoded (Content-Transfer-Encoding), as some middlewares send them.
async fn uploadfile_finds_the_bot_and_decodes_base64_parts(backend: Backend) {
    let server = server(backend, FileLimits::default()).await;
    let bytes = content(9, 70_000);
    let encoded = STANDARD.encode(&bytes);
    // MIME base64 comes in lines of 76 characters.
    let wrapped: Vec<u8> = encoded.as_bytes().chunks(76).collect::<Vec<_>>().join(&b"\r\n"[..]);
    let part = Part {
        name: "File",
        filename: Some("scan.png"),
        headers: &["Content-Type: image/png", "Content-Transfer-Encoding: base64"],
        body: &wrapped,
    };
    let parts = [field("Filename", "scan.png"), field("fileExtension", "png"), field("fileContext", "bot"), part];
    let reply = send_form(&server, Method::POST, "/api/public/uploadfile", &token("ann"), &parts).await;
    let (stored_bytes, hash) = stored(&server, &reply).await;
    assert!(stored_bytes == bytes, "the decoded bytes are stored");
    assert_eq!(hash, sha256_by_python(&bytes));
    let file = server.stores.files.get_file(reply.body["fileId"].as_str().unwrap()).await.unwrap().unwrap();
    assert_eq!(
        (file.owner.bot_id.as_str(), file.file_type.as_str(), file.channel_type.as_str()),
        (FILES_BOT, "image", "public")
    );

    // cs-hs256 is an app of two bots: the caller says which.
    let shared = hs256_token("ann");
    let parts = [field("filename", "a.txt"), file_part("a.txt", b"hello")];
    let reply = send_form(&server, Method::POST, "/api/public/uploadfile", &shared, &parts).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.body["errors"][0]["detail"].as_str().unwrap().contains("?streamId="), "{}", reply.body);
    let path = format!("/api/public/uploadfile?streamId={TEST_BOT}");
    let reply = send_form(&server, Method::POST, &path, &shared, &parts).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let file = server.stores.files.get_file(reply.body["fileId"].as_str().unwrap()).await.unwrap().unwrap();
    assert_eq!(file.owner.bot_id, TEST_BOT);
    // A token the named bot's key does not verify.
    let forged = sign_hs(Algorithm::HS256, "not-the-secret-0123456789-abcdefghij", &claims("cs-files", "ann"));
    let reply = send_form(&server, Method::POST, "/api/public/uploadfile", &forged, &parts).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
}

async fn chunks_arrive_in_any_order_and_again(backend: Backend) {
    let server = server(backend, FileLimits::default()).await;
    let user = token("ann");
    let parts = [content(1, 200_000), content(2, 200_000), content(3, 12_345)];
    let whole: Vec<u8> = parts.concat();
    let file_token = open(&server, &user).await;

    // Out of order, chunk 1 first with the wrong bytes, then again with the right ones.
    let reply = chunk(&server, &user, &file_token, json!("2"), &parts[2]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["chunkNo"], json!("2"), "chunkNo is echoed as the client sent it");
    assert_eq!(reply.body["fileToken"], json!(file_token));
    let reply = chunk(&server, &user, &file_token, json!(1), b"stale bytes").await;
    assert_eq!(reply.body["chunkNo"], json!(1), "{}", reply.body);
    chunk(&server, &user, &file_token, json!(1), &parts[1]).await;
    // Chunk 0 as a multipart form with a binary part, as browsers send a Blob.
    let path = format!("{}/{file_token}/chunk", token_path(FILES_BOT));
    let form = [field("chunkNo", "0"), Part { name: "chunk", filename: Some("blob"), headers: &[], body: &parts[0] }];
    let reply = send_form(&server, Method::POST, &path, &user, &form).await;
    assert_eq!((reply.status, &reply.body["chunkNo"]), (200, &json!("0")), "{}", reply.body);

    let [chunk_path, token_path] = commit_paths(&file_token);
    let reply = commit(&server, &user, &chunk_path, "statement.pdf", json!("3")).await;
    let (stored_bytes, hash) = stored(&server, &reply).await;
    assert!(stored_bytes == whole, "the chunks joined in order");
    assert_eq!(hash, sha256_by_python(&whole));
    let file = server.stores.files.get_file(reply.body["fileId"].as_str().unwrap()).await.unwrap().unwrap();
    assert_eq!(file.size, whole.len() as u64);

    // A retried commit, by either path, answers with the same file.
    let again = commit(&server, &user, &token_path, "statement.pdf", json!(3)).await;
    assert_eq!(again.body, reply.body);

    // Two commits at once: one file, both told of it.
    let file_token = open(&server, &user).await;
    chunk(&server, &user, &file_token, json!(0), b"once").await;
    let [first, second] = commit_paths(&file_token);
    let (a, b) = tokio::join!(
        commit(&server, &user, &first, "once.txt", json!(1)),
        commit(&server, &user, &second, "once.txt", json!(1))
    );
    assert_eq!((a.status, b.status), (200, 200), "{} {}", a.body, b.body);
    assert_eq!(a.body, b.body);
    assert_eq!(stored(&server, &a).await.0, b"once");
    // The staged chunks are gone.
    assert_eq!(server.blobs.get(&format!("uploads/{file_token}/00001")).await.unwrap(), None);
    // And nothing more can be added.
    let late = chunk(&server, &user, &file_token, json!(3), b"more").await;
    assert_eq!(late.status, 400, "{}", late.body);
    assert!(late.body["errors"][0]["detail"].as_str().unwrap().contains("already committed"), "{}", late.body);
}

/// Chunks numbered from 1, committed through PUT .../token/{token}.
async fn chunks_may_number_from_one(backend: Backend) {
    let server = server(backend, FileLimits::default()).await;
    let user = token("ann");
    let file_token = open(&server, &user).await;
    for (n, seed) in [(1, 4), (2, 5)] {
        chunk(&server, &user, &file_token, json!(n), &content(seed, 1000)).await;
    }
    let reply = commit(&server, &user, &commit_paths(&file_token)[1], "notes.txt", json!(2)).await;
    let (stored_bytes, _) = stored(&server, &reply).await;
    assert!(stored_bytes == [content(4, 1000), content(5, 1000)].concat());
}

/// A commit with an Idempotency-Key: a repeat gets the first answer, the key
/// with another commit request is a 422.
async fn a_commit_with_a_key_is_answered_again(backend: Backend) {
    let server = server(backend, FileLimits::default()).await;
    let user = token("ann");
    let file_token = open(&server, &user).await;
    chunk(&server, &user, &file_token, json!(0), &content(6, 1000)).await;
    let path = &commit_paths(&file_token)[1];
    let keyed = |total: u32| {
        let body =
            json!({"fileContext": "workflows", "filename": "a.txt", "totalChunks": total, "fileExtension": "txt"});
        server
            .request(Method::PUT, path)
            .header("Authorization", format!("bearer {user}"))
            .header("Idempotency-Key", "commit-a")
            .json(&body)
    };
    let first = Server::send(keyed(1)).await;
    assert_eq!(stored(&server, &first).await.0, content(6, 1000));
    let again = Server::send(keyed(1)).await;
    assert_eq!(again.body, first.body);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    let other = Server::send(keyed(2)).await;
    assert_eq!(other.status, 422, "{}", other.body);
}

/// Per-user quotas: uploads started and bytes sent an hour; over them, a 429
/// that says which, with Retry-After. Another user is not held back.
async fn upload_quotas_are_per_user(backend: Backend) {
    let limits = FileLimits { uploads_per_hour: 2, upload_bytes_per_hour: 5000, ..FileLimits::default() };
    let server = server(backend, limits).await;
    let ann = token("ann");
    let file_token = open(&server, &ann).await;
    assert_eq!(chunk(&server, &ann, &file_token, json!(0), &content(1, 3000)).await.status, 200);
    let over_bytes = chunk(&server, &ann, &file_token, json!(1), &content(2, 3000)).await;
    assert_eq!(over_bytes.status, 429, "{}", over_bytes.body);
    assert_eq!(over_bytes.error_msg(), "Too Many requests");
    assert!(detail(&over_bytes).contains("at most 5000 bytes an hour"), "{}", over_bytes.body);
    let retry_after: u64 = over_bytes.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry_after));

    open(&server, &ann).await;
    let third = send_json(&server, Method::POST, &token_path(FILES_BOT), &ann, &json!({})).await;
    assert_eq!(third.status, 429, "{}", third.body);
    assert!(detail(&third).contains("at most 2 uploads an hour"), "{}", third.body);
    let single = upload(&server, &ann, "a.txt", b"hello").await;
    assert_eq!(single.status, 429, "{}", single.body);

    // Another user has quotas of their own.
    assert_eq!(upload(&server, &token("bea"), "b.txt", b"hello").await.status, 200);
}

fn detail(reply: &Reply) -> String {
    reply.error_msg();
    reply.body["errors"][0]["detail"].as_str().unwrap_or_default().to_string()
}

async fn every_upload_error_is_in_the_envelope(backend: Backend) {
    let limits = FileLimits { max_file_bytes: 1000, max_upload_bytes: 2000, ..FileLimits::default() };
    let server = server(backend, limits).await;
    let user = token("ann");

    // Types: only the accepted extensions.
    let reply = upload(&server, &user, "setup.exe", b"MZ").await;
    assert_eq!(reply.status, 400);
    assert!(detail(&reply).contains("files of type exe are not accepted"), "{}", reply.body);
    let reply = upload(&server, &user, "README", b"text").await;
    assert_eq!((reply.status, detail(&reply).contains("fileExtension")), (400, true), "{}", reply.body);
    // Sizes: the file, and the single-shot request.
    let reply = upload(&server, &user, "big.txt", &[b'a'; 1001]).await;
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert_eq!(reply.error_msg(), "Request payload too large");
    assert!(detail(&reply).contains("1000 bytes"), "{}", reply.body);
    // Within the body limit (so the client can finish sending), over the single-shot limit.
    let reply = upload(&server, &user, "huge.txt", &[b'a'; 3000]).await;
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert!(detail(&reply).contains("2000 bytes"), "{}", reply.body);
    let reply = upload(&server, &user, "empty.txt", b"").await;
    assert_eq!((reply.status, detail(&reply).contains("empty")), (400, true), "{}", reply.body);
    let reply = send_form(&server, Method::POST, &single_path(FILES_BOT), &user, &[field("filename", "a.txt")]).await;
    assert_eq!((reply.status, detail(&reply)), (400, "no file part in the form".into()));
    // Credentials and content types.
    let (content_type, body) = multipart(&[file_part("a.txt", b"x")]);
    let anonymous = server.request(Method::POST, &single_path(FILES_BOT)).header("Content-Type", content_type);
    assert_eq!(Server::send(anonymous.body(body)).await.status, 401);
    let text = server.request(Method::POST, &single_path(FILES_BOT)).header("Authorization", format!("bearer {user}"));
    let reply = Server::send(text.header("Content-Type", "text/plain").body("hello")).await;
    assert_eq!(reply.status, 415);
    assert!(detail(&reply).contains("multipart/form-data"), "{}", reply.body);
    let reply = send_form(&server, Method::POST, "/api/attachments/file/st-no-such-bot/rtm", &user, &[]).await;
    assert_eq!(reply.status, 404);
    let reply =
        send_form(&server, Method::POST, &format!("/api/attachments/file/{FILES_BOT}/r%20tm"), &user, &[]).await;
    assert_eq!((reply.status, detail(&reply).contains("channelType")), (400, true), "{}", reply.body);

    // Chunks: bad fields, too large, unknown and foreign tokens.
    let file_token = open(&server, &user).await;
    let path = format!("{}/{file_token}/chunk", token_path(FILES_BOT));
    let reply = send_json(&server, Method::POST, &path, &user, &json!({"chunk": "!!", "chunkNo": 0})).await;
    assert_eq!((reply.status, detail(&reply)), (400, "chunk is not valid base64".into()));
    let reply = send_json(&server, Method::POST, &path, &user, &json!({"chunk": "aGk=", "chunkNo": "first"})).await;
    assert_eq!((reply.status, detail(&reply)), (400, "chunkNo must be a whole number".into()));
    let reply = send_json(&server, Method::POST, &path, &user, &json!({"chunkNo": 0})).await;
    assert_eq!((reply.status, detail(&reply)), (400, "chunk is required (base64)".into()));
    let reply = chunk(&server, &user, &file_token, json!(0), &vec![7u8; MAX_CHUNK_BYTES + 1]).await;
    assert_eq!(reply.status, 413, "{}", reply.body);
    let reply = chunk(&server, &user, &file_token, json!(1001), b"x").await;
    assert_eq!((reply.status, detail(&reply).contains("chunkNo is at most")), (400, true), "{}", reply.body);
    for unknown in ["0123456789abcdef0123456789abcdef", "not-a-token"] {
        let reply = chunk(&server, &user, unknown, json!(0), b"x").await;
        assert_eq!(reply.status, 404, "{unknown}: {}", reply.body);
        assert!(detail(&reply).contains("no upload with this fileToken"), "{}", reply.body);
    }
    // Another user's upload, and another bot's, are unknown too.
    assert_eq!(chunk(&server, &token("bob"), &file_token, json!(0), b"x").await.status, 404);
    let other = sign_hs(Algorithm::HS256, OTHER_ONLY_SECRET, &claims("cs-other", "ann"));
    let foreign = format!("/api/attachments/{OTHER_BOT}/rtm/token/{file_token}/chunk");
    let reply = send_json(&server, Method::POST, &foreign, &other, &json!({"chunk": "aGk=", "chunkNo": 0})).await;
    assert_eq!(reply.status, 404, "{}", reply.body);

    // Commits: missing chunks are named, counts must agree, sizes are checked.
    for n in [0, 2, 4] {
        assert_eq!(chunk(&server, &user, &file_token, json!(n), b"abc").await.status, 200);
    }
    let [commit_path, _] = commit_paths(&file_token);
    let reply = commit(&server, &user, &commit_path, "a.txt", json!(6)).await;
    assert_eq!(reply.status, 400);
    assert_eq!(detail(&reply), "chunks missing: 1, 3, 5 (totalChunks 6, numbered from 0)");
    for n in [1, 3] {
        chunk(&server, &user, &file_token, json!(n), b"abc").await;
    }
    let reply = commit(&server, &user, &commit_path, "a.txt", json!(4)).await;
    assert_eq!(detail(&reply), "totalChunks is 4 but 5 chunks were received: 0, 1, 2, 3, 4");
    let reply = commit(&server, &user, &commit_path, "a.txt", json!("many")).await;
    assert_eq!(detail(&reply), "totalChunks must be a whole number");
    let reply = commit(&server, &user, &commit_path, "a.exe", json!(5)).await;
    assert!(detail(&reply).contains("files of type exe are not accepted"), "{}", reply.body);
    // Staged chunks stay within the file limit: replacing chunk 4 would pass it.
    let reply = chunk(&server, &user, &file_token, json!(4), &[b'z'; 990]).await;
    assert_eq!(reply.status, 413, "{}", reply.body);
    let reply = commit(&server, &user, &commit_path, "a.txt", json!(5)).await;
    assert_eq!(stored(&server, &reply).await.0, b"abcabcabcabcabc");

    // Without chunk 0, both numberings are named.
    let file_token = open(&server, &user).await;
    for n in [1, 2] {
        chunk(&server, &user, &file_token, json!(n), b"abc").await;
    }
    let reply = commit(&server, &user, &commit_paths(&file_token)[0], "a.txt", json!(3)).await;
    assert_eq!(detail(&reply), "chunks missing: 3 (totalChunks 3, numbered from 1; numbered from 0: 0)");
    let reply = commit(&server, &user, &commit_paths(&file_token)[0], "a.txt", json!(0)).await;
    assert_eq!(detail(&reply), "totalChunks must be 1 to 1000");

    // A token without a user, from an app whose tokens must name one (trust: perUser).
    let nobody =
        sign_hs(Algorithm::HS256, FILES_SECRET, &json!({"appId": "cs-files", "iat": now(), "exp": now() + 600}));
    let reply = upload(&server, &nobody, "a.txt", b"abc").await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    let reply = send_json(&server, Method::POST, &token_path(FILES_BOT), &nobody, &json!({})).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
}

async fn an_expired_file_token_is_refused(backend: Backend) {
    let limits = FileLimits { token_lifetime: Duration::ZERO, ..FileLimits::default() };
    let server = server(backend, limits).await;
    let user = token("ann");
    let file_token = open(&server, &user).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let reply = chunk(&server, &user, &file_token, json!(0), b"late").await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(detail(&reply), "the fileToken has expired; request a new one and upload again");
    let reply = commit(&server, &user, &commit_paths(&file_token)[0], "a.txt", json!(1)).await;
    assert_eq!(detail(&reply), "the fileToken has expired; request a new one and upload again");
}

async fn send_file(server: &Server, token: &str, user: &str, attachment: Value) -> Reply {
    let body = json!({
        "message": {"type": "text", "val": "here it is", "attachments": [attachment]},
        "from": {"id": user},
    });
    server.post(&v2_path(FILES_BOT), token, &body).await
}

/// A flow sees the file's metadata; only its bot (and its user, when the
/// upload named one) may send it.
async fn messages_carry_the_files_they_name(backend: Backend) {
    let server = server(backend, FileLimits::default()).await;
    let bytes = content(5, 4096);
    let reply = upload(&server, &token("ann"), "Receipt.JPG", &bytes).await;
    let (_, hash) = stored(&server, &reply).await;
    let file_id = reply.body["fileId"].as_str().unwrap().to_string();

    let say = |text: &str| json!({"message": {"type": "text", "val": text}, "from": {"id": "ann"}});
    let reply = server.post(&v2_path(FILES_BOT), &token("ann"), &say("claim")).await;
    assert_eq!(reply.texts(), ["Attach the receipt."]);
    let reply = send_file(&server, &token("ann"), "ann", json!({"fileId": file_id})).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.texts(), [format!("Got Receipt.JPG (image, image/jpeg, 4096 bytes, sha256 {hash}).")]);

    // The client's own fileName and fileType are kept.
    server.post(&v2_path(FILES_BOT), &token("ann"), &say("claim")).await;
    let named = json!({"fileId": file_id, "fileName": "My receipt", "fileType": "image"});
    let reply = send_file(&server, &token("ann"), "ann", named).await;
    assert_eq!(reply.texts(), [format!("Got My receipt (image, image/jpeg, 4096 bytes, sha256 {hash}).")]);

    // Unknown, malformed, another user's and another bot's files are all "no such file".
    let foreign = upload_to_test_bot(&server).await;
    for (user, id) in
        [("ann", "0123456789abcdef0123456789abcdef"), ("ann", "../x"), ("bob", &file_id), ("ann", &foreign)]
    {
        let reply = send_file(&server, &token(user), user, json!({"fileId": id, "fileType": "image"})).await;
        assert_eq!(reply.status, 400, "{user} {id}: {}", reply.body);
        assert_eq!(detail(&reply), "message.attachments[0].fileId: no such file for this bot");
    }
    // A file uploaded with a token naming no user is the bot's: any user may send it.
    let reply = upload(&server, &bot_token(), "menu.pdf", b"%PDF-1.7").await;
    let shared = reply.body["fileId"].as_str().unwrap().to_string();
    server
        .post(
            &v2_path(FILES_BOT),
            &token("bob"),
            &json!({"message": {"type": "text", "val": "claim"}, "from": {"id": "bob"}}),
        )
        .await;
    let reply = send_file(&server, &token("bob"), "bob", json!({"fileId": shared})).await;
    assert_eq!(
        reply.texts()[0],
        format!("Got menu.pdf (attachment, application/pdf, 8 bytes, sha256 {}).", sha256_by_python(b"%PDF-1.7"))
    );
}

async fn upload_to_test_bot(server: &Server) -> String {
    let parts = [field("filename", "x.png"), file_part("x.png", b"png")];
    let reply = send_form(server, Method::POST, &single_path(TEST_BOT), &hs256_token("ann"), &parts).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["fileId"].as_str().unwrap().to_string()
}

/// Correctness only: the benchmark (scripts/bench-upload) reports memory and speed.
async fn fifty_megabytes_in_one_megabyte_chunks(backend: Backend) {
    let server = server(backend, FileLimits::default()).await;
    let user = token("ann");
    let file_token = open(&server, &user).await;
    let mut whole = Vec::with_capacity(50 * MIB);
    for n in 0..50u8 {
        let part = content(n, MIB);
        let reply = chunk(&server, &user, &file_token, json!(n), &part).await;
        assert_eq!(reply.status, 200, "chunk {n}: {}", reply.body);
        whole.extend_from_slice(&part);
    }
    let reply = commit(&server, &user, &commit_paths(&file_token)[0], "recording.mp4", json!(50)).await;
    let (stored_bytes, hash) = stored(&server, &reply).await;
    assert_eq!(stored_bytes.len(), 50 * MIB);
    assert!(stored_bytes == whole, "50 MiB joined in order");
    assert_eq!(hash, sha256_by_python(&whole));
}

/// The file records of the memory store, whose commit write lands but whose
/// answer is lost (as a timed-out write that went through).
struct LostCommitAnswer(Arc<MemoryStore>);

#[async_trait::async_trait]
impl FileStore for LostCommitAnswer {
    async fn put_file(&self, file: &FileRecord) -> hookline_core::error::Result<()> {
        self.0.put_file(file).await
    }
    async fn get_file(&self, file_id: &str) -> hookline_core::error::Result<Option<FileRecord>> {
        self.0.get_file(file_id).await
    }
    async fn put_upload(&self, upload: &Upload) -> hookline_core::error::Result<()> {
        self.0.put_upload(upload).await
    }
    async fn get_upload(&self, file_token: &str) -> hookline_core::error::Result<Option<Upload>> {
        self.0.get_upload(file_token).await
    }
    async fn put_chunk(&self, token: &str, chunk: &ChunkRecord, expires_at: i64) -> hookline_core::error::Result<()> {
        self.0.put_chunk(token, chunk, expires_at).await
    }
    async fn chunks(&self, file_token: &str) -> hookline_core::error::Result<Vec<ChunkRecord>> {
        self.0.chunks(file_token).await
    }
    async fn commit_upload(&self, file_token: &str, file: &FileRecord) -> hookline_core::error::Result<bool> {
        self.0.commit_upload(file_token, file).await?;
        Err(hookline_core::Error::Storage("the answer was lost".into()))
    }
}

/// A commit whose write landed but whose answer was lost: the file the
/// upload names keeps its bytes (they were once removed as another commit's
/// copy), and a repeated commit answers with the same file.
#[tokio::test]
async fn a_commit_whose_answer_was_lost_keeps_the_file() {
    let memory = Arc::new(MemoryStore::new());
    let stores = Stores { files: Arc::new(LostCommitAnswer(memory.clone())), ..Stores::of(memory) };
    let registry = registry_with(&[("files-bot.yaml".into(), include_str!("../fixtures/bots/files-bot.yaml").into())]);
    let server = Server::start_with_registry(registry, stores, Settings::default()).await;
    let user = token("ann");
    let file_token = open(&server, &user).await;
    chunk(&server, &user, &file_token, json!(0), b"the whole file").await;
    let committed = commit(&server, &user, &commit_paths(&file_token)[0], "a.txt", json!(1)).await;
    assert_eq!(committed.status, 200, "{}", committed.body);
    let file_id = committed.body["fileId"].as_str().unwrap();
    let bytes = server.blobs.get(&format!("files/{file_id}")).await.unwrap();
    assert_eq!(bytes.as_deref(), Some(&b"the whole file"[..]));
    let again = commit(&server, &user, &commit_paths(&file_token)[0], "a.txt", json!(1)).await;
    assert_eq!(again.body["fileId"], file_id);
}

on_both_stores!(
    single_shot_upload_round_trips_binary,
    uploadfile_finds_the_bot_and_decodes_base64_parts,
    chunks_arrive_in_any_order_and_again,
    chunks_may_number_from_one,
    every_upload_error_is_in_the_envelope,
    an_expired_file_token_is_refused,
    messages_carry_the_files_they_name,
    fifty_megabytes_in_one_megabyte_chunks,
    a_commit_with_a_key_is_answered_again,
    upload_quotas_are_per_user,
);

/// S3 failing in the middle of a commit (its second part cannot be
/// uploaded): the commit is refused in the envelope, neither a file nor an
/// unfinished multipart upload is left, and the same commit, retried once S3
/// is back, makes the whole file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_failing_mid_commit_leaves_no_half_file_and_the_commit_can_be_retried() {
    let proxy = proxy::Proxy::start(&aws_endpoint()).await;
    let bucket = format!("hookline-test-{}", uuid::Uuid::new_v4().simple());
    let blobs = S3Blobs::new(aws::s3_client(Some(&proxy.url)).await, bucket.clone());
    blobs.create_bucket().await.unwrap();
    let registry = registry_with(&[("files-bot.yaml".into(), include_str!("../fixtures/bots/files-bot.yaml").into())]);
    let stores = stores(Backend::DynamoDb).await;
    let server = Server::start_with_blobs(registry, stores, Arc::new(blobs), Settings::default()).await;
    let user = token("ann");
    let file_token = open(&server, &user).await;
    // Eleven MiB: three parts of the joined file, the first two 5 MiB.
    let mut whole = Vec::new();
    for n in 0..11u8 {
        let part = content(n, MIB);
        assert_eq!(chunk(&server, &user, &file_token, json!(n), &part).await.status, 200);
        whole.extend_from_slice(&part);
    }
    let path = &commit_paths(&file_token)[1];

    proxy.set(proxy::Fault::CutRequests("partNumber=2&"));
    let refused = commit(&server, &user, path, "recording.mp4", json!(11)).await;
    assert_eq!((refused.status, refused.error_msg().as_str()), (503, "Service temporarily unavailable"));
    proxy.set(proxy::Fault::None);
    let s3 = s3_client().await;
    let files = s3.list_objects_v2().bucket(&bucket).prefix("files/").send().await.unwrap();
    assert_eq!(files.key_count(), Some(0), "no file, whole or half");
    let unfinished = s3.list_multipart_uploads().bucket(&bucket).send().await.unwrap();
    assert!(unfinished.uploads().is_empty(), "the multipart upload was aborted: {unfinished:?}");

    let reply = commit(&server, &user, path, "recording.mp4", json!(11)).await;
    let (stored_bytes, hash) = stored(&server, &reply).await;
    assert!(stored_bytes == whole, "the whole file, in order");
    assert_eq!(hash, sha256_by_python(&whole));
}
