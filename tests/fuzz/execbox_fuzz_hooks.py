"""schemathesis hooks for tests/fuzz.rs: the one rule of execbox's contract that JSON Schema cannot
state. In one request, no two `files` entries may be the same path or one a directory of the
other (`a` with `a`, or `a` with `a/b`): the service answers 400 `invalid_file`, and the
document's description of `files` says so, but no schema keyword compares two items of an array
by a part of them. Generated bodies that break it are dropped, so the fuzzer's
`positive_data_acceptance` check does not count that documented refusal against the service.
Nothing else is filtered."""

import schemathesis


def _clash(a: str, b: str) -> bool:
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def _files_clash(request) -> bool:
    if not isinstance(request, dict) or not isinstance(request.get("files"), list):
        return False
    paths = [f["path"] for f in request["files"] if isinstance(f, dict) and isinstance(f.get("path"), str)]
    return any(_clash(a, b) for i, a in enumerate(paths) for b in paths[i + 1:])


@schemathesis.hook
def filter_body(context, body):
    if isinstance(body, dict) and isinstance(body.get("requests"), list):
        return not any(_files_clash(r) for r in body["requests"])
    return not _files_clash(body)
