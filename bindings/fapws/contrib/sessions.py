"""contrib.sessions: server-side session data behind a cookie, for FAPWS3
applications.

    store = sessions.MemoryStore()             # or your own: get(sid), save(sid, data, expires), delete(sid)
    def app(environ, start_response):
        s = sessions.Session(environ, store)
        s["visits"] = s.get("visits", 0) + 1
        s.save(start_response)                 # sets the cookie (FAPWS3 Start_response or a header list)
        ...

Data is anything picklable; the identifier is 128 random bits; an expired
session reads as empty.
"""

import pickle
import secrets
import time
from http.cookies import SimpleCookie


class MemoryStore:
    """One process's sessions, in a dict (lost at restart; per worker)."""

    def __init__(self):
        self._data = {}

    def get(self, sid):
        item = self._data.get(sid)
        if item and item[1] < time.time():
            del self._data[sid]
            return None
        return item[0] if item else None

    def save(self, sid, data, expires):
        self._data[sid] = (data, expires)

    def delete(self, sid):
        self._data.pop(sid, None)


class Session(dict):
    def __init__(self, environ, store, cookie_name="sessionid", max_age=10 * 86400):
        super().__init__()
        self.store, self.cookie_name, self.max_age = store, cookie_name, max_age
        self.sid = None
        cookies = SimpleCookie(environ.get("HTTP_COOKIE", ""))
        if cookie_name in cookies:
            raw = store.get(cookies[cookie_name].value)
            if raw is not None:
                self.sid = cookies[cookie_name].value
                self.update(pickle.loads(raw))
        if self.sid is None:
            self.sid = secrets.token_hex(16)

    def save(self, start_response=None):
        """Stores the data; returns the Set-Cookie header (name, value), and
        sets it on a FAPWS3 Start_response when given one."""
        self.store.save(self.sid, pickle.dumps(dict(self)), time.time() + self.max_age)
        morsel = f"{self.cookie_name}={self.sid}; Max-Age={self.max_age}; Path=/; HttpOnly; SameSite=Lax"
        if start_response is not None and hasattr(start_response, "set_cookie"):
            start_response.set_cookie(self.cookie_name, self.sid, max_age=self.max_age)
        return ("Set-Cookie", morsel)

    def delete(self):
        self.store.delete(self.sid)
        self.clear()
