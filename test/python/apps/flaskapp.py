import time

from flask import Flask, jsonify, request, session, stream_with_context

app = Flask(__name__)
app.secret_key = "test-only"


@app.route("/")
def index():
    return "Hello from Flask"


@app.route("/json", methods=["POST"])
def echo_json():
    return jsonify(got=request.get_json(), args=request.args.to_dict())


@app.route("/count")
def count():
    session["n"] = session.get("n", 0) + 1
    return str(session["n"])


@app.route("/upload", methods=["POST"])
def upload():
    f = request.files["file"]
    return f"{f.filename}:{len(f.read())}:{request.form['title']}"


@app.route("/stream")
def stream():
    return app.response_class((f"{i}\n" for i in range(5)), mimetype="text/plain")


@app.route("/events")
def events():
    """Server-sent events, three of them 0.3 s apart, stamped when yielded."""
    def gen():
        for i in range(3):
            if i:
                time.sleep(0.3)
            yield f"data: {i} {time.monotonic():.6f} {request.path}\n\n"
    return app.response_class(stream_with_context(gen()), mimetype="text/event-stream")
