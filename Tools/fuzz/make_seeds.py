#!/usr/bin/env python3
"""Writes the seed inputs of Tests/Fuzz/corpus from Protocol/vectors (stdlib only).

    python3 Tools/fuzz/make_seeds.py

Seeds are the valid (and some deliberately invalid) inputs the fuzzers start from, so they follow
the protocol: when the vectors change (a new protocol version), run this again. It rewrites every
`seed-*` file it owns and removes those of vectors that no longer exist. It never touches what a
fuzzer found (`crash-*`, `timeout-*`, `edge-*`, and any other name not starting `seed-`): those must
simply keep not crashing.

It writes no bundle seeds. Since bundle format 3 a valid bundle carries its sender's signed heads
and device certificate (Protocol/identity.md), which only the sender's key can make: the bundle
seeds (`bundle/seed-*`) are exports of the bundle target's fuzz sender, made by `BundleSeeds`
(Sources/SyncFuzzTargets) and written by
`CARESYNC_UPDATE_SEEDS=1 swift test --filter FuzzCorpusTests`, which otherwise checks the committed
ones are exactly what it makes. (Bundles made here from the pushes' changes were format 2, and
unsigned: every one would now be refused.)

Input formats (Tools/fuzz/README.md):
  frame    one byte choosing the frame limit (0: 4 MiB, 1: 64 KiB, 2: 64, 3: 2), then a byte stream
  message  a frame body: type | flags | payload
  bundle   a bundle without its SHA-256 trailer
  hub      chunks split on F5 5A C3 3C: mode | hello payload, then frame bodies
"""

import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
VECTORS = os.path.join(ROOT, "Protocol", "vectors")
CORPUS = os.path.join(ROOT, "Tests", "Fuzz", "corpus")
SEPARATOR = bytes.fromhex("f55ac33c")
# The hub target's enrolled device (HubFuzzTarget.deviceID, f0224b0b-...-de71ce) registers its
# test key, SyncTesting's TestSigner.publicKey(deviceID): a device-mode hello must show that key,
# not the vectors' (FuzzCorpusTests checks the device seeds get past authentication).
TEMPLATE_DEVICE_KEY = bytes.fromhex("a4bbee97cbf95246a9c98fad24a87fb062e77aec758a8f2ae6ada2a4ab29e712")
MAX_SEED = 4096                         # limits.json's 50-61 KB changes would only slow the fuzzers


def load():
    files = {}
    for name in sorted(os.listdir(VECTORS)):
        if name.endswith(".json"):
            with open(os.path.join(VECTORS, name), encoding="utf-8") as handle:
                files[name[:-5]] = {v["name"]: bytes.fromhex(v["hex"]) for v in json.load(handle)["vectors"]}
    return files


def body(frame):
    """A one-frame vector without its 4-byte length."""
    return frame[4:]


def hub_script(hello_mode, hello, frames):
    return SEPARATOR.join([bytes([hello_mode]) + body(hello)[2:]] + [body(frame) for frame in frames])


def seeds(files):
    every = {name: data for content in files.values() for name, data in content.items()}
    # No "bundle": its seeds are BundleSeeds' (see above), and this leaves that directory alone.
    out = {"frame": {}, "message": {}, "hub": {}}
    for name, data in {**files["messages"], **files["framing"]}.items():
        out["frame"][f"seed-{name}"] = b"\x00" + data
    out["frame"]["seed-small-limit"] = b"\x02" + every["pull-resume"] + every["hello-enrolment-token"]
    out["frame"]["seed-two-frames"] = b"\x00" + every["heartbeat"] + every["goodbye-done"]
    for file in ("messages", "payload", "compression", "limits"):
        for name, data in files[file].items():
            if len(data) <= MAX_SEED:
                out["message"][f"seed-{name}"] = body(data)
    token, none = every["hello-enrolment-token"], every["hello-no-credential"]
    # The vector's hello ends with its 32-byte device key: swapped for the template device's.
    device = every["hello-device-secret"][:-32] + TEMPLATE_DEVICE_KEY
    scripts = {
        # mode bit 0: an enrolled device's secret (else an unused enrolment token); bit 1: the
        # protocol versions of the fuzzed hello too.
        "seed-device-batch-from-replica": (1, device, ["batch-values", "frame-at-negotiated-limit"]),
        "seed-device-compressed-push-pull": (1, device, ["push-compressed", "pull-from-start", "pull-resume", "goodbye-going-away"]),
        "seed-device-fork": (1, device, ["push-create-and-edit", "fork-new-identity", "push-set-add-and-remove", "pull-from-start"]),
        "seed-device-pushes-in-order": (1, device, ["push-create-and-edit", "push-set-add-and-remove", "push-resolve-and-debit",
                                                    "push-integer-and-real", "push-blob", "push-every-operation",
                                                    "push-no-scope", "pull-from-start"]),
        "seed-device-recover-own-origin": (1, device, ["recover-own-origin", "recover-largest-values", "pull-from-start"]),
        "seed-device-limits": (1, device, ["limits-table-over", "pull-from-start"]),
        "seed-token-fork": (0, token, ["fork-new-identity", "heartbeat"]),
        "seed-token-push-pull-heartbeat-goodbye": (0, token, ["push-create-and-edit", "pull-from-start", "heartbeat",
                                                              "frame-at-negotiated-limit"]),
        "seed-token-versions-from-hello": (2, none, ["push-blob", "pull-largest-values", "error-unexpected-message"]),
        "seed-token-version-1-hello": (2, every["hello-version-1"], ["push-blob", "pull-from-start"]),
        "seed-token-version-2-hello": (2, every["hello-version-2"], ["push-blob", "pull-from-start"]),
    }
    for name, (mode, hello, frames) in scripts.items():
        out["hub"][name] = hub_script(mode, hello, [every[frame] for frame in frames])
    return out


def main():
    written = removed = 0
    for target, files in seeds(load()).items():
        directory = os.path.join(CORPUS, target)
        for name in os.listdir(directory):
            if name.startswith("seed-") and name not in files:
                os.remove(os.path.join(directory, name))
                removed += 1
        for name, data in files.items():
            with open(os.path.join(directory, name), "wb") as handle:
                handle.write(data)
            written += 1
    print(f"wrote {written} seeds, removed {removed} stale ones, under {os.path.relpath(CORPUS, ROOT)}")


if __name__ == "__main__":
    main()
