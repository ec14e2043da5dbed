#!/bin/bash
# One render-server array task: the body of examples/farm/render.sbatch, runnable with plain
# bash (docs/farm.md says what was run locally). It joins `autosim optimize --listen` and
# starts a fresh server each time one exits 0 (recycled by --max-renders, or told to shut
# down); any other exit ends the task with that status, so a server that cannot start is
# not restarted forever. scancel / SIGTERM ends the task (bash and the server both get it).
#
#   OPTIMIZER   host:port of `autosim optimize --listen` (required)
#   AUTOSIM     this repository (default: two folders up from this script)
#   KEYS        the shared `autosim keys` folder (needed off loopback)
#   SCENE       built-in scene (default clevr); BLEND=my.blend serves a bound .blend instead
#   MAX_RENDERS images per process (default 5000)
#   HEARTBEAT_S beat period, s; match `autosim optimize --listen --heartbeat-s` (default 2)
#   BLENDER     the Blender binary (default blender), or AUTOSIM_PYTHON=python with the bpy
#               module installed to run `python -m blender_addon.serve` instead
#   SLURM_CPUS_PER_TASK  Cycles threads (default 1); SLURM_ARRAY_* only name the task
set -euo pipefail
: "${OPTIMIZER:?set OPTIMIZER=host:port of autosim optimize --listen}"
AUTOSIM=${AUTOSIM:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
if [ -n "${AUTOSIM_PYTHON:-}" ]; then
    serve=("$AUTOSIM_PYTHON" -m blender_addon.serve)
    export PYTHONPATH="$AUTOSIM${PYTHONPATH:+:$PYTHONPATH}"
else
    serve=("${BLENDER:-blender}" -b --factory-startup -P "$AUTOSIM/blender_addon/serve.py" --)
fi
args=(--connect "tcp://${OPTIMIZER}" --threads "${SLURM_CPUS_PER_TASK:-1}"
      --max-renders "${MAX_RENDERS:-5000}" --heartbeat-s "${HEARTBEAT_S:-2}")
if [ -n "${BLEND:-}" ]; then args+=(--blend "$BLEND"); else args+=(--scene "${SCENE:-clevr}"); fi
if [ -n "${KEYS:-}" ]; then args+=(--curve "$KEYS"); fi
echo "array task ${SLURM_ARRAY_TASK_ID:-0} of job ${SLURM_ARRAY_JOB_ID:-local}:" \
     "joining tcp://${OPTIMIZER}" >&2
while true; do
    status=0
    "${serve[@]}" "${args[@]}" || status=$?
    if [ "$status" -ne 0 ]; then
        echo "server exited with $status: task ends" >&2
        exit "$status"
    fi
    echo "server exited 0 (recycled): starting a fresh one" >&2
done
