from django import forms
from django.http import HttpResponse
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


urlpatterns = [path("", hello), path("form/", form)]
