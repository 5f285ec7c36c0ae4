"""A module that puts its own finder in sys.meta_path when imported, as six does (test_finders)."""

from __future__ import annotations

import sys


class SelfInstalled:
    def find_spec(self, name, path, target=None):
        return None


sys.meta_path.append(SelfInstalled())
