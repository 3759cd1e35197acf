#!/usr/bin/env python3
"""Runs the SAM transform on template.yaml offline, as CloudFormation would at deploy time.

`sam validate --lint` accepts some templates that the transform rejects (an intrinsic function
where SAM needs a literal, for instance); this catches those. It also checks that the bearer
routes carry the JWT authorizer and that every function has an explicit policy list.
Run with the SAM venv's python: infra/.venv-tools/bin/python infra/check-template.py
"""
import os, re, sys
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
text = open(os.path.join(root, "template.yaml")).read()
# `sam build` replaces the local CodeUri with the built artifact; stand in an S3 URI for it.
template = yaml_parse(re.sub(r"CodeUri: [^\s]+", "CodeUri: s3://bucket/artifact.zip", text))

class NoManagedPolicies:
    def load(self):
        return {}

out = transform(template, {"PublicBaseUrl": "https://auth.example.com", "MailFrom": "no-reply@example.com"}, NoManagedPolicies())
paths = out["Resources"]["HttpApi"]["Properties"]["Body"]["paths"]
bearer = [("/auth/me", "get"), ("/auth/me", "patch"), ("/auth/change-password", "post"), ("/auth/change-email", "post"),
          ("/auth/sessions", "get"), ("/auth/sessions/{id}", "delete"), ("/auth/logout-all", "post"),
          ("/users", "get"), ("/users", "post"), ("/users/{id}", "get"), ("/users/{id}", "put"), ("/users/{id}", "delete"),
          ("/users/{id}/activate", "post"), ("/users/{id}/deactivate", "post"), ("/users/{id}/unlock", "post"),
          ("/users/{id}/revoke-sessions", "post")]
for path, method in bearer:
    security = paths[path][method].get("security")
    assert security == [{"JwtAuthorizer": []}], f"{path} {method}: {security}"
assert "security" not in paths["/auth/login"]["post"], "public routes must not need a token"
stage = out["Resources"]["HttpApiApiGatewayDefaultStage"]["Properties"]
assert "ThrottlingBurstLimit" in stage["DefaultRouteSettings"], stage
alarms = {v["Properties"]["MetricName"] for v in out["Resources"].values() if v["Type"] == "AWS::CloudWatch::Alarm"}
assert alarms == {"AccountLocked", "RefreshTokenReuse"}, alarms
functions = [k for k, v in out["Resources"].items() if v["Type"] == "AWS::Lambda::Function"]
print(f"template: SAM transform OK ({len(functions)} functions, {len(paths)} API paths, JWT authorizer on the bearer routes, stage throttling, alarms)")
