"""The start of a ``__main__`` script whose initializer sets a global its tasks read.

``connect(value)`` sets ``CONNECTION``; ``use`` returns it with ``OTHER``, a global
the initializer leaves as the parent set it. For ``run_python`` (dedented with the rest).
"""

CONNECT = """
        CONNECTION = None
        OTHER = "from the parent"

        def connect(value):
            global CONNECTION
            CONNECTION = value

        def use(*_):
            return CONNECTION, OTHER
"""
