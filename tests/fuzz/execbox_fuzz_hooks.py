"""schemathesis hooks for tests/fuzz.rs: the two rules of execbox's contract that JSON Schema cannot
state. First, in one request, no two `files` entries may be the same path or one a directory of the
other (`a` with `a`, or `a` with `a/b`): the service answers 400 `invalid_file`, and the
document's description of `files` says so, but no schema keyword compares two items of an array
by a part of them. Generated bodies that break it are dropped, so the fuzzer's
`positive_data_acceptance` check does not count that documented refusal against the service.
Second, a files path given with `path_encoding=percent` (see below). Third, a sandbox call's
limits (see below). Nothing else is filtered."""

import schemathesis


def _clash(a: str, b: str) -> bool:
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def _files_clash(request) -> bool:
    if not isinstance(request, dict) or not isinstance(request.get("files"), list):
        return False
    paths = [f["path"] for f in request["files"] if isinstance(f, dict) and isinstance(f.get("path"), str)]
    return any(_clash(a, b) for i, a in enumerate(paths) for b in paths[i + 1:])


# The third: a sandbox call runs under its sandbox's policy, which its body does not name. The
# document bounds its limits by what a sandbox of every policy takes (so a call within them is
# never refused), and says that one above them is refused unless the sandbox's policy allows it;
# whether it is depends on a sandbox made by another request. Calls with a limit above the
# documented maximum are dropped; every other case of the operation is kept.


def _over_sandbox_maxima(context, body) -> bool:
    op = getattr(context, "operation", None)
    if op is None or op.path != "/v1/sandboxes/{id}/execute" or not isinstance(body, dict):
        return False
    limits = body.get("limits")
    if not isinstance(limits, dict):
        return False
    props = (
        op.schema.raw_schema["components"]["schemas"]["SandboxCallRequest"]["properties"]["limits"]
        .get("properties", {})
    )
    for name, value in limits.items():
        maximum = props.get(name, {}).get("maximum") if isinstance(props.get(name), dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and maximum is not None and value > maximum:
            return True
    return False


@schemathesis.hook
def filter_body(context, body):
    if _over_sandbox_maxima(context, body):
        return False
    if isinstance(body, dict) and isinstance(body.get("requests"), list):
        return not any(_files_clash(r) for r in body["requests"])
    return not _files_clash(body)


# The second such rule: `path_encoding=percent` changes what the path means (a `%` must start a
# `%XX` byte, and the rule applies to the decoded bytes), and no schema can make one parameter's
# pattern depend on another's value. Cases that ask for the percent form with a path that is not
# a valid one are dropped; the service's 400 `path_refused` for them is documented.


def _percent_decode(text: str):
    out, raw, i = bytearray(), text.encode(), 0
    while i < len(raw):
        if raw[i] != ord("%"):
            out.append(raw[i])
            i += 1
            continue
        pair = raw[i + 1:i + 3]
        if len(pair) != 2 or not all(chr(c) in "0123456789abcdefABCDEF" for c in pair):
            return None
        out.append(int(pair, 16))
        i += 3
    return bytes(out)


def _path_rule(raw: bytes, directory: bool) -> bool:
    if directory:
        if raw in (b"", b".", b"./"):
            return True
        raw = raw[:-1] if raw.endswith(b"/") else raw
    parts = raw.split(b"/")
    return (
        0 < len(raw) <= 1024
        and b"\0" not in raw
        and len(parts) <= 32
        and all(p not in (b"", b".", b"..") and len(p) <= 255 for p in parts)
    )


@schemathesis.hook
def filter_case(context, case):
    query = case.query if isinstance(case.query, dict) else {}
    if query.get("path_encoding") != "percent":
        return True
    params = case.path_parameters if isinstance(case.path_parameters, dict) else {}
    if isinstance(params.get("path"), str):
        path, directory = params["path"], False
    elif isinstance(query.get("path"), str):
        path, directory = query["path"], True
    else:
        return True
    raw = _percent_decode(path)
    return raw is not None and _path_rule(raw, directory)
