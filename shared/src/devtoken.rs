//! Tokens for local development (`hookline token`, the ready-made curl of
//! `hookline serve`), signed the way a messaging system would sign them.

use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;

use crate::config::{Algorithm, BotDefinition, SecretSource};

/// Signs `{appId, sub, userIdentity, iat, exp}` for `user` with the app's key.
/// RS apps need the client's private key, which the definition never holds.
pub fn sign(
    bot: &BotDefinition,
    client_id: Option<&str>,
    user: &str,
    ttl_secs: i64,
    private_key_pem: Option<&str>,
) -> Result<String, String> {
    let app = match client_id {
        Some(id) => bot.apps.iter().find(|a| a.client_id == id),
        None => bot.apps.first(),
    }
    .ok_or_else(|| format!("bot {} has no app {}", bot.id, client_id.unwrap_or("")))?;
    let (algorithm, key) = match (app.algorithm, &app.secret, private_key_pem) {
        (Algorithm::HS256 | Algorithm::HS512, Some(secret), _) => {
            let secret = match secret {
                SecretSource::Literal { value } => value.clone(),
                SecretSource::Env { env } => {
                    std::env::var(env).map_err(|_| format!("environment variable {env} is not set"))?
                }
            };
            (app.algorithm, EncodingKey::from_secret(secret.as_bytes()))
        }
        (Algorithm::RS256 | Algorithm::RS512, _, Some(pem)) => {
            let key = EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| format!("private key: {e}"))?;
            (app.algorithm, key)
        }
        (Algorithm::RS256 | Algorithm::RS512, _, None) => {
            return Err(format!("app {} signs with {:?}: pass its private key", app.client_id, app.algorithm));
        }
        _ => return Err(format!("app {} has no secret", app.client_id)),
    };
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "appId": app.client_id,
        "sub": user,
        "userIdentity": user,
        "iat": now,
        "exp": now + ttl_secs,
    });
    encode(&Header::new(algorithm.into()), &claims, &key).map_err(|e| e.to_string())
}
