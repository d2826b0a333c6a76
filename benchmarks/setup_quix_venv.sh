#!/usr/bin/env bash
# Make the separate virtualenv that benchmarks/bench_intake.py runs Quix Streams from.
#
# Quix Streams 3.28.1 requires confluent-kafka<2.13, pydantic<2.14 and pydantic-settings<2.16,
# which conflict with churnwatch's pins (pyproject.toml: pydantic==2.14.3,
# pydantic-settings==2.16.3; confluent-kafka==2.16.1 in the bench/test groups), so it is not a
# churnwatch dependency. The benchmark finds this venv's python as --quix-python, else
# $CHURNWATCH_QUIX_PYTHON, else /tmp/churnwatch-quix-venv/bin/python (this script's default);
# without one, the quix design is reported as skipped.
#
#   bash benchmarks/setup_quix_venv.sh [VENV_DIR] [PYTHON]
set -euo pipefail
venv="${1:-/tmp/churnwatch-quix-venv}"
python="${2:-python3}"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet "quixstreams==3.28.1"
"$venv/bin/python" -c 'import quixstreams, confluent_kafka; print("quixstreams", quixstreams.__version__, "librdkafka", confluent_kafka.libversion()[0])'
echo "quix python: $venv/bin/python"
