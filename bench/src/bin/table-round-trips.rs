//! What a plain text turn's first invoke cannot go below: a fresh process
//! that builds a DynamoDB client as the functions do, reads one item and
//! writes one in a transaction (a turn's two requests), and prints the
//! milliseconds those two requests took.
//!
//!     table-round-trips ENDPOINT TABLE

use std::time::Instant;

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use hookline_core::process::aws;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (endpoint, table) = (args.next().expect("ENDPOINT"), args.next().expect("TABLE"));
    let client = aws::from_environment(Some(&endpoint)).expect("the AWS configuration").dynamodb();
    let key = |pk: &str| {
        [("pk".to_string(), AttributeValue::S(pk.into())), ("sk".to_string(), AttributeValue::S("SESSION".into()))]
    };
    let started = Instant::now();
    client
        .get_item()
        .table_name(&table)
        .set_key(Some(key("bench#round-trips").into()))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem");
    let mut item: std::collections::HashMap<_, _> = key("bench#round-trips").into();
    item.insert("body".to_string(), AttributeValue::S("x".repeat(1024)));
    let put = Put::builder().table_name(&table).set_item(Some(item)).build().expect("a put");
    client
        .transact_write_items()
        .transact_items(TransactWriteItem::builder().put(put).build())
        .send()
        .await
        .expect("TransactWriteItems");
    println!("{:.3}", started.elapsed().as_secs_f64() * 1000.0);
}
