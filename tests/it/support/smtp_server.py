#!/usr/bin/env python3
"""A loopback SMTP server for the integration tests (aiosmtpd).

Listens on 127.0.0.1 on a free port and prints `READY <port>` once it accepts connections.
Each message accepted is written to OUT_DIR as NNNN.json (envelope, headers, decoded plain-text
body, the authenticated login) and NNNN.eml (the raw message). Recipients whose local part
starts with `reject` get 550, with `tempfail` get 451. With --auth-user, AUTH is required and
the password is read from the environment variable SMTP_TEST_PASSWORD.
"""

import argparse
import asyncio
import email
import email.policy
import json
import os
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Handler:
    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0]
        if local.startswith("reject"):
            return "550 5.1.1 mailbox unavailable"
        if local.startswith("tempfail"):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        part = msg.get_body(preferencelist=("plain",))
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "login": session.auth_data if isinstance(session.auth_data, str) else None,
            "headers": {k: str(v) for k, v in msg.items()},
            # Lines end in CRLF on the wire; readers see lines.
            "body": part.get_content().replace("\r\n", "\n") if part is not None else None,
        }
        base = os.path.join(self.out_dir, f"{self.count:04d}")
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.content)
        os.replace(base + ".eml.tmp", base + ".eml")
        with open(base + ".json.tmp", "w") as f:
            json.dump(record, f)
        os.replace(base + ".json.tmp", base + ".json")
        return "250 2.0.0 queued as %04d" % self.count


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("--auth-user")
    args = parser.parse_args()
    handler = Handler(args.out_dir)
    password = os.environ.get("SMTP_TEST_PASSWORD", "")

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == args.auth_user
            and auth_data.password.decode() == password
        )
        return AuthResult(success=ok, handled=False, auth_data=args.auth_user if ok else None)

    def factory():
        if args.auth_user:
            return SMTP(
                handler,
                hostname="mockops-test",
                authenticator=authenticator,
                auth_required=True,
                auth_require_tls=False,
            )
        return SMTP(handler, hostname="mockops-test")

    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"READY {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
