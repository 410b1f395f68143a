from django import forms
import time

from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.urls import path


class NameForm(forms.Form):
    name = forms.CharField(max_length=50)


def hello(request):
    return HttpResponse(f"Hello from Django at {request.path}")


def form(request):
    if request.method == "POST":
        f = NameForm(request.POST)
        if f.is_valid():
            request.session["name"] = f.cleaned_data["name"]
            return HttpResponse(f"saved {f.cleaned_data['name']}")
    else:
        f = NameForm()
    return render(request, "form.html", {"form": f, "seen": request.session.get("name", "")})


def stream(request):
    """Three stamped items, 0.3 s apart: each must reach the client at once."""
    def items():
        for i in range(3):
            if i:
                time.sleep(0.3)
            yield f"item {i} {time.monotonic():.6f}\n"
    return StreamingHttpResponse(items(), content_type="text/plain")


urlpatterns = [path("", hello), path("form/", form), path("stream/", stream)]
