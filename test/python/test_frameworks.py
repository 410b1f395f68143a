import re

import requests


def test_flask(serve):
    s = serve("flaskapp:app")
    assert requests.get(s.url + "/").text == "Hello from Flask"
    r = requests.post(s.url + "/json?a=1", json={"k": [1, 2]})
    assert r.json() == {"got": {"k": [1, 2]}, "args": {"a": "1"}}
    with requests.Session() as sess:
        assert [sess.get(s.url + "/count").text for _ in range(3)] == ["1", "2", "3"]
    r = requests.post(s.url + "/upload", files={"file": ("a.bin", b"\0" * 5000)}, data={"title": "t"})
    assert r.text == "a.bin:5000:t"
    assert requests.get(s.url + "/stream").text == "0\n1\n2\n3\n4\n"
    assert requests.get(s.url + "/missing").status_code == 404


def test_django_view_template_csrf_form_and_session(serve):
    s = serve("djproject.wsgi:application")
    assert requests.get(s.url + "/").text == "Hello from Django at /"
    with requests.Session() as sess:
        page = sess.get(s.url + "/form/")
        assert page.status_code == 200 and "<form" in page.text
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        # Without the token: CSRF refuses.
        assert sess.post(s.url + "/form/", data={"name": "x"}).status_code == 403
        r = sess.post(s.url + "/form/", data={"name": "Ada", "csrfmiddlewaretoken": token},
                      headers={"Referer": s.url + "/form/"})
        assert r.status_code == 200 and r.text == "saved Ada"
        # The session remembers it.
        assert "last name: Ada" in sess.get(s.url + "/form/").text
