"""configctl's in-cluster reconciler: git polling, leader election, cache warming, outbox relay, HTTP.

The reconcile loop and its wiring (``loop``, ``runner``, ``reconcile``) drive the pieces
in the other modules; each piece knows nothing of the loop.
"""
