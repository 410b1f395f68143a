"""contrib.headers: FAPWS3's redirect helper."""


def redirect(start_response, location, permanent=None):
    """Answers a redirect to `location` (302, or 301 when permanent)."""
    headers = [("Location", location), ("Content-Type", "text/plain")]
    start_response("301 Moved Permanently" if permanent else "302 Found", headers)
    return []
