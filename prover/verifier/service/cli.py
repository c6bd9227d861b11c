"""``python -m prover.verify serve``: the verification service on a port.

``--config serve.yaml`` (sections ``service:`` and ``verifier:``) and ``--service.FIELD`` /
``--verifier.FIELD`` overrides; ``--help`` lists them all. Prints the address it serves on, then
serves until SIGTERM or SIGINT (a second SIGINT forces it out).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import sys

from prover.config import ConfigError, help_text, load_config
from prover.verifier import VerifierError, make_verifier
from prover.verifier.service.app import create_app
from prover.verifier.service.config import API_KEY_ENV, ServeConfig
from prover.verifier.service.server import DrainingServer, listen

logger = logging.getLogger("prover.verify.serve")


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[2:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(__doc__.strip() + "\n\nOptions:\n" + help_text(ServeConfig))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(ServeConfig, argv)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    service = config.service
    if config.verifier.backend == "http":
        print(
            "error: verifier.backend=http would put this service in front of another one; "
            "serve a local pool (local) or Ray actors (ray)",
            file=sys.stderr,
        )
        return 2
    try:
        sock = listen(service.host, service.port)
    except OSError as exc:
        print(f"error: cannot listen on {service.host}:{service.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if not _loopback(service.host) and not (service.api_key or os.environ.get(API_KEY_ENV)):
        logger.warning(
            "listening on %s without an API key: anyone who reaches the port can use the verifier "
            "(set $%s or --service.api_key)",
            service.host,
            API_KEY_ENV,
        )
    try:
        verifier = make_verifier(config.verifier, headers=service.warm_headers)
    except (VerifierError, ValueError, OSError) as exc:
        sock.close()
        print(f"error: verifier: {exc}", file=sys.stderr)
        return 2
    with verifier:
        print(
            f"serving on http://{service.host}:{sock.getsockname()[1]} ({config.verifier.backend} verifier)", flush=True
        )
        DrainingServer(create_app(verifier, service, config.verifier), service.shutdown_grace).run(sockets=[sock])
    return 0
