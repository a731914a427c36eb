#!/usr/bin/env python3
"""An independent decoder for the CareSync wire protocol, written from Protocol/*.md alone.

    python3 Tools/protocol_decoder.py HEX                  # print one frame's decoding as JSON
    python3 Tools/protocol_decoder.py --check Protocol/vectors
    python3 Tools/protocol_decoder.py --check-spec Protocol

--check decodes every vector in the directory's *.json files: positive vectors must decode to
their "decoded" object, negative ones must fail with their "error" code name. --check-spec checks
that every hex example in Protocol/*.md (a code block right after a `<!-- vector: NAME -->` line)
has the bytes of the vector NAME. Both print "N passed, M failed" and exit 1 on any failure.

Standard library only. If this script can decode every vector, the spec is complete enough to
implement from.
"""

import argparse
import glob
import json
import os
import re
import struct
import sys
import zlib

DEFAULT_LIMIT = 4 * 1024 * 1024          # framing.md: the limit until the welcome
MAX_RATIO = 100                           # framing.md: compression ratio limit

# messages.md: type byte -> name, and whether it may be compressed.
MESSAGE_TYPES = {
    0x01: ("hello", False), 0x02: ("welcome", False), 0x03: ("reject", False),
    0x10: ("push", True), 0x11: ("push_ack", False), 0x12: ("fork", False),
    0x13: ("forked", False), 0x20: ("pull", False), 0x21: ("batch", True),
    0x22: ("recover", False), 0x23: ("recovered", True), 0x30: ("heartbeat", False),
    0x31: ("purge_ack", False), 0x32: ("review", False), 0x33: ("held", False), 0x7E: ("error", False), 0x7F: ("goodbye", False),
}

# errors.md
ERROR_NAMES = {
    1: "MALFORMED_FRAME", 2: "FRAME_TOO_LARGE", 3: "UNKNOWN_MESSAGE", 4: "RESERVED_BITS",
    5: "TRAILING_BYTES", 6: "BAD_COMPRESSION", 7: "DECOMPRESSION_LIMIT", 8: "UNEXPECTED_MESSAGE",
    9: "UNSUPPORTED_VERSION", 10: "SCHEMA_MISMATCH", 11: "AUTHENTICATION_FAILED",
    12: "ENROLMENT_INVALID", 13: "TIMEOUT", 14: "BUSY", 15: "CLOCK_SKEW", 16: "STORAGE_FAILURE",
    17: "SHUTTING_DOWN", 18: "LIMIT_EXCEEDED", 19: "MALFORMED_MESSAGE", 20: "EQUIVOCATION",
    21: "CURSOR_AHEAD", 22: "SIGNATURE_INVALID", 23: "CHAIN_GAP", 24: "UNSIGNED_CHANGES",
    25: "UNKNOWN_DEVICE", 26: "HUB_KEY_CHANGED",
}

# README.md: smallest encodings, for refusing list counts that cannot fit.
MIN_CHANGE_SIZE = 25
MIN_FIELD_SIZE = 4
MIN_CHANGE_ID_SIZE = 17
SETS_LIFE = 0x01                          # README.md, "A change": the only defined flag bit
# identity.md: a head is origin, counter, chain, signer, signature; a certificate replica, key,
# team, issued_at_ms, attested_through, signature. Smallest sizes, for refusing list counts.
MIN_HEAD_SIZE = 16 + 1 + 32 + 1 + 64
MIN_CERTIFICATE_ITEM_SIZE = 1 + 16 + 32 + 1 + 1 + 1 + 64     # in a list, with its `bytes` length
HEAD_SIGNERS = (0, 1)

# README.md, "Limits on a change" (checked by the session, not the decoder).
MAX_NAME, MAX_ROW, MAX_VALUE, MAX_SUPERSEDES, MAX_FIELDS, MAX_ENCODED = 64, 128, 49_152, 256, 64, 61_440
MAX_INTEGER = (1 << 63) - 1
# messages.md, "Scope lists" (checked by the decoder: LIMIT_EXCEEDED).
MAX_SCOPES, MAX_SCOPE = 4096, 128
# messages.md, "review" and "held" (checked by the decoder: LIMIT_EXCEEDED).
MAX_DECISIONS, MAX_ITEMS = 1024, 1024
VERDICTS = {1: "accept", 2: "dismiss"}
HELD_REASONS = {1: "OUT_OF_SCOPE", 2: "RESTRICTED"}


class ProtocolError(Exception):
    def __init__(self, code, detail):
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class PayloadError(Exception):
    """Anything wrong inside a payload: reported as MALFORMED_MESSAGE."""


class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0
        self.change_sizes = []   # the encoded size of each change read, in order

    def remaining(self):
        return len(self.data) - self.pos

    def take(self, n):
        if n > self.remaining():
            raise PayloadError(f"need {n} bytes at offset {self.pos}, {self.remaining()} left")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u8(self):
        return self.take(1)[0]

    def boolean(self):
        b = self.u8()
        if b > 1:
            raise PayloadError(f"bool byte {b}")
        return b == 1

    def varint(self):
        start = self.pos
        value = 0
        for index in range(10):
            b = self.u8()
            if index == 9 and b > 1:
                raise PayloadError(f"varint at {start} exceeds 64 bits")
            value |= (b & 0x7F) << (7 * index)
            if b & 0x80 == 0:
                if b == 0 and index > 0:
                    raise PayloadError(f"overlong varint at {start}")
                return value
        raise PayloadError(f"varint at {start} longer than 10 bytes")  # unreachable: 10th byte ≤ 1

    def svarint(self):
        u = self.varint()
        return (u >> 1) ^ -(u & 1)

    def u64be(self):
        return struct.unpack(">Q", self.take(8))[0]

    def bytes_field(self):
        return self.take(self.varint())

    def string(self):
        raw = self.bytes_field()
        try:
            return raw.decode("utf-8", errors="strict")
        except UnicodeDecodeError as error:
            raise PayloadError(f"invalid UTF-8: {error.reason}") from None

    def replica(self):
        return self.take(16).hex()

    def count(self, min_item_size):
        n = self.varint()
        if n * min_item_size > self.remaining():
            raise PayloadError(f"list of {n} items cannot fit in {self.remaining()} bytes")
        return n

    def change_id(self):
        replica = self.replica()
        counter = self.varint()
        if counter == 0:
            raise PayloadError("change counter 0")
        return {"replica": replica, "counter": counter}


def id_key(change_id):
    return (bytes.fromhex(change_id["replica"]), change_id["counter"])


def read_value(r):
    tag = r.u8()
    if tag == 0:
        return {"null": None}
    if tag == 1:
        return {"integer": r.svarint()}
    if tag == 2:
        return {"real": struct.unpack(">d", r.take(8))[0]}
    if tag == 3:
        return {"text": r.string()}
    if tag == 4:
        return {"blob": r.bytes_field().hex()}
    raise PayloadError(f"unknown value tag {tag}")


def read_operation(r):
    operation = r.u8()
    if operation == 1:
        return {"assign": read_value(r)}
    if operation == 2:
        return {"add": read_value(r)}
    if operation == 3:
        return {"remove": read_value(r)}
    if operation == 4:
        return {"increment": r.svarint()}
    raise PayloadError(f"unknown operation {operation}")


def read_field(r):
    field = {"column": r.string(), "operation": read_operation(r)}
    if field["column"] == "":
        raise PayloadError("a field edit with an empty column name")
    supersedes = [r.change_id() for _ in range(r.count(MIN_CHANGE_ID_SIZE))]
    for before, after in zip(supersedes, supersedes[1:]):
        if not id_key(before) < id_key(after):
            raise PayloadError("supersedes not strictly ascending")
    field["supersedes"] = supersedes
    return field


def read_change(r):
    """README.md, "A change": one edit of one row, checked strictly."""
    start = r.pos
    change = {"id": r.change_id(), "timestamp": r.varint(), "author": r.string(), "table": r.string(),
              "row": r.string(), "scope": r.string(), "causal_length": r.varint()}
    if change["causal_length"] == 0:
        raise PayloadError("causal length 0")
    flags = r.u8()
    if flags & ~SETS_LIFE:
        raise PayloadError(f"unknown change flags 0x{flags:02x}")
    change["sets_life"] = bool(flags & SETS_LIFE)
    fields = [read_field(r) for _ in range(r.count(MIN_FIELD_SIZE))]
    columns = [field["column"].encode("utf-8") for field in fields]
    for before, after in zip(columns, columns[1:]):
        if not before < after:
            raise PayloadError("field columns not strictly ascending by their UTF-8 bytes")
    if change["sets_life"] and change["causal_length"] % 2 == 0 and fields:
        raise PayloadError("a delete carries field edits")
    if not change["sets_life"] and not fields:
        raise PayloadError("an edit that neither sets the row's life nor edits a field")
    change["fields"] = fields
    r.change_sizes.append(r.pos - start)
    return change


def read_changes(r):
    return [read_change(r) for _ in range(r.count(MIN_CHANGE_SIZE))]


def limit_refusal(change, size):
    """README.md, "Limits on a change": the error a hub refuses a push holding `change` with
    (range and content first, then sizes), or None if it is within every limit."""
    names = [change["table"], change["row"], change["scope"], change["author"]] + [f["column"] for f in change["fields"]]
    counters = [change["id"]["counter"], change["causal_length"]] + [s["counter"] for f in change["fields"] for s in f["supersedes"]]
    if any(counter > MAX_INTEGER for counter in counters):
        return "MALFORMED_MESSAGE"
    values = [next(iter(f["operation"].values())) for f in change["fields"]]
    values = [value for value in values if isinstance(value, dict)]   # an increment's delta is a number
    if any("\0" in name for name in names) or any("\0" in value.get("text", "") for value in values):
        return "MALFORMED_MESSAGE"
    if any(value.get("real") is not None and value["real"] != value["real"] for value in values):  # NaN
        return "MALFORMED_MESSAGE"
    utf8 = lambda text: len(text.encode("utf-8"))
    if utf8(change["table"]) > MAX_NAME or any(utf8(f["column"]) > MAX_NAME for f in change["fields"]):
        return "LIMIT_EXCEEDED"
    if max(utf8(change["row"]), utf8(change["scope"]), utf8(change["author"])) > MAX_ROW:
        return "LIMIT_EXCEEDED"
    if len(change["fields"]) > MAX_FIELDS or any(len(f["supersedes"]) > MAX_SUPERSEDES for f in change["fields"]):
        return "LIMIT_EXCEEDED"
    for value in values:
        if utf8(value.get("text", "")) > MAX_VALUE or len(value.get("blob", "")) // 2 > MAX_VALUE:
            return "LIMIT_EXCEEDED"
    if size > MAX_ENCODED:
        return "LIMIT_EXCEEDED"
    return None


def read_head(r):
    head = {"origin": r.replica(), "counter": r.varint(), "chain": r.take(32).hex(), "signer": r.u8()}
    if head["counter"] == 0:
        raise PayloadError("head counter 0")
    if head["signer"] not in HEAD_SIGNERS:
        raise PayloadError(f"unknown head signer {head['signer']}")
    head["signature"] = r.take(64).hex()
    return head


def read_certificate_field(r):
    """A `bytes` holding exactly one certificate, or None when empty."""
    length = r.varint()
    if length == 0:
        return None
    body = Reader(r.take(length))
    certificate = {"replica": body.replica(), "public_key": body.take(32).hex(), "team": body.string(),
                   "issued_at_ms": body.varint(), "attested_through": body.varint(), "signature": body.take(64).hex()}
    if certificate["team"] == "":
        raise PayloadError("a certificate with an empty team")
    if body.remaining():
        raise PayloadError(f"{body.remaining()} bytes after a certificate inside its field")
    return certificate


def read_provenance(r, m):
    """identity.md, "Messages in protocol version 3": heads, then certificates, each strictly ascending."""
    heads = [read_head(r) for _ in range(r.count(MIN_HEAD_SIZE))]
    keys = [(bytes.fromhex(head["origin"]), head["counter"]) for head in heads]
    for before, after in zip(keys, keys[1:]):
        if not before < after:
            raise PayloadError("heads not strictly ascending by origin, then counter")
    certificates = []
    for _ in range(r.count(MIN_CERTIFICATE_ITEM_SIZE)):
        certificate = read_certificate_field(r)
        if certificate is None:
            raise PayloadError("an empty certificate in a certificate list")
        if certificates and not bytes.fromhex(certificates[-1]["replica"]) < bytes.fromhex(certificate["replica"]):
            raise PayloadError("certificates not strictly ascending by replica")
        certificates.append(certificate)
    m["heads"] = heads
    m["certificates"] = certificates


def read_version_vector(r):
    entries = []
    for _ in range(r.count(MIN_CHANGE_ID_SIZE)):
        replica = r.replica()
        counter = r.varint()
        if counter == 0:
            raise PayloadError("version vector counter 0")
        if entries and not bytes.fromhex(entries[-1]["replica"]) < bytes.fromhex(replica):
            raise PayloadError("version vector replicas not strictly ascending")
        entries.append({"replica": replica, "counter": counter})
    return entries


def read_code(r):
    return ERROR_NAMES.get(r.varint(), "MALFORMED_MESSAGE")  # errors.md: unknown codes


def read_credential(r):
    kind = r.u8()
    if kind == 0:
        return {"none": None}
    if kind == 1:
        return {"enrolment_token": r.string()}
    if kind == 2:
        return {"device_secret": r.bytes_field().hex()}
    raise PayloadError(f"unknown credential kind {kind}")


def read_limited_count(r, limit, min_item_size, field):
    """A list's count: above `limit` is LIMIT_EXCEEDED before anything else is read."""
    n = r.varint()
    if n > limit:
        raise ProtocolError("LIMIT_EXCEEDED", f"{field}: {n} entries, above {limit}")
    if n * min_item_size > r.remaining():
        raise PayloadError(f"{field}: {n} entries cannot fit in {r.remaining()} bytes")
    return n


def read_scope_list(r, field):
    """messages.md, "Scope lists": the limits first (LIMIT_EXCEEDED), then the encoding."""
    n = r.varint()
    if n > MAX_SCOPES:
        raise ProtocolError("LIMIT_EXCEEDED", f"{field}: {n} scopes, above {MAX_SCOPES}")
    if n * 2 > r.remaining():
        raise PayloadError(f"{field}: {n} scopes cannot fit in {r.remaining()} bytes")
    scopes = []
    for index in range(n):
        start = r.pos
        length = r.varint()
        if length > MAX_SCOPE:
            raise ProtocolError("LIMIT_EXCEEDED", f"{field}[{index}]: a scope of {length} bytes, above {MAX_SCOPE}")
        r.pos = start
        raw = r.bytes_field()
        try:
            scope = raw.decode("utf-8", errors="strict")
        except UnicodeDecodeError as error:
            raise PayloadError(f"{field}[{index}]: invalid UTF-8: {error.reason}") from None
        if not raw or b"\x00" in raw:
            raise PayloadError(f"{field}[{index}] is empty or holds U+0000")
        if scopes and scopes[-1].encode("utf-8") >= raw:
            raise PayloadError(f"{field}[{index}] is not above the scope before it")
        scopes.append(scope)
    return scopes


def read_fields(name, r):
    m = {}
    if name == "hello":
        m["protocol_min"] = r.varint()
        m["protocol_max"] = r.varint()
        m["schema_version"] = r.varint()
        m["replica"] = r.replica()
        m["app_version"] = r.string()
        m["credential"] = read_credential(r)
        m["max_frame_body"] = r.varint()
        # messages.md: only a hello of protocol_max >= 3 has a device_key.
        m["device_key"] = r.bytes_field().hex() if m["protocol_max"] >= 3 else ""
        if len(m["device_key"]) not in (0, 64):
            raise PayloadError(f"a device key of {len(m['device_key']) // 2} bytes")
    elif name == "welcome":
        m["protocol_version"] = r.varint()
        m["schema_version"] = r.varint()
        m["hub"] = r.replica()
        m["max_frame_body"] = r.varint()
        m["issued_credential"] = r.bytes_field().hex()
        m["hub_time_ms"] = r.varint()
        m["heartbeat_interval_ms"] = r.varint()
        m["own_durable"] = r.varint()
        m["hub_key"] = r.take(32).hex()
        m["incarnation"] = r.take(16).hex()
        m["certificate"] = read_certificate_field(r)
        m["purges"] = read_scope_list(r, "purges")
    elif name == "reject":
        m["code"] = read_code(r)
        m["retry_after_ms"] = r.varint()
        m["message"] = r.string()
    elif name == "push":
        m["batch"] = r.varint()
        m["changes"] = read_changes(r)
        read_provenance(r, m)
    elif name == "push_ack":
        m["batch"] = r.varint()
        m["durable"] = read_version_vector(r)
        m["hub_head"] = r.varint()
    elif name == "pull":
        m["cursor"] = r.varint()
        m["byte_budget"] = r.varint()
    elif name == "batch":
        m["next_cursor"] = r.varint()
        m["more"] = r.boolean()
        m["changes"] = read_changes(r)
        read_provenance(r, m)
    elif name == "recover":
        m["origin"] = r.replica()
        m["after"] = r.varint()
        m["byte_budget"] = r.varint()
    elif name == "recovered":
        m["origin"] = r.replica()
        m["next_counter"] = r.varint()
        m["more"] = r.boolean()
        m["changes"] = read_changes(r)
        read_provenance(r, m)
    elif name == "fork":
        m["new_replica"] = r.replica()
        m["device_key"] = r.take(32).hex()
    elif name == "forked":
        m["new_replica"] = r.replica()
        m["issued_credential"] = r.bytes_field().hex()
        m["certificate"] = read_certificate_field(r)
    elif name == "heartbeat":
        m["pending_changes"] = r.varint()
        m["oldest_unsynced_age_ms"] = r.varint()
        m["open_conflicts"] = r.varint()
        m["schema_version"] = r.varint()
    elif name == "purge_ack":
        m["scopes"] = read_scope_list(r, "scopes")
    elif name == "review":
        m["decisions"] = []
        for _ in range(read_limited_count(r, MAX_DECISIONS, 18, "decisions")):
            change_id = r.change_id()
            verdict = r.u8()
            if verdict not in VERDICTS:
                raise PayloadError(f"unknown verdict {verdict}")
            if m["decisions"] and id_key(m["decisions"][-1]["id"]) >= id_key(change_id):
                raise PayloadError("decisions do not ascend by change id")
            m["decisions"].append({"id": change_id, "verdict": VERDICTS[verdict]})
        m["after"] = r.change_id() if r.boolean() else None
    elif name == "held":
        m["outcomes"] = []
        for _ in range(read_limited_count(r, MAX_DECISIONS, 18, "outcomes")):
            change_id = r.change_id()
            outcome = r.u8()
            if outcome not in (1, 2, 3):
                raise PayloadError(f"unknown outcome {outcome}")
            m["outcomes"].append({"id": change_id, "outcome": outcome})
        m["more"] = r.boolean()
        m["items"] = []
        for _ in range(read_limited_count(r, MAX_ITEMS, 18 + 25, "items")):
            item = {"from_replica": r.replica()}
            reason = r.u8()
            if reason not in HELD_REASONS:
                raise PayloadError(f"unknown reason {reason}")
            item["reason"] = HELD_REASONS[reason]
            item["received_at_ms"] = r.varint()
            item["change"] = read_change(r)
            if m["items"] and id_key(m["items"][-1]["change"]["id"]) >= id_key(item["change"]["id"]):
                raise PayloadError("items do not ascend by change id")
            m["items"].append(item)
    elif name == "error":
        m["code"] = read_code(r)
        m["fatal"] = r.boolean()
        m["message"] = r.string()
    elif name == "goodbye":
        m["reason"] = r.varint()
    return m


def inflate(payload, limit):
    """framing.md, Compression: the checks in their order."""
    r = Reader(payload)
    try:
        size = r.varint()
    except PayloadError as error:
        raise ProtocolError("BAD_COMPRESSION", f"no valid size: {error}") from None
    stream = payload[r.pos:]
    if size > limit:
        raise ProtocolError("DECOMPRESSION_LIMIT", f"declared size {size} above the limit {limit}")
    if size > MAX_RATIO * max(len(stream), 1):
        raise ProtocolError("DECOMPRESSION_LIMIT", f"declared {size} from {len(stream)} bytes: ratio above {MAX_RATIO}:1")
    inflater = zlib.decompressobj()  # zlib (RFC 1950) framing: header and Adler-32 checked
    try:
        out = inflater.decompress(stream, size + 1)
    except zlib.error as error:
        raise ProtocolError("BAD_COMPRESSION", f"invalid zlib stream: {error}") from None
    if not inflater.eof:
        raise ProtocolError("BAD_COMPRESSION", "stream ends early or inflates beyond its declared size")
    if len(out) != size:
        raise ProtocolError("BAD_COMPRESSION", f"inflated {len(out)} bytes, declared {size}")
    if inflater.unused_data:
        raise ProtocolError("TRAILING_BYTES", f"{len(inflater.unused_data)} bytes after the zlib stream")
    return out


def decode_frame(data, limit=DEFAULT_LIMIT, change_sizes=None):
    """Decodes bytes holding exactly one frame (framing.md, Order of checks); appends the encoded
    size of each change it holds to `change_sizes`, if given."""
    if len(data) < 4:
        raise ProtocolError("MALFORMED_FRAME", "the stream ends inside the length field")
    length = struct.unpack(">I", data[:4])[0]
    if length < 2:
        raise ProtocolError("MALFORMED_FRAME", f"length {length} below 2")
    if length > limit:
        raise ProtocolError("FRAME_TOO_LARGE", f"length {length} above the limit {limit}")
    if len(data) < 4 + length:
        raise ProtocolError("MALFORMED_FRAME", f"the stream ends inside a frame of {length} bytes")
    if len(data) > 4 + length:
        raise ProtocolError("TRAILING_BYTES", f"{len(data) - 4 - length} bytes after the frame")
    type_byte, flags = data[4], data[5]
    payload = data[6:4 + length]
    if type_byte not in MESSAGE_TYPES:
        raise ProtocolError("UNKNOWN_MESSAGE", f"type 0x{type_byte:02x}")
    name, may_compress = MESSAGE_TYPES[type_byte]
    if flags & 0xFE:
        raise ProtocolError("RESERVED_BITS", f"flags 0x{flags:02x}")
    compressed = bool(flags & 1)
    if compressed:
        if not may_compress:
            raise ProtocolError("BAD_COMPRESSION", f"{name} may not be compressed")
        payload = inflate(payload, limit)
    r = Reader(payload)
    try:
        fields = read_fields(name, r)
    except PayloadError as error:
        raise ProtocolError("MALFORMED_MESSAGE", f"{name}: {error}") from None
    if r.remaining():
        raise ProtocolError("TRAILING_BYTES", f"{r.remaining()} bytes after the {name} payload")
    if change_sizes is not None:
        change_sizes.extend(r.change_sizes)
    return {"type": name, "compressed": compressed, **fields}


def parse_hex(text):
    return bytes.fromhex("".join(text.split()))


# ---------------------------------------------------------------- checks

def load_vectors(directory):
    vectors = {}
    for path in sorted(glob.glob(os.path.join(directory, "*.json"))):
        with open(path, encoding="utf-8") as handle:
            content = json.load(handle)
        for vector in content["vectors"]:
            if vector["name"] in vectors:
                raise SystemExit(f"{path}: duplicate vector name {vector['name']}")
            vectors[vector["name"]] = vector
    return vectors


def check_vector(vector):
    """None if the vector passes, else why not."""
    if ("decoded" in vector) == ("error" in vector):
        return "a vector needs exactly one of 'decoded' and 'error'"
    if "refused" in vector and "error" in vector:
        return "'refused' belongs to a vector that decodes"
    sizes = []
    try:
        decoded = decode_frame(parse_hex(vector["hex"]), vector.get("max_body", DEFAULT_LIMIT), sizes)
    except ProtocolError as error:
        if vector.get("error") == error.code:
            return None
        return f"expected {vector.get('error') or 'success'}, got {error}"
    if "error" in vector:
        return f"expected {vector['error']}, but it decoded to {json.dumps(decoded)}"
    if decoded != vector["decoded"]:
        return f"decoded to {json.dumps(decoded)}, expected {json.dumps(vector['decoded'])}"
    refusals = [code for code in (limit_refusal(change, size) for change, size in zip(decoded.get("changes", []), sizes)) if code]
    if refusals[:1] != ([vector["refused"]] if "refused" in vector else []):
        return f"the limits refuse it with {refusals[:1] or 'nothing'}, expected {vector.get('refused', 'nothing')}"
    return None


def check_vectors(directory):
    vectors = load_vectors(directory)
    failed = 0
    for name, vector in vectors.items():
        problem = check_vector(vector)
        if problem:
            failed += 1
            print(f"FAIL {name}: {problem}")
    print(f"{len(vectors) - failed} passed, {failed} failed")
    return failed == 0 and len(vectors) > 0


MARKER = re.compile(r"^<!-- vector: ([a-z0-9-]+) -->\s*$")


def spec_examples(path):
    """(name, hex, line) for every code block right after a vector marker; raises on a marker
    that is not followed by a code block."""
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    examples = []
    index = 0
    while index < len(lines):
        match = MARKER.match(lines[index])
        if not match:
            index += 1
            continue
        marker_line = index + 1
        if index + 1 >= len(lines) or not lines[index + 1].startswith("```"):
            raise ValueError(f"{path}:{marker_line}: vector marker not followed by a code block")
        hex_text = []
        index += 2
        while index < len(lines) and not lines[index].startswith("```"):
            hex_text.append(lines[index].split("#", 1)[0])
            index += 1
        if index == len(lines):
            raise ValueError(f"{path}:{marker_line}: code block not closed")
        examples.append((match.group(1), "".join("".join(hex_text).split()).lower(), marker_line))
        index += 1
    return examples


def check_spec(directory, vector_directory):
    vectors = load_vectors(vector_directory)
    passed = failed = 0
    for path in sorted(glob.glob(os.path.join(directory, "*.md"))):
        try:
            examples = spec_examples(path)
        except ValueError as error:
            print(f"FAIL {error}")
            failed += 1
            continue
        for name, hex_text, line in examples:
            where = f"{os.path.relpath(path)}:{line}"
            if name not in vectors:
                print(f"FAIL {where}: no vector named {name}")
                failed += 1
            elif vectors[name]["hex"] != hex_text:
                print(f"FAIL {where}: the example's bytes differ from vector {name}:\n  spec   {hex_text}\n  vector {vectors[name]['hex']}")
                failed += 1
            else:
                passed += 1
    print(f"{passed} passed, {failed} failed")
    return failed == 0 and passed > 0


def main():
    parser = argparse.ArgumentParser(description="Decode CareSync frames; check vectors and the spec's examples.")
    parser.add_argument("hex", nargs="?", help="one frame, in hex (spaces allowed)")
    parser.add_argument("--max-body", type=int, default=DEFAULT_LIMIT, help="the limit (default 4194304)")
    parser.add_argument("--check", metavar="DIR", help="check every vector in DIR/*.json")
    parser.add_argument("--check-spec", metavar="DIR", help="check the hex examples in DIR/*.md against the vectors")
    parser.add_argument("--vectors", metavar="DIR", help="vector directory for --check-spec (default DIR/vectors)")
    args = parser.parse_args()
    if args.check or args.check_spec:
        ok = True
        if args.check:
            ok = check_vectors(args.check) and ok
        if args.check_spec:
            ok = check_spec(args.check_spec, args.vectors or os.path.join(args.check_spec, "vectors")) and ok
        return 0 if ok else 1
    if args.hex is None:
        parser.error("give a frame in hex, --check DIR or --check-spec DIR")
    try:
        data = parse_hex(args.hex)
    except ValueError:
        print("the argument is not hex: give the frame's bytes as hex digits, e.g. 000000037f0000", file=sys.stderr)
        return 2
    try:
        print(json.dumps(decode_frame(data, args.max_body), indent=2, ensure_ascii=False))
        return 0
    except ProtocolError as error:
        print(json.dumps({"error": error.code, "detail": error.detail}, indent=2))
        return 1


if __name__ == "__main__":
    sys.exit(main())
