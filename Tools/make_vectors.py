#!/usr/bin/env python3
"""Writes Protocol/vectors/*.json from the rules in Protocol/*.md (stdlib only).

This is an encoder written from the spec, not from the Swift code: each positive vector is
described in its decoded JSON shape (Protocol/vectors/README.md) and encoded here; each negative
vector is a hand-made byte string with one fault. The Swift codec and Tools/protocol_decoder.py
are both checked against the result.

    python3 Tools/make_vectors.py                 # (re)write Protocol/vectors/*.json
    python3 Tools/make_vectors.py --annotate NAME # print an annotated hex dump for the spec

zlib output can differ between zlib releases, so the compressed vectors' bytes are pinned by the
files in git, not by this script: regenerate only when a vector is added or changed.
"""

import argparse
import hashlib
import json
import os
import struct
import sys
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VECTORS = os.path.join(ROOT, "Protocol", "vectors")

TYPES = {"hello": 0x01, "welcome": 0x02, "reject": 0x03, "push": 0x10, "push_ack": 0x11,
         "fork": 0x12, "forked": 0x13, "pull": 0x20, "batch": 0x21, "recover": 0x22, "recovered": 0x23,
         "heartbeat": 0x30, "purge_ack": 0x31, "review": 0x32, "held": 0x33, "error": 0x7E, "goodbye": 0x7F}
CODES = {"MALFORMED_FRAME": 1, "FRAME_TOO_LARGE": 2, "UNKNOWN_MESSAGE": 3, "RESERVED_BITS": 4,
         "TRAILING_BYTES": 5, "BAD_COMPRESSION": 6, "DECOMPRESSION_LIMIT": 7,
         "UNEXPECTED_MESSAGE": 8, "UNSUPPORTED_VERSION": 9, "SCHEMA_MISMATCH": 10,
         "AUTHENTICATION_FAILED": 11, "ENROLMENT_INVALID": 12, "TIMEOUT": 13, "BUSY": 14,
         "CLOCK_SKEW": 15, "STORAGE_FAILURE": 16, "SHUTTING_DOWN": 17, "LIMIT_EXCEEDED": 18,
         "MALFORMED_MESSAGE": 19, "EQUIVOCATION": 20, "CURSOR_AHEAD": 21, "SIGNATURE_INVALID": 22,
         "CHAIN_GAP": 23, "UNSIGNED_CHANGES": 24, "UNKNOWN_DEVICE": 25, "HUB_KEY_CHANGED": 26}
VERDICTS = {"accept": 1, "dismiss": 2}
OUTCOMES = {1: "recorded", 2: "resolved already", 3: "refused"}
REASONS = {"OUT_OF_SCOPE": 1, "RESTRICTED": 2}
VALUE_TAGS = {"null": 0, "integer": 1, "real": 2, "text": 3, "blob": 4}
OPERATIONS = {"assign": 1, "add": 2, "remove": 3, "increment": 4}


# ---------------------------------------------------------------- annotated byte output

class Out:
    """Bytes with a label per field, so the spec's hex examples can be printed annotated."""

    def __init__(self):
        self.parts = []

    def add(self, data, label):
        self.parts.append((bytes(data), label))

    def extend(self, other, prefix=""):
        for data, label in other.parts:
            self.parts.append((data, prefix + label))

    def bytes(self):
        return b"".join(data for data, _ in self.parts)


def varint(n):
    assert 0 <= n < 1 << 64
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def svarint(n):
    assert -(1 << 63) <= n < 1 << 63
    return varint(((n << 1) ^ (n >> 63)) & 0xFFFFFFFFFFFFFFFF)


def put_varint(out, n, label):
    out.add(varint(n), f"{label} = {n}")


def put_bytes(out, data, label):
    out.add(varint(len(data)) + data, f"{label}: length {len(data)}" + (", then the bytes" if data else ""))


def put_string(out, text, label):
    data = text.encode("utf-8")
    shown = json.dumps(text, ensure_ascii=False)
    out.add(varint(len(data)) + data, f"{label}: length {len(data)}" + (f", {shown}" if data else " (empty)"))


def put_replica(out, hex_id, label):
    data = bytes.fromhex(hex_id)
    assert len(data) == 16
    out.add(data, f"{label} {hex_id}")


def put_change_id(out, change_id, label):
    put_replica(out, change_id["replica"], f"{label} replica")
    assert change_id["counter"] >= 1
    put_varint(out, change_id["counter"], f"{label} counter")


def put_value(out, value, label):
    (kind, payload), = value.items()
    out.add([VALUE_TAGS[kind]], f"{label} tag {VALUE_TAGS[kind]} ({kind})")
    if kind == "integer":
        out.add(svarint(payload), f"{label} = {payload} (zig-zag)")
    elif kind == "real":
        out.add(struct.pack(">d", payload), f"{label} = {payload!r} (IEEE-754)")
    elif kind == "text":
        put_string(out, payload, f"{label}")
    elif kind == "blob":
        put_bytes(out, bytes.fromhex(payload), f"{label} blob")


def utf8_key(text):
    return text.encode("utf-8")


def put_field(out, field, label):
    put_string(out, field["column"], f"{label} column")
    (op, payload), = field["operation"].items()
    out.add([OPERATIONS[op]], f"{label} operation {OPERATIONS[op]} ({op})")
    if op == "increment":
        out.add(svarint(payload), f"{label} delta = {payload} (zig-zag)")
    else:
        put_value(out, payload, f"{label} value")
    supersedes = field["supersedes"]
    keys = [(bytes.fromhex(s["replica"]), s["counter"]) for s in supersedes]
    assert keys == sorted(set(keys)), "supersedes must be strictly ascending"
    out.add(varint(len(supersedes)), f"{label} supersedes: count {len(supersedes)}")
    for index, change_id in enumerate(supersedes):
        put_change_id(out, change_id, f"{label} supersedes[{index}]")


def put_change(out, change, label):
    """README.md, "A change": one edit of one row."""
    put_change_id(out, change["id"], f"{label} id")
    ts = change["timestamp"]
    out.add(varint(ts), f"{label} timestamp = {ts} (ms {ts >> 16}, logical {ts & 0xFFFF})")
    put_string(out, change["author"], f"{label} author")
    put_string(out, change["table"], f"{label} table")
    put_string(out, change["row"], f"{label} row")
    put_string(out, change["scope"], f"{label} scope")
    length = change["causal_length"]
    life = "exists" if length % 2 else "deleted"
    put_varint(out, length, f"{label} causal length")
    out.parts[-1] = (out.parts[-1][0], out.parts[-1][1] + f" (row {life})")
    fields = change["fields"]
    if change["sets_life"]:
        kind = "delete" if length % 2 == 0 else ("create" if length == 1 else "re-create")
        out.add([1], f"{label} flags 0x01 (sets life: a {kind})")
    else:
        out.add([0], f"{label} flags 0x00 (an edit)")
    columns = [utf8_key(field["column"]) for field in fields]
    assert columns == sorted(set(columns)), "columns must be strictly ascending by UTF-8 bytes"
    assert not (change["sets_life"] and length % 2 == 0 and fields), "a delete carries no field"
    assert change["sets_life"] or fields, "an edit edits a field"
    out.add(varint(len(fields)), f"{label} fields: count {len(fields)}")
    for index, field in enumerate(fields):
        put_field(out, field, f"{label} field[{index}]")


def put_changes(out, changes):
    out.add(varint(len(changes)), f"changes: count {len(changes)}")
    for index, change in enumerate(changes):
        put_change(out, change, f"change[{index}]")


def put_head(out, head, label):
    """identity.md, "Signed heads"."""
    put_replica(out, head["origin"], f"{label} origin")
    assert head["counter"] >= 1
    put_varint(out, head["counter"], f"{label} counter")
    chain = bytes.fromhex(head["chain"])
    assert len(chain) == 32
    out.add(chain, f"{label} chain")
    assert head["signer"] in (0, 1)
    out.add([head["signer"]], f"{label} signer = {head['signer']} ({'origin' if head['signer'] == 0 else 'hub attestation'})")
    signature = bytes.fromhex(head["signature"])
    assert len(signature) == 64
    out.add(signature, f"{label} signature")


def certificate_out(certificate, label):
    """identity.md, "Device certificates": the certificate's own bytes."""
    out = Out()
    put_replica(out, certificate["replica"], f"{label} replica")
    key = bytes.fromhex(certificate["public_key"])
    assert len(key) == 32
    out.add(key, f"{label} public key")
    assert certificate["team"]
    put_string(out, certificate["team"], f"{label} team")
    put_varint(out, certificate["issued_at_ms"], f"{label} issued_at_ms")
    put_varint(out, certificate["attested_through"], f"{label} attested_through")
    signature = bytes.fromhex(certificate["signature"])
    assert len(signature) == 64
    out.add(signature, f"{label} signature")
    return out


def put_certificate(out, certificate, label):
    """A `bytes` holding one certificate; empty for none."""
    if certificate is None:
        out.add([0], f"{label}: length 0 (none)")
        return
    body = certificate_out(certificate, label)
    out.add(varint(len(body.bytes())), f"{label}: length {len(body.bytes())}")
    out.extend(body)


def put_provenance(out, message):
    """identity.md, "Messages in protocol version 3": heads, then certificates."""
    heads, certificates = message["heads"], message["certificates"]
    keys = [(bytes.fromhex(head["origin"]), head["counter"]) for head in heads]
    assert keys == sorted(set(keys)), "heads must be strictly ascending by origin, then counter"
    replicas = [bytes.fromhex(certificate["replica"]) for certificate in certificates]
    assert replicas == sorted(set(replicas)), "certificates must be strictly ascending by replica"
    out.add(varint(len(heads)), f"heads: count {len(heads)}")
    for index, head in enumerate(heads):
        put_head(out, head, f"head[{index}]")
    out.add(varint(len(certificates)), f"certificates: count {len(certificates)}")
    for index, certificate in enumerate(certificates):
        put_certificate(out, certificate, f"certificate[{index}]")


def put_raw(out, hex_text, size, label):
    data = bytes.fromhex(hex_text)
    assert len(data) == size, (label, len(data))
    out.add(data, label)


def put_scopes(out, scopes, label):
    """messages.md, "Scope lists": non-empty, no U+0000, at most 128 bytes each, at most 4,096,
    strictly ascending by their UTF-8 bytes."""
    encoded = [scope.encode("utf-8") for scope in scopes]
    assert len(encoded) <= 4096 and all(0 < len(e) <= 128 and b"\x00" not in e for e in encoded)
    assert all(a < b for a, b in zip(encoded, encoded[1:])), "scopes strictly ascending"
    out.add(varint(len(scopes)), f"{label}: count {len(scopes)}")
    for index, scope in enumerate(scopes):
        put_string(out, scope, f"{label}[{index}]")


def payload(message):
    """The uncompressed payload of a message in its decoded JSON shape."""
    out = Out()
    kind = message["type"]
    if kind == "hello":
        put_varint(out, message["protocol_min"], "protocol_min")
        put_varint(out, message["protocol_max"], "protocol_max")
        put_varint(out, message["schema_version"], "schema_version")
        put_replica(out, message["replica"], "replica")
        put_string(out, message["app_version"], "app_version")
        (credential, value), = message["credential"].items()
        if credential == "none":
            out.add([0], "credential kind 0 (none)")
        elif credential == "enrolment_token":
            out.add([1], "credential kind 1 (enrolment token)")
            put_string(out, value, "enrolment token")
        else:
            out.add([2], "credential kind 2 (device secret)")
            put_bytes(out, bytes.fromhex(value), "device secret")
        put_varint(out, message["max_frame_body"], "max_frame_body")
        key = bytes.fromhex(message["device_key"])
        if message["protocol_max"] >= 3:
            assert len(key) in (0, 32)
            put_bytes(out, key, "device_key")
        else:
            assert not key, "a hello below protocol version 3 has no device_key"
    elif kind == "welcome":
        put_varint(out, message["protocol_version"], "protocol_version")
        put_varint(out, message["schema_version"], "schema_version")
        put_replica(out, message["hub"], "hub")
        put_varint(out, message["max_frame_body"], "max_frame_body")
        put_bytes(out, bytes.fromhex(message["issued_credential"]), "issued_credential")
        put_varint(out, message["hub_time_ms"], "hub_time_ms")
        put_varint(out, message["heartbeat_interval_ms"], "heartbeat_interval_ms")
        put_varint(out, message["own_durable"], "own_durable")
        put_raw(out, message["hub_key"], 32, "hub_key")
        put_raw(out, message["incarnation"], 16, "incarnation")
        put_certificate(out, message["certificate"], "certificate")
        put_scopes(out, message["purges"], "purges")
    elif kind in ("reject", "error"):
        code = message["code"]
        out.add(varint(CODES[code]), f"code = {CODES[code]} ({code})")
        if kind == "reject":
            put_varint(out, message["retry_after_ms"], "retry_after_ms")
        else:
            out.add([1 if message["fatal"] else 0], f"fatal = {int(message['fatal'])}")
        put_string(out, message["message"], "message")
    elif kind == "push":
        put_varint(out, message["batch"], "batch")
        put_changes(out, message["changes"])
        put_provenance(out, message)
    elif kind == "push_ack":
        put_varint(out, message["batch"], "batch")
        durable = message["durable"]
        assert [d["replica"] for d in durable] == sorted({d["replica"] for d in durable})
        out.add(varint(len(durable)), f"durable: count {len(durable)}")
        for index, entry in enumerate(durable):
            put_replica(out, entry["replica"], f"durable[{index}] replica")
            assert entry["counter"] >= 1
            put_varint(out, entry["counter"], f"durable[{index}] counter")
        put_varint(out, message["hub_head"], "hub_head")
    elif kind == "pull":
        put_varint(out, message["cursor"], "cursor")
        put_varint(out, message["byte_budget"], "byte_budget")
    elif kind == "batch":
        put_varint(out, message["next_cursor"], "next_cursor")
        out.add([1 if message["more"] else 0], f"more = {int(message['more'])}")
        put_changes(out, message["changes"])
        put_provenance(out, message)
    elif kind == "recover":
        put_replica(out, message["origin"], "origin")
        put_varint(out, message["after"], "after")
        put_varint(out, message["byte_budget"], "byte_budget")
    elif kind == "recovered":
        put_replica(out, message["origin"], "origin")
        put_varint(out, message["next_counter"], "next_counter")
        out.add([1 if message["more"] else 0], f"more = {int(message['more'])}")
        put_changes(out, message["changes"])
        put_provenance(out, message)
    elif kind == "fork":
        put_replica(out, message["new_replica"], "new_replica")
        put_raw(out, message["device_key"], 32, "device_key")
    elif kind == "forked":
        put_replica(out, message["new_replica"], "new_replica")
        put_bytes(out, bytes.fromhex(message["issued_credential"]), "issued_credential")
        put_certificate(out, message["certificate"], "certificate")
    elif kind == "heartbeat":
        for field in ("pending_changes", "oldest_unsynced_age_ms", "open_conflicts", "schema_version"):
            put_varint(out, message[field], field)
    elif kind == "purge_ack":
        put_scopes(out, message["scopes"], "scopes")
    elif kind == "review":
        decisions = message["decisions"]
        put_varint(out, len(decisions), f"decisions: count {len(decisions)}")
        for index, decision in enumerate(decisions):
            put_change_id(out, decision["id"], f"decisions[{index}]")
            verdict = VERDICTS[decision["verdict"]]
            out.add([verdict], f"decisions[{index}] verdict {verdict} ({decision['verdict']})")
        if message["after"] is None:
            out.add([0], "after: absent")
        else:
            out.add([1], "after: present")
            put_change_id(out, message["after"], "after")
    elif kind == "held":
        outcomes = message["outcomes"]
        put_varint(out, len(outcomes), f"outcomes: count {len(outcomes)}")
        for index, outcome in enumerate(outcomes):
            put_change_id(out, outcome["id"], f"outcomes[{index}]")
            out.add([outcome["outcome"]], f"outcomes[{index}] outcome {outcome['outcome']} ({OUTCOMES[outcome['outcome']]})")
        out.add([1 if message["more"] else 0], f"more = {1 if message['more'] else 0}")
        items = message["items"]
        put_varint(out, len(items), f"items: count {len(items)}")
        for index, item in enumerate(items):
            put_replica(out, item["from_replica"], f"items[{index}] from_replica")
            reason = REASONS[item["reason"]]
            out.add([reason], f"items[{index}] reason {reason} ({item['reason']})")
            put_varint(out, item["received_at_ms"], f"items[{index}] received_at_ms")
            put_change(out, item["change"], f"items[{index}] change")
    elif kind == "goodbye":
        put_varint(out, message["reason"], "reason")
    else:
        raise ValueError(kind)
    return out


def frame(type_byte, flags, body, type_label):
    out = Out()
    length = 2 + len(body.bytes())
    out.add(struct.pack(">I", length), f"length = {length} (type + flags + payload)")
    out.add([type_byte], f"type 0x{type_byte:02x} ({type_label})")
    out.add([flags], f"flags 0x{flags:02x}" + (" (compressed)" if flags & 1 else ""))
    out.extend(body)
    return out


def encode(message):
    body = payload(message)
    flags = 0
    if message["compressed"]:
        raw = body.bytes()
        stream = zlib.compress(raw, 9)
        body = Out()
        body.add(varint(len(raw)), f"uncompressed size = {len(raw)}")
        body.add(stream, f"zlib stream ({len(stream)} bytes)")
        flags = 1
    return frame(TYPES[message["type"]], flags, body, message["type"])


def raw_frame(type_byte, flags, payload_bytes):
    return struct.pack(">I", 2 + len(payload_bytes)) + bytes([type_byte, flags]) + payload_bytes


# ---------------------------------------------------------------- positive vectors

R1 = "8f3c2a1b4d5e6f708192a3b4c5d6e7f8"   # a social worker's laptop
R2 = "1f2e3d4c5b6a79880796a5b4c3d2e1f0"   # a colleague's laptop (sorts before R1)
R3 = "f0000000000000000000000000000003"
HUB = "5d1e0000000000000000000000000001"
SECRET = "9c0e4f1a7b3d58e26a1f0c9d8e7b6a5948372615a4b3c2d1e0f9a8b7c6d5e4f3"
FORKED = "4a91d2e07c3b5f1886e2a0d9b7c4f513"   # the new identity a diverged copy of R1 draws
FORKED_SECRET = "e1d2c3b4a5968778695a4b3c2d1e0ff0f1e2d3c4b5a6978879605a4b3c2d1e0f"
T0 = 1_750_000_000_000  # 2025-06-15T15:06:40Z, in ms


def ts(ms_offset, logical=0):
    return ((T0 + ms_offset) << 16) | logical


def cid(replica, counter):
    return {"replica": replica, "counter": counter}


def field(column, operation, supersedes=()):
    return {"column": column, "operation": operation, "supersedes": list(supersedes)}


def edit(change_id, timestamp, author, table, row, scope, fields, causal_length=1, sets_life=False):
    """One row edit; its fields in wire order (ascending UTF-8 bytes of the column)."""
    return {"id": change_id, "timestamp": timestamp, "author": author, "table": table, "row": row, "scope": scope,
            "causal_length": causal_length, "sets_life": sets_life,
            "fields": sorted(fields, key=lambda f: utf8_key(f["column"]))}


def text(value):
    return {"assign": {"text": value}}


def msg(kind, compressed=False, **fields):
    if kind in ("push", "batch", "recovered"):
        fields.setdefault("heads", [])
        fields.setdefault("certificates", [])
    return {"type": kind, "compressed": compressed, **fields}


# Keys, chain hashes and signatures below are arbitrary bytes made from a label (SHA-256 for 32
# bytes, SHA-512 for 64), not real keys or valid signatures: a decoder checks encodings only, and
# verifying is the session's (identity.md, "Verifying a run of changes").
def bytes32(label):
    return hashlib.sha256(label.encode()).hexdigest()


def bytes64(label):
    return hashlib.sha512(label.encode()).hexdigest()


def head(origin, counter, signer=0):
    return {"origin": origin, "counter": counter, "chain": bytes32(f"chain {origin} {counter}"), "signer": signer,
            "signature": bytes64(f"head {origin} {counter} {signer}")}


def certificate(replica, team, issued_at_ms, attested_through=0):
    return {"replica": replica, "public_key": bytes32(f"device key {replica}"), "team": team, "issued_at_ms": issued_at_ms,
            "attested_through": attested_through, "signature": bytes64(f"certificate {replica}")}


HUB_KEY = bytes32("hub key")
INCARNATION = "7c0a3e51d2b94f86a1e0c3b5d7f92468"
TEAM = "leeds-east"


YP = "p-11"   # the young person these records are about: the scope of their rows

GOAL_CREATED = edit(cid(R1, 41), ts(0), "w-ayo", "goal", "g-7f3a", YP,
                    [field("title", text("Enrol at college")), field("status", text("open"))], sets_life=True)
GOAL_TITLE = edit(cid(R1, 42), ts(0, 1), "w-ayo", "goal", "g-7f3a", YP, [field("title", text("Enrol at Leeds college"))])
VISIT_DELETED = edit(cid(R2, 7), ts(5_000), "w-ben", "visit", "v-0192", YP, [], causal_length=2, sets_life=True)
VISIT_RECREATED = edit(cid(R2, 11), ts(9_000), "w-ben", "visit", "v-0192", YP, [field("notes", text("Visit rebooked"))],
                       causal_length=3, sets_life=True)
GOAL_BARE = edit(cid(R3, 18), ts(9_500), "w-cat", "goal", "g-80", YP, [], sets_life=True)
TAG_ADD = edit(cid(R1, 43), ts(60_000), "w-ayo", "person", "p-11", YP, [field("needs", {"add": {"text": "dental check"}})])
TAG_REMOVE = edit(cid(R2, 9), ts(61_000, 2), "w-ben", "person", "p-11", YP,
                  [field("needs", {"remove": {"text": "dental check"}}, supersedes=[cid(R2, 3), cid(R1, 43)])])
STATUS_RESOLVE = edit(cid(R1, 44), ts(62_000), "w-ayo", "plan", "pl-3", YP,
                      [field("status", text("approved"), supersedes=[cid(R2, 8), cid(R1, 40), cid(R3, 1)])], causal_length=3)
LEDGER_DEBIT = edit(cid(R2, 10), ts(63_000), "w-ben", "award", "aw-5", YP, [field("balance_pence", {"increment": -2500})])
LEDGER_CREDIT = edit(cid(R3, 2), ts(63_500), "w-cat", "award", "aw-5", YP, [field("balance_pence", {"increment": 150000})])
AGE_AND_HEIGHT = edit(cid(R3, 3), ts(70_000), "w-cat", "person", "p-11", YP,
                      [field("age_years", {"assign": {"integer": 17}}), field("height_m", {"assign": {"real": 1.72}})])
NOTE_VALUES = edit(cid(R3, 4), ts(70_001), "w-cat", "note", "n-9", YP, [
    field("floor", {"assign": {"integer": -9223372036854775808}}),
    field("cap", {"assign": {"integer": 9223372036854775807}}),
    field("visits", {"assign": {"integer": 17}}),
    field("distance_km", {"assign": {"real": 12.75}}),
    field("offset", {"assign": {"real": -0.1}}),
    field("attachment", {"assign": {"blob": "89504e470d0a1a0a00"}}),
    field("signature", {"assign": {"blob": ""}}),
    field("summary", {"assign": {"null": None}}),
    field("text", text("Zoë’s café visit ✓ 👍")),
    field("title", text("")),
])
BLOB = edit(cid(R3, 8), ts(70_005), "w-cat", "note", "n-9", YP, [field("attachment", {"assign": {"blob": "89504e470d0a1a0a"}})])
ADD_INTEGER = edit(cid(R3, 13), ts(70_010), "w-cat", "person", "p-11", YP, [field("school_years", {"add": {"integer": 2024}})])
REMOVE_REAL = edit(cid(R3, 14), ts(70_011), "w-cat", "person", "p-11", YP, [field("weights", {"remove": {"real": 1.5}})])
INCREMENT_ZERO = edit(cid(R3, 15), ts(70_012), "w-cat", "award", "aw-5", YP, [field("visits", {"increment": 0})])
UNKNOWN_COLUMN = edit(cid(R3, 16), ts(70_013), "w-cat", "goal", "g-7f3a", YP,
                      [field("added_in_schema_9", text("kept by older replicas"))])
EVERY_OPERATION = edit(cid(R1, 46), ts(80_000), "w-ayo", "person", "p-11", YP, [
    field("placement", text("foster care"), supersedes=[cid(R2, 8)]),
    field("needs", {"add": {"text": "bus pass"}}),
    field("weights", {"remove": {"real": 1.5}}, supersedes=[cid(R1, 43), cid(R3, 14)]),
    field("contact_count", {"increment": 1}),
])
ENTITLEMENT = edit(cid(R1, 45), ts(81_000), "w-ayo", "entitlement", "ent-bus", "",
                   [field("name", text("Bus pass")), field("amount_pence", {"assign": {"integer": 2500}})], sets_life=True)
# Columns are ordered by their UTF-8 bytes: upper case before lower, a prefix before what extends it,
# ASCII before any multi-byte character.
COLUMN_ORDER = edit(cid(R3, 17), ts(82_000), "w-cat", "note", "n-9", YP,
                    [field("zoë", text("3")), field("zone", text("2")), field("Zone", text("0")), field("zon", text("1"))])


def visit_notes(count):
    return [edit(cid(R2, 100 + i), ts(100_000 + i), "w-ben", "visit", f"v-{1000 + i}", YP,
                 [field("notes", text("Visited at home. Young person well, room tidy, no concerns raised. " * 2))])
            for i in range(count)]


MESSAGES = [
    ("hello-enrolment-token", "First connection of a new replica, enrolling with a one-time token.",
     msg("hello", protocol_min=4, protocol_max=4, schema_version=3, replica=R1, app_version="caresync/0.4.0",
         credential={"enrolment_token": "K7Q2-9XWD-4M3P"}, max_frame_body=4194304, device_key=bytes32(f"device key {R1}"))),
    ("hello-device-secret", "A returning replica offering protocol versions 4 to 5 and a 1 MiB frame limit, with its registered key.",
     msg("hello", protocol_min=4, protocol_max=5, schema_version=3, replica=R1, app_version="caresync/0.5.1",
         credential={"device_secret": SECRET}, max_frame_body=1048576, device_key=bytes32(f"device key {R1}"))),
    ("hello-no-credential", "No credential and so no device key (refused by any hub not configured for open testing).",
     msg("hello", protocol_min=4, protocol_max=4, schema_version=1, replica=R2, app_version="",
         credential={"none": None}, max_frame_body=65536, device_key="")),
    ("hello-version-3", "A replica of protocol version 3 (no purges in its welcome, no purge-ack): decodes, and the hub "
                        "rejects it with UNSUPPORTED_VERSION (vector reject-unsupported-version).",
     msg("hello", protocol_min=3, protocol_max=3, schema_version=3, replica=R1, app_version="caresync/0.7.0",
         credential={"device_secret": SECRET}, max_frame_body=4194304, device_key=bytes32(f"device key {R1}"))),
    ("hello-version-2", "A replica of protocol version 2 (no device key: its hello ends at max_frame_body): decodes, and the "
                        "hub rejects it with UNSUPPORTED_VERSION.",
     msg("hello", protocol_min=2, protocol_max=2, schema_version=3, replica=R1, app_version="caresync/0.6.0",
         credential={"device_secret": SECRET}, max_frame_body=4194304, device_key="")),
    ("hello-version-1", "A replica of protocol version 1 (one field per change): decodes, and the hub rejects it with "
                        "UNSUPPORTED_VERSION.",
     msg("hello", protocol_min=1, protocol_max=1, schema_version=3, replica=R1, app_version="caresync/0.4.0",
         credential={"device_secret": SECRET}, max_frame_body=4194304, device_key="")),
    ("welcome-enrolled", "The hub accepts an enrolment, issues the device secret and the device's certificate, and gives "
                         "its key (to pin) and incarnation.",
     msg("welcome", protocol_version=4, schema_version=4, hub=HUB, max_frame_body=4194304, issued_credential=SECRET,
         hub_time_ms=T0 + 123, heartbeat_interval_ms=30000, own_durable=0, hub_key=HUB_KEY, incarnation=INCARNATION,
         certificate=certificate(R1, TEAM, T0 + 120), purges=[])),
    ("welcome-returning", "The hub accepts a device secret: nothing is issued, and it has no certificate to give.",
     msg("welcome", protocol_version=4, schema_version=3, hub=HUB, max_frame_body=1048576, issued_credential="",
         hub_time_ms=T0 + 5000, heartbeat_interval_ms=30000, own_durable=44, hub_key=HUB_KEY, incarnation=INCARNATION,
         certificate=None, purges=[])),
    ("welcome-purges", "The hub owes the replica purges of two young people its team is no longer involved with "
                       "(scope.md, \"Purge\"); ascending by their UTF-8 bytes.",
     msg("welcome", protocol_version=4, schema_version=3, hub=HUB, max_frame_body=1048576, issued_credential="",
         hub_time_ms=T0 + 7000, heartbeat_interval_ms=30000, own_durable=46, hub_key=HUB_KEY, incarnation=INCARNATION,
         certificate=None, purges=["p-11", "p-27"])),
    ("welcome-own-durable-largest", "own_durable at 2^64 - 1, ten bytes: decodes; the session compares it like any counter.",
     msg("welcome", protocol_version=4, schema_version=3, hub=HUB, max_frame_body=65536, issued_credential="",
         hub_time_ms=T0 + 6000, heartbeat_interval_ms=30000, own_durable=18446744073709551615, hub_key=HUB_KEY,
         incarnation=INCARNATION, certificate=None, purges=[])),
    ("reject-busy", "The hub is at its connection cap: retry in 5 s.",
     msg("reject", code="BUSY", retry_after_ms=5000, message="connection limit reached")),
    ("reject-enrolment-invalid", "The enrolment token has been used already.",
     msg("reject", code="ENROLMENT_INVALID", retry_after_ms=0, message="enrolment token already used")),
    ("reject-unsupported-version", "No protocol version in common: the answer to hello-version-3.",
     msg("reject", code="UNSUPPORTED_VERSION", retry_after_ms=0,
         message="this hub speaks protocol version 4 only; the client offered 3 to 3: update the client")),
    ("push-create-and-edit", "A row created with two fields (sets life, causal length 1), then one field of it edited.",
     msg("push", batch=1, changes=[GOAL_CREATED, GOAL_TITLE], heads=[head(R1, 42)])),
    ("push-set-add-and-remove", "A set add and a set remove that supersedes two add tags; the remove is R2's, carried "
                                "in a bundle, so its head and R2's certificate come with it (heads ascending by origin: R2 "
                                "before R1).",
     msg("push", batch=2, changes=[TAG_ADD, TAG_REMOVE], heads=[head(R2, 9), head(R1, 43)],
         certificates=[certificate(R2, TEAM, T0 - 86_400_000)])),
    ("push-resolve-and-debit", "A status write superseding three candidates, and a negative increment.",
     msg("push", batch=3, changes=[STATUS_RESOLVE, LEDGER_DEBIT], heads=[head(R2, 10), head(R1, 44)])),
    ("push-integer-and-real", "One edit assigning an integer and a real.",
     msg("push", batch=4, changes=[AGE_AND_HEIGHT], heads=[head(R3, 3)])),
    ("push-blob", "A blob assigned.",
     msg("push", batch=5, changes=[BLOB], heads=[head(R3, 8)])),
    ("push-every-operation", "One edit of four fields: an assign superseding a candidate, a set add, a set remove "
                             "superseding two tags, an increment.",
     msg("push", batch=6, changes=[EVERY_OPERATION], heads=[head(R1, 46)])),
    ("push-no-scope", "A row that belongs to no young person (the entitlement catalogue): empty scope.",
     msg("push", batch=8, changes=[ENTITLEMENT], heads=[head(R1, 45)])),
    ("push-empty", "An empty push: valid, acknowledged like any other.",
     msg("push", batch=7, changes=[])),
    ("push-ack", "The hub holds R2 up to 12 and R1 up to 44 durably; its head is 1234.",
     msg("push_ack", batch=1, durable=[cid(R2, 12), cid(R1, 44)], hub_head=1234)),
    ("push-ack-empty", "The ack of an empty push.",
     msg("push_ack", batch=7, durable=[], hub_head=0)),
    ("pull-from-start", "A replica's first pull: cursor 0, 256 KiB budget.",
     msg("pull", cursor=0, byte_budget=262144)),
    ("pull-resume", "Pull resuming after hub sequence 1234.",
     msg("pull", cursor=1234, byte_budget=1048576)),
    ("pull-largest-values", "The largest varint: 2^64 - 1, ten bytes.",
     msg("pull", cursor=18446744073709551615, byte_budget=18446744073709551615)),
    ("batch-values", "One edit of ten fields holding every value type, including the extreme integers.",
     msg("batch", next_cursor=1240, more=True, changes=[NOTE_VALUES], heads=[head(R3, 4)])),
    ("batch-column-order", "Columns in ascending order of their UTF-8 bytes: Zone, zon, zone, zoë.",
     msg("batch", next_cursor=1241, more=True, changes=[COLUMN_ORDER], heads=[head(R3, 17)])),
    ("batch-row-life", "A row deleted (no fields), re-created with a field (causal length 3), and a row created "
                       "with no field set.",
     msg("batch", next_cursor=1242, more=True, changes=[VISIT_DELETED, VISIT_RECREATED, GOAL_BARE],
         heads=[head(R2, 7), head(R2, 11), head(R3, 18)])),
    ("batch-operations", "Add, remove and increment with values of other types; a column this schema may not know. "
                         "R3's change 2 was written before protocol version 3: its head is the hub's attestation "
                         "(signer 1), valid up to the certificate's attested_through.",
     msg("batch", next_cursor=1250, more=True, changes=[ADD_INTEGER, REMOVE_REAL, INCREMENT_ZERO, LEDGER_CREDIT,
                                                         UNKNOWN_COLUMN],
         heads=[head(R3, 2, signer=1), head(R3, 15), head(R3, 16)],
         certificates=[certificate(R3, TEAM, T0 - 3_600_000, attested_through=2)])),
    ("batch-two-changes", "A row deleted (causal length 2) and an edit of another row, with the heads of both runs and "
                          "R2's certificate.",
     msg("batch", next_cursor=1236, more=False, changes=[VISIT_DELETED, GOAL_TITLE], heads=[head(R2, 7), head(R1, 42)],
         certificates=[certificate(R2, TEAM, T0 - 86_400_000)])),
    ("batch-add-and-remove", "A set add of an integer and a set remove of a real.",
     msg("batch", next_cursor=1245, more=True, changes=[ADD_INTEGER, REMOVE_REAL], heads=[head(R3, 14)])),
    ("batch-increment", "One counter increment, under the hub's attestation.",
     msg("batch", next_cursor=1246, more=True, changes=[LEDGER_CREDIT], heads=[head(R3, 2, signer=1)])),
    ("batch-empty", "Up to date: no changes, more = 0.",
     msg("batch", next_cursor=1250, more=False, changes=[])),
    ("recover-own-origin", "A restored replica that knows the hub holds R1 up to 40 asks for the rest of its own origin.",
     msg("recover", origin=R1, after=40, byte_budget=1048576)),
    ("recover-largest-values", "after and byte_budget at 2^64 - 1: decodes; the hub answers an empty page.",
     msg("recover", origin=R1, after=18446744073709551615, byte_budget=18446744073709551615)),
    ("recovered-two-changes", "R1's changes 41 and 42, answering recover(R1, after 40); the hub holds 43 too (more = 1).",
     msg("recovered", origin=R1, next_counter=42, more=True, changes=[GOAL_CREATED, GOAL_TITLE], heads=[head(R1, 42)])),
    ("recovered-empty", "Nothing of R1 after 44: next_counter = after, more = 0.",
     msg("recovered", origin=R1, next_counter=44, more=False, changes=[])),
    ("fork-new-identity", "A copy of R1 that diverged from what the hub holds asks to become FORKED, with FORKED's new key.",
     msg("fork", new_replica=FORKED, device_key=bytes32(f"device key {FORKED}"))),
    ("forked-new-identity", "The hub registered FORKED in R1's team and issues its device secret and certificate.",
     msg("forked", new_replica=FORKED, issued_credential=FORKED_SECRET, certificate=certificate(FORKED, TEAM, T0 + 200_000))),
    ("forked-no-certificate", "A forked with no certificate (the hub has none to give): an empty certificate field.",
     msg("forked", new_replica=FORKED, issued_credential=FORKED_SECRET, certificate=None)),
    ("heartbeat", "A replica's health: 3 pending, oldest 90 s, 1 open conflict, schema 3.",
     msg("heartbeat", pending_changes=3, oldest_unsynced_age_ms=90000, open_conflicts=1, schema_version=3)),
    ("purge-ack", "The replica purged both scopes of welcome-purges; not answered.",
     msg("purge_ack", scopes=["p-11", "p-27"])),
    ("purge-ack-longest-scope", "One scope of 128 bytes, the most a scope may have: accepted.",
     msg("purge_ack", scopes=["p-" + "7" * 126])),
    ("review-two-decisions", "A replica of the owning team accepted one held write and dismissed another; it asks for the held writes from the start.",
     msg("review", decisions=[{"id": cid(R2, 9), "verdict": "dismiss"}, {"id": cid(R1, 42), "verdict": "accept"}], after=None)),
    ("review-after", "No decisions; the listing goes on after R1's change 42.",
     msg("review", decisions=[], after=cid(R1, 42))),
    ("held-one-item", "Answering review-two-decisions: the dismissal was resolved already (by another replica), the acceptance is recorded; one write held for review, of R1 (pushed by R3, which relayed it).",
     msg("held", outcomes=[{"id": cid(R2, 9), "outcome": 2}, {"id": cid(R1, 42), "outcome": 1}], more=False,
         items=[{"from_replica": R3, "reason": "OUT_OF_SCOPE", "received_at_ms": T0 + 300_000, "change": GOAL_TITLE}])),
    ("held-empty", "Nothing held for this replica's review, nothing decided.",
     msg("held", outcomes=[], more=False, items=[])),
    ("error-unexpected-message", "A fatal error: the connection closes after it.",
     msg("error", code="UNEXPECTED_MESSAGE", fatal=True, message="pull before welcome")),
    ("error-storage-failure", "A non-fatal error answering a push: retry with backoff.",
     msg("error", code="STORAGE_FAILURE", fatal=False, message="disk full")),
    ("error-equivocation", "A non-fatal error answering a push that reuses a held change id with other content.",
     msg("error", code="EQUIVOCATION", fatal=False, message="change 8f3c2a1b:45 is held with other content; nothing stored")),
    ("goodbye-done", "Normal end of a session.",
     msg("goodbye", reason=0)),
    ("goodbye-going-away", "The sender is shutting down.",
     msg("goodbye", reason=1)),
]

COMPRESSED = [
    ("batch-compressed", "Twelve similar visit notes, zlib-compressed.",
     msg("batch", compressed=True, next_cursor=2000, more=False, changes=visit_notes(12), heads=[head(R2, 111)])),
    ("push-compressed", "A compressed push.",
     msg("push", compressed=True, batch=9, changes=visit_notes(8), heads=[head(R2, 107)])),
    ("batch-compressed-empty", "Compression of a tiny payload is allowed, if pointless.",
     msg("batch", compressed=True, next_cursor=5, more=False, changes=[])),
    ("recovered-compressed", "R2's changes 100 to 111 (twelve similar visit notes) answering recover(R2, after 99), compressed.",
     msg("recovered", compressed=True, origin=R2, next_counter=111, more=False, changes=visit_notes(12), heads=[head(R2, 111)])),
]


# ---------------------------------------------------------------- negative vectors

def h(text):
    return bytes.fromhex(text.replace(" ", ""))


def payload_of(name):
    return payload_parts(name).bytes()


def payload_parts(name):
    for vector_name, _, message in MESSAGES + COMPRESSED:
        if vector_name == name:
            return payload(dict(message, compressed=False))
    raise KeyError(name)


def payload_around(name, label, replacement=None):
    """The payload of vector `name` cut at its field `label`: the bytes before it, then
    `replacement` and the bytes after it (or nothing after, when `replacement` is None)."""
    parts = payload_parts(name).parts
    index = next(i for i, (_, part_label) in enumerate(parts) if part_label.startswith(label))
    before = b"".join(data for data, _ in parts[:index])
    if replacement is None:
        return before
    return before + replacement + b"".join(data for data, _ in parts[index + 1:])


REPLICA_R1 = h(R1)
REPLICA_R2 = h(R2)


def field_bytes(column=b"c", value=b"\x01\x00", supersedes=b"\x00"):
    """One field edit: column, operation (default: assign null), supersedes (default: none)."""
    return varint(len(column)) + column + value + supersedes


def change_bytes(counter=b"\x01", scope=b"\x00", length=b"\x01", flags=b"\x00", fields=(field_bytes(),), count=None):
    """id R1:counter, ts 1, author "a", table "t", row "r", then scope, causal length, flags and fields."""
    return (REPLICA_R1 + counter + b"\x01" + b"\x01a" + b"\x01t" + b"\x01r" + scope + length + flags
            + varint(len(fields) if count is None else count) + b"".join(fields))


NO_PROVENANCE = b"\x00\x00"   # heads: count 0, certificates: count 0


def push(changes_bytes, count=1, provenance=NO_PROVENANCE):
    return raw_frame(0x10, 0, b"\x01" + varint(count) + changes_bytes + provenance)


def head_bytes(origin=None, counter=b"\x01", signer=b"\x00"):
    """identity.md, "Signed heads": origin (default R1), counter, a chain and a signature of filler bytes."""
    return (REPLICA_R1 if origin is None else origin) + counter + bytes(range(32)) + signer + bytes(range(64, 128))


def certificate_bytes(replica=None, team=b"\x01t", issued=b"\x01", attested=b"\x00"):
    """identity.md, "Device certificates" (default replica R2, team "t")."""
    return (REPLICA_R2 if replica is None else replica) + bytes(range(128, 160)) + team + issued + attested + bytes(range(160, 224))


def in_bytes(data, extra=0):
    """A `bytes` field around `data`, its length off by `extra`."""
    return varint(len(data) + extra) + data


def provenance(heads=(), certificates=(), head_count=None, certificate_count=None):
    return (varint(len(heads) if head_count is None else head_count) + b"".join(heads)
            + varint(len(certificates) if certificate_count is None else certificate_count) + b"".join(in_bytes(c) for c in certificates))


def signed_push(**fields):
    """A push of one valid change of R1 with the given provenance."""
    return push(change_bytes(), provenance=provenance(**fields))


def compressed(type_byte, declared, stream):
    return raw_frame(type_byte, 1, varint(declared) + stream)


GOODBYE_PAYLOAD = b"\x00"
BATCH_PAYLOAD = payload_of("batch-compressed")
BATCH_STREAM = zlib.compress(BATCH_PAYLOAD, 9)
ZEROS_STREAM = zlib.compress(bytes(20000), 9)
RECOVERED_PAYLOAD = payload_of("recovered-compressed")
RECOVERED_STREAM = zlib.compress(RECOVERED_PAYLOAD, 9)
REPLICA_FORKED = h(FORKED)

FRAMING = [
    ("frame-length-zero", "MALFORMED_FRAME", "Length 0: below the 2-byte minimum.", h("00000000")),
    ("frame-length-one", "MALFORMED_FRAME", "Length 1: below the 2-byte minimum.", h("00000001 7f")),
    ("frame-too-large", "FRAME_TOO_LARGE", "Length 4 MiB + 1, refused from the header alone.", h("00400001 10")),
    ("frame-too-large-header-only", "FRAME_TOO_LARGE", "Length 2^32 - 1, refused after four bytes.", h("ffffffff")),
    ("frame-over-negotiated-limit", "FRAME_TOO_LARGE", "A goodbye (length 3) where the limit is 2.",
     raw_frame(0x7f, 0x00, h("00")), 2),
    ("frame-at-negotiated-limit", None, "A goodbye (length 3) where the limit is exactly 3.",
     raw_frame(0x7f, 0x00, h("00")), 3),
    ("frame-truncated", "MALFORMED_FRAME", "The stream ends inside a frame: 10 announced, 5 present.",
     h("0000000a 20 00 01 02 03")),
    ("frame-header-truncated", "MALFORMED_FRAME", "The stream ends inside the length field.", h("000000")),
    ("unknown-message-type", "UNKNOWN_MESSAGE", "Type 0x04 is not defined: refused, never skipped.", raw_frame(0x04, 0x00, h("00"))),
    ("unknown-message-type-zero", "UNKNOWN_MESSAGE", "Type 0x00 is not defined.", raw_frame(0x00, 0x00, h(""))),
    ("unknown-message-type-ff", "UNKNOWN_MESSAGE", "Type 0xff, with reserved bits too: the type is checked first.",
     raw_frame(0xff, 0xfe, h(""))),
    ("reserved-flag-bit-1", "RESERVED_BITS", "Flag bit 1 set on a goodbye.", raw_frame(0x7f, 0x02, h("00"))),
    ("reserved-flag-bit-7", "RESERVED_BITS", "Flag bit 7 set on a compressed batch.",
     raw_frame(0x21, 0x81, varint(len(BATCH_PAYLOAD)) + BATCH_STREAM)),
    ("compressed-hello", "BAD_COMPRESSION", "Only push, batch and recovered may be compressed.",
     raw_frame(0x01, 1, varint(len(payload_of("hello-no-credential"))) + zlib.compress(payload_of("hello-no-credential"), 9))),
    ("compressed-pull", "BAD_COMPRESSION", "A compressed pull.",
     raw_frame(0x20, 1, varint(4) + zlib.compress(payload_of("pull-from-start"), 9))),
    ("compressed-fork", "BAD_COMPRESSION", "A compressed fork: it may not be compressed.",
     raw_frame(0x12, 1, varint(16) + zlib.compress(payload_of("fork-new-identity"), 9))),
    ("compressed-forked", "BAD_COMPRESSION", "A compressed forked: it may not be compressed.",
     raw_frame(0x13, 1, varint(len(payload_of("forked-new-identity"))) + zlib.compress(payload_of("forked-new-identity"), 9))),
    ("compressed-recover", "BAD_COMPRESSION", "A compressed recover: a request, never compressed (its answer may be).",
     raw_frame(0x22, 1, varint(len(payload_of("recover-own-origin"))) + zlib.compress(payload_of("recover-own-origin"), 9))),
    ("unknown-message-type-0x14", "UNKNOWN_MESSAGE", "Type 0x14, the one after forked (0x13), is not defined.",
     raw_frame(0x14, 0x00, h("00"))),
    ("compressed-purge-ack", "BAD_COMPRESSION", "A compressed purge-ack: it may not be compressed.",
     raw_frame(0x31, 1, varint(len(payload_of("purge-ack"))) + zlib.compress(payload_of("purge-ack"), 9))),
    ("unknown-message-type-0x34", "UNKNOWN_MESSAGE", "Type 0x34, the one after held (0x33), is not defined.",
     raw_frame(0x34, 0x00, h("00"))),
    ("compressed-held", "BAD_COMPRESSION", "A compressed held: it may not be compressed.",
     raw_frame(0x33, 1, varint(len(payload_of("held-empty"))) + zlib.compress(payload_of("held-empty"), 9))),
    ("bytes-after-frame", "TRAILING_BYTES", "A vector holds exactly one frame: a byte after it is refused.",
     h("00000003 7f 00 00 00")),
]

PAYLOAD = [
    ("review-too-many-decisions", "LIMIT_EXCEEDED", "A review announcing 1,025 decisions: refused from the count alone.",
     raw_frame(0x32, 0, varint(1025))),
    ("review-decisions-out-of-order", "MALFORMED_MESSAGE", "Two decisions on the same change: not strictly ascending.",
     raw_frame(0x32, 0, b"\x02" + bytes.fromhex(R1) + b"\x2a\x01" + bytes.fromhex(R1) + b"\x2a\x02\x00")),
    ("review-unknown-verdict", "MALFORMED_MESSAGE", "Verdict 3 is not defined.",
     raw_frame(0x32, 0, b"\x01" + bytes.fromhex(R1) + b"\x2a\x03\x00")),
    ("review-counter-zero", "MALFORMED_MESSAGE", "A decision on counter 0: counters start at 1.",
     raw_frame(0x32, 0, b"\x01" + bytes.fromhex(R1) + b"\x00\x01\x00")),
    ("held-too-many-items", "LIMIT_EXCEEDED", "A held announcing 1,025 items: refused from the count alone.",
     raw_frame(0x33, 0, b"\x00\x00" + varint(1025))),
    ("held-unknown-reason", "MALFORMED_MESSAGE", "Reason 3 is not defined.",
     raw_frame(0x33, 0, payload_around("held-one-item", "items[0] reason 1 (OUT_OF_SCOPE)", b"\x03"))),
    ("purge-ack-too-many-scopes", "LIMIT_EXCEEDED", "A purge-ack announcing 4,097 scopes: refused from the count alone.",
     raw_frame(0x31, 0, varint(4097))),
    ("welcome-purges-too-many", "LIMIT_EXCEEDED", "A welcome announcing 4,097 purges: refused from the count alone.",
     raw_frame(0x02, 0, payload_around("welcome-returning", "purges", varint(4097)))),
    ("purge-ack-scope-too-long", "LIMIT_EXCEEDED", "A scope of 129 bytes: refused from its length alone.",
     raw_frame(0x31, 0, b"\x01" + varint(129) + b"p" * 129)),
    ("purge-ack-scopes-out-of-order", "MALFORMED_MESSAGE", "p-27 before p-11: not ascending.",
     raw_frame(0x31, 0, b"\x02\x04p-27\x04p-11")),
    ("purge-ack-scope-repeated", "MALFORMED_MESSAGE", "p-11 twice: not strictly ascending.",
     raw_frame(0x31, 0, b"\x02\x04p-11\x04p-11")),
    ("purge-ack-scope-empty", "MALFORMED_MESSAGE", "An empty scope (the catalogue's, which is never purged).",
     raw_frame(0x31, 0, b"\x02\x00\x04p-11")),
    ("purge-ack-scope-nul", "MALFORMED_MESSAGE", "A scope holding U+0000.", raw_frame(0x31, 0, b"\x01\x03p\x001")),
    ("purge-ack-count-cannot-fit", "MALFORMED_MESSAGE", "Five scopes announced, 5 bytes left.",
     raw_frame(0x31, 0, b"\x05\x04p-11")),
    ("trailing-byte-after-payload", "TRAILING_BYTES", "A goodbye with one byte after its reason.", raw_frame(0x7f, 0x00, h("00 00"))),
    ("truncated-payload", "MALFORMED_MESSAGE", "A hello of protocol_max 3 without its last field (device_key).",
     raw_frame(0x01, 0, payload_around("hello-no-credential", "device_key"))),
    ("empty-payload", "MALFORMED_MESSAGE", "A pull with no payload at all.", raw_frame(0x20, 0x00, h(""))),
    ("truncated-string", "MALFORMED_MESSAGE", "An error whose message claims 16 bytes and has 3.",
     raw_frame(0x7e, 0x00, h("13 01 10 61 62 63"))),
    ("varint-overlong", "MALFORMED_MESSAGE", "Cursor 0 spelt 80 00: not canonical.", raw_frame(0x20, 0x00, h("80 00 01"))),
    ("varint-overlong-one", "MALFORMED_MESSAGE", "Reason 1 spelt 81 80 00.", raw_frame(0x7f, 0x00, h("81 80 00"))),
    ("varint-eleven-bytes", "MALFORMED_MESSAGE", "A varint longer than 10 bytes.",
     raw_frame(0x7f, 0x00, h("ff ff ff ff ff ff ff ff ff ff 01"))),
    ("varint-tenth-byte-2", "MALFORMED_MESSAGE", "The 10th byte of a varint may only be 0 or 1: 2^64 overflows.",
     raw_frame(0x7f, 0x00, h("80 80 80 80 80 80 80 80 80 02"))),
    ("varint-tenth-byte-zero", "MALFORMED_MESSAGE", "Ten bytes ending in 00: overlong.",
     raw_frame(0x7f, 0x00, h("ff ff ff ff ff ff ff ff ff 00"))),
    ("varint-truncated", "MALFORMED_MESSAGE", "A varint cut off by the end of the payload.", raw_frame(0x7f, 0x00, h("80"))),
    ("invalid-utf8", "MALFORMED_MESSAGE", "app_version holds the byte ff.",
     raw_frame(0x01, 0, b"\x01\x01\x01" + REPLICA_R1 + b"\x02\x61\xff" + b"\x00" + varint(65536))),
    ("invalid-utf8-overlong", "MALFORMED_MESSAGE", "An overlong UTF-8 spelling of NUL (c0 80) in an error message.",
     raw_frame(0x7e, 0x00, h("13 01 02 c0 80"))),
    ("invalid-utf8-surrogate", "MALFORMED_MESSAGE", "A UTF-16 surrogate (ed a0 80) in a change's text value.",
     push(change_bytes(fields=[field_bytes(value=b"\x01\x03\x03\xed\xa0\x80")]))),
    ("bad-boolean", "MALFORMED_MESSAGE", "batch.more is 2.", raw_frame(0x21, 0x00, h("05 02 00"))),
    ("bad-boolean-error", "MALFORMED_MESSAGE", "error.fatal is ff.", raw_frame(0x7e, 0x00, h("08 ff 00"))),
    ("unknown-value-tag", "MALFORMED_MESSAGE", "Value tag 5.", push(change_bytes(fields=[field_bytes(value=b"\x01\x05")]))),
    ("unknown-operation", "MALFORMED_MESSAGE", "Operation 5.", push(change_bytes(fields=[field_bytes(value=b"\x05\x00")]))),
    ("unknown-operation-zero", "MALFORMED_MESSAGE", "Operation 0.", push(change_bytes(fields=[field_bytes(value=b"\x00\x00")]))),
    ("unknown-credential-kind", "MALFORMED_MESSAGE", "Credential kind 3.",
     raw_frame(0x01, 0, b"\x01\x01\x01" + REPLICA_R1 + b"\x00" + b"\x03\x00" + varint(65536))),
    ("change-counter-zero", "MALFORMED_MESSAGE", "A change id with counter 0.", push(change_bytes(counter=b"\x00"))),
    ("supersedes-counter-zero", "MALFORMED_MESSAGE", "A superseded change id with counter 0.",
     push(change_bytes(fields=[field_bytes(supersedes=b"\x01" + REPLICA_R2 + b"\x00")]))),
    ("supersedes-out-of-order", "MALFORMED_MESSAGE", "Superseded ids must be strictly ascending: R1 before R2 is not.",
     push(change_bytes(fields=[field_bytes(supersedes=b"\x02" + REPLICA_R1 + b"\x01" + REPLICA_R2 + b"\x01")]))),
    ("supersedes-duplicate", "MALFORMED_MESSAGE", "The same superseded id twice.",
     push(change_bytes(fields=[field_bytes(supersedes=b"\x02" + REPLICA_R2 + b"\x03" + REPLICA_R2 + b"\x03")]))),
    ("change-columns-out-of-order", "MALFORMED_MESSAGE", "Field columns must be strictly ascending: b before a is not.",
     push(change_bytes(fields=[field_bytes(column=b"b"), field_bytes(column=b"a")]))),
    ("change-column-empty", "MALFORMED_MESSAGE", "A field edit must name a column: an empty name is refused.",
     push(change_bytes(fields=[field_bytes(column=b"")]))),
    ("change-column-duplicate", "MALFORMED_MESSAGE", "Two edits of column a in one change.",
     push(change_bytes(fields=[field_bytes(column=b"a"), field_bytes(column=b"a", value=b"\x01\x01\x02")]))),
    ("change-columns-not-byte-order", "MALFORMED_MESSAGE", "zoë (7a 6f c3 ab) before zone (7a 6f 6e 65): not ascending by UTF-8 bytes.",
     push(change_bytes(fields=[field_bytes(column="zoë".encode()), field_bytes(column=b"zone")]))),
    ("change-delete-with-fields", "MALFORMED_MESSAGE", "A delete (sets life, causal length 2) carrying a field edit.",
     push(change_bytes(length=b"\x02", flags=b"\x01"))),
    ("change-empty-edit", "MALFORMED_MESSAGE", "An edit that neither sets the row's life nor edits a field: it would do nothing.",
     push(change_bytes(fields=[]))),
    ("change-unknown-flag-bit-1", "MALFORMED_MESSAGE", "Change flag bit 1: only bit 0 (sets life) is defined.", push(change_bytes(flags=b"\x02"))),
    ("change-unknown-flag-bit-7", "MALFORMED_MESSAGE", "Change flags 0x81: bit 7 set beside sets life.", push(change_bytes(flags=b"\x81"))),
    ("change-causal-length-zero", "MALFORMED_MESSAGE", "Causal length 0: a row's life starts at 1.", push(change_bytes(length=b"\x00", flags=b"\x01"))),
    ("change-field-count-too-large", "MALFORMED_MESSAGE", "A change announcing 1000 field edits with one field's bytes left.",
     push(change_bytes(count=1000))),
    ("change-field-truncated", "MALFORMED_MESSAGE", "A field edit that ends before its supersedes count.",
     raw_frame(0x10, 0, b"\x01\x01" + change_bytes(fields=[field_bytes(supersedes=b"")]))),
    ("change-invalid-utf8-column", "MALFORMED_MESSAGE", "A column holding the byte ff.", push(change_bytes(fields=[field_bytes(column=b"\xff")]))),
    ("change-invalid-utf8-scope", "MALFORMED_MESSAGE", "A scope holding the byte ff.", push(change_bytes(scope=b"\x01\xff"))),
    ("change-truncated-scope", "MALFORMED_MESSAGE", "A change that ends inside its scope: the push ends after 2 of 9 announced bytes.",
     raw_frame(0x10, 0, b"\x01\x01" + change_bytes(scope=b"\x09p-", fields=[], count=0)[:-3])),
    ("change-count-too-large", "MALFORMED_MESSAGE", "A push announcing 1000 changes with one byte left.", raw_frame(0x10, 0x00, h("01 e8 07 00"))),
    ("version-vector-out-of-order", "MALFORMED_MESSAGE", "push-ack durable entries R1 then R2: not ascending.",
     raw_frame(0x11, 0, b"\x01\x02" + REPLICA_R1 + b"\x01" + REPLICA_R2 + b"\x01" + b"\x00")),
    ("version-vector-duplicate", "MALFORMED_MESSAGE", "push-ack durable lists R2 twice.",
     raw_frame(0x11, 0, b"\x01\x02" + REPLICA_R2 + b"\x01" + REPLICA_R2 + b"\x02" + b"\x00")),
    ("version-vector-counter-zero", "MALFORMED_MESSAGE", "A durable counter of 0 (an origin with nothing is omitted).",
     raw_frame(0x11, 0, b"\x01\x01" + REPLICA_R2 + b"\x00" + b"\x00")),
    ("welcome-without-own-durable", "MALFORMED_MESSAGE", "A welcome that ends after heartbeat_interval_ms: own_durable is missing.",
     raw_frame(0x02, 0, payload_around("welcome-returning", "own_durable"))),
    ("welcome-own-durable-overlong", "MALFORMED_MESSAGE", "own_durable 0 spelt 80 00: not canonical.",
     raw_frame(0x02, 0, payload_around("welcome-enrolled", "own_durable", h("80 00")))),
    ("welcome-hub-key-truncated", "MALFORMED_MESSAGE", "A welcome whose hub_key has 31 of its 32 bytes (and nothing after).",
     raw_frame(0x02, 0, payload_around("welcome-returning", "hub_key") + h(HUB_KEY)[:31])),
    ("welcome-without-certificate", "MALFORMED_MESSAGE", "A welcome that ends after its incarnation: the certificate field "
                                                         "(empty: one byte 00) is missing.",
     raw_frame(0x02, 0, payload_around("welcome-returning", "certificate"))),
    ("welcome-certificate-length-short", "MALFORMED_MESSAGE", "A welcome whose certificate field says one byte less than the "
                                                              "certificate it holds.",
     raw_frame(0x02, 0, payload_around("welcome-returning", "certificate", in_bytes(certificate_bytes(), extra=-1)))),
    ("hello-device-key-31", "MALFORMED_MESSAGE", "A hello of protocol_max 3 with a 31-byte device_key: a key is 0 or 32 bytes.",
     raw_frame(0x01, 0, payload_around("hello-no-credential", "device_key", in_bytes(bytes(31))))),
    ("hello-device-key-33", "MALFORMED_MESSAGE", "A hello with a 33-byte device_key.",
     raw_frame(0x01, 0, payload_around("hello-no-credential", "device_key", in_bytes(bytes(33))))),
    ("hello-version-2-trailing-key", "TRAILING_BYTES", "A hello of protocol_max 2 has no device_key: an empty one after "
                                                       "max_frame_body is a trailing byte.",
     raw_frame(0x01, 0, payload_of("hello-version-2") + h("00"))),
    ("push-without-provenance", "MALFORMED_MESSAGE", "A push laid out as in version 2: it ends after its changes, without "
                                                     "heads and certificates.",
     push(change_bytes(), provenance=b"")),
    ("push-without-certificates", "MALFORMED_MESSAGE", "A push that ends after its heads: the certificates count is missing.",
     push(change_bytes(), provenance=provenance(heads=[head_bytes()])[:-1])),
    ("head-counter-zero", "MALFORMED_MESSAGE", "A head with counter 0: a head covers at least change 1.",
     signed_push(heads=[head_bytes(counter=b"\x00")])),
    ("head-unknown-signer", "MALFORMED_MESSAGE", "A head with signer 2: only 0 (origin) and 1 (hub attestation) exist.",
     signed_push(heads=[head_bytes(signer=b"\x02")])),
    ("head-truncated-signature", "MALFORMED_MESSAGE", "A head whose signature has 63 of its 64 bytes, at the end of the payload.",
     push(change_bytes(), provenance=b"\x01" + head_bytes()[:-1])),
    ("heads-counter-out-of-order", "MALFORMED_MESSAGE", "Two heads of R1, counter 5 before 4: heads are ascending by origin, "
                                                        "then counter.",
     signed_push(heads=[head_bytes(counter=b"\x05"), head_bytes(counter=b"\x04")])),
    ("heads-origin-out-of-order", "MALFORMED_MESSAGE", "A head of R1 before one of R2 (R2 sorts first).",
     signed_push(heads=[head_bytes(), head_bytes(origin=REPLICA_R2)])),
    ("heads-duplicate", "MALFORMED_MESSAGE", "The same (origin, counter) twice.",
     signed_push(heads=[head_bytes(), head_bytes()])),
    ("head-count-too-large", "MALFORMED_MESSAGE", "A push announcing 1000 heads with one head's bytes left.",
     signed_push(heads=[head_bytes()], head_count=1000)),
    ("certificates-out-of-order", "MALFORMED_MESSAGE", "A certificate of R1 before one of R2: certificates are ascending by replica.",
     signed_push(heads=[head_bytes()], certificates=[certificate_bytes(replica=REPLICA_R1), certificate_bytes()])),
    ("certificates-duplicate", "MALFORMED_MESSAGE", "Two certificates of R2.",
     signed_push(heads=[head_bytes()], certificates=[certificate_bytes(), certificate_bytes()])),
    ("certificate-count-too-large", "MALFORMED_MESSAGE", "A push announcing 1000 certificates with one certificate's bytes left.",
     signed_push(heads=[head_bytes()], certificates=[certificate_bytes()], certificate_count=1000)),
    ("certificate-empty-team", "MALFORMED_MESSAGE", "A certificate with an empty team.",
     signed_push(heads=[head_bytes()], certificates=[certificate_bytes(team=b"\x00")])),
    ("certificate-empty-in-list", "MALFORMED_MESSAGE", "An empty certificate field in a certificate list (only a welcome's or "
                                                       "forked's may be empty).",
     push(change_bytes(), provenance=b"\x00\x01\x00" + bytes(110))),
    ("certificate-length-long", "MALFORMED_MESSAGE", "A certificate field one byte longer than the certificate it holds (a "
                                                     "byte after the signature).",
     push(change_bytes(), provenance=b"\x00\x01" + in_bytes(certificate_bytes() + b"\x00"))),
    ("batch-provenance-truncated", "MALFORMED_MESSAGE", "An empty batch that ends after its heads count.",
     raw_frame(0x21, 0x00, h("05 00 00 00"))),
    ("fork-empty", "MALFORMED_MESSAGE", "A fork with no payload.", raw_frame(0x12, 0x00, h(""))),
    ("fork-truncated", "MALFORMED_MESSAGE", "A fork whose new_replica has 15 of its 16 bytes.",
     raw_frame(0x12, 0x00, REPLICA_FORKED[:15])),
    ("fork-without-device-key", "MALFORMED_MESSAGE", "A fork laid out as in version 2: new_replica and no device_key.",
     raw_frame(0x12, 0x00, REPLICA_FORKED)),
    ("fork-device-key-truncated", "MALFORMED_MESSAGE", "A fork whose device_key has 31 of its 32 bytes.",
     raw_frame(0x12, 0x00, payload_of("fork-new-identity")[:-1])),
    ("fork-trailing-byte", "TRAILING_BYTES", "A fork with a byte after device_key.",
     raw_frame(0x12, 0x00, payload_of("fork-new-identity") + h("00"))),
    ("forked-truncated-credential", "MALFORMED_MESSAGE", "A forked whose issued_credential claims 32 bytes and has 31.",
     raw_frame(0x13, 0x00, payload_around("forked-no-certificate", "certificate")[:-1])),
    ("forked-without-certificate", "MALFORMED_MESSAGE", "A forked laid out as in version 2: it ends after issued_credential.",
     raw_frame(0x13, 0x00, payload_around("forked-no-certificate", "certificate"))),
    ("recover-truncated", "MALFORMED_MESSAGE", "A recover without its byte_budget.",
     raw_frame(0x22, 0x00, REPLICA_R1 + h("28"))),
    ("recovered-bad-more", "MALFORMED_MESSAGE", "recovered.more is 2.",
     raw_frame(0x23, 0x00, REPLICA_R1 + h("2c 02 00"))),
    ("recovered-change-count-too-large", "MALFORMED_MESSAGE", "A recovered announcing 1000 changes with one byte left.",
     raw_frame(0x23, 0x00, REPLICA_R1 + h("2c 00 e8 07 00"))),
    ("recovered-change-counter-zero", "MALFORMED_MESSAGE", "A recovered change with counter 0.",
     raw_frame(0x23, 0x00, REPLICA_R1 + h("01 01 01") + change_bytes(counter=b"\x00"))),
]

COMPRESSION = [
    ("compressed-size-too-small", "BAD_COMPRESSION", "Declared one byte less than the stream inflates to.",
     compressed(0x21, len(BATCH_PAYLOAD) - 1, BATCH_STREAM)),
    ("compressed-size-too-large", "BAD_COMPRESSION", "Declared one byte more than the stream inflates to.",
     compressed(0x21, len(BATCH_PAYLOAD) + 1, BATCH_STREAM)),
    ("compressed-ratio", "DECOMPRESSION_LIMIT", f"20000 declared from a {len(ZEROS_STREAM)}-byte stream: over 100:1.",
     compressed(0x21, 20000, ZEROS_STREAM)),
    ("compressed-over-limit", "DECOMPRESSION_LIMIT", "Declared 100 bytes where the limit is 64.",
     compressed(0x10, 100, zlib.compress(bytes(100), 9)), 64),
    ("compressed-over-default-limit", "DECOMPRESSION_LIMIT", "Declared 4 MiB + 1 bytes.",
     compressed(0x21, 4194305, ZEROS_STREAM)),
    ("compressed-trailing-after-stream", "TRAILING_BYTES", "A byte after the end of the zlib stream.",
     compressed(0x21, len(BATCH_PAYLOAD), BATCH_STREAM + b"\x00")),
    ("compressed-truncated-stream", "BAD_COMPRESSION", "The zlib stream lacks its last 4 bytes (the Adler-32).",
     compressed(0x21, len(BATCH_PAYLOAD), BATCH_STREAM[:-4])),
    ("compressed-bad-checksum", "BAD_COMPRESSION", "The Adler-32 is wrong.",
     compressed(0x21, len(BATCH_PAYLOAD), BATCH_STREAM[:-1] + bytes([BATCH_STREAM[-1] ^ 1]))),
    ("compressed-raw-deflate", "BAD_COMPRESSION", "A raw DEFLATE stream without the zlib header (RFC 1951, not 1950).",
     compressed(0x21, len(BATCH_PAYLOAD), BATCH_STREAM[2:-4])),
    ("compressed-no-size", "BAD_COMPRESSION", "The compressed flag with an empty payload.", raw_frame(0x21, 0x01, h(""))),
    ("compressed-size-overlong", "BAD_COMPRESSION", "The declared size as an overlong varint.",
     raw_frame(0x21, 1, b"\x83\x80\x00" + zlib.compress(b"\x05\x00\x00", 9))),
    ("compressed-content-trailing", "TRAILING_BYTES", "Inflates correctly to a batch with a byte after it.",
     compressed(0x21, 6, zlib.compress(b"\x05\x00\x00\x00\x00\x00", 9))),
    ("compressed-content-malformed", "MALFORMED_MESSAGE", "Inflates correctly to a batch whose more flag is 2.",
     compressed(0x21, 3, zlib.compress(b"\x05\x02\x00", 9))),
    ("compressed-recovered-size-too-small", "BAD_COMPRESSION", "A compressed recovered declaring one byte less than it inflates to.",
     compressed(0x23, len(RECOVERED_PAYLOAD) - 1, RECOVERED_STREAM)),
    ("compressed-recovered-content-malformed", "MALFORMED_MESSAGE", "Inflates correctly to a recovered whose more flag is 2.",
     compressed(0x23, 19, zlib.compress(REPLICA_R1 + b"\x2c\x02\x00", 9))),
]


# ---------------------------------------------------------------- limits on a change

# README.md, "Limits on a change". These changes decode (the decoder checks encodings only); the
# limits are the session's: a hub refuses a push holding a change over one with `refused`.
MAX_NAME, MAX_ROW, MAX_AUTHOR, MAX_VALUE, MAX_SUPERSEDES, MAX_FIELDS, MAX_ENCODED = 64, 128, 128, 49_152, 256, 64, 61_440
MAX_INTEGER = (1 << 63) - 1


def encoded_size(change):
    out = Out()
    put_change(out, change, "change")
    return len(out.bytes())


def narrative(length):
    """Case-note text of exactly `length` bytes (ASCII), not one repeated character."""
    sentence = "Met at the drop-in centre; talked about college, money and the new flat. "
    return (sentence * (length // len(sentence) + 1))[:length]


def small(counter, **overrides):
    """A one-field edit of a case note, with one thing changed."""
    base = dict(change_id=cid(R3, counter), timestamp=ts(90_000 + counter), author="w-cat", table="note", row="n-9",
                scope=YP, fields=[field("summary", text("Seen at home."))])
    base.update(overrides)
    return edit(**base)


def padded_to(size, counter, first_value=40_000):
    """A case note of two text fields whose change encodes to exactly `size` bytes."""
    second = size - first_value
    while True:
        change = small(counter, fields=[field("narrative", text(narrative(first_value))), field("summary", text(narrative(second)))])
        excess = encoded_size(change) - size
        if excess == 0:
            return change
        second -= excess


def at_every_limit():
    """Every name at its longest, 64 fields, 256 supersedes, the largest counters, a value at its
    largest, and the whole change exactly 61,440 bytes."""
    columns = [f"c{index:02d}".ljust(MAX_NAME, "_") for index in range(MAX_FIELDS)]
    supersedes = [cid(R2, counter) for counter in range(1, MAX_SUPERSEDES)] + [cid(R3, MAX_INTEGER)]
    fields = [field(column, {"assign": {"integer": index}}) for index, column in enumerate(columns[:-2])]
    fields[0] = field(columns[0], {"assign": {"blob": "00ff00"}}, supersedes=supersedes)
    largest = field(columns[-1], text(narrative(MAX_VALUE)))
    base = dict(change_id=cid(R3, MAX_INTEGER), timestamp=(1 << 64) - 1, author="w" * MAX_AUTHOR, table="t" * MAX_NAME,
                row="r" * MAX_ROW, scope="s" * MAX_ROW, causal_length=MAX_INTEGER)
    filler = 0
    while True:
        change = edit(fields=fields + [field(columns[-2], text(narrative(filler))), largest], **base)
        excess = encoded_size(change) - MAX_ENCODED
        if excess == 0:
            return change
        filler -= excess


def limit_vector(name, note, change, refused=None):
    vector = positive(name, note, msg("push", batch=1, changes=[change], heads=[head(change["id"]["replica"], change["id"]["counter"])]))
    if refused:
        vector["refused"] = refused
    return vector


def limit_vectors():
    over_fields = [field(f"c{index:02d}", {"assign": {"integer": index}}) for index in range(MAX_FIELDS + 1)]
    over_supersedes = [cid(R2, counter) for counter in range(1, MAX_SUPERSEDES + 2)]
    too_big = "LIMIT_EXCEEDED"
    malformed = "MALFORMED_MESSAGE"
    return [
        limit_vector("limits-at-every-limit", "Names at their longest, 64 fields, 256 supersedes, counters and causal length "
                     "2^63 - 1, a 49,152-byte value, 61,440 bytes in all: accepted.", at_every_limit()),
        limit_vector("limits-table-over", "A 65-byte table name.", small(1, table="t" * 65), too_big),
        limit_vector("limits-column-over", "A 65-byte column name.", small(2, fields=[field("c" * 65, text("x"))]), too_big),
        limit_vector("limits-row-over", "A 129-byte row id.", small(3, row="r" * 129), too_big),
        limit_vector("limits-scope-over", "A 129-byte scope.", small(4, scope="s" * 129), too_big),
        limit_vector("limits-author-over", "A 129-byte author.", small(5, author="w" * 129), too_big),
        limit_vector("limits-fields-over", "65 field edits in one change.", small(6, fields=over_fields), too_big),
        limit_vector("limits-supersedes-over", "257 superseded ids.",
                     small(7, fields=[field("status", text("closed"), supersedes=over_supersedes)]), too_big),
        limit_vector("limits-value-over", "A 49,153-byte text value (the change is below 61,440 bytes).",
                     small(8, fields=[field("narrative", text(narrative(MAX_VALUE + 1)))]), too_big),
        limit_vector("limits-encoding-over", "Two values within their limit, 61,441 bytes in all: the size rule alone "
                     "refuses it.", padded_to(MAX_ENCODED + 1, 9), too_big),
        limit_vector("limits-counter-over", "Change counter 2^63.", small(10, change_id=cid(R3, 1 << 63)), malformed),
        limit_vector("limits-supersedes-counter-over", "A superseded counter 2^63.",
                     small(11, fields=[field("status", text("closed"), supersedes=[cid(R2, 1 << 63)])]), malformed),
        limit_vector("limits-causal-length-over", "Causal length 2^64 - 1.", small(12, causal_length=(1 << 64) - 1), malformed),
        limit_vector("limits-nul-in-scope", "A U+0000 in the scope.", small(13, scope="p-\u0000"), malformed),
        limit_vector("limits-nul-in-table", "A U+0000 in the table.", small(14, table="no\u0000te"), malformed),
        limit_vector("limits-nul-in-row", "A U+0000 in the row id.", small(15, row="n-\u00009"), malformed),
        limit_vector("limits-nul-in-author", "A U+0000 in the author.", small(16, author="w-\u0000"), malformed),
        limit_vector("limits-nul-in-column", "A U+0000 in a column.", small(17, fields=[field("sum\u0000", text("x"))]), malformed),
        limit_vector("limits-nul-in-text", "A U+0000 in a text value (a blob may hold 00).",
                     small(18, fields=[field("summary", text("Seen\u0000"))]), malformed),
    ]


# ---------------------------------------------------------------- output

def positive(name, note, message, max_body=None):
    vector = {"name": name, "note": note, "hex": encode(message).bytes().hex(), "decoded": message}
    if max_body is not None:
        vector["max_body"] = max_body
    return vector


def negative(entry):
    name, error, note, data = entry[:4]
    vector = {"name": name, "note": note, "hex": data.hex()}
    if error is None:
        vector["decoded"] = {"type": "goodbye", "compressed": False, "reason": 0}
    else:
        vector["error"] = error
    if len(entry) > 4:
        vector["max_body"] = entry[4]
    return vector


def unknown_code_vector():
    # A newer peer's error code is read as MALFORMED_MESSAGE (errors.md), so this vector is
    # not canonical: re-encoding gives code 19.
    data = raw_frame(0x7E, 0, varint(200) + b"\x01" + varint(11) + b"newer error")
    return {"name": "error-unknown-code", "note": "Code 200 is unknown to version 4: read as MALFORMED_MESSAGE.",
            "hex": data.hex(), "canonical": False,
            "decoded": {"type": "error", "compressed": False, "code": "MALFORMED_MESSAGE", "fatal": True,
                        "message": "newer error"}}


def files():
    return {
        "messages.json": {
            "description": "One or more positive vectors per message type (uncompressed, canonical).",
            "vectors": [positive(*entry) for entry in MESSAGES] + [unknown_code_vector()],
        },
        "framing.json": {
            "description": "Frame header faults: length limits, truncation, unknown types, reserved bits, "
                           "compression where it is not allowed.",
            "vectors": [negative(entry) for entry in FRAMING],
        },
        "payload.json": {
            "description": "Payload faults: varints, strings, booleans, tags, counters and orderings.",
            "vectors": [negative(entry) for entry in PAYLOAD],
        },
        "limits.json": {
            "description": "Changes at and over the limits of README.md, \"Limits on a change\", each in a push. Every one "
                           "decodes; `refused` names the error a hub answers the push with (none: accepted).",
            "vectors": limit_vectors(),
        },
        "compression.json": {
            "description": "Compressed push, batch and recovered payloads, and every way a compressed payload is refused.",
            "vectors": [positive(*entry) for entry in COMPRESSED] + [negative(entry) for entry in COMPRESSION],
        },
    }


def annotate(name):
    for entry in MESSAGES + COMPRESSED:
        if entry[0] == name:
            out = encode(entry[2])
            break
    else:
        raise SystemExit(f"no positive vector named {name}")
    lines = [f"<!-- vector: {name} -->", "```text"]
    for data, label in out.parts:
        chunks = [data[i:i + 16] for i in range(0, len(data), 16)] or [b""]
        for index, chunk in enumerate(chunks):
            text = chunk.hex(" ")
            comment = label if index == 0 else "…"
            lines.append(f"{text:<48}  # {comment}" if len(text) <= 48 else f"{text}  # {comment}")
    lines.append("```")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotate", metavar="NAME", help="print NAME as an annotated hex block")
    args = parser.parse_args()
    if args.annotate:
        print(annotate(args.annotate))
        return
    os.makedirs(VECTORS, exist_ok=True)
    names = set()
    total = 0
    for file_name, content in files().items():
        for vector in content["vectors"]:
            assert vector["name"] not in names, vector["name"]
            names.add(vector["name"])
            total += 1
        with open(os.path.join(VECTORS, file_name), "w", encoding="utf-8") as handle:
            json.dump(content, handle, indent=2, ensure_ascii=False)
            handle.write("\n")
    print(f"wrote {total} vectors to {os.path.relpath(VECTORS, ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
