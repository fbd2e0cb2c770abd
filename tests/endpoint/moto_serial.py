"""moto's DynamoDB server, one request at a time, on 127.0.0.1.

Two changes to moto 5.2's server, both about making it behave like DynamoDB under
the endpoint's concurrency test (32 clients, 500 requests each, on one job):

1. One lock around every request. moto's own `moto_server` answers on threads and
   does not lock around a conditional write's check and put, so two racing
   conditional PutItems can both succeed there, which real DynamoDB never allows.
   Here each request is atomic, as each DynamoDB operation is.
2. TransactWriteItems backs up only the items it touches. moto deep-copies the whole
   table (once per item in the transaction) so that it can roll back on a failed
   condition; the store archives each ended trial in a transaction, so on a table of
   8,000 trials every write held the lock for 200+ ms and the test timed out
   (tests/endpoint/moto_scale.py measures it). With every request serialized, saving
   and restoring just the touched items is the same rollback at O(items touched).

Usage: python moto_serial.py PORT
"""

import copy
import os
import signal
import sys
import threading

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


class _TablesAreNotCopied:
    """Stands in for the `copy` module inside moto's DynamoDB backend: deep copies of
    anything but a whole table, as before; a whole table is handed back as it is
    (its touched items are saved by `_transact_write_items` instead)."""

    @staticmethod
    def deepcopy(value, memo=None):
        if isinstance(value, Table):
            return value
        return copy.deepcopy(value, memo)


_moto_transact_write_items = DynamoDBBackend.transact_write_items


def _touched_key(backend: DynamoDBBackend, op: dict) -> tuple[str, dict] | None:
    """The (table, key) an operation of a transaction writes, if it names one."""
    table_name = op.get("TableName")
    if table_name not in backend.tables:
        return None
    if "Key" in op:
        return table_name, op["Key"]
    table = backend.tables[table_name]
    attrs = op.get("Item", {})
    names = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
    if not all(n in attrs for n in names):
        return None
    return table_name, {n: attrs[n] for n in names}


def _transact_write_items(self: DynamoDBBackend, transact_items: list) -> None:
    """moto's TransactWriteItems, rolled back item by item: each touched item is saved
    before, and put back (or deleted, if it did not exist) when the transaction fails."""
    saved = []
    for entry in transact_items:
        op = next(iter(entry.values()), {}) if isinstance(entry, dict) else {}
        touched = _touched_key(self, op) if isinstance(op, dict) else None
        if touched is None:
            continue
        table_name, key = touched
        try:
            before = self.get_item(table_name, key)
        except Exception:
            continue  # a malformed key: moto rejects the operation, nothing is written
        saved.append((table_name, key, None if before is None else before.to_json()["Attributes"]))
    try:
        _moto_transact_write_items(self, transact_items)
    except Exception:
        for table_name, key, attrs in reversed(saved):
            if attrs is None:
                if self.get_item(table_name, key) is not None:
                    self.delete_item(table_name, key)
            else:
                self.put_item(table_name, attrs)
        raise


def patch_moto() -> None:
    """Change 2 above, for this process's moto."""
    dynamodb_models.copy = _TablesAreNotCopied
    DynamoDBBackend.transact_write_items = _transact_write_items


def main() -> None:
    port = int(sys.argv[1])
    patch_moto()
    inner = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def app(environ, start_response):
        with lock:
            return [b"".join(inner(environ, start_response))]

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    run_simple("127.0.0.1", port, app, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
