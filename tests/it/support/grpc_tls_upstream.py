#!/usr/bin/env python3
"""A gRPC upstream over TLS for the gateway tests (grpcio): `shop.v1.Catalog/GetItem` answers
with the request's own bytes (a `GetItemRequest{item_id}` reads as an `Item{item_id}`).

  grpc_tls_upstream.py CERT_PEM KEY_PEM PORT

Prints `ready` once it listens on localhost:PORT, then serves until killed.
"""

import sys
from concurrent import futures

import grpc


def echo(request, context):
    context.set_trailing_metadata((("x-upstream", "tls"),))
    return request


def main():
    cert, key, port = sys.argv[1:4]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handler = grpc.method_handlers_generic_handler(
        "shop.v1.Catalog", {"GetItem": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    with open(key, "rb") as k, open(cert, "rb") as c:
        creds = grpc.ssl_server_credentials([(k.read(), c.read())])
    server.add_secure_port(f"127.0.0.1:{port}", creds)
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
