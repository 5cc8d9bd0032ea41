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

use crate::definition::{AppKey, Bot, Trust};
use crate::error::{Error, Result};
use crate::ids::{self, ConversationKey};

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
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    aud: Option<Value>,
    #[serde(default)]
    jti: Option<Value>,
    #[serde(default, rename = "mergeFrom")]
    merge_from: Option<Value>,
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
    /// For an app whose tokens are used once: the token's id, and until when
    /// it must be remembered.
    pub single_use: Option<(String, i64)>,
    /// The `mergeFrom` claim as signed: read only when a message asks to
    /// merge (see [`merge_source`]).
    pub merge_from: Option<Value>,
}

/// The `mergeFrom` claim: the user (of an app of the bot) whose conversation
/// the token's user continues.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MergeFrom {
    app_id: String,
    user_id: String,
}

/// Longest `jti` remembered.
const MAX_JTI_CHARS: usize = 256;

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
    refuse_critical_extensions(token)?;
    let app = bot
        .app(&client_id)
        .filter(|_| allowed.contains(&client_id))
        .ok_or_else(|| unauthorized("the token's app may not call this bot"))?;

    let mut validation = Validation::new(app.algorithm);
    validation.leeway = LEEWAY_SECS;
    // The spec's own token has no exp: check exp and nbf when present.
    validation.required_spec_claims.clear();
    // The audience is the app's to require (below); by default any is accepted.
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
    let leeway = LEEWAY_SECS as i64;
    if claims.iat.is_some_and(|iat| iat > now_secs.saturating_add(leeway)) {
        return Err(unauthorized("token issued in the future"));
    }
    if let Some(audience) = &app.audience
        && !names(claims.aud.as_ref(), audience)
    {
        return Err(unauthorized("the token's aud is not this app's audience"));
    }
    if app.require_exp && claims.exp.is_none() {
        return Err(unauthorized("the app's tokens must carry exp"));
    }
    if let Some(max_age) = app.max_token_age_secs {
        match claims.iat {
            None => return Err(unauthorized("the app's tokens must carry iat")),
            Some(iat) if now_secs.saturating_sub(iat) > (max_age as i64).saturating_add(leeway) => {
                return Err(unauthorized("token older than the app accepts"));
            }
            Some(_) => {}
        }
    }
    let single_use = match (app.single_use, &claims.jti, claims.exp) {
        (false, ..) => None,
        (true, Some(Value::String(jti)), Some(exp)) if !jti.is_empty() && jti.chars().count() <= MAX_JTI_CHARS => {
            Some((jti.clone(), exp.saturating_add(leeway)))
        }
        (true, ..) => return Err(unauthorized("the app's tokens are used once: each needs a jti (and exp)")),
    };
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
    Ok(Caller { app, user_identity, single_use, merge_from: claims.merge_from })
}

/// A `crit` header names extensions the recipient must understand (RFC 7515,
/// 4.1.11); Hookline understands none, so a token that has one is refused.
fn refuse_critical_extensions(token: &str) -> Result<()> {
    use base64::Engine;
    let header = token.split('.').next().unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .map_err(|_| unauthorized("malformed token"))?;
    let header: Value = serde_json::from_slice(&bytes).map_err(|_| unauthorized("malformed token"))?;
    match header.get("crit") {
        Some(_) => Err(unauthorized("the token's crit header names extensions this server does not understand")),
        None => Ok(()),
    }
}

/// Whether an `aud` claim (a string or a list of them) names `audience`.
fn names(aud: Option<&Value>, audience: &str) -> bool {
    match aud {
        Some(Value::String(aud)) => aud == audience,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(audience)),
        _ => false,
    }
}

/// Who the user of a message is, by the app's trust (the spec's rules for
/// `trust: server`, its default): `from.id`, or the userIdentity it must
/// equal; an anonymous app's users are its own.
pub fn resolve_user(bot: &Bot, caller: &Caller<'_>, from_id: Option<&str>) -> Result<ConversationKey> {
    let identity = caller.user_identity.as_deref();
    if let (Some(identity), Some(from)) = (identity, from_id)
        && identity != from
    {
        return Err(unauthorized("userIdentity does not match from.id"));
    }
    let user = match (caller.app.trust, identity.or(from_id)) {
        (Trust::PerUser, _) if identity.is_none() => {
            return Err(unauthorized("the app's tokens must name the user in userIdentity (trust: perUser)"));
        }
        (Trust::Anonymous, None) => ids::anonymous_user_id(),
        (_, Some(user)) => user.to_string(),
        (_, None) => return Err(Error::InvalidPayload("from.id is required".into())),
    };
    Ok(ConversationKey::new(bot.id(), user).in_app(own_users(caller)))
}

/// The user a token names on its own, for requests without `from.id`
/// (uploads): its userIdentity, or `None` for a token that names nobody,
/// which only a trusted server's or an anonymous app's may be.
pub fn token_user(caller: &Caller<'_>) -> Result<Option<String>> {
    if caller.app.trust == Trust::PerUser && caller.user_identity.is_none() {
        return Err(unauthorized("the app's tokens must name the user in userIdentity (trust: perUser)"));
    }
    Ok(caller.user_identity.clone())
}

/// `mergeIdentity`: the conversation the caller's user continues, when the
/// message asks to merge and the token names one in `mergeFrom`. Only a token
/// that proves its user (not an anonymous app's) may merge, and only a user
/// of an app of the bot: the token's signer vouches for both sides.
pub fn merge_source(bot: &Bot, caller: &Caller<'_>, requested: bool) -> Result<Option<ConversationKey>> {
    let Some(claim) = caller.merge_from.clone().filter(|claim| requested && !claim.is_null()) else {
        return Ok(None);
    };
    let from = match serde_json::from_value::<MergeFrom>(claim) {
        Ok(from) if !from.user_id.is_empty() && from.user_id.chars().count() <= MAX_USER_ID_CHARS => from,
        _ => {
            let detail = format!(
                "mergeFrom must be {{\"appId\", \"userId\"}}, the user a string of at most {MAX_USER_ID_CHARS} characters"
            );
            return Err(unauthorized(detail));
        }
    };
    if caller.app.trust == Trust::Anonymous {
        return Err(unauthorized("an anonymous app's token proves no user: it cannot merge conversations"));
    }
    let app = bot.app(&from.app_id).ok_or_else(|| unauthorized("mergeFrom names no app of this bot"))?;
    let own = (app.trust == Trust::Anonymous).then(|| app.client_id.clone());
    Ok(Some(ConversationKey::new(bot.id(), from.user_id.clone()).in_app(own)))
}

/// The app whose users are its own (`trust: anonymous`), if the caller's is one.
pub fn own_users(caller: &Caller<'_>) -> Option<String> {
    (caller.app.trust == Trust::Anonymous).then(|| caller.app.client_id.clone())
}
