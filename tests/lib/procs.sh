# shellcheck shell=bash
# Process management for the test and benchmark scripts: servers on free 127.0.0.1
# ports, each in a process group of its own, stopped by killing that group (never
# by name). Source it (`source tests/lib/procs.sh`) from a bash script; it runs
# nothing when sourced but for setting `groups=()`.
#
# The caller sets:
#   work       a directory (absolute path): start NAME writes its log to $work/NAME.log,
#              and wait_for prints the end of that log when NAME does not come up.
#              The caller makes it; finish_work (below) removes it.
#   procs_tag  optional: the prefix of the messages printed here (default "tests").
# The caller binds its servers to 127.0.0.1 (on a port from free_port) and calls
# stop_all from its EXIT trap (`trap finish_work EXIT` does that and more). Started groups are kept, last one last, in the array
# `groups` (so `${groups[-1]}` is the group start made last).

groups=()

# free_port [PYTHON]: prints a free TCP port on 127.0.0.1 (PYTHON defaults to python3).
free_port() {
    "${1:-python3}" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# start NAME CMD...: runs CMD in the background in a session (so a process group) of its own, logging to $work/NAME.log.
start() {
    start_in . "$@"
}

# start_in DIR NAME CMD...: as start, with CMD run in directory DIR.
start_in() {
    local dir=$1 name=$2
    shift 2
    # A background job of a script without job control stays in the script's
    # group, so setsid makes the session in place: $! is the new group's id.
    (cd "$dir" && exec setsid "$@") </dev/null >"$work/$name.log" 2>&1 &
    groups+=("$!")
}

# stop_last: stops the most recently started group (TERM, up to 10 s to exit, then KILL) and drops it from groups.
stop_last() {
    local g=${groups[-1]} i k kids
    # cargo lambda watch runs each function instance in a session of its own:
    # note the group's direct children, to stop any instance it leaves behind.
    kids=$(pgrep -P "$g" 2>/dev/null || true)
    kill -TERM -- "-$g" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 -- "-$g" 2>/dev/null || break
        sleep 0.2
    done
    kill -KILL -- "-$g" 2>/dev/null || true
    for k in $kids; do
        kill -KILL -- "-$k" 2>/dev/null || true
    done
    unset 'groups[-1]'
}

# stop_all: stops every started group, the most recent first.
stop_all() {
    while [ "${#groups[@]}" -gt 0 ]; do
        stop_last
    done
}

# wait_for URL NAME SECONDS: polls URL with curl until it answers 2xx/3xx; after SECONDS, prints the end of $work/NAME.log and fails.
wait_for() {
    local url=$1 name=$2 secs=$3 i
    for ((i = 0; i < secs * 5; i++)); do
        if curl -fsS -o /dev/null "$url" 2>/dev/null; then
            return 0
        fi
        sleep 0.2
    done
    echo "${procs_tag:-tests}: $name did not come up at $url; its log ($work/$name.log):" >&2
    tail -n 50 "$work/$name.log" >&2 || true
    return 1
}

# finish_work: an EXIT trap (`trap finish_work EXIT`): stops every group; when the
# script failed, prints the end of each log in $work; removes $work.
finish_work() {
    local rc=$? f
    stop_all
    if [ "$rc" -ne 0 ]; then
        for f in "$work"/*.log; do
            [ -e "$f" ] || continue
            echo "---- ${procs_tag:-tests}: last lines of $(basename "$f") ----" >&2
            tail -n 30 "$f" >&2
        done
    fi
    rm -rf "$work"
}
