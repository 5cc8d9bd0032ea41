//! Isolation of per-user state: every ordered pair of callers ("realms")
//! against every kind of state a user has (the conversation's context, user
//! info and user tags; poll answers; files; upload tokens; chat history), on
//! memory and on DynamoDB with SQS and S3. The bot's shared users, reached
//! through a `trust: server` app or a `trust: perUser` app, are one user; an
//! anonymous app's users, and another bot's, are kept apart from everyone
//! else's, even for the same from.id, in both directions.
//!
//! The cases run concurrently, each pair on a user id of its own (the same
//! from.id for both callers of the pair), and every failing case is
//! reported, not only the first. One server per kind of state and store: on
//! DynamoDB, each on a table of its own, as the emulator copies the whole
//! table for every transaction (one table for all the cases took three times
//! as long).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hookline_core::process::Settings;
use hookline_tests::*;
use jsonwebtoken::Algorithm;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

const BOT: &str = "st-isolation";
/// The same definition under another id, with the same clientIds and other secrets.
const TWIN: &str = "st-isolation-twin";
const FALLBACK: &str = "Sorry, I did not get that.";
const NO_SUCH_FILE: &str = "message.attachments[0].fileId: no such file for this bot";
const NO_SUCH_UPLOAD: &str = "no upload with this fileToken; request a new one";
/// Cases running at once: enough to keep the run short, few enough for the emulator.
const CONCURRENT_CASES: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trust {
    Server,
    PerUser,
    Anonymous,
}

/// Whether a token names its user (userIdentity equal to from.id) or no one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Names {
    User,
    NoOne,
}

/// One way of reaching a bot's users: an app of a bot, signing as its trust allows.
#[derive(Debug, Clone, Copy)]
struct Realm {
    name: &'static str,
    bot: &'static str,
    app: &'static str,
    secret: &'static str,
    trust: Trust,
}

const REALMS: [Realm; 6] = [
    Realm {
        name: "server",
        bot: BOT,
        app: "cs-server",
        secret: "isolation-server-secret-0123456789-abcdef",
        trust: Trust::Server,
    },
    Realm {
        name: "per-user",
        bot: BOT,
        app: "cs-per-user",
        secret: "isolation-per-user-secret-0123456789-abcdef",
        trust: Trust::PerUser,
    },
    Realm {
        name: "web-a",
        bot: BOT,
        app: "cs-web-a",
        secret: "isolation-web-a-secret-0123456789-abcdef",
        trust: Trust::Anonymous,
    },
    Realm {
        name: "web-b",
        bot: BOT,
        app: "cs-web-b",
        secret: "isolation-web-b-secret-0123456789-abcdef",
        trust: Trust::Anonymous,
    },
    // Another bot, through an app with the same clientId as the first realm's.
    Realm {
        name: "twin-server",
        bot: TWIN,
        app: "cs-server",
        secret: "isolation-server-twin-secret-0123456789-abcdef",
        trust: Trust::Server,
    },
    // Another bot's anonymous app, with the same clientId as the third realm's.
    Realm {
        name: "twin-web-a",
        bot: TWIN,
        app: "cs-web-a",
        secret: "isolation-web-a-twin-secret-0123456789-abcdef",
        trust: Trust::Anonymous,
    },
];

impl Realm {
    /// Whose users it reaches: its bot's shared users, or its anonymous app's own.
    fn users(&self) -> (&'static str, Option<&'static str>) {
        (self.bot, (self.trust == Trust::Anonymous).then_some(self.app))
    }

    fn sign(&self, names: Names, user: &str) -> String {
        let mut claims = json!({"appId": self.app, "sub": "isolation", "iat": now(), "exp": now() + 600});
        if names == Names::User {
            claims["userIdentity"] = json!(user);
        }
        sign_hs(Algorithm::HS256, self.secret, &claims)
    }

    /// Every token it can sign for `user`: a perUser app's all name the user.
    fn tokens(&self, user: &str) -> Vec<(Names, String)> {
        let kinds = if self.trust == Trust::PerUser { vec![Names::User] } else { vec![Names::NoOne, Names::User] };
        kinds.into_iter().map(|names| (names, self.sign(names, user))).collect()
    }

    /// The token it usually sends: a server's and a browser's name no one
    /// (from.id does), a perUser app's names the user.
    fn usual_token(&self, user: &str) -> String {
        self.sign(if self.trust == Trust::PerUser { Names::User } else { Names::NoOne }, user)
    }

    fn webhook_path(&self, instance: &str) -> String {
        format!("/chatbot/v2/webhook/{}/hookInstance/{instance}", self.bot)
    }

    /// Through an instance's URL, or (`None`) the bare one, which is the first v2 instance's (a).
    fn poll_path(&self, instance: Option<&str>, poll_id: &str) -> String {
        match instance {
            Some(instance) => format!("{}/poll/{poll_id}", self.webhook_path(instance)),
            None => format!("/chatbot/v2/webhook/{}/poll/{poll_id}", self.bot),
        }
    }

    fn history_path(&self) -> String {
        format!("/api/chathistory/{}/webhook?limit=100", self.bot)
    }

    fn upload_token_path(&self) -> String {
        format!("/api/attachments/{}/rtm/token", self.bot)
    }
}

/// An ordered pair of different realms: B tries to reach what A holds.
#[derive(Debug, Clone, Copy)]
struct Pair {
    a: Realm,
    b: Realm,
}

impl Pair {
    /// Whether A and B reach the same user for the same from.id.
    fn same_user(&self) -> bool {
        self.a.users() == self.b.users()
    }

    /// The from.id both callers use in one kind of case.
    fn user(&self, kind: Kind) -> String {
        format!("u1-{kind:?}-{}-{}", self.a.name, self.b.name).to_lowercase()
    }
}

impl fmt::Display for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let relation = if self.same_user() { "same user" } else { "kept apart" };
        write!(f, "A={} B={} ({relation})", self.a.name, self.b.name)
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Conversation,
    Polls,
    Files,
    Uploads,
    History,
}

impl Kind {
    const ALL: [Kind; 5] = [Kind::Conversation, Kind::Polls, Kind::Files, Kind::Uploads, Kind::History];

    async fn run(self, server: &Server, pair: Pair) {
        match self {
            Kind::Conversation => conversation(server, pair).await,
            Kind::Polls => poll_answers(server, pair).await,
            Kind::Files => files(server, pair).await,
            Kind::Uploads => upload_tokens(server, pair).await,
            Kind::History => history(server, pair).await,
        }
    }
}

// --- Requests -------------------------------------------------------------

async fn post(server: &Server, realm: Realm, token: &str, body: &Value) -> Reply {
    server.post(&realm.webhook_path("a"), token, body).await
}

/// A text message from `user` through the realm's usual token, to instance a.
async fn say(server: &Server, realm: Realm, user: &str, text: &str) -> Reply {
    let body = json!({"message": {"type": "text", "val": text}, "from": {"id": user}});
    post(server, realm, &realm.usual_token(user), &body).await
}

/// A message naming an uploaded file.
async fn attach(server: &Server, realm: Realm, token: &str, user: &str, file_id: &str) -> Reply {
    let body = json!({
        "message": {"type": "text", "val": "here it is", "attachments": [{"fileId": file_id}]},
        "from": {"id": user},
    });
    post(server, realm, token, &body).await
}

async fn poll(server: &Server, realm: Realm, instance: Option<&str>, token: &str, poll_id: &str) -> Reply {
    server.get(&realm.poll_path(instance, poll_id), token).await
}

async fn send_json(server: &Server, method: Method, path: &str, token: &str, body: &Value) -> Reply {
    Server::send(server.request(method, path).header("Authorization", format!("bearer {token}")).json(body)).await
}

async fn open_upload(server: &Server, realm: Realm, token: &str, context: &str) -> String {
    let reply = send_json(server, Method::POST, &realm.upload_token_path(), token, &json!({})).await;
    assert_eq!(reply.status, 200, "{context}: opening an upload: {}", reply.body);
    reply.body["fileToken"].as_str().unwrap_or_else(|| panic!("{context}: no fileToken: {}", reply.body)).to_string()
}

async fn put_chunk(server: &Server, realm: Realm, token: &str, file_token: &str, chunk_no: u32, bytes: &[u8]) -> Reply {
    let path = format!("{}/{file_token}/chunk", realm.upload_token_path());
    let body = json!({"chunk": STANDARD.encode(bytes), "chunkNo": chunk_no});
    send_json(server, Method::POST, &path, token, &body).await
}

async fn commit(server: &Server, realm: Realm, token: &str, file_token: &str, name: &str, total: usize) -> Reply {
    let path = format!("{}/{file_token}/chunk", realm.upload_token_path());
    let body = json!({"filename": name, "fileExtension": "txt", "totalChunks": total});
    send_json(server, Method::PUT, &path, token, &body).await
}

/// (message id, text) of the realm's history of `user`, read with a token
/// naming them, in the web SDK's shape (`_id`, `components[0].data.text`).
async fn read_history(server: &Server, realm: Realm, user: &str, context: &str) -> Vec<(String, String)> {
    let reply = server.get(&realm.history_path(), &realm.sign(Names::User, user)).await;
    assert_eq!(reply.status, 200, "{context}: reading history: {}", reply.body);
    let messages = reply.body["messages"].as_array().unwrap_or_else(|| panic!("{context}: {}", reply.body));
    messages
        .iter()
        .map(|m| {
            let id = m["_id"].as_str();
            let id = id.unwrap_or_else(|| panic!("{context}: a message without an id: {m}"));
            let text = m["components"][0]["data"]["text"].as_str();
            (id.to_string(), text.unwrap_or_else(|| panic!("{context}: a message without text: {m}")).to_string())
        })
        .collect()
}

/// Waits (ten seconds at most) until the worker has stored the poll's answer,
/// without reading it through the API (a read would use it up).
async fn wait_answered(server: &Server, poll_id: &str, context: &str) {
    for _ in 0..500 {
        let record = server.stores.polls.get_poll(poll_id).await.expect("the poll record loads");
        if record.is_some_and(|r| r.answer.is_some()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{context}: poll {poll_id} still unanswered after ten seconds");
}

// --- Expected answers -----------------------------------------------------

fn texts(reply: &Reply, context: &str) -> Vec<String> {
    assert_eq!(reply.status, 200, "{context}: {}", reply.body);
    reply.texts()
}

fn assert_error(reply: &Reply, status: u16, msg: &str, detail: Option<&str>, context: &str) {
    assert_eq!(reply.status, status, "{context}: {}", reply.body);
    assert_eq!(reply.error_msg(), msg, "{context}: {}", reply.body);
    assert_eq!(reply.body["errors"][0]["detail"].as_str(), detail, "{context}: {}", reply.body);
}

/// The spec's answer for a pollId that is unknown, used up or someone else's:
/// nothing says it exists.
fn assert_no_data(reply: &Reply, context: &str) {
    assert_error(reply, 400, "No data found", None, context);
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

// --- Cases ----------------------------------------------------------------

/// A starts a question and stores user info and a user tag; B, with the
/// same from.id, answers and asks for the word.
async fn conversation(server: &Server, pair: Pair) {
    let (a, b, user) = (pair.a, pair.b, pair.user(Kind::Conversation));
    let start = json!({
        "message": {"type": "text", "val": "remember my word"},
        "from": {"id": user, "userInfo": {"firstName": "Ann"}},
        "metaTags": {"userLevelTags": [{"name": "tier", "value": "gold"}]},
    });
    let reply = post(server, a, &a.usual_token(&user), &start).await;
    assert_eq!(texts(&reply, &format!("{pair}: A starts a task")), ["What's your secret word?"], "{pair}");

    let answer = say(server, b, &user, "intruder").await;
    let answer = texts(&answer, &format!("{pair}: B sends a word"));
    let word = if pair.same_user() {
        assert_eq!(answer, ["I'll remember intruder."], "{pair}: B, the same user, answers A's question");
        "intruder"
    } else {
        assert_eq!(answer, [FALLBACK], "{pair}: B's message must not answer A's question");
        let own = say(server, a, &user, "swordfish").await;
        let own = texts(&own, &format!("{pair}: A answers its question"));
        assert_eq!(own, ["I'll remember swordfish."], "{pair}: A's question still waits for A");
        "swordfish"
    };

    let seen = say(server, b, &user, "what is my word").await;
    assert_eq!(seen.body["to"], json!(user), "{pair}: {}", seen.body);
    let expected = if pair.same_user() {
        strings(&["Your word is intruder.", "name=Ann tier=gold"])
    } else {
        strings(&["Your word is .", "name= tier="])
    };
    let context = format!("{pair}: what B sees of A's context, user info and user tags");
    assert_eq!(texts(&seen, &context), expected, "{context}");

    let own = say(server, a, &user, "what is my word").await;
    let context = format!("{pair}: A's own context afterwards");
    assert_eq!(texts(&own, &context), [format!("Your word is {word}."), "name=Ann tier=gold".into()], "{context}");
}

/// A's polled turn (on instance a) gives a pollId; B polls it with every
/// token it has, through every poll URL of its own bot, before and after the
/// answer is ready; A polls it through the other instance's URL, then its own.
async fn poll_answers(server: &Server, pair: Pair) {
    let (a, b, user) = (pair.a, pair.b, pair.user(Kind::Polls));
    let first = say(server, a, &user, "check status").await;
    assert_eq!(texts(&first, &format!("{pair}: A's polled turn")), ["Checking."], "{pair}");
    let poll_id = first.body["pollId"].as_str().unwrap_or_else(|| panic!("{pair}: no pollId: {}", first.body));
    let poll_id = poll_id.to_string();

    if !pair.same_user() {
        for (names, token) in b.tokens(&user) {
            let reply = poll(server, b, Some("a"), &token, &poll_id).await;
            assert_no_data(&reply, &format!("{pair}: B (token naming {names:?}) polls A's pollId while it runs"));
        }
    }
    wait_answered(server, &poll_id, &format!("{pair}")).await;

    let a_token = a.usual_token(&user);
    let reply = poll(server, a, Some("b"), &a_token, &poll_id).await;
    assert_no_data(&reply, &format!("{pair}: A polls its pollId through the other instance's URL"));
    for (names, token) in b.tokens(&user) {
        let reply = poll(server, b, Some("b"), &token, &poll_id).await;
        assert_no_data(&reply, &format!("{pair}: B (token naming {names:?}) polls A's pollId through instance b"));
    }

    let ready = strings(&["Status: green."]);
    if pair.same_user() {
        let reply = poll(server, b, Some("a"), &b.usual_token(&user), &poll_id).await;
        let context = format!("{pair}: B, the same user, polls A's pollId through its instance");
        assert_eq!(texts(&reply, &context), ready, "{context}");
        let reply = poll(server, a, Some("a"), &a_token, &poll_id).await;
        assert_no_data(&reply, &format!("{pair}: A polls again after B, the same user, read the answer"));
    } else {
        for (names, token) in b.tokens(&user) {
            for instance in [Some("a"), None] {
                let reply = poll(server, b, instance, &token, &poll_id).await;
                let via = instance.map_or("the bare URL".into(), |i| format!("instance {i}"));
                assert_no_data(&reply, &format!("{pair}: B (token naming {names:?}) polls A's ready pollId via {via}"));
            }
        }
        let reply = poll(server, a, Some("a"), &a_token, &poll_id).await;
        let context = format!("{pair}: A reads its answer after B's attempts");
        assert_eq!(texts(&reply, &context), ready, "{context}");
        let reply = poll(server, a, Some("a"), &a_token, &poll_id).await;
        assert_no_data(&reply, &format!("{pair}: A's answer is read once"));
    }
}

/// A uploads a file with each token it has; B names it in a message with
/// each token it has.
async fn files(server: &Server, pair: Pair) {
    let (a, b, user) = (pair.a, pair.b, pair.user(Kind::Files));
    let prompt = strings(&["Attach the file."]);
    if !pair.same_user() {
        // B's own question waits for a file the whole time.
        let reply = say(server, b, &user, "send a file").await;
        assert_eq!(texts(&reply, &format!("{pair}: B asks to send a file")), prompt, "{pair}");
    }
    for (a_names, a_token) in a.tokens(&user) {
        let name = format!("{}-{a_names:?}.txt", a.name).to_lowercase();
        let file_id = upload_file(server, a.bot, &a_token, &name, name.as_bytes()).await;
        for (b_names, b_token) in b.tokens(&user) {
            let context = format!(
                "{pair}: B (token naming {b_names:?}) sends A's file (uploaded with a token naming {a_names:?})"
            );
            if pair.same_user() {
                let reply = say(server, b, &user, "send a file").await;
                assert_eq!(texts(&reply, &context), prompt, "{context}");
                let reply = attach(server, b, &b_token, &user, &file_id).await;
                assert_eq!(texts(&reply, &context), [format!("Got {name}.")], "{context}");
            } else {
                let reply = attach(server, b, &b_token, &user, &file_id).await;
                assert_error(&reply, 400, "Invalid Request Payload", Some(NO_SUCH_FILE), &context);
            }
        }
        // A still sends it.
        let context = format!("{pair}: A sends its own file (uploaded with a token naming {a_names:?})");
        let reply = say(server, a, &user, "send a file").await;
        assert_eq!(texts(&reply, &context), prompt, "{context}");
        let reply = attach(server, a, &a.usual_token(&user), &user, &file_id).await;
        assert_eq!(texts(&reply, &context), [format!("Got {name}.")], "{context}");
    }
    if !pair.same_user() {
        // B's question was waiting all along: its own file answers it.
        let token = b.sign(Names::User, &user);
        let own = upload_file(server, b.bot, &token, "own.txt", b"own").await;
        let reply = attach(server, b, &b.usual_token(&user), &user, &own).await;
        let context = format!("{pair}: B sends its own file");
        assert_eq!(texts(&reply, &context), ["Got own.txt."], "{context}");
    }
}

/// A opens a chunked upload with each token it has and sends chunk 0; B
/// sends chunk 1 (and, kept apart, tries to commit) with each token it has;
/// A commits, and the file holds exactly the chunks that were let in.
async fn upload_tokens(server: &Server, pair: Pair) {
    let (a, b, user) = (pair.a, pair.b, pair.user(Kind::Uploads));
    for (a_names, a_token) in a.tokens(&user) {
        let opened = format!("{pair}: A's upload opened with a token naming {a_names:?}");
        let file_token = open_upload(server, a, &a_token, &opened).await;
        let reply = put_chunk(server, a, &a_token, &file_token, 0, b"from A;").await;
        assert_eq!(reply.status, 200, "{opened}: A's chunk: {}", reply.body);

        let mut let_in = false;
        for (b_names, b_token) in b.tokens(&user) {
            let context = format!("{opened}: B (token naming {b_names:?}) sends a chunk");
            let reply = put_chunk(server, b, &b_token, &file_token, 1, b"from B").await;
            // The same user continues the upload with a token naming them; a
            // token naming no one continues only an upload naming no one.
            if pair.same_user() && (b_names == Names::User || a_names == Names::NoOne) {
                assert_eq!(reply.status, 200, "{context}: {}", reply.body);
                let_in = true;
            } else {
                assert_error(&reply, 404, "Resource not found", Some(NO_SUCH_UPLOAD), &context);
            }
            if !pair.same_user() {
                let context = format!("{opened}: B (token naming {b_names:?}) commits it");
                let reply = commit(server, b, &b_token, &file_token, "taken.txt", 1).await;
                assert_error(&reply, 404, "Resource not found", Some(NO_SUCH_UPLOAD), &context);
            }
        }

        let expected: &[u8] = if let_in { b"from A;from B" } else { b"from A;" };
        let total = if let_in { 2 } else { 1 };
        let reply = commit(server, a, &a_token, &file_token, "mine.txt", total).await;
        assert_eq!(reply.status, 200, "{opened}: A completes it: {}", reply.body);
        let file_id = reply.body["fileId"].as_str().unwrap_or_default();
        let bytes = server.blobs.get(&format!("files/{file_id}")).await.expect("the blob loads");
        assert_eq!(bytes.as_deref(), Some(expected), "{opened}: the file holds the chunks let in");
    }
}

/// A and B each send a message; each reads its history with a token naming the user.
async fn history(server: &Server, pair: Pair) {
    let (a, b, user) = (pair.a, pair.b, pair.user(Kind::History));
    let from_a = format!("note from {} as {user}", a.name);
    let from_b = format!("note from {} as {user}", b.name);
    for (realm, text) in [(a, &from_a), (b, &from_b)] {
        let reply = say(server, realm, &user, text).await;
        assert_eq!(texts(&reply, &format!("{pair}: {} says {text:?}", realm.name)), [FALLBACK], "{pair}");
    }
    let seen_by_a = read_history(server, a, &user, &format!("{pair}: A")).await;
    let seen_by_b = read_history(server, b, &user, &format!("{pair}: B")).await;
    let vals = |seen: &[(String, String)]| seen.iter().map(|(_, val)| val.clone()).collect::<Vec<_>>();
    if pair.same_user() {
        let both = strings(&[&from_a, FALLBACK, &from_b, FALLBACK]);
        assert_eq!(vals(&seen_by_b), both, "{pair}: B, the same user, reads the whole conversation");
        assert_eq!(seen_by_a, seen_by_b, "{pair}: one history, the same message ids");
    } else {
        assert_eq!(vals(&seen_by_a), [from_a.as_str(), FALLBACK], "{pair}: A's history holds A's messages only");
        assert_eq!(vals(&seen_by_b), [from_b.as_str(), FALLBACK], "{pair}: B's history holds B's messages only");
        let leaked: Vec<_> = seen_by_b.iter().filter(|m| seen_by_a.iter().any(|n| n.0 == m.0)).collect();
        assert!(leaked.is_empty(), "{pair}: A's messages in B's history: {leaked:?}");
    }
}

// --- Runner ---------------------------------------------------------------

fn panic_text(error: tokio::task::JoinError) -> String {
    match error.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panicked".into()),
        Err(error) => error.to_string(),
    }
}

async fn isolation_of_every_pair_of_callers(backend: Backend) {
    let started = Instant::now();
    let receiver = Receiver::start(vec![("/status", Answer::json(json!({"status": "green"})))]).await;
    let yaml = include_str!("../fixtures/bots/isolation-bot.yaml").replace("RECEIVER", &receiver.addr);
    let twin = yaml.replace(BOT, TWIN).replace("-secret-", "-twin-secret-");
    let registry =
        || registry_with(&[("isolation-bot.yaml".into(), yaml.clone()), ("isolation-twin.yaml".into(), twin.clone())]);
    let permits = Arc::new(Semaphore::new(CONCURRENT_CASES));
    let mut cases = Vec::new();
    for kind in Kind::ALL {
        let server = Arc::new(Server::start_on(backend, registry(), Settings::default()).await);
        for a in REALMS {
            for b in REALMS.into_iter().filter(|b| b.name != a.name) {
                let pair = Pair { a, b };
                let (server, permits) = (server.clone(), permits.clone());
                let case = tokio::spawn(async move {
                    let _permit = permits.acquire_owned().await.expect("the semaphore stays open");
                    kind.run(&server, pair).await;
                });
                cases.push((format!("{kind:?} {pair}"), case));
            }
        }
    }
    let total = cases.len();
    let mut failures = Vec::new();
    for (name, case) in cases {
        if let Err(error) = case.await {
            failures.push(format!("{name}: {}", panic_text(error)));
        }
    }
    assert!(failures.is_empty(), "{} of {total} cases failed:\n{}", failures.len(), failures.join("\n"));
    let pairs = total / Kind::ALL.len();
    eprintln!("{backend:?}: {total} cases, {pairs} ordered pairs of callers, in {:?}", started.elapsed());
    // Each polled turn made its one call.
    assert_eq!(receiver.received().len(), pairs, "one status call per pair");
}

on_both_stores!(isolation_of_every_pair_of_callers);
