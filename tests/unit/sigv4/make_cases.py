#!/usr/bin/python3
"""make_cases.py - writes cases.txt, the SigV4 cases test_sigv4.c checks.

Each case is a request written here from the SigV4 specification's rules
(canonical URI, query, headers, payload; AWS's documentation, "Create a
canonical request"), signed by botocore, an implementation independent of
ours, in both forms (Authorization header, presigned query). The S3
examples of AWS's documentation ("Examples: Signature Calculations in AWS
Signature Version 4") are cases too, and botocore must reproduce their
published signatures before anything is written.

Run with Debian's python3 (python3-botocore); the output is committed, so
the tests need neither botocore nor anything outside the repository."""
import hashlib
import json
import sys
from pathlib import Path
from urllib.parse import quote

from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.utils import percent_encode_sequence

KEY, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
DOC_KEY, DOC_SECRET = "AKIAIOSFODNN7EXAMPLE", \
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TOKEN = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGd"

# name: (method, path, query, headers, body, context)
# context: normalize (not S3), sign_body (x-amz-content-sha256 sent),
# token, service, region, time, key; unsigned/expires for the query form.
HOST = [("Host", "example.amazonaws.com")]
CASES = {
    "get-vanilla": ("GET", "/", "", HOST, "", {}),
    "get-vanilla-query-order": ("GET", "/", "Param2=value2&Param1=value1",
                                HOST, "", {}),
    "get-query-repeated-key": ("GET", "/", "Param1=value2&Param1=value1",
                               HOST, "", {}),
    "get-query-empty-value": ("GET", "/", "Param1=", HOST, "", {}),
    "get-query-unreserved": ("GET", "/", "-._~09AZaz=-._~09AZaz", HOST, "",
                             {}),
    "get-query-encoded": ("GET", "/", "b=c%20d&a=%2F%3D", HOST, "", {}),
    "get-unreserved": ("GET", "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                       "abcdefghijklmnopqrstuvwxyz", "", HOST, "", {}),
    "get-utf8": ("GET", "/\u1234", "", HOST, "", {}),
    "get-space": ("GET", "/example space/", "", HOST, "", {}),
    "get-dot-segments": ("GET", "/example/./other/../file", "", HOST, "",
                         {"normalize": True}),
    "get-slashes-kept": ("GET", "/example//file", "", HOST, "",
                         {"normalize": False}),
    "get-header-value-trim": ("GET", "/", "", HOST + [
        ("My-Header1", " value1 "), ("My-Header2", "\"a   b   c\"")], "",
        {}),
    "get-header-key-duplicate": ("GET", "/", "", HOST + [
        ("My-Header1", "value2"), ("My-Header1", "value2"),
        ("My-Header1", "value1")], "", {}),
    "get-header-key-case": ("GET", "/", "", HOST + [
        ("MY-HEADER1", "VALUE1"), ("my-header2", "Value2")], "", {}),
    "get-session-token": ("GET", "/", "", HOST, "", {"token": TOKEN}),
    "post-vanilla": ("POST", "/", "", HOST, "", {}),
    "post-form-body": ("POST", "/", "", HOST + [
        ("Content-Type", "application/x-www-form-urlencoded")],
        "Param1=value1", {"sign_body": True}),
    "put-s3-key": ("PUT", "/bucket/patients/P 1/2025-11-10/\u00dcn\u00ef~x_y"
                   ".jpg", "", [("Host", "127.0.0.1:7480")], "a photograph",
                   {"service": "s3", "region": "us-east-1",
                    "sign_body": True}),
    "get-s3-key-dots": ("GET", "/bucket/a/../b//c.jpg", "", [
        ("Host", "s3.example.com")], "", {"service": "s3",
                                          "sign_body": True}),
    "get-s3-list-v2": ("GET", "/bucket", "list-type=2&prefix=patients%2FP1%2F"
                       "&continuation-token=1%2B2%3D%3D", [
                           ("Host", "s3.example.com")], "",
                       {"service": "s3", "sign_body": True}),
}

DOC = {"service": "s3", "region": "us-east-1", "key": DOC_KEY,
       "secret": DOC_SECRET, "time": "2013-05-24T00:00:00Z",
       "sign_body": True}
DOC_HOST = [("Host", "examplebucket.s3.amazonaws.com")]
# AWS's S3 examples, and the signatures the documentation publishes.
DOC_CASES = {
    "s3-doc-get-object": ("GET", "/test.txt", "", DOC_HOST + [
        ("Range", "bytes=0-9")], "", DOC,
        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"),
    "s3-doc-put-object": ("PUT", "/test$file.text", "", DOC_HOST + [
        ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
        ("x-amz-storage-class", "REDUCED_REDUNDANCY")],
        "Welcome to Amazon S3.", DOC,
        "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"),
    "s3-doc-get-lifecycle": ("GET", "/", "lifecycle", DOC_HOST, "", DOC,
                             "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f9"
                             "1ac7a200a0136783543"),
    "s3-doc-list-objects": ("GET", "/", "max-keys=2&prefix=J", DOC_HOST, "",
                            DOC, "34b48302e7b5fa45bde8084f4b7868a86f0a534bc5"
                            "9db6670ed5711ef69dc6f7"),
}
# The presigned URL example: UNSIGNED-PAYLOAD, a day's expiry.
DOC_PRESIGN = ("GET", "/test.txt", "", DOC_HOST, "",
               dict(DOC, sign_body=False, unsigned=True, expires=86400),
               "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f60"
               "4d404")


def stamp(ctx):
    t = ctx.get("time", "2015-08-30T12:36:00Z")
    return t.replace("-", "").replace(":", "")


def canon_path(path, ctx):
    """The request's path as a client sends it, encoded once."""
    return quote(path, safe="/~")


class Header(SigV4Auth):
    def __init__(self, ctx):
        super().__init__(Credentials(ctx.get("key", KEY),
                                     ctx.get("secret", SECRET)),
                         ctx.get("service", "service"),
                         ctx.get("region", "us-east-1"))
        self.normalize = ctx.get("normalize", ctx.get("service") != "s3")

    def _normalize_url_path(self, path):
        return super()._normalize_url_path(path) if self.normalize else path


class Query(SigV4QueryAuth, Header):
    def __init__(self, ctx):
        Header.__init__(self, ctx)
        self._expires = ctx.get("expires", 3600)
        self.unsigned = ctx.get("unsigned", False)

    def payload(self, request):
        return "UNSIGNED-PAYLOAD" if self.unsigned else super().payload(
            request)


def request(method, path, query, headers, body, ctx, form):
    url = "http://%s%s%s" % (headers[0][1], canon_path(path, ctx),
                             "?" + query if query else "")
    r = AWSRequest(method=method, url=url, data=body.encode("latin-1"))
    r.context["timestamp"] = stamp(ctx)
    for k, v in headers:
        r.headers[k] = v
    if form == "header":
        r.headers["X-Amz-Date"] = stamp(ctx)
        if ctx.get("token"):
            r.headers["X-Amz-Security-Token"] = ctx["token"]
        if ctx.get("sign_body"):
            r.headers["X-Amz-Content-SHA256"] = hashlib.sha256(
                body.encode("latin-1")).hexdigest()
    return r


def sign(case, form):
    method, path, query, headers, body, ctx = case[:6]
    r = request(method, path, query, headers, body, ctx, form)
    auth = Header(ctx) if form == "header" else Query(ctx)
    if form == "query":
        if ctx.get("token"):
            auth.credentials = Credentials(auth.credentials.access_key,
                                           auth.credentials.secret_key,
                                           ctx["token"])
        # botocore's own step also moves a body into the query; the
        # specification's presigned form adds only these (the operation's
        # query stays as the client wrote it)
        params = {
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-Credential": auth.scope(r),
            "X-Amz-Date": r.context["timestamp"],
            "X-Amz-Expires": auth._expires,
            "X-Amz-SignedHeaders": auth.signed_headers(
                auth.headers_to_sign(r)),
        }
        if ctx.get("token"):
            params["X-Amz-Security-Token"] = ctx["token"]
        r.url += ("&" if "?" in r.url else "?") + percent_encode_sequence(
            params)
    creq = auth.canonical_request(r)
    sts = auth.string_to_sign(r, creq)
    sig = auth.signature(sts, r)
    if form == "header":
        auth._inject_signature_to_request(r, sig)
        line = "Authorization:%s\n" % r.headers["Authorization"]
    else:
        line = "X-Amz-Signature=%s" % sig
    return creq, sts, sig, line


def context(ctx):
    t = ctx.get("time", "2015-08-30T12:36:00Z")
    return json.dumps({
        "access_key_id": ctx.get("key", KEY),
        "secret_access_key": ctx.get("secret", SECRET),
        "token": ctx.get("token", ""),
        "region": ctx.get("region", "us-east-1"),
        "service": ctx.get("service", "service"),
        "timestamp": t,
        "normalize": ctx.get("normalize", ctx.get("service") != "s3"),
        "sign_body": ctx.get("sign_body", False),
        "unsigned_payload": ctx.get("unsigned", False),
        "expires": str(ctx.get("expires", 3600)),
    }, indent=1)


def request_text(case):
    """The request as test_sigv4.c reads it. Outside S3 the canonical URI
    is the path as sent encoded once more, so the line carries the path as
    sent; S3's is the key encoded once, so its line carries the key."""
    method, path, query, headers, body, ctx = case[:6]
    if ctx.get("normalize", ctx.get("service") != "s3"):
        path = quote(path, safe="/~")
    lines = ["%s %s%s HTTP/1.1" % (method, path, "?" + query if query
                                   else "")]
    lines += ["%s:%s" % (k, v) for k, v in headers]
    return "\n".join(lines) + "\n\n" + body


def main():
    for name, case in DOC_CASES.items():
        got = sign(case, "header")[2]
        if got != case[6]:
            sys.exit("%s: botocore signs %s, the documentation says %s"
                     % (name, got, case[6]))
    got = sign(DOC_PRESIGN, "query")[2]
    if got != DOC_PRESIGN[6]:
        sys.exit("presign: botocore signs %s, the documentation says %s"
                 % (got, DOC_PRESIGN[6]))
    out = []
    for name, case in list(CASES.items()) + list(DOC_CASES.items()) + [
            ("s3-doc-presign", DOC_PRESIGN)]:
        forms = ["query"] if name == "s3-doc-presign" else ["header",
                                                            "query"]
        out.append("### %s" % name)
        out.append("--- context.json\n" + context(case[5]))
        out.append("--- request.txt\n" + request_text(case))
        for form in forms:
            creq, sts, sig, line = sign(case, form)
            for part, text in (("canonical-request", creq),
                               ("string-to-sign", sts),
                               ("signature", sig),
                               ("signed-request", line)):
                out.append("--- %s-%s.txt\n%s" % (form, part, text))
    Path(__file__).with_name("cases.txt").write_text(
        "\n".join(out) + "\n", encoding="utf-8")


main()
