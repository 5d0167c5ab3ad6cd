#!/usr/bin/env python3
"""Checks manifests/schema/*.schema.json against documents the C++ code produced.

The example writers (tests/manifests/schema_examples.cpp for the signed documents,
tests/telemetry/schema_examples.cpp for the MQTT payloads) name each file
<kind>.<verdict>.<label>.json after what the C++ parser said about it:

  valid     C++ accepts      -> the schema must accept it
  invalid   C++ refuses      -> the schema must refuse it
  semantic  C++ refuses for a rule JSON Schema cannot express -> the schema must accept it

Any disagreement is a failure, so the schemas and the parser cannot drift apart silently.
Usage: check_schemas.py <examples dir> [--schemas <schema dir>] [--kinds k1,k2,...]
"""
import argparse
import collections
import json
import pathlib
import sys

import jsonschema

SCHEMAS = {"manifest": "manifest.schema.json", "desired-state": "desired-state.schema.json",
           "root": "root.schema.json", "status": "status.schema.json",
           "telemetry": "telemetry.schema.json", "event": "event.schema.json"}
# Each kind must be exercised in every verdict, or the check proves little.
MIN_PER_VERDICT = {"valid": 2, "invalid": 10, "semantic": 1}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("examples", type=pathlib.Path)
    parser.add_argument("--schemas", type=pathlib.Path,
                        default=pathlib.Path(__file__).resolve().parents[2] / "manifests" / "schema")
    parser.add_argument("--kinds", default="manifest,desired-state,root",
                        help="comma-separated kinds the examples directory must cover")
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    unknown = [kind for kind in kinds if kind not in SCHEMAS]
    if unknown:
        parser.error(f"unknown kind(s) {', '.join(unknown)}; known: {', '.join(SCHEMAS)}")

    validators = {}
    for kind in kinds:
        name = SCHEMAS[kind]
        schema = json.loads((args.schemas / name).read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        validators[kind] = jsonschema.Draft202012Validator(schema)

    failures = []
    counts = collections.Counter()
    for path in sorted(args.examples.glob("*.json")):
        parts = path.name.split(".")
        if len(parts) != 4 or parts[0] not in kinds or parts[1] not in MIN_PER_VERDICT:
            failures.append(f"{path.name}: unexpected file name")
            continue
        kind, verdict = parts[0], parts[1]
        counts[kind, verdict] += 1
        doc = json.loads(path.read_text())
        errors = list(validators[kind].iter_errors(doc))
        if verdict in ("valid", "semantic") and errors:
            where = "/".join(str(p) for p in errors[0].absolute_path)
            failures.append(f"{path.name}: the C++ parser {'accepts' if verdict == 'valid' else 'passes the structure of'} "
                            f"it but the schema refuses it at '{where}': {errors[0].message[:300]}")
        elif verdict == "invalid" and not errors:
            failures.append(f"{path.name}: the C++ parser refuses it but the schema accepts it")

    for kind in kinds:
        for verdict, minimum in MIN_PER_VERDICT.items():
            if counts[kind, verdict] < minimum:
                failures.append(f"only {counts[kind, verdict]} {kind} {verdict} example(s), "
                                f"expected at least {minimum}")

    total = sum(counts.values())
    for line in failures:
        print("FAIL", line)
    print(f"{total} documents checked against {len(kinds)} schemas: "
          f"{len(failures)} disagreement(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
