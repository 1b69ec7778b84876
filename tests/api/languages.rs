//! The languages of `runtimes.toml` beyond the first five, on both executors: a hello world, a
//! stdin echo, a compile error where the language compiles, and a runtime error, each with its
//! exact output, exit code and status.

use serde_json::{json, Value};

use crate::helpers::*;

/// One language's programs and what each must answer.
struct Lang {
    name: &'static str,
    hello: &'static str,
    /// Copies stdin to stdout exactly.
    echo: &'static str,
    /// For a compiled language: a program that does not compile, the compiler's exit code and
    /// a line of its diagnostics.
    broken: Option<(&'static str, i64, &'static str)>,
    /// Fails at run time with "boom": the exit code and a line of its stderr.
    crash: (&'static str, i64, &'static str),
}

const JAVA: Lang = Lang {
    name: "java",
    hello: "public class Main { public static void main(String[] a) { System.out.println(\"hello, world\"); } }",
    echo: "import java.io.*;\npublic class Main {\n  public static void main(String[] a) throws IOException {\n    System.out.write(System.in.readAllBytes());\n    System.out.flush();\n  }\n}\n",
    broken: Some((
        "public class Main { public static void main(String[] a) { int x = \"s\"; } }",
        1,
        "Main.java:1: error: incompatible types: String cannot be converted to int",
    )),
    crash: (
        "public class Main {\n  static class Inner { void go() { throw new IllegalStateException(\"boom\"); } }\n  public static void main(String[] a) { new Inner().go(); }\n}\n",
        1,
        "Exception in thread \"main\" java.lang.IllegalStateException: boom",
    ),
};

const GO: Lang = Lang {
    name: "go",
    hello: "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello, world\") }\n",
    echo: "package main\n\nimport (\n\t\"io\"\n\t\"os\"\n)\n\nfunc main() { io.Copy(os.Stdout, os.Stdin) }\n",
    broken: Some((
        "package main\n\nfunc main() { var x int = \"s\" }\n",
        2,
        "cannot use \"s\" (untyped string constant) as int value in variable declaration",
    )),
    crash: (
        "package main\n\nfunc main() { panic(\"boom\") }\n",
        2,
        "panic: boom",
    ),
};

const RUST: Lang = Lang {
    name: "rust",
    hello: "fn main() { println!(\"hello, world\"); }\n",
    echo: "use std::io::{Read, Write};\nfn main() {\n    let mut b = Vec::new();\n    std::io::stdin().read_to_end(&mut b).unwrap();\n    std::io::stdout().write_all(&b).unwrap();\n}\n",
    broken: Some((
        "fn main() { let x: i32 = \"s\"; }\n",
        1,
        "error[E0308]: mismatched types",
    )),
    crash: (
        "fn main() { panic!(\"boom\"); }\n",
        101,
        "thread 'main' panicked at 'boom', main.rs:1:13",
    ),
};

const TYPESCRIPT: Lang = Lang {
    name: "typescript",
    hello: "const greeting: string = \"hello, world\";\nconsole.log(greeting);\n",
    // No Node typings: what the program uses of Node, it declares.
    echo: "declare const require: any;\ndeclare const process: any;\nprocess.stdout.write(require(\"fs\").readFileSync(0));\n",
    broken: Some((
        "const x: number = \"s\";\n",
        1,
        "main.ts(1,7): error TS2322: Type 'string' is not assignable to type 'number'.",
    )),
    crash: (
        "function go(): never { throw new Error(\"boom\"); }\ngo();\n",
        1,
        "Error: boom",
    ),
};

const RUBY: Lang = Lang {
    name: "ruby",
    hello: "puts \"hello, world\"\n",
    echo: "$stdout.binmode\n$stdout.write($stdin.binmode.read)\n",
    broken: None,
    crash: (
        "raise \"boom\"\n",
        1,
        "main.rb:1:in `<main>': boom (RuntimeError)",
    ),
};

const PHP: Lang = Lang {
    name: "php",
    hello: "<?php\necho \"hello, world\\n\";\n",
    echo: "<?php\nfwrite(STDOUT, stream_get_contents(STDIN));\n",
    broken: None,
    crash: (
        "<?php\nthrow new Exception(\"boom\");\n",
        255,
        "PHP Fatal error:  Uncaught Exception: boom in /work/main.php:2",
    ),
};

const PERL: Lang = Lang {
    name: "perl",
    hello: "print \"hello, world\\n\";\n",
    echo: "binmode STDIN; binmode STDOUT;\nlocal $/; print <STDIN>;\n",
    broken: None,
    crash: ("die \"boom\\n\";\n", 255, "boom"),
};

const LUA: Lang = Lang {
    name: "lua",
    hello: "print(\"hello, world\")\n",
    echo: "io.write(io.read(\"a\"))\n",
    broken: None,
    crash: ("error(\"boom\")\n", 1, "lua5.4: main.lua:1: boom"),
};

async fn check(target: &str, lang: &Lang) {
    use base64::Engine;
    let b64 = &base64::engine::general_purpose::STANDARD;
    let Some(app) = app_for(target).await else {
        return;
    };
    let run = |code: &str, extra: Value| {
        let mut body = json!({"executor": target, "language": lang.name, "code": code});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        app.run(body)
    };
    let compiled = lang.broken.is_some();
    let compile_ok = |r: &Value| {
        if compiled {
            assert_eq!(r["compile"]["status"], "ok", "{r}");
            assert_eq!(r["compile"]["exit_code"], 0, "{r}");
        } else {
            assert_eq!(r["compile"], Value::Null, "{r}");
        }
    };

    let r = run(lang.hello, json!({})).await;
    assert_eq!(
        (&r["status"], &r["exit_code"], &r["stdout"], &r["stderr"]),
        (
            &json!("ok"),
            &json!(0),
            &json!("hello, world\n"),
            &json!("")
        ),
        "{} hello on {target}: {r}",
        lang.name
    );
    assert_eq!(r["language"], lang.name);
    compile_ok(&r);

    // An empty stdin is an immediate end of file.
    let r = run(lang.echo, json!({"stdin": ""})).await;
    assert_eq!(
        (&r["status"], &r["stdout"]),
        (&json!("ok"), &json!("")),
        "{r}"
    );
    // Lines, non-ASCII and no final newline come back byte for byte.
    let text = "line one\nzwei drei ünd €\n\nlast line without newline";
    let r = run(
        lang.echo,
        json!({"stdin": text, "output_encoding": "base64"}),
    )
    .await;
    assert_eq!(
        (&r["status"], &r["exit_code"], &r["stderr"]),
        (&json!("ok"), &json!(0), &json!("")),
        "{} echo on {target}: {r}",
        lang.name
    );
    assert_eq!(
        b64.decode(s(&r, "stdout")).unwrap(),
        text.as_bytes(),
        "{} echo on {target}: {r}",
        lang.name
    );
    compile_ok(&r);

    if let Some((code, exit, line)) = lang.broken {
        let r = run(code, json!({})).await;
        assert_eq!(r["status"], "compile_error", "{r}");
        assert_eq!(
            (&r["compile"]["status"], &r["compile"]["exit_code"]),
            (&json!("error"), &json!(exit)),
            "{} compile error on {target}: {r}",
            lang.name
        );
        let diagnostics = format!(
            "{}{}",
            s(&r["compile"], "stdout"),
            s(&r["compile"], "stderr")
        );
        assert!(
            diagnostics.lines().any(|l| l.contains(line)),
            "{} compile error on {target}: no line with {line:?} in {diagnostics:?}",
            lang.name
        );
        assert_eq!(
            (&r["stdout"], &r["exit_code"]),
            (&json!(""), &json!(null)),
            "{r}"
        );
    }

    let (code, exit, line) = lang.crash;
    let r = run(code, json!({})).await;
    assert_eq!(
        (&r["status"], &r["exit_code"], &r["signal"], &r["stdout"]),
        (&json!("error"), &json!(exit), &json!(null), &json!("")),
        "{} runtime error on {target}: {r}",
        lang.name
    );
    let stderr = s(&r, "stderr");
    assert!(
        stderr.lines().any(|l| l == line),
        "{} runtime error on {target}: no line {line:?} in {stderr:?}",
        lang.name
    );
    compile_ok(&r);
}

async fn java(target: &str) {
    check(target, &JAVA).await
}
async fn go(target: &str) {
    check(target, &GO).await
}
async fn rust(target: &str) {
    check(target, &RUST).await
}
async fn typescript(target: &str) {
    check(target, &TYPESCRIPT).await
}
async fn ruby(target: &str) {
    check(target, &RUBY).await
}
async fn php(target: &str) {
    check(target, &PHP).await
}
async fn perl(target: &str) {
    check(target, &PERL).await
}
async fn lua(target: &str) {
    check(target, &LUA).await
}

/// Every language of the table is offered on both executors, with the version its own command
/// printed there.
async fn every_language_is_offered_with_its_version(target: &str) {
    let Some(app) = app_for(target).await else {
        return;
    };
    let (_, list) = app.get("/v1/runtimes").await;
    let executor = executor_of(target);
    for (name, prefix) in [
        ("java", "openjdk version \"17."),
        ("go", "go version go1.19"),
        ("rust", "rustc 1.63"),
        ("typescript", "Version 4.8"),
        ("ruby", "ruby 3.1"),
        ("php", "PHP 8.2"),
        ("perl", "v5.36"),
        ("lua", "Lua 5.4"),
    ] {
        let rt = list["runtimes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["language"] == name)
            .unwrap_or_else(|| panic!("{name} is not listed: {list}"));
        let v = rt["versions"][executor].as_str().unwrap_or_default();
        assert!(v.starts_with(prefix), "{name} on {executor}: {rt}");
    }
}

on_both_executors!(
    java,
    go,
    rust,
    typescript,
    ruby,
    php,
    perl,
    lua,
    every_language_is_offered_with_its_version
);

/// A language is an entry of the runtimes file: a service started with its own file runs awk,
/// which no Rust code names, and a runtime whose binary this host lacks is left out (answered
/// `runtime_unavailable`) rather than failing the start.
#[tokio::test]
async fn a_runtimes_file_adds_a_language_and_one_missing_here_is_left_out() {
    needs_root!();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("runtimes.toml");
    let embedded =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/runtimes.toml")).unwrap();
    // The table's own [sandbox] section (its header comment names both sections in passing).
    let sandbox = &embedded
        [embedded.find("\n[sandbox]\n").unwrap()..embedded.find("\n[[runtime]]\n").unwrap()];
    std::fs::write(
        &file,
        format!(
            "{sandbox}
[[runtime]]
language = \"awk\"
aliases = []
source_file = \"main.awk\"
run = [\"awk\", \"-f\", \"main.awk\"]
version = [\"awk\", \"-W\", \"version\"]
env = {{ GREETING = \"from the table\" }}

[[runtime]]
language = \"cobol\"
aliases = []
source_file = \"main.cob\"
run = [\"cobcrun\", \"main\"]
version = [\"cobc\", \"--version\"]
"
        ),
    )
    .unwrap();
    let app = TestApp::start(
        &format!("runtimes-file-{}", std::process::id()),
        &[
            ("EXECBOX_RUNTIMES", file.to_str().unwrap()),
            ("EXECBOX_DOCKER__ENABLED", "false"),
        ],
    );
    let (_, list) = app.get("/v1/runtimes").await;
    let names: Vec<&str> = list["runtimes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["language"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["awk"], "{list}");
    let r = app
        .run(json!({"language": "awk", "code": "{ print ENVIRON[\"GREETING\"] \": \" $2 }", "stdin": "a b\nc d\n"}))
        .await;
    assert_eq!(
        (&r["status"], &r["stdout"]),
        (
            &json!("ok"),
            &json!("from the table: b\nfrom the table: d\n")
        ),
        "{r}"
    );
    let (status, v) = app.execute(json!({"language": "cobol", "code": ""})).await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (503, &json!("runtime_unavailable")),
        "{v}"
    );
    let (status, v) = app.execute(json!({"language": "python", "code": ""})).await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (400, &json!("unknown_language")),
        "{v}"
    );
}
