"""The verifier behind an HTTP API: Kimina Lean Server's endpoints (``/api/check``, ``/verify``,
``/health``), our own ``/v1/verify`` for trusted statements, and the operations around them (limits,
API key, bounded queue, graceful shutdown, metrics). ``python -m prover.verify serve`` runs it;
``prover.verifier.http.RemoteVerifier`` calls it. Needs the ``service`` extra (FastAPI, uvicorn)."""

from prover.verifier.service.app import create_app
from prover.verifier.service.config import ServeConfig, ServiceConfig
from prover.verifier.service.server import DrainingServer, ServiceThread

__all__ = ["DrainingServer", "ServeConfig", "ServiceConfig", "ServiceThread", "create_app"]
