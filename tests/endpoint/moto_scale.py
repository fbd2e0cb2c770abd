"""How moto's DynamoDB slows as a table grows, as shipped and as moto_serial.py runs it.

Times one conditional TransactWriteItems (the document plus one trial item, as the
Lambda store writes when a trial is archived) and one consistent GetItem, at table
sizes of 0 to 8,000 trial items, in process (moto's mock, the same backend that
moto_serial.py serves): first moto as shipped, then with moto_serial's patch.
Usage: python tests/endpoint/moto_scale.py
"""

import os
import time

import boto3
from moto import mock_aws

from dynamo_table import create
from moto_serial import patch_moto

REPEAT = 20


def item(item_key: str, version: str | None = None, **strings: str) -> dict:
    """One item of job "j": string attributes, and `version` as a number when given."""
    out = {"job_id": {"S": "j"}, "item": {"S": item_key}}
    out.update({k: {"S": v} for k, v in strings.items()})
    if version is not None:
        out["version"] = {"N": version}
    return out


def measure(label: str) -> None:
    print(label, flush=True)
    with mock_aws():
        c = boto3.client("dynamodb")
        create(c, "t")
        n = 0
        for target in (0, 1000, 4000, 8000):
            while n < target:
                c.put_item(TableName="t", Item=item(f"trial#{n:020}", record="y" * 300))
                n += 1
            c.put_item(TableName="t", Item=item("job", version="0", doc="x" * 3000))
            started = time.perf_counter()
            for i in range(REPEAT):
                c.transact_write_items(TransactItems=[
                    {"Put": {
                        "TableName": "t",
                        "Item": item("job", version=str(i + 1), doc="x" * 3000),
                        "ConditionExpression": "#v = :e",
                        "ExpressionAttributeNames": {"#v": "version"},
                        "ExpressionAttributeValues": {":e": {"N": str(i)}},
                    }},
                    {"Put": {"TableName": "t", "Item": item(f"extra#{n}-{i}", record="y")}},
                ])
            transact = (time.perf_counter() - started) / REPEAT
            started = time.perf_counter()
            for _ in range(REPEAT):
                c.get_item(TableName="t", Key={"job_id": {"S": "j"}, "item": {"S": "job"}}, ConsistentRead=True)
            get = (time.perf_counter() - started) / REPEAT
            print(f"{target:>5} trial items: TransactWriteItems {transact * 1e3:6.1f} ms, GetItem {get * 1e3:4.1f} ms", flush=True)


def main() -> None:
    os.environ.update(AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x", AWS_DEFAULT_REGION="us-east-1")
    measure("moto as shipped")
    patch_moto()
    measure("moto as moto_serial.py runs it (touched items backed up, not the table)")


if __name__ == "__main__":
    main()
