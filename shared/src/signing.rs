//! Standard Webhooks signatures (standardwebhooks.com): every outbound POST
//! carries `webhook-id` (the same across retries), `webhook-timestamp` and
//! `webhook-signature`, one `v1,<base64 HMAC-SHA256>` per secret so receivers
//! keep verifying while a secret is rotated.

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
    fn secrets_must_be_well_formed() {
        assert!(SigningKey::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(SigningKey::parse("whsec_!!!").is_err());
        assert!(SigningKey::parse("whsec_c2hvcnQ=").is_err());
    }
}
