//! wattwise endpoint hosts: the Lambda function and the local server.
