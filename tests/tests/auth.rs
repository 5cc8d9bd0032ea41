//! JWT authentication and the userIdentity rules. Every refusal is a 401 in
//! the error envelope.

use hookline_tests::*;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

fn message(user: Option<&str>) -> Value {
    let mut body = json!({"message": {"type": "text", "val": "hello"}});
    if let Some(user) = user {
        body["from"] = json!({"id": user});
    }
    body
}

async fn expect_401(server: &Server, path: &str, token: &str, body: &Value) {
    let reply = server.post(path, token, body).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert_eq!(reply.error_msg(), "Invalid Access token");
}

fn b64(value: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

#[tokio::test]
async fn every_algorithm_signs_for_its_own_app() {
    let server = Server::start(Backend::Memory).await;
    let tokens = [
        sign_hs(Algorithm::HS256, HS256_SECRET, &claims("cs-hs256", "u1")),
        sign_hs(Algorithm::HS512, HS512_SECRET, &claims("cs-hs512", "u1")),
        sign_rs(Algorithm::RS256, CLIENT_RSA_PRIVATE, &claims("cs-rs256", "u1")),
        sign_rs(Algorithm::RS512, CLIENT_RSA_PRIVATE, &claims("cs-rs512", "u1")),
    ];
    for token in tokens {
        let reply = server.post(&v2_path(TEST_BOT), &token, &message(Some("u1"))).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.texts(), ["Hello there."]);
    }
}

#[tokio::test]
async fn refused_tokens() {
    let server = Server::start(Backend::Memory).await;
    let path = v2_path(TEST_BOT);
    let body = message(Some("u1"));
    let cases = [
        ("wrong key", sign_hs(Algorithm::HS256, "some-other-secret-0123456789-abcdefgh", &claims("cs-hs256", "u1"))),
        ("HS token to an RS app", sign_hs(Algorithm::HS256, HS256_SECRET, &claims("cs-rs256", "u1"))),
        ("RS token to an HS app", sign_rs(Algorithm::RS256, CLIENT_RSA_PRIVATE, &claims("cs-hs256", "u1"))),
        ("RS512 token to an RS256 app", sign_rs(Algorithm::RS512, CLIENT_RSA_PRIVATE, &claims("cs-rs256", "u1"))),
        ("HS512 token to an HS256 app", sign_hs(Algorithm::HS512, HS256_SECRET, &claims("cs-hs256", "u1"))),
        ("other private key", sign_rs(Algorithm::RS256, OTHER_RSA_PRIVATE, &claims("cs-rs256", "u1"))),
        (
            "expired",
            sign_hs(
                Algorithm::HS256,
                HS256_SECRET,
                &json!({"appId": "cs-hs256", "userIdentity": "u1", "iat": now() - 7200, "exp": now() - 3600}),
            ),
        ),
        (
            "issued in the future",
            sign_hs(
                Algorithm::HS256,
                HS256_SECRET,
                &json!({"appId": "cs-hs256", "userIdentity": "u1", "iat": now() + 3600}),
            ),
        ),
        (
            "not valid yet",
            sign_hs(
                Algorithm::HS256,
                HS256_SECRET,
                &json!({"appId": "cs-hs256", "userIdentity": "u1", "nbf": now() + 3600}),
            ),
        ),
        ("userIdentity mismatch", sign_hs(Algorithm::HS256, HS256_SECRET, &claims("cs-hs256", "someone-else"))),
        ("unknown appId", sign_hs(Algorithm::HS256, HS256_SECRET, &claims("cs-nobody", "u1"))),
        ("no appId", sign_hs(Algorithm::HS256, HS256_SECRET, &json!({"userIdentity": "u1"}))),
        ("app of another bot", sign_hs(Algorithm::HS256, OTHER_ONLY_SECRET, &claims("cs-other", "u1"))),
        ("same clientId, other bot's secret", sign_hs(Algorithm::HS256, OTHER_BOT_SECRET, &claims("cs-hs256", "u1"))),
        (
            "app not bound to this instance",
            sign_hs(Algorithm::HS256, RESTRICTED_SECRET, &claims("cs-restricted", "u1")),
        ),
        ("not a JWT", "not-a-token".to_string()),
    ];
    for (case, token) in cases {
        let reply = server.post(&path, &token, &body).await;
        assert_eq!(reply.status, 401, "{case}: {}", reply.body);
        assert_eq!(reply.error_msg(), "Invalid Access token", "{case}");
    }
}

#[tokio::test]
async fn alg_none_is_refused() {
    let server = Server::start(Backend::Memory).await;
    for alg in ["none", "None", "NONE"] {
        let token = format!("{}.{}.", b64(&json!({"alg": alg, "typ": "JWT"})), b64(&claims("cs-hs256", "u1")));
        expect_401(&server, &v2_path(TEST_BOT), &token, &message(Some("u1"))).await;
    }
}

#[tokio::test]
async fn missing_or_malformed_authorization() {
    let server = Server::start(Backend::Memory).await;
    let url = v2_path(TEST_BOT);
    let body = message(Some("u1"));
    let token = hs256_token("u1");
    let variants = [None, Some(format!("Basic {token}")), Some("bearer ".to_string()), Some(token.clone())];
    for header in variants {
        let mut request = server.request(reqwest::Method::POST, &url).json(&body);
        if let Some(header) = &header {
            request = request.header("Authorization", header);
        }
        let reply = Server::send(request).await;
        assert_eq!(reply.status, 401, "{header:?}: {}", reply.body);
        assert_eq!(reply.error_msg(), "Invalid Access token");
    }
    // The scheme is case-insensitive.
    for scheme in ["bearer", "Bearer", "BEARER"] {
        let request = server
            .request(reqwest::Method::POST, &url)
            .header("Authorization", format!("{scheme} {token}"))
            .json(&body);
        assert_eq!(Server::send(request).await.status, 200, "{scheme}");
    }
}

#[tokio::test]
async fn token_for_the_instance_that_binds_the_app() {
    let server = Server::start(Backend::Memory).await;
    let token = sign_hs(Algorithm::HS256, RESTRICTED_SECRET, &claims("cs-restricted", "u1"));
    let path = format!("{}/hookInstance/second", v2_path(TEST_BOT));
    let reply = server.post(&path, &token, &message(Some("u1"))).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[tokio::test]
async fn iss_names_the_app_when_app_id_is_absent() {
    let server = Server::start(Backend::Memory).await;
    let token =
        sign_hs(Algorithm::HS256, HS256_SECRET, &json!({"iss": "cs-hs256", "sub": "x", "userIdentity": "v1user"}));
    let body = json!({"message": {"text": "hello"}, "from": {"id": "v1user"}});
    let reply = server.post(&v1_path(TEST_BOT), &token, &body).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["text"], "Hello there.");
}

/// trust: server (an app's default, the spec's rules): the app's server
/// vouches for the user it names in from.id.
#[tokio::test]
async fn a_trusted_servers_token_without_user_identity_names_the_user_in_from_id() {
    let server = Server::start(Backend::Memory).await;
    // The spec's own token shape.
    let spec = sign_hs(Algorithm::HS256, HS256_SECRET, &json!({"appId": "cs-hs256", "sub": "1", "iat": now()}));
    let reply = server.post(&v2_path(TEST_BOT), &spec, &message(Some("u-spec"))).await;
    assert_eq!((reply.status, reply.body["to"].clone()), (200, json!("u-spec")), "{}", reply.body);
    // A v1 client's: the app in iss, an audience, isAnonymous, no userIdentity.
    let v1 = sign_hs(
        Algorithm::HS256,
        HS256_SECRET,
        &json!({"iss": "cs-hs256", "aud": "https://idproxy.kore.com/authorize", "sub": "u-v1",
                "isAnonymous": false, "iat": now(), "exp": now() + 600}),
    );
    let body = json!({"message": {"text": "hello"}, "from": {"id": "u-v1"}});
    let reply = server.post(&v1_path(TEST_BOT), &v1, &body).await;
    assert_eq!((reply.status, reply.body["text"].clone()), (200, json!("Hello there.")), "{}", reply.body);
    // With userIdentity, it must be from.id.
    expect_401(&server, &v2_path(TEST_BOT), &hs256_token("u1"), &message(Some("u2"))).await;
    // The user must be named somewhere.
    let reply = server.post(&v2_path(TEST_BOT), &spec, &message(None)).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.error_msg(), "Invalid Request Payload");
}

/// trust: perUser: every token names its user.
#[tokio::test]
async fn a_per_user_apps_tokens_must_name_the_user() {
    let server = Server::start(Backend::Memory).await;
    let path = format!("{}/hookInstance/second", v2_path(TEST_BOT));
    let sign = |claims: Value| sign_hs(Algorithm::HS256, RESTRICTED_SECRET, &claims);
    expect_401(&server, &path, &sign(json!({"appId": "cs-restricted", "sub": "1"})), &message(Some("u1"))).await;
    expect_401(&server, &path, &sign(claims("cs-restricted", "u1")), &message(Some("u2"))).await;
    // from.id absent: userIdentity is the user.
    let reply = server.post(&path, &sign(claims("cs-restricted", "u1")), &message(None)).await;
    assert_eq!((reply.status, reply.body["to"].clone()), (200, json!("u1")), "{}", reply.body);
}

/// trust: anonymous: tokens handed to browsers; the app's users are its own.
#[tokio::test]
async fn user_identity_rules_with_anonymous_users() {
    let server = Server::start(Backend::Memory).await;
    let path = v2_path(TEST_BOT);
    let sign = |claims: Value| sign_hs(Algorithm::HS256, ANON_SECRET, &claims);

    // userIdentity absent: from.id is the user.
    let token = sign(json!({"appId": "cs-anon", "sub": "1"}));
    let reply = server.post(&path, &token, &message(Some("from-user"))).await;
    assert_eq!((reply.status, reply.body["to"].clone()), (200, json!("from-user")));

    // from.id absent: userIdentity is the user.
    let token = sign(json!({"appId": "cs-anon", "userIdentity": "token-user"}));
    let reply = server.post(&path, &token, &message(None)).await;
    assert_eq!((reply.status, reply.body["to"].clone()), (200, json!("token-user")));

    // Present and different: still refused.
    let token = sign(json!({"appId": "cs-anon", "userIdentity": "token-user"}));
    expect_401(&server, &path, &token, &message(Some("from-user"))).await;

    // Neither: a fresh anonymous user, told in `to`.
    let token = sign(json!({"appId": "cs-anon"}));
    let first = server.post(&path, &token, &message(None)).await;
    let second = server.post(&path, &token, &message(None)).await;
    let (a, b) = (first.body["to"].as_str().unwrap(), second.body["to"].as_str().unwrap());
    assert!(a.starts_with("anonymous-") && b.starts_with("anonymous-") && a != b, "{a} {b}");
}

#[tokio::test]
async fn botmeta_answers_name_and_icon_to_the_bots_apps_only() {
    let server = Server::start(Backend::Memory).await;
    let get = |bot: &str, token: String| {
        Server::send(
            server
                .request(reqwest::Method::GET, &format!("/api/botmeta/{bot}"))
                .header("Authorization", format!("bearer {token}"))
                .header("Content-Type", "application/json"),
        )
    };
    let reply = get(TEST_BOT, hs256_token("u1")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, json!({"name": "Test Bot", "icon": "https://example.com/test-bot.png"}));

    let foreign = sign_hs(Algorithm::HS256, OTHER_ONLY_SECRET, &claims("cs-other", "u1"));
    let reply = get(TEST_BOT, foreign).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.error_msg(), "Invalid Access token");
    let reply = get("st-missing", hs256_token("u1")).await;
    assert_eq!(reply.status, 404);
}

/// A bot without an icon of its own gets one the server draws, addressed as
/// the client reached the server, so a chat window never shows a broken image.
#[tokio::test]
async fn a_bot_without_an_icon_gets_one_the_server_draws() {
    let server = Server::start(Backend::Memory).await;
    let token = sign_hs(Algorithm::HS256, OTHER_ONLY_SECRET, &claims("cs-other", "u1"));
    let botmeta = |proto: Option<&'static str>| {
        let mut request = server
            .request(reqwest::Method::GET, &format!("/api/botmeta/{OTHER_BOT}"))
            .header("Authorization", format!("bearer {token}"));
        if let Some(proto) = proto {
            request = request.header("X-Forwarded-Proto", proto);
        }
        Server::send(request)
    };
    let reply = botmeta(None).await;
    let icon = reply.body["icon"].as_str().unwrap().to_string();
    assert_eq!(icon, format!("{}/api/botmeta/{OTHER_BOT}/icon", server.base));
    let behind_https = botmeta(Some("https")).await;
    assert_eq!(behind_https.body["icon"], icon.replace("http://", "https://"));

    // An <img> sends no token.
    let image = reqwest::get(&icon).await.unwrap();
    assert_eq!(image.status(), 200);
    assert_eq!(image.headers()["content-type"], "image/svg+xml");
    let svg = image.text().await.unwrap();
    assert!(svg.starts_with("<svg") && svg.contains(">O</text>"), "{svg}");
    let missing = reqwest::get(format!("{}/api/botmeta/st-missing/icon", server.base)).await.unwrap();
    assert_eq!(missing.status(), 404);
}

const STRICT_SECRET: &str = "test-strict-secret-0123456789-abcdefgh";

/// An app's own token rules: an expected audience, a maximum age, and
/// tokens used once (a jti seen before is refused, on either store).
async fn an_apps_token_rules(backend: Backend) {
    let server = Server::start_on(backend, registry(), hookline_core::process::Settings::default()).await;
    let path = v2_path(TEST_BOT);
    let jti = |n: &str| format!("{n}-{}", now());
    let strict = |patch: Value| {
        let mut claims = json!({"appId": "cs-strict", "userIdentity": "u1", "aud": "https://hookline.example/webhook",
                                "iat": now(), "exp": now() + 60, "jti": jti("a")});
        for (k, v) in patch.as_object().unwrap() {
            match v {
                Value::Null => claims.as_object_mut().unwrap().remove(k),
                v => claims.as_object_mut().unwrap().insert(k.clone(), v.clone()),
            };
        }
        sign_hs(Algorithm::HS256, STRICT_SECRET, &claims)
    };
    let ok = strict(json!({"jti": jti("ok")}));
    assert_eq!(server.post(&path, &ok, &message(Some("u1"))).await.status, 200);
    // The same token again: used.
    expect_401(&server, &path, &ok, &message(Some("u1"))).await;
    let listed =
        strict(json!({"jti": jti("list"), "aud": ["https://other.example", "https://hookline.example/webhook"]}));
    assert_eq!(server.post(&path, &listed, &message(Some("u1"))).await.status, 200);
    for (case, token) in [
        ("no aud", strict(json!({"jti": jti("b"), "aud": null}))),
        ("another aud", strict(json!({"jti": jti("c"), "aud": "https://other.example"}))),
        ("no exp", strict(json!({"jti": jti("d"), "exp": null}))),
        ("no jti", strict(json!({"jti": null}))),
        ("no iat", strict(json!({"jti": jti("e"), "iat": null}))),
        ("too old", strict(json!({"jti": jti("f"), "iat": now() - 3600}))),
    ] {
        let reply = server.post(&path, &token, &message(Some("u1"))).await;
        assert_eq!(reply.status, 401, "{case}: {}", reply.body);
    }
}

on_both_stores!(an_apps_token_rules);

/// A `crit` header names extensions that must be understood (RFC 7515); none are.
#[tokio::test]
async fn a_token_with_critical_extensions_is_refused() {
    let server = Server::start(Backend::Memory).await;
    let signed = |header: Value| {
        let input = format!("{}.{}", b64(&header), b64(&claims("cs-hs256", "u1")));
        let key = jsonwebtoken::EncodingKey::from_secret(HS256_SECRET.as_bytes());
        let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::HS256).unwrap();
        format!("{input}.{signature}")
    };
    let plain = signed(json!({"alg": "HS256", "typ": "JWT"}));
    assert_eq!(server.post(&v2_path(TEST_BOT), &plain, &message(Some("u1"))).await.status, 200);
    let critical = signed(json!({"alg": "HS256", "typ": "JWT", "crit": ["b64"], "b64": false}));
    expect_401(&server, &v2_path(TEST_BOT), &critical, &message(Some("u1"))).await;
}
