//! Lambda: the worker behind the FIFO queue's event source mapping
//! (ReportBatchItemFailures on). State is built once per cold start.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use hookline_core::worker::{Worker, sqs_event};
use hookline_core::{bootstrap, telemetry};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let (state, queue) = bootstrap::lambda_state_with_queue().await?;
    let worker = Worker::new(state);
    let handler = service_fn(|event: LambdaEvent<SqsEvent>| {
        let (worker, queue) = (worker.clone(), queue.clone());
        async move {
            Ok::<SqsBatchResponse, lambda_runtime::Error>(sqs_event::handle(&worker, event.payload, Some(&queue)).await)
        }
    });
    lambda_runtime::run(handler).await
}
