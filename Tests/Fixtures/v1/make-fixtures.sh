#!/usr/bin/env bash
# Makes the v1 fixtures with the CLI as it was before row edits (git tag/branch base7):
#   git worktree add /work/wt7-v1 base7
#   (cd /work/wt7-v1 && swift build --product caresync --scratch-path /work/scratch/v1)
#   Tests/Fixtures/v1/make-fixtures.sh /work/scratch/v1/debug/caresync
# Writes replica-v1.db, hub-v1.db, ids.json and the v1 CLI's own output (expected/) here.
set -euo pipefail
CS=${1:?path of the v1 caresync binary}
HERE=$(cd "$(dirname "$0")" && pwd)
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$W"
export CARESYNC_USER=alex
a() { "$CS" "$@" --replica a.db; }
b() { "$CS" "$@" --replica b.db; }

"$CS" init a.db --name team-north >/dev/null
"$CS" init b.db --name team-south >/dev/null
P=$(a add young_person legal_given_name=Ava legal_family_name=Brun date_of_birth=2007-03-14 legal_status=cla)
a set-add young_person "$P" alerts missing_risk >/dev/null
a set-add young_person "$P" consent_to_share school >/dev/null
PLAN=$(a add plan yp_id="$P" kind=pathway title='Pathway plan 2025')
a edit plan "$PLAN" summary='First summary' --as morgan >/dev/null
R=$(a add reminder text='Call school' due_on=2025-07-01)
R2=$(a add reminder text='Book review' due_on=2025-08-01)
a export a1.bundle >/dev/null
b import a1.bundle >/dev/null

# Concurrent edits on the two replicas: multi-value conflicts, a last-writer-wins race, a set race.
a edit young_person "$P" legal_given_name=Eva risk_rating=amber >/dev/null
b edit young_person "$P" legal_given_name=Ava-May preferred_name=Av --as morgan >/dev/null
b set-remove young_person "$P" consent_to_share school --as morgan >/dev/null
a set-add young_person "$P" alerts cse_risk >/dev/null
b set-add young_person "$P" involved_teams yot --as morgan >/dev/null
b edit plan "$PLAN" summary='Summary from the south team' --as morgan >/dev/null
# A reminder deleted on one replica while edited on the other (the delete wins: causal length).
a delete reminder "$R" >/dev/null
b edit reminder "$R" text='Call school on Monday' --as morgan >/dev/null
b edit reminder "$R2" due_on=2025-08-15 --as morgan >/dev/null
# A kept change: a change to a field a newer schema has. The v1 CLI has one schema, so b's log is
# edited to name a column this schema does not know before the bundle is made; a keeps it.
b edit young_person "$P" sex=F --as morgan >/dev/null
sqlite3 b.db "INSERT INTO sync_name (name) VALUES ('pronouns');
  UPDATE sync_change SET column_name = (SELECT id FROM sync_name WHERE name = 'pronouns'), value = 'she/her'
  WHERE column_name = (SELECT id FROM sync_name WHERE name = 'sex');"
b export b1.bundle >/dev/null
a import b1.bundle >/dev/null

# An approval: submitted by one worker, approved by another.
a edit plan "$PLAN" status=submitted --as jordan >/dev/null || true
a approve "$PLAN" --as casey >/dev/null || true

# A hub: serve, enrol both replicas, sync a, b, a.
"$CS" hub serve --db hub.db --port 0 > hub.out 2>&1 &
HUB=$!
for _ in $(seq 1 100); do grep -qE '[0-9]{4,5}' hub.out && break; sleep 0.1; done
PORT=$(grep -oE '127\.0\.0\.1:[0-9]+|port [0-9]+' hub.out | grep -oE '[0-9]+$' | head -1)
TA=$("$CS" hub enroll --db hub.db --team north)
TB=$("$CS" hub enroll --db hub.db --team south)
a sync --hub "127.0.0.1:$PORT" --token "$TA" --quiet >/dev/null
b sync --hub "127.0.0.1:$PORT" --token "$TB" --quiet >/dev/null
a sync --quiet >/dev/null
kill -TERM "$HUB"; wait "$HUB" || true

mkdir -p "$HERE/expected"
for f in a.db b.db hub.db; do sqlite3 "$f" 'PRAGMA wal_checkpoint(TRUNCATE)' >/dev/null; done
cp a.db "$HERE/replica-v1.db"
cp hub.db "$HERE/hub-v1.db"
printf '{"young_person": "%s", "plan": "%s", "reminder_deleted": "%s", "reminder": "%s"}\n' "$P" "$PLAN" "$R" "$R2" > "$HERE/ids.json"
E="$HERE/expected"
a status --json > "$E/status.json"
a status > "$E/status.txt"
a conflicts --json > "$E/conflicts.json"
a conflicts > "$E/conflicts.txt"
a show young_person "$P" --json > "$E/show-young_person.json"
a show young_person "$P" > "$E/show-young_person.txt"
a show plan "$PLAN" --json > "$E/show-plan.json"
a show reminder "$R2" --json > "$E/show-reminder.json"
a list reminder --json > "$E/list-reminder.json"
a list approval --json > "$E/list-approval.json"
a history young_person "$P" --json > "$E/history-young_person.json"
a history young_person "$P" > "$E/history-young_person.txt"
a history plan "$PLAN" --json > "$E/history-plan.json"
a history reminder "$R" --json > "$E/history-reminder-deleted.json"
a history reminder "$R2" --json > "$E/history-reminder.json"
"$CS" hub replicas --db "$HERE/hub-v1.db" --json > "$E/hub-replicas.json"
# Small in git: rewritten with 1 KiB pages (VACUUM keeps every row; the files stay in WAL mode).
for f in "$HERE/replica-v1.db" "$HERE/hub-v1.db"; do
  sqlite3 "$f" 'PRAGMA wal_checkpoint(TRUNCATE)' >/dev/null
  sqlite3 "$f" 'PRAGMA journal_mode=DELETE; PRAGMA page_size=1024; VACUUM; PRAGMA journal_mode=WAL;' >/dev/null
  rm -f "$f-wal" "$f-shm"
done
ls -l "$HERE"
