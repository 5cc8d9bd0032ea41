//! Identifiers: the key of a conversation, and the ids handed to clients
//! (random, URL-safe, unguessable).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Identifies one user's conversation with one bot (tenant isolation: every
/// read and write is keyed by all of it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationKey {
    pub bot_id: String,
    /// The user as the client names them (`from.id` or userIdentity).
    pub user_id: String,
    /// The app whose users are its own (`trust: anonymous`), or `None` for
    /// the users the bot's other apps share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
}

impl ConversationKey {
    /// A user the bot's apps share.
    pub fn new(bot_id: impl Into<String>, user_id: impl Into<String>) -> Self {
        Self { bot_id: bot_id.into(), user_id: user_id.into(), app: None }
    }

    /// The same user id, among `app`'s own users when it is given.
    pub fn in_app(self, app: Option<String>) -> Self {
        Self { app, ..self }
    }

    /// 16 hex digits of SHA-256 over the whole key: for ids that must
    /// differ between conversations.
    pub fn fingerprint(&self) -> String {
        let input = serde_json::json!([self.bot_id, self.app, self.user_id]).to_string();
        let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, input.as_bytes());
        hash.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A random (version 4) UUID from the thread's generator, a CSPRNG seeded
/// from the system: a turn makes several, and `Uuid::new_v4` asks the kernel
/// for each.
pub fn random_uuid() -> Uuid {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid()
}

/// `ms-<uuid>`: unique per bot (random 122 bits), URL-safe.
pub fn message_id() -> String {
    format!("ms-{}", random_uuid())
}

/// Trace id returned in `_t`, the `x-trace-id` header and every log line.
pub fn trace_id() -> String {
    format!("tr-{}", random_uuid().simple())
}

/// Identifier of one conversation session.
pub fn session_id() -> String {
    format!("se-{}", random_uuid().simple())
}

/// User id given to an anonymous caller that sent neither from.id nor a userIdentity.
pub fn anonymous_user_id() -> String {
    format!("anonymous-{}", random_uuid().simple())
}

/// A pollId: 32 hex digits like the spec's samples, 122 of its bits random.
pub fn poll_id() -> String {
    random_uuid().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_uuids_are_version_4_and_differ() {
        let (a, b) = (random_uuid(), random_uuid());
        assert_eq!((a.get_version_num(), a.get_variant()), (4, uuid::Variant::RFC4122));
        assert_ne!(a, b);
        assert_eq!(poll_id().len(), 32);
    }
}
