"""Onceonly hub: the central service of the exchange.

Domain packages follow one exchange from top to bottom: ``auth`` (who is asking)
→ ``access`` (may they) → ``registry`` (what is asked for) → ``exchange`` (ask the
owner) → ``audit`` (write it down). Cross-cutting wiring lives in ``app``,
``config``, ``db`` and ``errors``; domain-free helpers in ``onceonly.hub.kit``.
"""

__version__ = "0.1.0"
