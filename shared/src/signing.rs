//! Standard Webhooks signatures (standardwebhooks.com): every outbound POST
//! carries `webhook-id` (the same across retries), `webhook-timestamp` and
//! `webhook-signature`, one `v1,<base64 HMAC-SHA256>` per secret so receivers
//! keep verifying while a secret is rotated. `verify` is the receiver's side
//! (`hookline listen`).

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// A signing secret, `whsec_` followed by base64 of its bytes.
#[derive(Clone)]
pub struct SigningKey(hmac::Key);

impl SigningKey {
    pub fn parse(secret: &str) -> Result<Self, String> {
        let encoded = secret.strip_prefix("whsec_").ok_or("a signing secret starts with whsec_")?;
        let bytes = STANDARD.decode(encoded).map_err(|_| "a signing secret is whsec_ followed by base64")?;
        if bytes.len() < 24 {
            return Err("a signing secret holds at least 24 bytes".into());
        }
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, &bytes)))
    }
}

/// The headers for `body`: `webhook-id` and `webhook-timestamp` always (a
/// receiver drops duplicates by id), `webhook-signature` with every key when
/// there are keys.
pub fn headers(keys: &[SigningKey], webhook_id: &str, timestamp: i64, body: &[u8]) -> Vec<(String, String)> {
    let mut headers =
        vec![("webhook-id".into(), webhook_id.into()), ("webhook-timestamp".into(), timestamp.to_string())];
    if !keys.is_empty() {
        let mut signed = format!("{webhook_id}.{timestamp}.").into_bytes();
        signed.extend_from_slice(body);
        let signatures: Vec<String> =
            keys.iter().map(|key| format!("v1,{}", STANDARD.encode(hmac::sign(&key.0, &signed).as_ref()))).collect();
        headers.push(("webhook-signature".into(), signatures.join(" ")));
    }
    headers
}

/// How far a `webhook-timestamp` may be from the receiver's clock, as
/// Standard Webhooks recommends: older deliveries may be replays.
pub const TOLERANCE_SECS: i64 = 5 * 60;

/// Why a delivery is not verified.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unverified {
    #[error("no {0} header")]
    Missing(&'static str),
    #[error("webhook-timestamp {0} is not within 5 minutes of now")]
    Timestamp(String),
    #[error("no signature matches the secret")]
    Signature,
}

/// Checks a delivery as a receiver does: the timestamp within
/// [`TOLERANCE_SECS`] of `now` and one of the `v1,` signatures (space
/// separated) made by one of `keys` over `id.timestamp.body`.
pub fn verify(
    keys: &[SigningKey],
    webhook_id: Option<&str>,
    timestamp: Option<&str>,
    signatures: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), Unverified> {
    let webhook_id = webhook_id.ok_or(Unverified::Missing("webhook-id"))?;
    let timestamp = timestamp.ok_or(Unverified::Missing("webhook-timestamp"))?;
    let signatures = signatures.ok_or(Unverified::Missing("webhook-signature"))?;
    match timestamp.parse::<i64>() {
        Ok(sent) if now.abs_diff(sent) <= TOLERANCE_SECS.unsigned_abs() => {}
        _ => return Err(Unverified::Timestamp(timestamp.into())),
    }
    let mut signed = format!("{webhook_id}.{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    let tags = signatures.split(' ').filter_map(|s| s.strip_prefix("v1,")).filter_map(|s| STANDARD.decode(s).ok());
    let matches = |tag: &[u8]| keys.iter().any(|key| hmac::verify(&key.0, &signed, tag).is_ok());
    tags.into_iter().any(|tag| matches(&tag)).then_some(()).ok_or(Unverified::Signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_specification_example() {
        // The example of the Standard Webhooks specification.
        let key = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let headers = headers(&[key], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(headers[2].1, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn a_receiver_verifies_what_headers_signs() {
        let key = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let (id, body, sent) = ("msg_p5jXN8AQM9LWM0D4loKWxJek", br#"{"test": 2432232314}"#, 1614265330);
        let check = |keys: &[SigningKey], timestamp: &str, signature: &str, body: &[u8], now: i64| {
            verify(keys, Some(id), Some(timestamp), Some(signature), body, now)
        };
        let spec = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert_eq!(check(std::slice::from_ref(&key), "1614265330", spec, body, sent + 10), Ok(()));
        let other = SigningKey::parse("whsec_aG9va2xpbmUtdGVzdC1zaWduaW5nLXNlY3JldC0zMmIh").unwrap();
        let rotating = format!("v1,bm90IGl0 {spec}");
        assert_eq!(
            check(&[other.clone(), key.clone()], "1614265330", &rotating, body, sent),
            Ok(()),
            "any key, any signature"
        );
        assert_eq!(check(&[other], "1614265330", spec, body, sent), Err(Unverified::Signature));
        assert_eq!(check(std::slice::from_ref(&key), "1614265330", spec, b"{}", sent), Err(Unverified::Signature));
        let stale = check(std::slice::from_ref(&key), "1614265330", spec, body, sent + TOLERANCE_SECS + 1);
        assert_eq!(stale, Err(Unverified::Timestamp("1614265330".into())));
        let missing = verify(&[key], Some(id), Some("1614265330"), None, body, sent);
        assert_eq!(missing, Err(Unverified::Missing("webhook-signature")));
    }

    #[test]
    fn secrets_must_be_well_formed() {
        assert!(SigningKey::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(SigningKey::parse("whsec_!!!").is_err());
        assert!(SigningKey::parse("whsec_c2hvcnQ=").is_err());
    }
}
