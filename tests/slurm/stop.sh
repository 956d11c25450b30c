#!/usr/bin/env bash
# Stop the daemons that start.sh started, found through their pid files in the state directory, and
# nothing else. The state (database, logs) stays, so a later start.sh is quick.
set -euo pipefail
. "$(dirname "$0")/common.sh"

for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
    daemon=${DAEMONS[i]}
    if ! pid=$(daemon_pid "$daemon"); then
        rm -f "$(pid_file "$daemon")"
        continue
    fi
    kill -TERM "$pid"
    for ((t = 0; t < 150; t++)); do
        [[ -d /proc/$pid ]] || break
        sleep 0.2
    done
    if [[ -d /proc/$pid ]]; then
        say "$daemon ($pid) ignored SIGTERM for 30 s; killing it"
        kill -KILL "$pid"
    fi
    rm -f "$(pid_file "$daemon")"
    say "stopped $daemon ($pid)"
done

# slurmd links its config cache there; remove the link only while it still points into this state.
if [[ $(readlink /run/slurm/conf 2>/dev/null) == "$STATE"/* ]]; then
    rm -f /run/slurm/conf
fi
