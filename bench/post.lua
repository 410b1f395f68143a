-- POST 1 KiB to /echo.
wrk.method = "POST"
wrk.body = string.rep("p", 1024)
wrk.headers["Content-Type"] = "application/octet-stream"
