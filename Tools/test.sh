#!/usr/bin/env bash
# Runs every test: unit, property (≥ 10,000 cases per merge law), store convergence, domain
# rules, CLI and tidy. Set CARESYNC_SEED to replay a property or simulation run.
set -euo pipefail
cd "$(dirname "$0")/.."
source Tools/check-deps.sh
swift build --build-tests
swift test --skip-build
