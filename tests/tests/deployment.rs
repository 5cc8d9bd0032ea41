//! The bot definitions the SAM template ships (bots/) load the way the
//! deployed functions load them: secrets only from the environment.

use std::path::Path;

use hookline_core::config::{Purpose, Registry, Severity, check};

#[test]
fn shipped_bots_load_in_deployed_mode() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bots");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            files += 1;
            let source = std::fs::read_to_string(&path).unwrap();
            let secret = |_: &str| Some("a-deployment-secret-of-at-least-32-bytes".to_string());
            let (bot, diagnostics) = check(&path.display().to_string(), &source, Purpose::Deployed, &secret);
            assert!(bot.is_some(), "{diagnostics:?}");
            assert!(diagnostics.iter().all(|d| d.severity != Severity::Error));
        }
    }
    assert!(files > 0);
}

#[test]
fn a_folder_without_definitions_is_an_error() {
    let empty = std::env::temp_dir().join(format!("hookline-empty-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let error = Registry::load(&empty, Purpose::Deployed).err().expect("refused");
    assert!(error.to_string().contains("no bot definition files"), "{error}");
}
