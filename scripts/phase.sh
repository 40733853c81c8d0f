# Sourced by setup.sh and test.sh: `phase NAME COMMAND...` prints what it is about to do, runs it,
# and prints how long it took (to stderr), so a first setup says what it is doing and a slow phase
# is visible. A failing command fails the phase with its exit status.
phase() {
    local name=$1 started rc=0
    shift
    started=$(date +%s)
    echo "setup: [$name] ..." >&2
    "$@" || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "setup: [$name] FAILED (exit $rc) after $(( $(date +%s) - started )) s" >&2
        return "$rc"
    fi
    echo "setup: [$name] done in $(( $(date +%s) - started )) s" >&2
}
