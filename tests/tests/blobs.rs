//! File bytes in S3 (moto's server) and in a local directory: round trips of
//! binary content, and parts joined into one file by streaming, with the
//! hash checked by an independent implementation (Python's hashlib).

use bytes::Bytes;
use hookline_core::app::files::Blobs;
use hookline_tests::*;

const MIB: usize = 1024 * 1024;

async fn local() -> (Box<dyn Blobs>, std::path::PathBuf) {
    let (blobs, root) = local_blobs();
    (Box::new(blobs), root)
}

async fn s3() -> Box<dyn Blobs> {
    Box::new(s3_blobs().await)
}

async fn round_trips(blobs: &dyn Blobs) {
    let bytes = content(7, 300_000);
    blobs.put("files/a/one.bin", Bytes::from(bytes.clone())).await.unwrap();
    assert_eq!(blobs.get("files/a/one.bin").await.unwrap().unwrap(), bytes);
    blobs.put("files/a/one.bin", Bytes::from_static(b"replaced")).await.unwrap();
    assert_eq!(blobs.get("files/a/one.bin").await.unwrap().unwrap(), &b"replaced"[..]);
    assert_eq!(blobs.get("files/a/none.bin").await.unwrap(), None);
    blobs.delete("files/a/one.bin").await.unwrap();
    assert_eq!(blobs.get("files/a/one.bin").await.unwrap(), None);
    blobs.delete("files/a/one.bin").await.unwrap();
    for key in ["../escape", "files/../../escape", "/etc/passwd", "files/a b"] {
        assert!(blobs.put(key, Bytes::from_static(b"x")).await.is_err(), "{key}");
        assert!(blobs.get(key).await.is_err(), "{key}");
    }
}

/// Parts joined in order, above and below S3's 5 MiB part size.
async fn joins_parts(blobs: &dyn Blobs) {
    for (count, part_len) in [(12, MIB), (3, 1000)] {
        let prefix = format!("uploads/{count}");
        let mut whole = Vec::new();
        let mut parts = Vec::new();
        for n in 0..count {
            let part = content(n as u8, part_len);
            let key = format!("{prefix}/chunk-{n:06}");
            blobs.put(&key, Bytes::from(part.clone())).await.unwrap();
            whole.extend_from_slice(&part);
            parts.push(key);
        }
        let joined = blobs.join(&parts, &format!("{prefix}/file")).await.unwrap();
        assert_eq!(joined.size, whole.len() as u64);
        assert_eq!(joined.sha256, sha256_by_python(&whole));
        assert!(blobs.get(&format!("{prefix}/file")).await.unwrap().unwrap() == whole, "the bytes round-trip");
    }
    // A missing part fails the join and leaves nothing behind.
    let parts = ["uploads/3/chunk-000000".to_string(), "uploads/3/absent".to_string()];
    assert!(blobs.join(&parts, "uploads/3/broken").await.is_err());
    assert_eq!(blobs.get("uploads/3/broken").await.unwrap(), None);
}

#[tokio::test]
async fn local_directory_round_trips() {
    let (blobs, root) = local().await;
    round_trips(blobs.as_ref()).await;
    let _ = std::fs::remove_dir_all(root);
}

#[tokio::test]
async fn local_directory_joins_parts() {
    let (blobs, root) = local().await;
    joins_parts(blobs.as_ref()).await;
    // No temporary file is left beside the joined ones.
    let leftovers: Vec<_> = std::fs::read_dir(root.join("uploads/3"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let _ = std::fs::remove_dir_all(root);
}

#[tokio::test]
async fn s3_round_trips() {
    round_trips(s3().await.as_ref()).await;
}

#[tokio::test]
async fn s3_joins_parts() {
    joins_parts(s3().await.as_ref()).await;
}
