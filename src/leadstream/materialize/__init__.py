"""Turning held triggers into recipient lists on ``send-recipients``, exactly once: the
loop (materializer.py, where the protocol is written out), what is due (schedule.py),
sends evaluated ahead (shares.py), transactional output with fencing (output.py) and the
progress topic as read (progress.py)."""

__all__: list[str] = []
