"""A Piston client from PyPI (aiopyston 1.2.1, pinned in .ci/venvs/compat.txt) against execbox's
Piston door: the runtimes it lists, and a run in each of them, a compile stage, an error. It
calls `runtimes/` and `execute/` with trailing slashes and sends the key as a bare
`Authorization` header. Any difference fails an assert, so the process exits non-zero.

Usage: piston_client.py BASE_URL API_KEY   (BASE_URL ends in /piston/api/v2/)
"""

import asyncio
import sys

import pyston
from pyston.exceptions import ExecutionError

# Piston's language names; each doubles the number on its stdin.
PROGRAMS = {
    "python": "print(int(input()) * 2)",
    "bash": "read n\necho $((n * 2))",
    "c": '#include <stdio.h>\nint main(void) { int n; scanf("%d", &n); printf("%d\\n", n * 2); return 0; }',
    "c++": "#include <iostream>\nint main() { int n; std::cin >> n; std::cout << n * 2 << std::endl; }",
    "javascript": "const n = parseInt(require('fs').readFileSync(0, 'utf8'));\nconsole.log(n * 2);",
    "java": "import java.util.Scanner;\npublic class Main {\n  public static void main(String[] a) { System.out.println(new Scanner(System.in).nextInt() * 2); }\n}",
    "go": 'package main\nimport "fmt"\nfunc main() { var n int; fmt.Scan(&n); fmt.Println(n * 2) }',
    "rust": "use std::io::Read;\nfn main() { let mut s = String::new(); std::io::stdin().read_to_string(&mut s).unwrap(); let n: i64 = s.trim().parse().unwrap(); println!(\"{}\", n * 2); }",
    "typescript": "declare var require: any;\nconst n: number = parseInt(require('fs').readFileSync(0, 'utf8'));\nconsole.log(n * 2);",
    "ruby": "puts $stdin.gets.to_i * 2",  # bare gets reads the files named in ARGV
    "php": '<?php echo intval(trim(fgets(STDIN))) * 2, "\\n";',
    "perl": "my $n = <STDIN>;\nprint $n * 2, \"\\n\";",
    "lua": 'local n = io.read("n")\nprint(n * 2)',
}


async def main(base, key):
    client = pyston.PystonClient(api_key=key, base_url=base)
    try:
        runtimes = await client.runtimes()
        listed = {r.language for r in runtimes}
        assert listed <= set(PROGRAMS), f"runtimes listed without a program here: {listed - set(PROGRAMS)}"
        for language in sorted(listed):
            out = await client.execute(language, [pyston.File(PROGRAMS[language])], stdin="21", args=["x"])
            assert out.run_stage is not None, (language, out.raw_json)
            assert out.run_stage.stdout == "42\n", (language, out.raw_json)
            assert out.run_stage.code == 0 and out.run_stage.signal is None, (language, out.raw_json)
            assert str(out) == "42\n"
            assert out.langauge == language, out.raw_json
            if language in {"c", "c++"}:
                assert out.compile_stage is not None and out.compile_stage.code == 0, out.raw_json
        py = await client.get_runtimes("py")
        assert [r.language for r in py] == ["python"], py
        failed = await client.execute("c", [pyston.File("int main( {")])
        assert failed.run_stage is None and failed.compile_stage.code == 1, failed.raw_json
        try:
            await client.execute("cobol", [pyston.File("DISPLAY 'x'.")])
            raise AssertionError("an unknown language ran")
        except ExecutionError as e:
            assert str(e) == "cobol-* runtime is unknown", str(e)
        print("piston client: ran", ", ".join(sorted(listed)))
    finally:
        await client.close_session()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
