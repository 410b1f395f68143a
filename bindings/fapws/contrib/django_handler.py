"""contrib.django_handler: FAPWS3's Django entry point, kept for old run
scripts (evwsgi.wsgi_cb(("/", django_handler.handler))).

The modern way needs none of this: `fapws mysite.wsgi:application`.
DJANGO_SETTINGS_MODULE must be set before this module is imported.
"""

from django.core.wsgi import get_wsgi_application

_application = get_wsgi_application()


def handler(environ, start_response):
    return _application(environ, start_response)
