//! Tokens for local development (`hookline token`, the ready-made curl of
//! `hookline serve`), signed the way a messaging system would sign them.

use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;

use crate::definition::{Algorithm, BotDefinition, SecretSource};

/// Why a development token could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum DevTokenError {
    #[error("bot {bot} has no app {client_id}")]
    NoApp { bot: String, client_id: String },
    #[error("app {0} has no secret")]
    NoSecret(String),
    #[error("environment variable {0} is not set")]
    MissingVariable(String),
    #[error("app {client_id} signs with {algorithm:?}: pass its private key")]
    NeedsPrivateKey { client_id: String, algorithm: Algorithm },
    #[error("private key: {0}")]
    PrivateKey(jsonwebtoken::errors::Error),
    #[error("signing: {0}")]
    Signing(jsonwebtoken::errors::Error),
}

/// Signs `{appId, sub, userIdentity, iat, exp}` for `user` with the app's key.
/// RS apps need the client's private key, which the definition never holds.
pub fn sign(
    bot: &BotDefinition,
    client_id: Option<&str>,
    user: &str,
    ttl_secs: i64,
    private_key_pem: Option<&str>,
) -> Result<String, DevTokenError> {
    let app = match client_id {
        Some(id) => bot.apps.iter().find(|a| a.client_id == id),
        None => bot.apps.first(),
    }
    .ok_or_else(|| DevTokenError::NoApp { bot: bot.id.clone(), client_id: client_id.unwrap_or("").into() })?;
    let (algorithm, key) = match (app.algorithm, &app.secret, private_key_pem) {
        (Algorithm::HS256 | Algorithm::HS512, Some(secret), _) => {
            let secret = match secret {
                SecretSource::Literal { value } => value.clone(),
                SecretSource::Env { env } => {
                    std::env::var(env).map_err(|_| DevTokenError::MissingVariable(env.clone()))?
                }
            };
            (app.algorithm, EncodingKey::from_secret(secret.as_bytes()))
        }
        (Algorithm::RS256 | Algorithm::RS512, _, Some(pem)) => {
            let key = EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(DevTokenError::PrivateKey)?;
            (app.algorithm, key)
        }
        (Algorithm::RS256 | Algorithm::RS512, _, None) => {
            let (client_id, algorithm) = (app.client_id.clone(), app.algorithm);
            return Err(DevTokenError::NeedsPrivateKey { client_id, algorithm });
        }
        _ => return Err(DevTokenError::NoSecret(app.client_id.clone())),
    };
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "appId": app.client_id,
        "sub": user,
        "userIdentity": user,
        "iat": now,
        "exp": now + ttl_secs,
    });
    encode(&Header::new(algorithm.into()), &claims, &key).map_err(DevTokenError::Signing)
}
