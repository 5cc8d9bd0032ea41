//! What a plain text turn's first invoke cannot go below: a fresh process
//! that builds a DynamoDB client as the functions do and makes a first
//! turn's two requests: a GetItem of the conversation, then a PutItem of
//! the item a first turn writes (the conversation holding the turn's log
//! entries, deflated, of its size, on the same condition). Prints the
//! milliseconds those two requests took.
//!
//!     table-round-trips ENDPOINT TABLE

use std::collections::HashMap;
use std::time::{Instant, SystemTime};

use aws_sdk_dynamodb::types::AttributeValue;
use hookline_core::process::aws;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (endpoint, table) = (args.next().expect("ENDPOINT"), args.next().expect("TABLE"));
    let client = aws::from_environment(Some(&endpoint)).expect("the AWS configuration").dynamodb();
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("after 1970").as_nanos();
    let pk = format!("BOT#st-bench#USER#round-trips-{now}");
    let item = |sk: &str, body: (&str, usize)| -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".to_string(), AttributeValue::S(pk.clone())),
            ("sk".to_string(), AttributeValue::S(sk.to_string())),
            ("expiresAt".to_string(), AttributeValue::N("4102444800".into())),
            (body.0.to_string(), AttributeValue::S("x".repeat(body.1))),
        ])
    };
    let started = Instant::now();
    client
        .get_item()
        .table_name(&table)
        .set_key(Some(HashMap::from([
            ("pk".to_string(), AttributeValue::S(pk.clone())),
            ("sk".to_string(), AttributeValue::S("SESSION".into())),
        ])))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem");
    client
        .put_item()
        .table_name(&table)
        .set_item(Some(item("SESSION", ("state", 750))))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await
        .expect("PutItem");
    println!("{:.3}", started.elapsed().as_secs_f64() * 1000.0);
}
