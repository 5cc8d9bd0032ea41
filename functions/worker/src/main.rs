//! Lambda: the worker behind the FIFO queue's event source mapping
//! (ReportBatchItemFailures on). State is built once per cold start.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use hookline_core::process::{functions, sqs_worker, telemetry};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let (worker, queue) = functions::worker().await?;
    let handler = service_fn(|event: LambdaEvent<SqsEvent>| {
        let (worker, queue) = (worker.clone(), queue.clone());
        async move {
            let response = sqs_worker::handle_event(&worker, event.payload, Some(&queue)).await;
            Ok::<SqsBatchResponse, lambda_runtime::Error>(response)
        }
    });
    lambda_runtime::run(handler).await
}
