#!/usr/bin/env bash
# The CareSync demo: a hub on loopback, two team replicas that edit the same pathway-plan goal
# offline and sync over TCP (and, at the end, carry a change on a bundle file). A last-writer-wins date merges silently, the narrative text becomes a
# conflict with both candidates, a manager resolves it, every replica converges, the history shows
# who changed what from where and when, a replica restored from a backup loses nothing (its lost
# edit comes back from the hub, a write on the restored file is re-issued under a new identity),
# one capped bursary is split across two offline teams by escrow rights and never overspent,
# a young person moved to another team arrives there whole and is purged from the old team's files,
# and the operator view shows health without contents.
set -euo pipefail
cd "$(dirname "$0")/.."
source Tools/check-deps.sh
echo "== building caresync (release) =="
swift build -c release --product caresync 2>&1 | tail -1
bin="$(swift build -c release --show-bin-path)/caresync"

work="${DEMO_DIR:-$(mktemp -d)}"
mkdir -p "$work"
cd "$work"
rm -f alex.db* morgan.db* quinn.db* lee.db* hub.db* hub.log
say() { printf '\n\033[1m== %s ==\033[0m\n' "$*"; }
run() { printf '$ caresync %s\n' "$*"; "$bin" "$@"; }

say "Start a hub on loopback (the operator's machine)"
"$bin" hub serve --db hub.db --host 127.0.0.1 --port 0 > hub.log 2>&1 &
hub_pid=$!
trap 'kill -TERM $hub_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do grep -q "listening on" hub.log 2>/dev/null && break; sleep 0.1; done
cat hub.log
address=$(sed -n 's/.* listening on \(.*\)$/\1/p' hub.log)
alex_token=$("$bin" hub enroll --db hub.db --team PERM-THROUGHCARE)
morgan_token=$("$bin" hub enroll --db hub.db --team PERM-THROUGHCARE)
echo "enrolment tokens issued for two replicas of team PERM-THROUGHCARE"

say "Two replicas: Alex (a PA on home visits) and Morgan (team manager)"
run init alex.db --name "Alex (PA)"
run init morgan.db --name "Morgan (team manager)"
alex() { "$bin" "$@" --replica alex.db --as alex; }
morgan() { "$bin" "$@" --replica morgan.db --as morgan; }

say "Alex records Ava, her pathway plan and an accommodation goal, and syncs (enrolling)"
ava=$(alex add young_person legal_given_name=Ava legal_family_name=Le\ Brun date_of_birth=2007-03-14 legal_status=care_leaver)
plan=$(alex add plan yp_id="$ava" kind=pathway title="Pathway plan 2025" summary="Ava is settling at college")
goal=$(alex add goal plan_id="$plan" domain=accommodation statement="Move to own studio by Sept" target_date=2025-09-01)
echo "young person $ava"; echo "plan         $plan"; echo "goal         $goal"
run sync --replica alex.db --hub "$address" --token "$alex_token"
run sync --replica morgan.db --hub "$address" --token "$morgan_token"

say "Both edit offline, concurrently (no sync in between)"
echo "Alex (10:15, at a home visit):  statement = 'Move to own studio by Oct; Ava prefers St Brelade'"
alex edit goal "$goal" statement="Move to own studio by Oct; Ava prefers St Brelade" >/dev/null
echo "Morgan (10:40, in the office):   statement = 'Move to own studio by Sept via Andium Gateway', target_date = 2025-09-30"
morgan edit goal "$goal" statement="Move to own studio by Sept via Andium Gateway" target_date=2025-09-30 >/dev/null
echo "Alex (16:00, still offline):     target_date = 2025-10-31; adds a 'missing_risk' alert"
alex edit goal "$goal" target_date=2025-10-31 >/dev/null
alex set-add young_person "$ava" alerts missing_risk >/dev/null

say "They sync over TCP"
run sync --replica alex.db
run sync --replica morgan.db --json
run sync --replica alex.db

say "Merged: target_date by last writer (Alex, 16:00); the narrative is a conflict for a person"
run show goal "$goal" --replica morgan.db
run conflicts --replica alex.db

say "Morgan's submit is refused while the goal is in conflict"
"$bin" edit plan "$plan" status=submitted --replica morgan.db --as morgan || echo "(exit code $?)"

say "Morgan resolves it by picking Alex's text; the resolution supersedes both candidates"
run resolve goal "$goal" statement --pick 1 --replica morgan.db --as morgan
run sync --replica morgan.db
run sync --replica alex.db

say "History of the goal's statement: who, from which replica, when it happened, when recorded"
run history goal "$goal" --field statement --replica alex.db

say "Both replicas are plain SQLite files and hold identical current values"
for db in alex.db morgan.db; do
  printf '$ sqlite3 %s "select statement, target_date, status from goal"\n' "$db"
  sqlite3 "$db" "select statement, target_date, status from goal"
done
a=$(sqlite3 alex.db "select statement, target_date, status from goal; select alerts from young_person")
m=$(sqlite3 morgan.db "select statement, target_date, status from goal; select alerts from young_person")
if [ "$a" = "$m" ]; then echo "converged: yes"; else echo "converged: NO"; exit 1; fi

say "No network at all? Carry changes as a checksummed bundle file (USB stick, e-mail)"
echo "Alex records a case note offline:"; alex add case_note yp_id="$ava" category=contact occurred_at=2025-06-23 body="Phoned Ava about the studio viewing"
run export alex-usb.bundle --replica alex.db
run import alex-usb.bundle --replica morgan.db
run import alex-usb.bundle --replica morgan.db
echo "(the second import changes nothing: imports are idempotent by change id)"

say "Alex's laptop is restored from last night's backup: nothing written is lost"
run sync --replica alex.db
printf '$ sqlite3 alex.db ".backup alex-backup.db"\n'; sqlite3 alex.db ".backup alex-backup.db"
echo "Alex edits the goal's target date and syncs; then the laptop is restored from the backup:"
alex edit goal "$goal" target_date=2025-11-15 >/dev/null
run sync --replica alex.db
rm -f alex.db-wal alex.db-shm; cp alex-backup.db alex.db
printf '$ sqlite3 alex.db "select target_date from goal"   # the backup predates the edit\n'
sqlite3 alex.db "select target_date from goal"
echo "Before syncing, Alex writes again on the restored file (its counters collide with the lost edit's):"
alex edit goal "$goal" statement="Move to own studio by Nov; viewing booked" >/dev/null
run sync --replica alex.db
run sync --replica morgan.db
run sync --replica alex.db
for db in alex.db morgan.db; do
  printf '$ sqlite3 %s "select statement, target_date from goal"\n' "$db"
  sqlite3 "$db" "select statement, target_date from goal"
done
a=$(sqlite3 alex.db "select statement, target_date from goal"); m=$(sqlite3 morgan.db "select statement, target_date from goal")
if [ "$a" = "$m" ] && [ "${a##*|}" = "2025-11-15" ]; then echo "both edits kept, replicas agree: yes"; else echo "restore lost a write: NO"; exit 1; fi

say "Team scope: a replica holds only its team's young people"
quinn_token=$("$bin" hub enroll --db hub.db --team CIN-1)
run init quinn.db --name "Quinn (CIN-1 social worker)"
quinn() { "$bin" "$@" --replica quinn.db --as quinn; }
pa=$(alex add allocation yp_id="$ava" role=pa worker_id=alex team_id=PERM-THROUGHCARE from_date=2025-06-01)
run sync --replica alex.db
run sync --replica quinn.db --hub "$address" --token "$quinn_token"
printf '$ sqlite3 quinn.db "select count(*) from young_person"   # CIN-1 is not involved with Ava\n'
n=$(sqlite3 quinn.db "select count(*) from young_person"); echo "$n"
[ "$n" = 0 ] || { echo "another team's young person reached CIN-1: NO"; exit 1; }
echo "Ava moves to CIN-1: Alex allocates Quinn and ends the PA allocation, then syncs (her edits go first, then the purge)"
alex add allocation yp_id="$ava" role=social_worker worker_id=quinn team_id=CIN-1 from_date=2025-07-01 >/dev/null
alex edit allocation "$pa" ended_on=2025-06-30 end_reason=transfer >/dev/null
run sync --replica alex.db
run sync --replica alex.db
run sync --replica morgan.db
run sync --replica quinn.db
for db in alex.db morgan.db quinn.db; do
  printf '$ sqlite3 %s "select count(*) from young_person"\n' "$db"; sqlite3 "$db" "select count(*) from young_person"
done
if [ "$(sqlite3 quinn.db "select count(*) from goal")" = 1 ] && [ "$(sqlite3 alex.db "select count(*) from young_person")" = 0 ] \
   && ! grep -qa "Le Brun" alex.db morgan.db; then
  echo "the bundle moved whole, and nothing of it is left in the old team's files: yes"
else
  echo "the transfer left something behind or lost something: NO"; exit 1
fi
say "A capped award split across two offline teams: escrow rights, never more than the cap"
lee_token=$("$bin" hub enroll --db hub.db --team VIRTUAL-SCHOOL)
run init lee.db --name "Lee (Virtual School)"
lee() { "$bin" "$@" --replica lee.db --as lee; }
today=$(date -u +%F)   # a decision dated before the replica's last sync would be flagged CLOCK_SUSPECT
echo "Quinn (CIN-1) involves the Virtual School with Ava; both teams ask the hub for a share of her £1,000 apprentice bursary while online:"
quinn set-add young_person "$ava" involved_teams VIRTUAL-SCHOOL >/dev/null
run sync --replica quinn.db
run sync --replica lee.db --hub "$address" --token "$lee_token"
run rights request --person "$ava" --item APPRENTICE_BURSARY --amount £600.00 --replica quinn.db --as quinn
run rights request --person "$ava" --item APPRENTICE_BURSARY --amount £400.00 --replica lee.db --as lee
run sync --replica quinn.db
run sync --replica lee.db
run rights show --replica quinn.db
run rights show --replica lee.db
echo "Both go offline. Each commits within the rights it holds; Lee's second request waits instead of committing:"
run request-award yp_id="$ava" item_code=APPRENTICE_BURSARY requested_amount_pence=£600.00 decision_date="$today" purpose=tools --replica quinn.db --as quinn
run request-award yp_id="$ava" item_code=APPRENTICE_BURSARY requested_amount_pence=£400.00 decision_date="$today" purpose=course --replica lee.db --as lee
extra=$(lee request-award yp_id="$ava" item_code=APPRENTICE_BURSARY requested_amount_pence=£100.00 decision_date="$today" purpose=travel --json)
echo "$extra"
echo "$extra" | grep -q '"status" : "requested"' || { echo "a request beyond the rights held committed: NO"; exit 1; }
echo "They sync: the hub holds £1,000 committed, and refuses the £100 the cap can no longer meet (CAP_REACHED, kept, flagged)"
run sync --replica quinn.db
run sync --replica lee.db
run flags list --replica lee.db
escrow=$("$bin" hub escrow --db hub.db --json)
echo "$ caresync hub escrow --db hub.db --json"; echo "$escrow"
echo "$escrow" | tr -d ' \n' | grep -q '"committed":100000,"item":"APPRENTICE_BURSARY","outstanding":0' \
  && echo "committed £1,000.00 of a £1,000.00 cap across two offline teams; nothing over: yes" \
  || { echo "the bursary's cap did not hold: NO"; exit 1; }

run audit verify --db hub.db

say "The hub operator's view: health per replica, no record contents"
run hub replicas --db hub.db

say "Stop the hub (SIGTERM: graceful shutdown)"
kill -TERM $hub_pid; wait $hub_pid || true; trap - EXIT
tail -1 hub.log
echo
echo "demo files are in $work"
