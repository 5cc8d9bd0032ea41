//! JWT authentication of Webhook channel callers and the userIdentity rules.
//!
//! The algorithm is the app's, from the bot definition; the token header only
//! has to agree with it. `alg: none` and every algorithm other than the app's
//! are refused.

pub mod dev_token;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Validation, decode};
use serde::Deserialize;
use serde_json::Value;

use crate::definition::{AppKey, Bot};
use crate::error::{Error, Result};

/// Clock skew tolerated on exp, nbf and iat, in seconds.
pub const LEEWAY_SECS: u64 = 60;
/// Longest user id (from.id or userIdentity); it is part of storage keys.
pub const MAX_USER_ID_CHARS: usize = 256;

#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default, rename = "appId")]
    app_id: Option<String>,
    #[serde(default)]
    iss: Option<String>,
    #[serde(default, rename = "userIdentity")]
    user_identity: Option<Value>,
    #[serde(default)]
    iat: Option<i64>,
}

impl Claims {
    /// Some v1 clients sign with the clientId in `iss` instead of `appId`.
    fn client_id(&self) -> Option<&str> {
        self.app_id.as_deref().or(self.iss.as_deref())
    }
}

/// A verified caller: the app that signed, and the user the token names.
pub struct Caller<'b> {
    pub app: &'b AppKey,
    pub user_identity: Option<String>,
}

fn unauthorized(reason: impl Into<String>) -> Error {
    Error::Unauthorized(reason.into())
}

/// The app a token claims to be from, before any check: only to pick the
/// bot whose key then verifies it.
pub fn unverified_app_id(token: &str) -> Result<String> {
    let unverified: Claims =
        jsonwebtoken::dangerous::insecure_decode_claims(token).map_err(|_| unauthorized("malformed token"))?;
    unverified.client_id().map(String::from).ok_or_else(|| unauthorized("token names no appId"))
}

/// Verifies `token` for `bot`, accepting only the apps in `allowed`.
pub fn authenticate<'b>(bot: &'b Bot, allowed: &[String], token: &str, now_secs: i64) -> Result<Caller<'b>> {
    let client_id = unverified_app_id(token)?;
    let app = bot
        .app(&client_id)
        .filter(|_| allowed.contains(&client_id))
        .ok_or_else(|| unauthorized("the token's app may not call this bot"))?;

    let mut validation = Validation::new(app.algorithm);
    validation.leeway = LEEWAY_SECS;
    // The spec's own token has no exp: check exp and nbf when present.
    validation.required_spec_claims.clear();
    validation.validate_aud = false;
    validation.validate_nbf = true;
    let claims = decode::<Claims>(token, &app.key, &validation)
        .map_err(|e| {
            unauthorized(match e.kind() {
                ErrorKind::ExpiredSignature => "token expired",
                ErrorKind::ImmatureSignature => "token not valid yet",
                ErrorKind::InvalidAlgorithm => "algorithm not accepted for this app",
                ErrorKind::InvalidSignature => "signature does not verify",
                _ => "malformed token",
            })
        })?
        .claims;
    if claims.iat.is_some_and(|iat| iat > now_secs + LEEWAY_SECS as i64) {
        return Err(unauthorized("token issued in the future"));
    }
    let user_identity = match claims.user_identity {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) if s.chars().count() <= MAX_USER_ID_CHARS => Some(s),
        Some(_) => {
            return Err(unauthorized(format!(
                "userIdentity must be a string of at most {MAX_USER_ID_CHARS} characters"
            )));
        }
    };
    Ok(Caller { app, user_identity })
}

/// Who the user is, by the spec's rules: userIdentity absent -> from.id;
/// present and equal -> fine; present and different -> 401. Without the app's
/// allowAnonymous, both must be given.
pub fn resolve_user(caller: &Caller<'_>, from_id: Option<&str>) -> Result<Option<String>> {
    let anonymous = caller.app.allow_anonymous;
    match (caller.user_identity.as_deref(), from_id) {
        (Some(identity), Some(from)) if identity != from => Err(unauthorized("userIdentity does not match from.id")),
        (Some(identity), _) if anonymous => Ok(Some(identity.to_string())),
        (Some(identity), Some(_)) => Ok(Some(identity.to_string())),
        (Some(_), None) => Err(Error::InvalidPayload("from.id is required".into())),
        (None, _) if !anonymous => {
            Err(unauthorized("token has no userIdentity and the app does not allow anonymous users"))
        }
        (None, from) => Ok(from.map(String::from)),
    }
}
