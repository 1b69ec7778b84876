"""Judge0's official Python SDK (judge0 0.0.8, pinned in .ci/venvs/compat.txt) against execbox's
Judge0 door: judge0.run for single and batched submissions, with and without expected output, in
every language of the SDK's Judge0 CE 1.13.1 table that the door lists. Any difference fails an
assert, so the process exits non-zero with the traceback.

Usage: judge0_sdk.py BASE_URL API_KEY   (BASE_URL ends in /judge0)
"""

import sys

import judge0
from judge0 import LanguageAlias, Status, TestCase
from judge0.data import LANGUAGE_TO_LANGUAGE_ID

# Each doubles the number on its stdin.
PROGRAMS = {
    LanguageAlias.PYTHON: "print(int(input()) * 2)",
    LanguageAlias.BASH: "read n\necho $((n * 2))",
    LanguageAlias.C: '#include <stdio.h>\nint main(void) { int n; scanf("%d", &n); printf("%d\\n", n * 2); return 0; }',
    LanguageAlias.CPP: "#include <iostream>\nint main() { int n; std::cin >> n; std::cout << n * 2 << std::endl; }",
    LanguageAlias.JAVASCRIPT: "const n = parseInt(require('fs').readFileSync(0, 'utf8'));\nconsole.log(n * 2);",
    LanguageAlias.JAVA: "import java.util.Scanner;\npublic class Main {\n  public static void main(String[] a) { System.out.println(new Scanner(System.in).nextInt() * 2); }\n}",
    LanguageAlias.GO: 'package main\nimport "fmt"\nfunc main() { var n int; fmt.Scan(&n); fmt.Println(n * 2) }',
    LanguageAlias.RUST: "use std::io::Read;\nfn main() { let mut s = String::new(); std::io::stdin().read_to_string(&mut s).unwrap(); let n: i64 = s.trim().parse().unwrap(); println!(\"{}\", n * 2); }",
    LanguageAlias.TYPESCRIPT: "declare var require: any;\nconst n: number = parseInt(require('fs').readFileSync(0, 'utf8'));\nconsole.log(n * 2);",
    LanguageAlias.RUBY: "puts gets.to_i * 2",
    LanguageAlias.PHP: '<?php echo intval(trim(fgets(STDIN))) * 2, "\\n";',
    LanguageAlias.PERL: "my $n = <STDIN>;\nprint $n * 2, \"\\n\";",
    LanguageAlias.LUA: 'local n = io.read("n")\nprint(n * 2)',
}


def main(base, key):
    client = judge0.Client(base, {"X-Auth-Token": key})
    assert client.version == "1.13.1", client.version
    assert client.config.max_submission_batch_size == 20, client.config
    ids = LANGUAGE_TO_LANGUAGE_ID["1.13.1"]
    listed = {lang.id for lang in client.languages}
    covered = {ids[alias] for alias in PROGRAMS}
    assert listed <= covered, f"languages listed without a program here: {listed - covered}"
    ran = []
    for alias, source in PROGRAMS.items():
        if not client.is_language_supported(alias):
            continue
        one = judge0.run(client=client, source_code=source, language=alias, stdin="21")
        assert one.status == Status.ACCEPTED, (alias, one)
        assert one.stdout == "42\n", (alias, one.stdout, one.stderr, one.compile_output)
        assert one.time is not None and one.time >= 0 and one.memory > 0, (alias, one)

        checked = judge0.run(client=client, source_code=source, language=alias, stdin="21", expected_output="42")
        assert checked.status == Status.ACCEPTED, (alias, checked)
        wrong = judge0.run(client=client, source_code=source, language=alias, stdin="21", expected_output="43")
        assert wrong.status == Status.WRONG_ANSWER, (alias, wrong)

        # Several test cases: created with POST /submissions/batch, read with GET /submissions/batch.
        judged = judge0.run(
            client=client, source_code=source, language=alias,
            test_cases=[("1", "2"), ("5", "10"), ("7", "15")],
        )
        assert [s.status for s in judged] == [Status.ACCEPTED, Status.ACCEPTED, Status.WRONG_ANSWER], (alias, judged)
        assert [s.stdout for s in judged] == ["2\n", "10\n", "14\n"], (alias, judged)
        plain = judge0.run(
            client=client, source_code=source, language=alias,
            test_cases=[TestCase(input="4"), TestCase(input="6")],
        )
        assert [(s.status, s.stdout) for s in plain] == [(Status.ACCEPTED, "8\n"), (Status.ACCEPTED, "12\n")], (alias, plain)
        ran.append(alias.name)

    assert len(ran) == len(listed), (ran, listed)
    broken = judge0.run(client=client, source_code="int main( {", language=LanguageAlias.C)
    assert broken.status == Status.COMPILATION_ERROR, broken
    assert "error" in broken.compile_output, broken.compile_output
    crash = judge0.run(client=client, source_code="import sys\nsys.exit(3)", language=LanguageAlias.PYTHON)
    assert crash.status == Status.RUNTIME_ERROR_NZEC and crash.exit_code == 3, crash
    print("judge0 sdk: ran", ", ".join(ran))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
