"""moto's server, with DynamoDB requests handled one at a time.

moto undoes a failed TransactWriteItems by restoring a copy of the table taken
before it; with requests running in parallel that restore can erase another
writer's committed transaction. DynamoDB itself is serialisable, so the tests
run DynamoDB calls one at a time and everything else (SQS, S3) in parallel.
"""

import argparse
import os
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))

    app = DomainDispatcherApplication(create_backend_app)
    dynamodb = threading.Lock()

    def serialised(environ, start_response):
        # DynamoDB_20120810.*, not the stream's reads (DynamoDBStreams_...).
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            with dynamodb:
                return list(app(environ, start_response))
        return app(environ, start_response)

    run_simple(args.host, args.port, serialised, threaded=True)


if __name__ == "__main__":
    main()
