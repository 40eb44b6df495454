"""A reply and its events, whichever process or client deals with them.

* :mod:`~liaotian.replies.status` — the outcome of a reply (what the store keeps);
* :mod:`~liaotian.replies.log` — its events (``started``, ``delta``…, ``done``), numbered
  0, 1, 2, …, and the in-memory log followers resume from (:class:`ReplyLog`, :class:`ReplyHub`);
* :mod:`~liaotian.replies.codec` — events as plain dicts, for another process;
* :mod:`~liaotian.replies.replay` — a log completed or rebuilt from the stored reply.

Nothing is imported here, so that the store can use :mod:`status` without the rest.
"""
