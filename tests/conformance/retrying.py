"""The HTTP session every test client uses: `requests.Session`, plus one retry rule.

`wrangler dev` puts a proxy in front of the local Worker. When it swaps in a new
Worker instance while a request is in flight, the proxy itself answers 503 with a
plain-text "Your worker restarted mid-request" and retries only GET and HEAD. That
503 never came from wattwise, and a client that is refused must try again (as the
GPU agent does from its spool); so this session re-sends such a request, up to
three times, and says so on stderr. Any other answer, 503s from wattwise included
(JSON `{"message"}`), is returned as it is.
"""

from __future__ import annotations

import sys
import time

import requests

WRANGLER_RESTART = "Your worker restarted mid-request"
ATTEMPTS = 3


class Session(requests.Session):
    """A `requests.Session` that re-sends what wrangler's dev proxy dropped."""

    def request(self, method, url, *args, **kwargs):
        for attempt in range(1, ATTEMPTS + 1):
            r = super().request(method, url, *args, **kwargs)
            if r.status_code != 503 or not r.text.startswith(WRANGLER_RESTART):
                return r
            print(f"\nretrying {method} {url}: wrangler's proxy answered {r.text!r} (attempt {attempt})",
                  file=sys.stderr)
            time.sleep(0.2 * attempt)
        return r
