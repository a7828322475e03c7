#!/usr/bin/env python3
"""A client of Berth's own image API (proto/images/v1/images.proto) written with Python grpcio, as a
third party would write one from the .proto alone.

It compiles the proto with grpcio-tools into OUT, streams PullWithProgress for IMAGE over a `unix:`
target, checks that byte counts never go backwards, that the last message says `done` with an image
id and every layer DONE or PRESENT at its full size, and that WatchPull of an image nobody pulls
answers NOT_FOUND.

usage: pull_progress.py --proto-root DIR --out DIR --socket PATH --image REF

Exits 0 after a "PASS:" line, or 1 with a line starting with "FAIL:" naming the first failed check.
"""

import argparse
import os
import sys

import grpc

TIMEOUT = 120  # seconds for the whole pull; a pull from the local registry takes far less


class CheckFailed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise CheckFailed(what)
    print("ok:", what, flush=True)


def compile_stubs(proto_root, out):
    from grpc_tools import protoc

    os.makedirs(out, exist_ok=True)
    # grpc_tools ships the well-known protos; none are imported here, but keep its include path
    # first as its own command line does.
    code = protoc.main(
        [
            "grpc_tools.protoc",
            "-I" + proto_root,
            "--python_out=" + out,
            "--grpc_python_out=" + out,
            os.path.join(proto_root, "images/v1/images.proto"),
        ]
    )
    check(code == 0, "grpcio-tools compiled images/v1/images.proto")
    sys.path.insert(0, out)
    from images.v1 import images_pb2, images_pb2_grpc

    return images_pb2, images_pb2_grpc


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--proto-root", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--socket", required=True)
    parser.add_argument("--image", required=True)
    args = parser.parse_args()

    pb, pbg = compile_stubs(args.proto_root, args.out)
    channel = grpc.insecure_channel("unix:" + args.socket)
    stub = pbg.ImagesStub(channel)

    messages = []
    seen = {}
    for message in stub.PullWithProgress(pb.PullRequest(image=args.image), timeout=TIMEOUT):
        messages.append(message)
        for layer in message.layers:
            before = seen.get(layer.digest, 0)
            if layer.downloaded_bytes < before:
                raise CheckFailed(
                    "layer %s went back from %d to %d bytes"
                    % (layer.digest, before, layer.downloaded_bytes)
                )
            seen[layer.digest] = layer.downloaded_bytes
    check(len(messages) >= 1, "PullWithProgress streamed %d message(s)" % len(messages))
    last = messages[-1]
    check(last.done, "the last message is done")
    check(last.image_id.startswith("sha256:"), "image id " + last.image_id)
    check(all(not m.done for m in messages[:-1]), "only the last message is done")
    check(len(last.layers) >= 1, "%d layer(s)" % len(last.layers))
    finished = (pb.LAYER_STATE_DONE, pb.LAYER_STATE_PRESENT)
    check(
        all(l.state in finished and l.downloaded_bytes == l.total_bytes for l in last.layers),
        "every layer DONE or PRESENT at its full size: "
        + ", ".join(pb.LayerState.Name(l.state) for l in last.layers),
    )
    check(last.joined >= 1, "joined %d" % last.joined)

    try:
        for _ in stub.WatchPull(
            pb.WatchPullRequest(image=args.image + "-nobody-pulls-this"), timeout=TIMEOUT
        ):
            pass
        raise CheckFailed("WatchPull of an image nobody pulls ended without an error")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.NOT_FOUND, "WatchPull: %s" % e.code())

    channel.close()
    print("PASS: grpcio %s streamed a pull's progress (image %s)" % (grpc.__version__, last.image_id))


if __name__ == "__main__":
    try:
        main()
    except CheckFailed as e:
        print("FAIL:", e, flush=True)
        sys.exit(1)
    except grpc.RpcError as e:
        print("FAIL: rpc error %s: %s" % (e.code(), e.details()), flush=True)
        sys.exit(1)
