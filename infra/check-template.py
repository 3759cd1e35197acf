#!/usr/bin/env python3
"""Runs the SAM transform on template.yaml offline, as CloudFormation would at deploy time, and
checks the result against the endpoint declarations (shared/src/http/*.rs).

`sam validate --lint` accepts some templates that the transform rejects (an intrinsic function
where SAM needs a literal, for instance); this catches those. Then, for every declared
endpoint, its function must exist, serve exactly its routes, carry the JWT authorizer on
exactly the routes the OpenAPI document marks as bearer, and have exactly the IAM actions and
the resource variables its declaration says it uses: no missing permission, no extra one.

    infra/.venv-tools/bin/python infra/check-template.py ENDPOINTS_JSON

ENDPOINTS_JSON is `cargo run -p local-server -- --endpoints`.
"""
import json, os, re, sys
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
endpoints = json.load(open(sys.argv[1]))
text = open(os.path.join(root, "template.yaml")).read()
# `sam build` replaces the local CodeUri with the built artifact; stand in an S3 URI for it.
template = yaml_parse(re.sub(r"CodeUri: [^\s]+", "CodeUri: s3://bucket/artifact.zip", text))
template["Globals"]["Function"]["CodeUri"] = "s3://bucket/artifact.zip"


class NoManagedPolicies:
    def load(self):
        return {}


out = transform(template, {"PublicBaseUrl": "https://auth.example.com", "MailFrom": "no-reply@example.com"}, NoManagedPolicies())
res = out["Resources"]
paths = out["Resources"]["HttpApi"]["Properties"]["Body"]["paths"]
problems = []

# Bearer routes are the operations the OpenAPI document secures.
doc = json.load(open(os.path.join(root, "openapi.json")))
bearer = {(p, m) for p, item in doc["paths"].items() for m, op in item.items() if "security" in op}


def api_path(p):
    return p.replace("{file}", "{file+}")


def camel(binary):
    return "".join(w.capitalize() for w in binary.split("-"))


def actions_of(function):
    """Every IAM action the function's role grants, from its inline policies."""
    role = res[function["Properties"]["Role"]["Fn::GetAtt"][0]]
    acts = set()
    for policy in role["Properties"].get("Policies", []):
        for st in policy["PolicyDocument"]["Statement"]:
            a = st["Action"]
            acts.update([a] if isinstance(a, str) else a)
    return acts


def resource_env(function):
    variables = function["Properties"].get("Environment", {}).get("Variables", {})
    return {k for k in variables if k in ("TABLE_NAME", "MAILER", "MAIL_FROM", "MAIL_QUEUE_URL", "SIGNING_KEY_SECRET_ID",
                                          "MFA_KEY_SECRET_ID")}


def secrets_read(function):
    """The secrets (logical ids) the function's role may read."""
    role = res[function["Properties"]["Role"]["Fn::GetAtt"][0]]
    out = set()
    for policy in role["Properties"].get("Policies", []):
        for st in policy["PolicyDocument"]["Statement"]:
            a = st["Action"]
            if "secretsmanager:GetSecretValue" in ([a] if isinstance(a, str) else a):
                r = st["Resource"]
                out.update(x["Ref"] for x in (r if isinstance(r, list) else [r]))
    return out


declared_functions = set()
for e in endpoints:
    logical = camel(e["binary"]) + "Function"
    declared_functions.add(logical)
    if logical not in res:
        problems.append(f"{e['binary']}: no {logical} in template.yaml")
        continue
    fn = res[logical]
    u = e["uses"]
    want = {f"dynamodb:{a}" for a in u["table"]}
    if u["mail"]:
        want.add("sqs:SendMessage")
    if u["keys"] or u["mfa_key"]:
        want.add("secretsmanager:GetSecretValue")
    have = actions_of(fn)
    want_secrets = ({"SigningKeySecret"} if u["keys"] else set()) | ({"MfaKeySecret"} if u["mfa_key"] else set())
    if secrets_read(fn) != want_secrets:
        problems.append(f"{e['binary']}: reads secrets {sorted(secrets_read(fn))}, declared {sorted(want_secrets)}")
    if have != want:
        problems.append(f"{e['binary']}: IAM actions missing {sorted(want - have)}, extra {sorted(have - want)}")
    want_env = set()
    if u["table"]:
        want_env.add("TABLE_NAME")
    if u["mail"]:
        want_env.add("MAIL_QUEUE_URL")
    if u["keys"]:
        want_env.add("SIGNING_KEY_SECRET_ID")
    if u["mfa_key"]:
        want_env.add("MFA_KEY_SECRET_ID")
    have_env = resource_env(fn)
    if have_env != want_env:
        problems.append(f"{e['binary']}: environment missing {sorted(want_env - have_env)}, extra {sorted(have_env - want_env)}")
    for method, path in e["routes"]:
        op = paths.get(api_path(path), {}).get(method.lower())
        if op is None:
            problems.append(f"{e['binary']}: no API route {method} {path}")
            continue
        target = json.dumps(op.get("x-amazon-apigateway-integration", {}))
        if logical not in target:
            problems.append(f"{e['binary']}: {method} {path} is not integrated with {logical}")
        secured = op.get("security") == [{"JwtAuthorizer": []}]
        if secured != ((path, method.lower()) in bearer):
            problems.append(f"{e['binary']}: {method} {path} JWT authorizer is {'on' if secured else 'off'}; the document says otherwise")

functions = {k for k, v in res.items() if v["Type"] == "AWS::Lambda::Function"}
# No managed policy beyond the logs one: every grant is an inline policy checked above.
for f in sorted(functions):
    role = res[res[f]["Properties"]["Role"]["Fn::GetAtt"][0]]
    managed = role["Properties"].get("ManagedPolicyArns", [])
    if managed != ["arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"]:
        problems.append(f"{f}: managed policies {managed}")
extra = functions - declared_functions - {"RotateKeysFunction", "MailerFunction"}
if extra:
    problems.append(f"functions with no endpoint declaration: {sorted(extra)}")
routes = {(api_path(p), m.upper()) for e in endpoints for m, p in e["routes"]}
api_routes = {(p, m.upper()) for p, item in paths.items() for m in item if m != "parameters"}
if api_routes != routes:
    problems.append(f"API routes differ from the declarations: {sorted(api_routes ^ routes)}")
rotation = actions_of(res["RotateKeysFunction"])
if rotation != {"secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue", "secretsmanager:UpdateSecretVersionStage"}:
    problems.append(f"RotateKeysFunction: unexpected actions {sorted(rotation)}")

# The mail queue: encrypted, dead-lettered, drained by the mailer with partial batch responses.
mailer = res["MailerFunction"]
mailer_actions = actions_of(mailer)
want_mailer = {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "ses:SendEmail", "sqs:ReceiveMessage",
               "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"}
if mailer_actions != want_mailer:
    problems.append(f"MailerFunction: IAM actions missing {sorted(want_mailer - mailer_actions)}, extra {sorted(mailer_actions - want_mailer)}")
if resource_env(mailer) != {"TABLE_NAME", "MAILER", "MAIL_FROM", "MAIL_QUEUE_URL"}:
    problems.append(f"MailerFunction: environment {sorted(resource_env(mailer))}")
for q in ("MailQueue", "MailDeadLetterQueue"):
    if res[q]["Properties"].get("SqsManagedSseEnabled") is not True:
        problems.append(f"{q}: not encrypted at rest (SqsManagedSseEnabled)")
redrive = res["MailQueue"]["Properties"].get("RedrivePolicy", {})
if redrive.get("deadLetterTargetArn") != {"Fn::GetAtt": ["MailDeadLetterQueue", "Arn"]} or "maxReceiveCount" not in redrive:
    problems.append(f"MailQueue: no redrive to MailDeadLetterQueue: {redrive}")
mappings = [v["Properties"] for v in res.values() if v["Type"] == "AWS::Lambda::EventSourceMapping"]
if len(mappings) != 1 or mappings[0].get("FunctionResponseTypes") != ["ReportBatchItemFailures"] \
        or mappings[0]["EventSourceArn"] != {"Fn::GetAtt": ["MailQueue", "Arn"]} \
        or mappings[0]["FunctionName"] != {"Ref": "MailerFunction"}:
    problems.append(f"event source mappings: {mappings}")
timeout = mailer["Properties"].get("Timeout", 10)
if res["MailQueue"]["Properties"].get("VisibilityTimeout", 30) < 6 * timeout:
    problems.append("MailQueue: visibility timeout under six times the mailer's timeout")

# Every function logs to a log group of the stack's with the retention parameter: stored logs
# never grow without bound.
for f in sorted(functions):
    group = res[f]["Properties"].get("LoggingConfig", {}).get("LogGroup")
    target = res.get(group.get("Ref", "")) if isinstance(group, dict) else None
    if not target or target["Type"] != "AWS::Logs::LogGroup":
        problems.append(f"{f}: logs to {group!r}, not a log group of the stack")
    elif target["Properties"].get("RetentionInDays") != {"Ref": "LogRetentionDays"}:
        problems.append(f"{f}: its log group keeps logs {target['Properties'].get('RetentionInDays')!r}, not LogRetentionDays")
if template["Parameters"].get("LogRetentionDays", {}).get("Default") != 30:
    problems.append("LogRetentionDays: the default retention is not 30 days")

stage = res["HttpApiApiGatewayDefaultStage"]["Properties"]
if "ThrottlingBurstLimit" not in stage["DefaultRouteSettings"]:
    problems.append(f"no stage throttling: {stage}")
alarms = {v["Properties"]["MetricName"] for v in res.values() if v["Type"] == "AWS::CloudWatch::Alarm"}
if alarms != {"AccountLocked", "RefreshTokenReuse", "ApproximateNumberOfMessagesVisible"}:
    problems.append(f"alarms: {alarms}")

if problems:
    print("template.yaml disagrees with the endpoint declarations:", *problems, sep="\n  ")
    sys.exit(1)
print(f"template: SAM transform OK; {len(functions)} functions, {len(paths)} API paths; IAM actions, resource "
      f"variables, routes and the JWT authorizer match the {len(endpoints)} endpoint declarations; the mail queue is "
      f"encrypted, dead-lettered and drained by the mailer; every function's log group keeps logs LogRetentionDays")
