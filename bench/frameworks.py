"""Flask and Django apps for the bench (issue 11): what most WSGI users run.
Flask: `return "Hello, World!"`. Django: a view that renders a small
template. Mounted by apps.py under /flask and /django for every server."""

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="bench",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
    TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates",
                "OPTIONS": {"loaders": [("django.template.loaders.locmem.Loader", {
                    "page.html": "<html><body><h1>{{ title }}</h1><ul>{% for i in items %}<li>{{ i }}</li>"
                                 "{% endfor %}</ul></body></html>"})]}}],
    USE_TZ=True,
)
django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.shortcuts import render  # noqa: E402
from django.urls import path  # noqa: E402
from flask import Flask  # noqa: E402


def page(request):
    return render(request, "page.html", {"title": "Hello", "items": range(5)})


urlpatterns = [path("django", page)]
django_app = get_wsgi_application()

flask_app = Flask(__name__)


@flask_app.route("/flask")
def hello():
    return "Hello, World!"
