//! Single-shot file uploads (`POST /api/public/uploadfile` and
//! `POST /api/attachments/file/{streamId}/{channelType}`): multipart bodies
//! of every shape, well-formed and not.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::StatusCode;
use proptest::prelude::*;
use proptest::sample::select;

use hookline_core::app::files::types::DEFAULT_EXTENSIONS;

use crate::check;
use crate::harness::{BOT_ID, Harness};
use crate::strategies::{ByteEdit, byte_edit, edited, text};

fn routes() -> Vec<String> {
    vec![
        "/api/public/uploadfile".into(),
        format!("/api/public/uploadfile?streamId={BOT_ID}"),
        "/api/public/uploadfile?streamId=st-nobody".into(),
        "/api/public/uploadfile?streamId=%FF%FE&streamId=x".into(),
        format!("/api/attachments/file/{BOT_ID}/rtm"),
        format!("/api/attachments/file/{BOT_ID}/webhook"),
        format!("/api/attachments/file/{BOT_ID}/%F0%9F%98%80"),
        format!("/api/attachments/file/{BOT_ID}/a%2Fb"),
        format!("/api/attachments/file/{BOT_ID}/{}", "x".repeat(33)),
        "/api/attachments/file/st-nobody/rtm".into(),
    ]
}

/// The two routes that store a file for the bot.
fn storing_routes() -> Vec<String> {
    vec!["/api/public/uploadfile".into(), format!("/api/attachments/file/{BOT_ID}/rtm")]
}

/// One part of a multipart/form-data body, as written (malformed or not).
#[derive(Debug, Clone)]
struct Part {
    name: Option<String>,
    file_name: Option<String>,
    content_type: Option<String>,
    base64: bool,
    body: Vec<u8>,
}

impl Part {
    fn write(&self, boundary: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data").as_bytes());
        if let Some(name) = &self.name {
            out.extend_from_slice(format!("; name=\"{name}\"").as_bytes());
        }
        if let Some(file_name) = &self.file_name {
            out.extend_from_slice(format!("; filename=\"{file_name}\"").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        if let Some(content_type) = &self.content_type {
            out.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
        }
        if self.base64 {
            out.extend_from_slice(b"Content-Transfer-Encoding: base64\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out.extend_from_slice(b"\r\n");
    }
}

fn form(boundary: &str, parts: &[Part]) -> Vec<u8> {
    let mut body = Vec::new();
    for part in parts {
        part.write(boundary, &mut body);
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

fn boundary() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => "[A-Za-z0-9'+_.-]{8,70}",
        1 => "[A-Za-z0-9'()+_,./:=?-]{1,70}",
        1 => "[ -~]{0,12}",
        1 => Just(String::new()),
        1 => Just("x".repeat(200)),
    ]
}

const NAMES: &[&str] = &["file", "filename", "fileName", "fileExtension", "fileContext", "chunk", "chunkNo", "x", ""];
const FILE_NAMES: &[&str] = &[
    "receipt.png",
    "IVR Doc.txt",
    "../../etc/passwd",
    "run.exe",
    "no-extension",
    "\u{1F600}.pdf",
    "",
    " ",
    "a\"b.txt",
    "a\r\nb.txt",
    ".png",
    "name.PNG",
    "x.tar.gz",
];

/// Any part: a file or a field, its headers right or not.
fn part() -> impl Strategy<Value = Part> {
    let name = prop_oneof![3 => Just("file".to_string()), 3 => select(NAMES).prop_map(String::from), 1 => text()];
    let file_name = prop_oneof![4 => select(FILE_NAMES).prop_map(String::from), 1 => text()];
    (
        prop::option::weighted(0.9, name),
        prop::option::of(file_name),
        content_type(),
        prop::bool::weighted(0.2),
        content(),
    )
        .prop_map(|(name, file_name, content_type, base64, body)| Part {
            name,
            file_name,
            content_type,
            base64,
            body,
        })
}

fn content_type() -> impl Strategy<Value = Option<String>> {
    let types = select(&["image/png", "text/plain", "application/octet-stream", "", "multipart/mixed"][..]);
    prop::option::of(types.prop_map(String::from))
}

/// A part's bytes: anything, text, base64 or not, or nothing.
fn content() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..200),
        2 => text().prop_map(String::into_bytes),
        1 => Just(b"aGVsbG8=".to_vec()),
        1 => Just(b"not base64!".to_vec()),
        1 => Just(Vec::new()),
    ]
}

/// Values of the fields that describe a file (filename, fileExtension,
/// fileContext), right and wrong.
const FIELD_VALUES: &[&str] = &[
    "receipt.png",
    "notes.TXT",
    "png",
    ".pdf",
    "PDF",
    "exe",
    "p/ng",
    "",
    "trip to Lisbon",
    "tab\there",
    "sixty-five characters, one more than a fileContext may hold......",
];

/// A form as a client builds one: a file part (mostly named right), text
/// fields describing it, and now and then any other part, in any order.
fn parts() -> impl Strategy<Value = Vec<Part>> {
    let file_name = prop_oneof![4 => select(FILE_NAMES).prop_map(String::from), 1 => text()];
    let file = (
        select(&["file", "attachment", "upload"][..]),
        file_name,
        content_type(),
        prop::bool::weighted(0.2),
        content(),
    )
        .prop_map(|(name, file_name, content_type, base64, body)| Part {
            name: Some(name.into()),
            file_name: Some(file_name),
            content_type,
            base64,
            body,
        });
    let field_value = prop_oneof![
        4 => select(FIELD_VALUES).prop_map(|v| v.as_bytes().to_vec()),
        1 => text().prop_map(String::into_bytes),
        1 => content(),
    ];
    let field = (select(&["filename", "fileName", "fileExtension", "fileContext", "x"][..]), field_value).prop_map(
        |(name, body)| Part { name: Some(name.into()), file_name: None, content_type: None, base64: false, body },
    );
    let others = prop_oneof![3 => Just(Vec::new()), 1 => prop::collection::vec(part(), 1..3)];
    (prop::option::weighted(0.9, file), prop::collection::vec(field, 0..3), others, any::<prop::sample::Index>())
        .prop_map(|(file, mut parts, others, at)| {
            parts.extend(others);
            if let Some(file) = file {
                parts.insert(at.index(parts.len() + 1), file);
            }
            parts
        })
}

/// The Content-Type a client sends with a form: right, quoted, without its
/// boundary or with another one, another type, or none.
#[derive(Debug, Clone, Copy)]
enum FormType {
    Plain,
    Quoted,
    Cased,
    NoBoundary,
    OtherBoundary,
    Mixed,
    Json,
    Missing,
}

fn form_type() -> impl Strategy<Value = FormType> {
    use FormType::*;
    prop_oneof![
        6 => Just(Plain),
        2 => Just(Quoted),
        1 => Just(Cased),
        2 => select(&[NoBoundary, OtherBoundary, Mixed, Json, Missing][..]),
    ]
}

impl FormType {
    fn header(self, boundary: &str) -> Option<String> {
        match self {
            FormType::Plain => Some(format!("multipart/form-data; boundary={boundary}")),
            FormType::Quoted => Some(format!("multipart/form-data; boundary=\"{boundary}\"")),
            FormType::Cased => Some(format!("Multipart/Form-Data;BOUNDARY={boundary}")),
            FormType::NoBoundary => Some("multipart/form-data".into()),
            FormType::OtherBoundary => Some("multipart/form-data; boundary=another-boundary-0123".into()),
            FormType::Mixed => Some(format!("multipart/mixed; boundary={boundary}")),
            FormType::Json => Some("application/json".into()),
            FormType::Missing => None,
        }
    }
}

#[derive(Debug, Clone)]
enum Body {
    Bytes(Vec<u8>),
    Form(Vec<Part>, Vec<ByteEdit>),
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..400).prop_map(Body::Bytes),
        4 => (parts(), edits()).prop_map(|(parts, edits)| Body::Form(parts, edits)),
    ]
}

/// Mostly none, so that the forms' parts are read.
fn edits() -> impl Strategy<Value = Vec<ByteEdit>> {
    prop_oneof![2 => Just(Vec::new()), 1 => prop::collection::vec(byte_edit(), 1..3)]
}

fn is_hex(text: Option<&str>, len: usize) -> bool {
    text.is_some_and(|t| t.len() == len && t.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Any body, with any boundary, to either route: the file's id and hash
/// (200), or a 4xx in the error envelope; never a 5xx.
#[test]
fn uploads_are_stored_or_refused_in_the_envelope() {
    let harness = Harness::new();
    let route = prop_oneof![4 => select(storing_routes()), 1 => select(routes())];
    check(256, (route, boundary(), form_type(), body()), |(route, boundary, form_type, body)| {
        let user = format!("user-{}", uuid::Uuid::new_v4().simple());
        let body = match body {
            Body::Bytes(bytes) => bytes,
            Body::Form(parts, edits) => edited(form(&boundary, &parts), &edits),
        };
        let reply = harness.post(&route, &harness.token(&user), form_type.header(&boundary).as_deref(), body);
        if let Some(stored) = reply.answer_or_refusal()? {
            prop_assert!(is_hex(stored["fileId"].as_str(), 32), "{stored}");
            prop_assert!(is_hex(stored["hash"].as_str(), 64), "{stored}");
        }
        Ok(())
    });
}

fn sha256_hex(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Fields that describe a file, and whether the description is acceptable.
const DESCRIPTIONS: &[(&str, &str, bool)] = &[
    ("fileContext", "trip to Lisbon", true),
    ("fileContext", "", true),
    ("fileContext", "tab\there", false),
    ("fileContext", "sixty-five characters, one more than a fileContext may hold......", false),
    ("filename", "receipt.png", true),
    ("fileName", "notes.TXT", true),
    ("filename", " ", false),
    ("fileName", "", false),
    ("fileExtension", "png", true),
    ("fileExtension", ".PDF", true),
    ("fileExtension", "exe", false),
    ("fileExtension", "p/ng", false),
];

/// A well-formed form with one file of an accepted type, sent raw or as
/// base64 (with line breaks), among text fields: stored, and its hash is
/// that of the bytes sent; described wrongly (the last field of a name
/// counts), refused as invalid.
#[test]
fn a_well_formed_upload_is_stored_as_sent() {
    let harness = Harness::new();
    let file = (
        "[A-Za-z0-9 _-]{1,20}",
        select(DEFAULT_EXTENSIONS),
        prop::collection::vec(any::<u8>(), 1..2048),
        any::<bool>(),
        any::<bool>(),
    );
    let field = prop_oneof![
        2 => ("fileContext|x|note", "[a-z ]{0,20}").prop_map(|(name, value)| (name, value, true)),
        1 => select(DESCRIPTIONS).prop_map(|(name, value, valid)| (name.to_string(), value.to_string(), valid)),
    ];
    let fields = prop::collection::vec(field, 0..4);
    let cases = (select(storing_routes()), "[A-Za-z0-9_-]{16,40}", file, fields, any::<prop::sample::Index>());
    check(128, cases, |(route, boundary, (stem, extension, content, base64, cased), fields, at)| {
        let needle = format!("--{boundary}");
        prop_assume!(!content.windows(needle.len()).any(|w| w == needle.as_bytes()));
        let extension = if cased { extension.to_uppercase() } else { extension.to_string() };
        let body = if base64 {
            let encoded = STANDARD.encode(&content);
            let lines: Vec<&str> =
                encoded.as_bytes().chunks(76).map(|l| std::str::from_utf8(l).unwrap_or("")).collect();
            lines.join("\r\n").into_bytes()
        } else {
            content.clone()
        };
        let file_part = Part {
            name: Some("file".into()),
            file_name: Some(format!("{stem}.{extension}")),
            content_type: Some("application/octet-stream".into()),
            base64,
            body,
        };
        let mut last = std::collections::HashMap::new();
        for (name, _, valid) in &fields {
            last.insert(name.to_ascii_lowercase(), *valid);
        }
        let described_well = last.values().all(|valid| *valid);
        let mut parts: Vec<Part> = fields
            .into_iter()
            .map(|(name, value, _)| Part {
                name: Some(name),
                file_name: None,
                content_type: None,
                base64: false,
                body: value.into_bytes(),
            })
            .collect();
        parts.insert(at.index(parts.len() + 1), file_part);
        let user = format!("user-{}", uuid::Uuid::new_v4().simple());
        let content_type = format!("multipart/form-data; boundary={boundary}");
        let reply = harness.post(&route, &harness.token(&user), Some(&content_type), form(&boundary, &parts));
        let stored = reply.answer_or_refusal()?;
        if !described_well {
            prop_assert_eq!(reply.status, StatusCode::BAD_REQUEST);
            prop_assert_eq!(reply.message(), "Invalid Request Payload");
            return Ok(());
        }
        prop_assert_eq!(reply.status, StatusCode::OK, "{}", reply.message());
        let stored = stored.unwrap_or_default();
        prop_assert!(is_hex(stored["fileId"].as_str(), 32), "{stored}");
        let hash = sha256_hex(&content);
        prop_assert_eq!(stored["hash"].as_str(), Some(hash.as_str()));
        Ok(())
    });
}
