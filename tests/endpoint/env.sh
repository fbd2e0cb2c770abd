# Sourced (from the repository root) by run.sh and bench.sh: the endpoint venv
# (installed by setup.sh when missing) as $py and first on PATH, the process
# helpers of tests/lib/procs.sh, and a fresh scratch folder $work (the caller's
# EXIT trap, finish_work, removes it).
venv="$(bash tests/endpoint/setup.sh | tail -n 1)"
py="$venv/bin/python"
export PATH="$venv/bin:$PATH"

source tests/lib/procs.sh
work="$(mktemp -d)"

# Starts moto's DynamoDB server (one request at a time: moto_serial.py) on a free
# port and points the AWS SDK at it (AWS_ENDPOINT_URL, test credentials).
start_moto() {
    local port
    port=$(free_port "$py")
    start moto "$py" tests/endpoint/moto_serial.py "$port"
    wait_for "http://127.0.0.1:$port/moto-api/" moto 60
    export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
    export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
}
