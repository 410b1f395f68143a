"""FAPWS3's config module: settings the FAPWS3 layer (fapws._evwsgi) reads.

send_traceback_to_browser is False here (FAPWS3: True): a traceback in a
page shows code and paths to anyone. Set it to True on a development box.
"""

from fapws.wsgi import SERVER_SOFTWARE

SERVER_IDENT = SERVER_SOFTWARE
send_traceback_to_browser = False
# Sent instead of the traceback when send_traceback_to_browser is False.
send_traceback_short = "<h1>Error</h1>Please contact your administrator"
date_format = "%a, %d %b %Y %H:%M:%S GMT"
