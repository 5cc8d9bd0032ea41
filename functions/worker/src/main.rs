//! Lambda: the worker behind the FIFO queue's event source mapping
//! (ReportBatchItemFailures on), and the schedule that sweeps idle sessions.
//! State is built once per cold start.

use aws_lambda_events::sqs::SqsBatchResponse;
use hookline_core::process::{functions, sqs_worker, telemetry};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let (worker, queue) = functions::worker().await?;
    let handler = service_fn(|event: LambdaEvent<sqs_worker::WorkerEvent>| {
        let (worker, queue) = (worker.clone(), queue.clone());
        async move {
            let response = sqs_worker::handle_invocation(&worker, event.payload, Some(&queue)).await;
            functions::print_metrics("worker");
            Ok::<SqsBatchResponse, lambda_runtime::Error>(response)
        }
    });
    lambda_runtime::run(handler).await
}
