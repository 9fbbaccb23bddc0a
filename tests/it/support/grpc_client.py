#!/usr/bin/env python3
"""A standard gRPC client (grpcio) for the gateway tests: no generated stubs, descriptors come
from the server's reflection service. Prints one JSON object on stdout.

  grpc_client.py list ADDR [--authority HOST]
      {"services": [...]}
  grpc_client.py call ADDR SERVICE METHOD REQUEST_JSON [--authority HOST] [--metadata K=V]...
      {"code": "OK", "response": {...}, "hex": "..."} or {"code": "...", "details": "..."}
  grpc_client.py raw ADDR PATH HEX [--authority HOST] [--metadata K=V]...
      the request bytes sent as they are, the answer's bytes as hex
"""

import argparse
import json
import sys

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def channel(args):
    options = []
    if args.authority:
        options.append(("grpc.default_authority", args.authority))
    return grpc.insecure_channel(args.addr, options=options)


def metadata(args):
    return [tuple(m.split("=", 1)) for m in args.metadata]


def failure(e):
    return {"code": e.code().name, "details": e.details()}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["list", "call", "raw"])
    p.add_argument("addr")
    p.add_argument("rest", nargs="*")
    p.add_argument("--authority")
    p.add_argument("--metadata", action="append", default=[])
    p.add_argument("--timeout", type=float, default=10.0)
    args = p.parse_args()
    ch = channel(args)
    out = {}
    try:
        if args.mode == "list":
            db = ProtoReflectionDescriptorDatabase(ch)
            out = {"services": sorted(db.get_services())}
        elif args.mode == "call":
            service, method, request = args.rest
            db = ProtoReflectionDescriptorDatabase(ch)
            pool = descriptor_pool.DescriptorPool(db)
            m = pool.FindServiceByName(service).FindMethodByName(method)
            req_cls = message_factory.GetMessageClass(m.input_type)
            resp_cls = message_factory.GetMessageClass(m.output_type)
            req = json_format.ParseDict(json.loads(request), req_cls())
            call = ch.unary_unary(
                f"/{service}/{method}",
                request_serializer=req_cls.SerializeToString,
                response_deserializer=resp_cls.FromString,
            )
            resp = call(req, metadata=metadata(args), timeout=args.timeout)
            out = {
                "code": "OK",
                "response": json_format.MessageToDict(
                    resp, preserving_proto_field_name=True
                ),
                "hex": resp.SerializeToString().hex(),
            }
        else:
            path, data = args.rest
            call = ch.unary_unary(path)
            resp = call(bytes.fromhex(data), metadata=metadata(args), timeout=args.timeout)
            out = {"code": "OK", "hex": resp.hex()}
    except grpc.RpcError as e:
        out = failure(e)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
