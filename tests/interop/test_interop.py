"""Interoperability with standard clients this project did not write.

Runs against a live local server (infra/api-tests.sh sets BASE_URL, USER_EMAIL, USER_PASSWORD
for a verified account):
- PyJWT discovers the JWKS through /.well-known/openid-configuration and verifies an access token;
- Authlib's RFC 6749 client obtains tokens with the password grant and refreshes them through
  POST /auth/token, then calls a bearer endpoint.
"""
import os

import jwt
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
