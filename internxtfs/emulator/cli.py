"""``internxtfs-emulator``: run the emulated Internxt server, or provision accounts.

Contract other tools rely on: ``serve`` prints exactly one JSON line on stdout when it accepts
connections (``url``, ``drive_url``, ``network_url``); ``add-user`` prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import ssl
import sys
from pathlib import Path

from aiohttp import web

from .app import build_app
from .context import Knobs
from .store import Store
from .users import UserError, create_user

log = logging.getLogger(__name__)


def _rate(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="internxtfs-emulator", description="Local Internxt Drive emulator"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--data", type=Path, required=True, help="state directory")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_non_negative, default=0, help="0 picks a free port")
    serve.add_argument("--tls-cert", type=Path, help="PEM certificate chain (enables HTTPS)")
    serve.add_argument("--tls-key", type=Path, help="PEM private key")
    serve.add_argument(
        "--public-url", help="origin used in presigned object URLs (default: the request's)"
    )
    serve.add_argument("--latency-ms", type=float, default=0.0, help="delay added to each request")
    serve.add_argument(
        "--bandwidth",
        type=_non_negative,
        default=0,
        help="bytes/s per object transfer (0 = no cap)",
    )
    serve.add_argument(
        "--fail-rate", type=_rate, default=0.0, help="fraction of API calls → 500/503"
    )
    serve.add_argument(
        "--throttle-rate", type=_rate, default=0.0, help="fraction of API calls → 429"
    )
    serve.add_argument(
        "--reset-rate", type=_rate, default=0.0, help="fraction of object transfers cut mid-body"
    )
    serve.add_argument(
        "--lose-answer-rate",
        type=_rate,
        default=0.0,
        help="fraction of API calls carried out whose answer is then cut off",
    )
    serve.add_argument("--fault-path-regex", help="only paths matching this get faults")
    serve.add_argument("--fault-method", help="only requests with this HTTP method get faults")
    serve.add_argument(
        "--token-lifetime",
        type=_non_negative,
        help="token lifetime in seconds for login and refresh (default 3 days / 7 days)",
    )
    serve.add_argument(
        "--replica-lag-ms",
        type=_non_negative_float,
        default=0.0,
        help="reads Internxt serves from a read replica see the state this many ms ago",
    )
    serve.add_argument("--seed", type=int, help="seed of the fault randomness")

    add = sub.add_parser("add-user", help="create an account (works while a server runs)")
    add.add_argument("--data", type=Path, required=True)
    add.add_argument("--email", required=True)
    add.add_argument("--password", required=True)
    add.add_argument("--mnemonic", help="24 BIP39 words (default: generated)")
    add.add_argument("--totp-secret", help="base32 TOTP secret: enables 2FA")
    add.add_argument("--quota", type=_non_negative, help="storage quota in bytes")
    return parser


async def _serve(args: argparse.Namespace) -> None:
    store = Store(args.data)
    knobs = Knobs(
        latency_ms=args.latency_ms,
        bandwidth=args.bandwidth,
        fail_rate=args.fail_rate,
        throttle_rate=args.throttle_rate,
        reset_rate=args.reset_rate,
        lose_answer_rate=args.lose_answer_rate,
        token_lifetime=args.token_lifetime,
        fault_path_regex=args.fault_path_regex,
        fault_method=args.fault_method,
        replica_lag_ms=args.replica_lag_ms,
    )
    app = build_app(store, knobs, seed=args.seed, public_url=args.public_url)
    ssl_context = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            raise SystemExit("--tls-cert and --tls-key go together")
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(args.tls_cert, args.tls_key)
    runner = web.AppRunner(app, access_log=log if args.verbose else None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    scheme = "https" if ssl_context else "http"
    host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"{scheme}://{host}:{port}"
    ready = {"url": url, "drive_url": f"{url}/drive", "network_url": f"{url}/network"}
    if args.public_url:
        ready["public_url"] = args.public_url
    sys.stdout.write(json.dumps(ready) + "\n")
    sys.stdout.flush()
    log.info("serving %s from %s", url, args.data)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await runner.cleanup()
        store.close()


def _add_user(args: argparse.Namespace) -> int:
    store = Store(args.data)
    try:
        user = create_user(
            store,
            email=args.email,
            password=args.password,
            mnemonic=args.mnemonic,
            totp_secret=args.totp_secret,
            quota=args.quota,
        )
    except UserError as exc:
        print(f"add-user: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    print(json.dumps(user))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "serve":
        asyncio.run(_serve(args))
        return 0
    return _add_user(args)


if __name__ == "__main__":
    sys.exit(main())
