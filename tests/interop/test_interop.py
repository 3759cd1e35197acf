"""Interoperability with standard clients this project did not write.

Runs against a live local server (infra/api-tests.sh sets BASE_URL, USER_EMAIL, USER_PASSWORD
for a verified account):
- PyJWT discovers the JWKS through /.well-known/openid-configuration and verifies an access token;
- Authlib's RFC 6749 client obtains tokens with the password grant and refreshes them through
  POST /auth/token, then calls a bearer endpoint;
- pyotp parses the enrolment's otpauth URI the way authenticator apps do and computes the codes
  that enrol, sign in (login and the token endpoint's MFA grant), and are refused when replayed
  or two steps off (MOTO_URL: the verification mail of the account it signs up).
"""
import base64
import json
import os
import re
import time
import uuid

import jwt
import pyotp
import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session

BASE = os.environ["BASE_URL"]
EMAIL = os.environ["USER_EMAIL"]
PASSWORD = os.environ["USER_PASSWORD"]


@pytest.fixture(scope="module")
def discovery():
    r = requests.get(f"{BASE}/.well-known/openid-configuration", timeout=10)
    assert r.status_code == 200
    assert r.headers["Cache-Control"] == "public, max-age=300"
    return r.json()


def login():
    r = requests.post(f"{BASE}/auth/login", json={"email": EMAIL, "password": PASSWORD}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def test_pyjwt_verifies_an_access_token_with_the_published_jwks(discovery):
    token = login()["access_token"]
    assert discovery["issuer"] == BASE
    jwks = jwt.PyJWKClient(discovery["jwks_uri"], cache_keys=False)
    signing_key = jwks.get_signing_key_from_jwt(token)
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt" and header["kid"] == signing_key.key_id
    claims = jwt.decode(
        token,
        signing_key.key,
        algorithms=discovery["id_token_signing_alg_values_supported"],
        audience="secure-auth",
        issuer=discovery["issuer"],
        options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub"]},
    )
    assert claims["email"] == EMAIL and claims["email_verified"] is True
    # A tampered token fails PyJWT's verification too.
    head, payload, sig = token.split(".")
    forged = ".".join([head, payload, sig[:-4] + ("AAAA" if sig[-4:] != "AAAA" else "BBBB")])
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(forged, signing_key.key, algorithms=[header["alg"]], audience="secure-auth", issuer=BASE)


def test_authlib_password_grant_refresh_and_bearer_call(discovery):
    client = OAuth2Session(client_id="interop-test", token_endpoint_auth_method="none")
    token = client.fetch_token(discovery["token_endpoint"], username=EMAIL, password=PASSWORD)
    assert token["token_type"] == "Bearer" and token["expires_in"] > 0 and token["refresh_token"]
    me = client.get(f"{BASE}/auth/me")
    assert me.status_code == 200 and me.json()["email"] == EMAIL
    first_refresh = token["refresh_token"]
    new = client.refresh_token(discovery["token_endpoint"], refresh_token=first_refresh)
    assert new["refresh_token"] != first_refresh and new["access_token"] != token["access_token"]
    assert client.get(f"{BASE}/auth/me").status_code == 200
    # Inside the grace window the just-rotated token gets the same successor again (a retry
    # after a lost answer), never a second one.
    r = requests.post(discovery["token_endpoint"], data={"grant_type": "refresh_token", "refresh_token": first_refresh}, timeout=10)
    assert r.status_code == 200 and r.json()["refresh_token"] == new["refresh_token"]
    assert r.json()["token_type"] == "Bearer" and r.json()["access_token"]


def test_authlib_sees_rfc6749_errors():
    client = OAuth2Session(client_id="interop-test", token_endpoint_auth_method="none")
    from authlib.integrations.base_client.errors import OAuthError
    with pytest.raises(OAuthError) as e:
        client.fetch_token(f"{BASE}/auth/token", username=EMAIL, password="wrong-password-123")
    assert e.value.error == "invalid_grant"


def claims_of(access_token):
    payload = access_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def verified_account():
    email = f"interop-mfa-{uuid.uuid4().hex}@example.com"
    r = requests.post(f"{BASE}/auth/signup", json={"email": email, "password": PASSWORD}, timeout=10)
    assert r.status_code == 202, r.text
    for _ in range(100):
        msgs = requests.get(f"{os.environ['MOTO_URL']}/moto-api/data.json", timeout=10).json()["ses"]["Message"]
        mine = [m for m in msgs if email in m["destinations"]["ToAddresses"]]
        if mine:
            break
        time.sleep(0.1)
    token = re.search(r"token=([A-Za-z0-9._-]+)", mine[-1]["body"]).group(1)
    assert requests.post(f"{BASE}/auth/verify-email", json={"token": token, "password": PASSWORD}, timeout=10).status_code == 200
    return email


def test_pyotp_enrols_from_the_otpauth_uri_signs_in_and_is_refused_replays_and_skew():
    email = verified_account()
    r = requests.post(f"{BASE}/auth/login", json={"email": email, "password": PASSWORD}, timeout=10)
    tokens = r.json()
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    r = requests.post(f"{BASE}/auth/mfa/totp/enroll", json={"current_password": PASSWORD}, headers=auth, timeout=10)
    assert r.status_code == 200, r.text
    enrolment = r.json()
    totp = pyotp.parse_uri(enrolment["otpauth_uri"])
    assert isinstance(totp, pyotp.TOTP)
    assert totp.secret == enrolment["secret"] and len(base64.b32decode(totp.secret + "=" * (-len(totp.secret) % 8))) == 20
    assert totp.issuer == "Secure Auth" and totp.name == email
    assert totp.digits == 6 and totp.interval == 30 and totp.digest().name == "sha1"
    if time.time() % 30 >= 26:
        time.sleep(30 - time.time() % 30 + 0.1)
    now = time.time()
    r = requests.post(f"{BASE}/auth/mfa/totp/confirm", json={"code": totp.at(now - 30)}, headers=auth, timeout=10)
    assert r.status_code == 200, r.text
    codes = r.json()["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10

    def challenge():
        r = requests.post(f"{BASE}/auth/login", json={"email": email, "password": PASSWORD}, timeout=10)
        assert r.status_code == 403 and r.headers["Content-Type"] == "application/problem+json", r.text
        body = r.json()
        assert body["error"] == "mfa_required" and "access_token" not in body
        return body["mfa_token"]

    mfa_token = challenge()
    verify = lambda code: requests.post(f"{BASE}/auth/mfa/verify", json={"mfa_token": mfa_token, "code": code}, timeout=10)
    r = verify(totp.at(now - 30))
    assert r.status_code == 401 and r.json()["type"].endswith(":invalid-mfa-code"), "the enrolment's code, replayed"
    if time.time() % 30 >= 26:  # codes computed now must mean the same step at the server
        time.sleep(30 - time.time() % 30 + 0.1)
    now = time.time()
    assert verify(totp.at(now + 60)).status_code == 401, "two steps ahead"
    assert verify(totp.at(now - 60)).status_code == 401, "two steps behind"
    r = verify(totp.at(now))
    assert r.status_code == 200, r.text
    assert claims_of(r.json()["access_token"])["amr"] == ["pwd", "otp"]
    # The token endpoint's grant, with the next step (one step of skew).
    mfa_token = challenge()
    grant = {"grant_type": "urn:secure-auth:grant-type:mfa-otp", "mfa_token": mfa_token, "otp": totp.at(now + 30)}
    r = requests.post(f"{BASE}/auth/token", data=grant, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["token_type"] == "Bearer" and claims_of(r.json()["access_token"])["amr"] == ["pwd", "otp"]
    r = requests.post(f"{BASE}/auth/token", data=grant, timeout=10)
    assert r.status_code == 401 and r.json()["error"] == "invalid_grant", "single use"
