#!/usr/bin/env python3
"""What rate limiting costs per request (figures, not a test).

Needs the emulators (infra/emulators.sh start; . infra/.run/env). Starts the local server
(target/debug or, with --release, target/release) twice against DynamoDB Local, once with
RATE_LIMITS_ENABLED=false and once true, and times N sequential POST /auth/verify-email
(a handler that does one conditional DynamoDB write) and POST /auth/resend-verification for an
unknown address (IP and email limits: two keys). Prints p50/p90 per mode and the difference.
"""
import http.client, json, os, socket, statistics, subprocess, sys, time

N = int(os.environ.get("N", "300"))
profile = "release" if "--release" in sys.argv else "debug"
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
binary = os.path.join(root, "target", profile, "local-server")

def run(enabled):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    env = dict(os.environ, PORT=str(port), RUST_LOG="warn", TABLE_NAME=f"bench-{port}", RATE_LIMITS_ENABLED=str(enabled).lower(),
               RATE_LIMIT_VERIFY_EMAIL="ip=100000/60", RATE_LIMIT_RESEND_VERIFICATION="ip=100000/60,email=100000/60",
               ENUMERATION_FLOOR_MS="0", MAILER="console")
    proc = subprocess.Popen([binary, "--create-table"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close(); break
            except OSError:
                time.sleep(0.05)
        conn = http.client.HTTPConnection("127.0.0.1", port)
        out = {}
        for name, path, body in [("verify-email (IP key)", "/auth/verify-email", {"token": "u.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "password": "violet-tractor-sunrise-42"}),
                                 ("resend-verification (IP + email keys)", "/auth/resend-verification", {"email": "nobody@example.com"})]:
            xs = []
            for _ in range(N):
                t = time.perf_counter()
                conn.request("POST", path, body=json.dumps(body), headers={"content-type": "application/json"})
                r = conn.getresponse(); r.read()
                xs.append((time.perf_counter() - t) * 1000)
            out[name] = xs
        return out
    finally:
        proc.terminate(); proc.wait()

off, on = run(False), run(True)
print(f"local server ({profile}) on DynamoDB Local, {N} sequential requests each; limits off vs on:")
for name in off:
    a, b = statistics.median(off[name]), statistics.median(on[name])
    qa, qb = statistics.quantiles(off[name], n=10)[8], statistics.quantiles(on[name], n=10)[8]
    print(f"  {name:40s} off p50 {a:6.2f} ms p90 {qa:6.2f} | on p50 {b:6.2f} ms p90 {qb:6.2f} | +{b - a:5.2f} ms p50")
