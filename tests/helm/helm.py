"""Helm's own engine (PyPI's helm-python-sdk, Helm v4's Go SDK) for the
chart tests: `render`, `lint`, `schema` and `package`. Values come as a
YAML file (or `-` for none); results print as JSON on stdout.

    python3 tests/helm/helm.py render CHART VALUES RELEASE NAMESPACE
    python3 tests/helm/helm.py lint CHART VALUES
    python3 tests/helm/helm.py schema CHART VALUES     (exit 1: refused, why on stdout)
    python3 tests/helm/helm.py package CHART DEST
"""
import json
import sys

import helm_python as helm


def values(path):
    if path == "-":
        return None
    with open(path) as f:
        return helm.values_from_yaml(f.read())


def main(argv):
    command, chart = argv[1], argv[2]
    if command == "render":
        c = helm.Chart.load(chart)
        out = c.render(values(argv[3]), name=argv[4], namespace=argv[5], is_install=True)
        print(json.dumps(out))
    elif command == "lint":
        print(json.dumps(helm.lint(chart, values(argv[3]), strict=True)))
    elif command == "schema":
        c = helm.Chart.load(chart)
        try:
            c.validate_schema(values(argv[3]))
        except helm.HelmError as e:
            print(json.dumps({"error": str(e)}))
            return 1
        print(json.dumps({"ok": True}))
    elif command == "package":
        print(json.dumps({"archive": helm.package(chart, destination=argv[3])}))
    else:
        print(f"unknown command {command}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
