"""moto's DynamoDB server, one request at a time, on 127.0.0.1.

moto's own `moto_server` answers on threads and does not lock around a
conditional write's check and put, so two racing conditional PutItems can both
succeed there, which real DynamoDB never allows. The endpoint's concurrency test
is about exactly that, so this runs moto's WSGI app behind one lock: each request
is atomic, as each DynamoDB operation is. Usage: python moto_serial.py PORT
"""

import os
import signal
import sys
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


def main() -> None:
    port = int(sys.argv[1])
    inner = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def app(environ, start_response):
        with lock:
            return [b"".join(inner(environ, start_response))]

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    run_simple("127.0.0.1", port, app, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
