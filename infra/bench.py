#!/usr/bin/env python3
"""Latency figures for the local server (not a test: it prints numbers, asserts nothing).

Starts the release local-server on embedded defaults (OWASP argon2 parameters), creates and
verifies one user, then times sequential keep-alive requests for login, refresh and me and
prints p50/p90/p99 per endpoint. Usage: infra/bench.py [N requests per endpoint, default 200] [--debug]
`--debug` measures the debug build that the README's run command (`cargo run -p local-server`) starts.
"""
import http.client, json, os, socket, statistics, subprocess, sys, time

args = [a for a in sys.argv[1:] if not a.startswith("--")]
debug = "--debug" in sys.argv
N = int(args[0]) if args else 200
profile = "debug" if debug else "release"
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
subprocess.run(["cargo", "build", "-q", "-p", "local-server"] + ([] if debug else ["--release"]), cwd=root, check=True)
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k not in ("TABLE_NAME", "MAILER", "SIGNING_KEY_SECRET_ID")}
env.update(PORT=str(port), RUST_LOG="warn")
proc = subprocess.Popen([os.path.join(root, "target", profile, "local-server")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close(); break
        except OSError:
            time.sleep(0.05)
    conn = http.client.HTTPConnection("127.0.0.1", port)

    def call(method, path, body=None, headers=None):
        h = {"content-type": "application/json"} | (headers or {})
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=h)
        r = conn.getresponse(); data = r.read()
        return r.status, (json.loads(data) if data else None)

    email, pw = "bench@example.com", "violet-tractor-sunrise-42"
    assert call("POST", "/auth/signup", {"email": email, "password": pw})[0] == 202
    _, outbox = call("GET", "/_dev/outbox")
    token = outbox[-1]["text"].split("token=")[1].split()[0]
    assert call("POST", "/auth/verify-email", {"token": token, "password": pw})[0] == 200

    def timed(fn):
        out = []
        for _ in range(N):
            t = time.perf_counter(); fn(); out.append((time.perf_counter() - t) * 1000)
        return out

    state = {}
    def login():
        st, body = call("POST", "/auth/login", {"email": email, "password": pw}); assert st == 200, st
        state.update(body)
    def refresh():
        st, body = call("POST", "/auth/refresh", {"refresh_token": state["refresh_token"]}); assert st == 200, st
        state.update(body)
    def me():
        st, _ = call("GET", "/auth/me", headers={"authorization": "Bearer " + state["access_token"]}); assert st == 200
    def unknown_login():
        st, _ = call("POST", "/auth/login", {"email": f"nobody{time.time_ns()}@example.com", "password": pw}); assert st == 401

    results = {"login": timed(login), "refresh": timed(refresh), "me": timed(me), "login (unknown email)": timed(unknown_login)}
    print(f"local server ({profile}, in-memory store, argon2id m=19456 t=2 p=1), {N} sequential requests each:")
    for name, xs in results.items():
        q = statistics.quantiles(xs, n=100)
        print(f"  {name:22s} p50 {statistics.median(xs):7.2f} ms   p90 {q[89]:7.2f} ms   p99 {q[98]:7.2f} ms")
finally:
    proc.terminate(); proc.wait()
