"""One DoH query with dnspython over httpx, HTTP/1.1 or HTTP/2, printed as JSON.

usage: dnspython-doh.py URL NAME TYPE h1|h2 get|post
"""
import json
import sys

import dns.message
import dns.query
import dns.rcode
import httpx

url, name, rdtype, version, method = sys.argv[1:6]
query = dns.message.make_query(name, rdtype, use_edns=0)
session = httpx.Client(http1=version == "h1", http2=version == "h2", verify=False)
seen = {}


def remember(response):
    seen["http_version"] = response.http_version


session.event_hooks["response"] = [remember]
answer = dns.query.https(query, url, timeout=5, session=session, post=method == "post")
print(json.dumps({
    "httpVersion": seen.get("http_version"),
    "rcode": dns.rcode.to_text(answer.rcode()),
    "answers": [item.to_text() for rrset in answer.answer for item in rrset],
    "ede": [{"code": int(o.code), "text": o.text} for o in answer.options if int(o.otype) == 15],
}))
