//! File types: which extensions a deployment accepts, and what each is.

/// Accepted unless HOOKLINE_FILE_TYPES says otherwise: the images, audio,
/// video and documents messaging channels carry. Nothing executable, and no
/// SVG or HTML (script a browser could run from a download link).
pub const DEFAULT_EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "webp", "bmp", "heic", "mp3", "m4a", "aac", "amr", "ogg", "opus", "wav", "mp4", "mov",
    "webm", "3gp", "pdf", "txt", "csv", "rtf", "doc", "docx", "xls", "xlsx", "ppt", "pptx", "odt", "ods", "odp", "zip",
];

/// `fileType` as Kore's clients name it, and the MIME type of an extension.
pub fn describe(extension: &str) -> (&'static str, &'static str) {
    match extension {
        "png" => ("image", "image/png"),
        "jpg" | "jpeg" => ("image", "image/jpeg"),
        "gif" => ("image", "image/gif"),
        "webp" => ("image", "image/webp"),
        "bmp" => ("image", "image/bmp"),
        "heic" => ("image", "image/heic"),
        "mp3" => ("audio", "audio/mpeg"),
        "m4a" => ("audio", "audio/mp4"),
        "aac" => ("audio", "audio/aac"),
        "amr" => ("audio", "audio/amr"),
        "ogg" | "opus" => ("audio", "audio/ogg"),
        "wav" => ("audio", "audio/wav"),
        "mp4" => ("video", "video/mp4"),
        "mov" => ("video", "video/quicktime"),
        "webm" => ("video", "video/webm"),
        "3gp" => ("video", "video/3gpp"),
        "pdf" => ("attachment", "application/pdf"),
        "txt" => ("attachment", "text/plain"),
        "csv" => ("attachment", "text/csv"),
        "rtf" => ("attachment", "application/rtf"),
        "doc" => ("attachment", "application/msword"),
        "docx" => ("attachment", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
        "xls" => ("attachment", "application/vnd.ms-excel"),
        "xlsx" => ("attachment", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        "ppt" => ("attachment", "application/vnd.ms-powerpoint"),
        "pptx" => ("attachment", "application/vnd.openxmlformats-officedocument.presentationml.presentation"),
        "odt" => ("attachment", "application/vnd.oasis.opendocument.text"),
        "ods" => ("attachment", "application/vnd.oasis.opendocument.spreadsheet"),
        "odp" => ("attachment", "application/vnd.oasis.opendocument.presentation"),
        "zip" => ("attachment", "application/zip"),
        _ => ("attachment", "application/octet-stream"),
    }
}

/// The extension a request names: `fileExtension` (with or without its
/// dot), else the filename's; lowercase letters and digits only.
pub fn extension(file_extension: Option<&str>, filename: &str) -> Option<String> {
    let given = file_extension.map(str::trim).filter(|e| !e.is_empty());
    let raw = given.or_else(|| filename.rsplit_once('.').map(|(_, ext)| ext))?;
    let ext = raw.trim_start_matches('.').to_ascii_lowercase();
    let valid = !ext.is_empty() && ext.len() <= 16 && ext.bytes().all(|b| b.is_ascii_alphanumeric());
    valid.then_some(ext)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_come_from_the_field_or_the_name() {
        assert_eq!(extension(Some("PNG"), "x"), Some("png".into()));
        assert_eq!(extension(Some(".pdf"), "x.png"), Some("pdf".into()));
        assert_eq!(extension(None, "report.final.DOCX"), Some("docx".into()));
        assert_eq!(extension(Some(" "), "notes.txt"), Some("txt".into()));
        assert_eq!(extension(None, "README"), None);
        assert_eq!(extension(Some("p/ng"), "x"), None);
    }

    #[test]
    fn every_default_type_is_described() {
        for ext in DEFAULT_EXTENSIONS {
            assert_ne!(describe(ext).1, "application/octet-stream", "{ext}");
        }
    }
}
