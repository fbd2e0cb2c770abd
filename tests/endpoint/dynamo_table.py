"""The store's DynamoDB table, as lambda/src/dynamo.rs lays it out: partition key
`job_id` and sort key `item`, both strings, billed per request, with the job
list's global secondary index `jobs_by_created` (`list`, `created`).

Usage: python dynamo_table.py NAME (creates it where AWS_ENDPOINT_URL points);
or import and call `create(client, name)`.
"""

import sys

import boto3


def create(client, name: str) -> None:
    """Creates the table NAME with the store's key schema."""
    client.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "job_id", "KeyType": "HASH"},
            {"AttributeName": "item", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "job_id", "AttributeType": "S"},
            {"AttributeName": "item", "AttributeType": "S"},
            {"AttributeName": "list", "AttributeType": "S"},
            {"AttributeName": "created", "AttributeType": "S"},
        ],
        # The job list's index (lambda/src/dynamo.rs LIST_INDEX): document items only.
        GlobalSecondaryIndexes=[
            {
                "IndexName": "jobs_by_created",
                "KeySchema": [
                    {"AttributeName": "list", "KeyType": "HASH"},
                    {"AttributeName": "created", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )


if __name__ == "__main__":
    create(boto3.client("dynamodb"), sys.argv[1])
    print(f"created DynamoDB table {sys.argv[1]}")
