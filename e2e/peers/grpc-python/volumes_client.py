#!/usr/bin/env python3
"""A client of Berth's volume API (proto/volumes/v1/volumes.proto) written with Python grpcio, as a
third party would write one from the .proto alone.

It compiles the proto with grpcio-tools into OUT and, over a `unix:` target: creates volume NAME
with a label, checks ALREADY_EXISTS for a second create and INVALID_ARGUMENT for a bad name, lists
by label, prints the listed volume as one JSON line ("listed: {...}") for the test to compare with
`berth volume ls -o json`, checks that Remove refuses a volume in use (when --in-use names one) with
FAILED_PRECONDITION naming its container, removes NAME and checks NOT_FOUND after.

usage: volumes_client.py --proto-root DIR --out DIR --socket PATH --name NAME [--in-use VOLUME CONTAINER]

Exits 0 after a "PASS:" line, or 1 with a line starting with "FAIL:" naming the first failed check.
"""

import argparse
import json
import os
import sys

import grpc

TIMEOUT = 30


class CheckFailed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise CheckFailed(what)
    print("ok:", what, flush=True)


def compile_stubs(proto_root, out):
    from grpc_tools import protoc

    os.makedirs(out, exist_ok=True)
    code = protoc.main(
        [
            "grpc_tools.protoc",
            "-I" + proto_root,
            "--python_out=" + out,
            "--grpc_python_out=" + out,
            os.path.join(proto_root, "volumes/v1/volumes.proto"),
        ]
    )
    check(code == 0, "grpcio-tools compiled volumes/v1/volumes.proto")
    sys.path.insert(0, out)
    from volumes.v1 import volumes_pb2, volumes_pb2_grpc

    return volumes_pb2, volumes_pb2_grpc


def code_of(call):
    try:
        call()
    except grpc.RpcError as e:
        return e.code(), e.details()
    return grpc.StatusCode.OK, ""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--proto-root", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--socket", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--in-use", nargs=2, metavar=("VOLUME", "CONTAINER"))
    args = parser.parse_args()

    pb, pbg = compile_stubs(args.proto_root, args.out)
    stub = pbg.VolumesStub(grpc.insecure_channel("unix:" + args.socket))

    made = stub.Create(
        pb.CreateVolumeRequest(name=args.name, labels={"from": "python"}), timeout=TIMEOUT
    ).volume
    check(made.name == args.name, "Create made %s" % made.name)
    check(
        made.mountpoint.endswith("/volumes/%s/_data" % args.name),
        "its mountpoint is %s" % made.mountpoint,
    )
    check(made.driver == "local" and made.created_at > 0, "driver local, created_at set")

    code, _ = code_of(lambda: stub.Create(pb.CreateVolumeRequest(name=args.name), timeout=TIMEOUT))
    check(code == grpc.StatusCode.ALREADY_EXISTS, "a second Create: %s" % code)
    code, _ = code_of(lambda: stub.Create(pb.CreateVolumeRequest(name="bad/name"), timeout=TIMEOUT))
    check(code == grpc.StatusCode.INVALID_ARGUMENT, "a bad name: %s" % code)

    listed = stub.List(
        pb.ListVolumesRequest(filters=[pb.LabelFilter(key="from", value="python")]),
        timeout=TIMEOUT,
    ).volumes
    check([v.name for v in listed] == [args.name], "List by label from=python")
    v = listed[0]
    print(
        "listed:",
        json.dumps(
            {
                "name": v.name,
                "driver": v.driver,
                "mountpoint": v.mountpoint,
                "labels": dict(v.labels),
                "createdAt": str(v.created_at),
                "usedBy": list(v.used_by),
            }
        ),
        flush=True,
    )
    none = stub.List(pb.ListVolumesRequest(filters=[pb.LabelFilter(key="nope")]), timeout=TIMEOUT)
    check(len(none.volumes) == 0, "List by a label nobody has: none")

    if args.in_use:
        volume, container = args.in_use
        code, details = code_of(
            lambda: stub.Remove(pb.RemoveVolumeRequest(name=volume), timeout=TIMEOUT)
        )
        check(
            code == grpc.StatusCode.FAILED_PRECONDITION and container in details,
            "Remove of a volume in use: %s %s" % (code, details),
        )
        inspected = stub.Inspect(pb.InspectVolumeRequest(name=volume), timeout=TIMEOUT).volume
        check(len(inspected.used_by) == 1, "Inspect names its user %s" % list(inspected.used_by))

    stub.Remove(pb.RemoveVolumeRequest(name=args.name), timeout=TIMEOUT)
    code, _ = code_of(lambda: stub.Inspect(pb.InspectVolumeRequest(name=args.name), timeout=TIMEOUT))
    check(code == grpc.StatusCode.NOT_FOUND, "Inspect after Remove: %s" % code)
    print("PASS: volumes_client.py", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CheckFailed as e:
        print("FAIL:", e, flush=True)
        sys.exit(1)
    except grpc.RpcError as e:
        print("FAIL: unexpected status %s: %s" % (e.code(), e.details()), flush=True)
        sys.exit(1)
