"""The verifier behind an HTTP API: Kimina Lean Server's endpoints (``/api/check``, ``/verify``,
``/health``), our own ``/v1/verify`` for trusted statements, and the operations around them (limits,
API key, bounded queue, graceful shutdown, metrics). ``python -m prover.verify serve`` runs it;
``prover.verifier.http.RemoteVerifier`` calls it.

``app`` (``create_app``), ``server`` (``DrainingServer``, ``ServiceThread``) and ``cli`` need the
``service`` extra (FastAPI, uvicorn); ``snippets`` and ``kimina`` (the wire format) need only pydantic.
"""
