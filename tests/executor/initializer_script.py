"""The start of a ``__main__`` script whose initializer sets a global its tasks read.

``connect(value)`` sets ``CONNECTION`` and ``STATE["conn"]`` (a global changed in place,
as much code does instead of ``global``); ``use`` returns both with ``OTHER``, a global
the initializer leaves as the parent set it. For ``run_python`` (dedented with the rest).
"""

CONNECT = """
        CONNECTION = None
        OTHER = "from the parent"
        STATE = {}

        def connect(value):
            global CONNECTION
            CONNECTION = value
            STATE["conn"] = value

        def use(*_):
            return CONNECTION, OTHER, STATE.get("conn")
"""
