//! Text helpers shared by the bot definitions (checked at load) and the
//! engine (applied per turn): trigger matching, `{{ path }}` templates, and
//! the length of a value's JSON text.

pub mod matcher;
pub mod template;

use serde::Serialize;

/// A record's size as JSON, as the table bounds items, counted without
/// keeping the text (`usize::MAX` for what cannot be serialised).
pub fn json_len<T: Serialize + ?Sized>(value: &T) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    serde_json::to_writer(&mut counter, value).map_or(usize::MAX, |()| counter.0)
}
