//! Code blocks in a model's reply. Every fenced block is found and classified: it runs in a
//! known language, or it is answered with why not — never silently dropped.
//!
//! The rule for an untagged block: a `#!` first line decides (`python`, `bash`/`sh`, `node`);
//! otherwise it runs in the run's default language (`python` unless the run says otherwise).

/// Where a block goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Runs in this language (a name of the runtime table).
    Run(&'static str),
    /// Not run, with the reason told to the model and shown in the run's messages.
    NotRun(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The info string's first word as written (`""` for an untagged block).
    pub tag: String,
    pub code: String,
    pub kind: Kind,
}

/// A tag (lowercased, `{.lang}` braces removed) to the runtime it names.
fn language_of_tag(tag: &str) -> Option<&'static str> {
    Some(match tag {
        "python" | "py" | "python3" => "python",
        "bash" | "sh" | "shell" => "bash",
        "js" | "javascript" | "node" | "nodejs" => "javascript",
        "c" => "c",
        "cpp" | "c++" | "cxx" => "cpp",
        _ => return None,
    })
}

/// An untagged block's language: its `#!` line's interpreter, else `default`.
fn language_of_untagged(code: &str, default: &'static str) -> Kind {
    let Some(shebang) = code.lines().next().and_then(|l| l.strip_prefix("#!")) else {
        return Kind::Run(default);
    };
    let mut words = shebang.split_whitespace();
    let program = words.next().unwrap_or("");
    let program = if program.ends_with("/env") {
        words.next().unwrap_or("")
    } else {
        program
    };
    let name = program.rsplit('/').next().unwrap_or("");
    let name = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    match name {
        "python" => Kind::Run("python"),
        "bash" | "sh" => Kind::Run("bash"),
        "node" | "nodejs" => Kind::Run("javascript"),
        other => Kind::NotRun(format!(
            "not run: unknown language {} (from the block's #! line)",
            if other.is_empty() {
                shebang.trim()
            } else {
                other
            }
        )),
    }
}

/// The opening fence of a line: its character, its length and the info string.
fn opening(line: &str) -> Option<(char, usize, &str)> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    if indent > 3 {
        return None;
    }
    let rest = &line[indent..];
    let ch = rest.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let len = rest.len() - rest.trim_start_matches(ch).len();
    if len < 3 {
        return None;
    }
    let info = rest[len..].trim();
    // A backtick fence's info string may not contain a backtick (CommonMark).
    if ch == '`' && info.contains('`') {
        return None;
    }
    Some((ch, len, info))
}

fn closes(line: &str, ch: char, len: usize) -> bool {
    let t = line.trim();
    let indent = line.len() - line.trim_start_matches(' ').len();
    indent <= 3 && t.len() >= len && t.chars().all(|c| c == ch)
}

/// Every fenced block of `reply`, in order. `default` is the language of untagged blocks.
pub fn extract(reply: &str, default: &'static str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut lines = reply.lines();
    while let Some(line) = lines.next() {
        let Some((ch, len, info)) = opening(line) else {
            continue;
        };
        let tag = info.split_whitespace().next().unwrap_or("").to_string();
        let mut body = Vec::new();
        let mut closed = false;
        for l in lines.by_ref() {
            if closes(l, ch, len) {
                closed = true;
                break;
            }
            body.push(l);
        }
        let mut code = body.join("\n");
        if !code.is_empty() {
            code.push('\n');
        }
        let name = tag
            .trim_start_matches('{')
            .trim_start_matches('.')
            .trim_end_matches('}')
            .to_ascii_lowercase();
        let kind = if !closed {
            Kind::NotRun(
                "not run: the block has no closing fence (the reply may have been cut off)".into(),
            )
        } else if code.trim().is_empty() {
            Kind::NotRun("not run: the block is empty".into())
        } else if name.is_empty() {
            language_of_untagged(&code, default)
        } else {
            match language_of_tag(&name) {
                Some(l) => Kind::Run(l),
                None => Kind::NotRun(format!("not run: unknown language {tag}")),
            }
        };
        blocks.push(Block { tag, code, kind });
    }
    blocks
}

/// The language a run's untagged blocks default to, checked against the tag table.
pub fn default_language(name: &str) -> Option<&'static str> {
    language_of_tag(&name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(reply: &str) -> Vec<(String, Kind)> {
        extract(reply, "python")
            .into_iter()
            .map(|b| (b.code, b.kind))
            .collect()
    }

    #[test]
    fn every_tag_of_the_issue_maps_to_its_runtime() {
        for (tag, lang) in [
            ("python", "python"),
            ("py", "python"),
            ("python3", "python"),
            ("bash", "bash"),
            ("sh", "bash"),
            ("shell", "bash"),
            ("js", "javascript"),
            ("javascript", "javascript"),
            ("node", "javascript"),
            ("c", "c"),
            ("cpp", "cpp"),
            ("C++", "cpp"),
            ("{.python}", "python"),
        ] {
            let reply = format!("Here:\n```{tag}\nx\n```\n");
            assert_eq!(
                kinds(&reply),
                vec![("x\n".to_string(), Kind::Run(lang))],
                "{tag}"
            );
        }
    }

    #[test]
    fn unknown_languages_are_answered_not_dropped() {
        let reply = "a\n```cobol\nDISPLAY 'HI'.\n```\nb\n```python title=\"x.py\"\nprint(1)\n```\n";
        let b = extract(reply, "python");
        assert_eq!(b.len(), 2);
        assert_eq!(
            b[0].kind,
            Kind::NotRun("not run: unknown language cobol".into())
        );
        assert_eq!(b[0].tag, "cobol");
        assert_eq!(b[1].kind, Kind::Run("python"));
    }

    #[test]
    fn untagged_blocks_follow_their_shebang_or_the_default() {
        assert_eq!(
            kinds("```\nprint(2)\n```"),
            vec![("print(2)\n".into(), Kind::Run("python"))]
        );
        assert_eq!(
            kinds("```\n#!/bin/bash\necho hi\n```")[0].1,
            Kind::Run("bash")
        );
        assert_eq!(
            kinds("```\n#!/usr/bin/env python3\nprint(1)\n```")[0].1,
            Kind::Run("python")
        );
        assert_eq!(
            kinds("```\n#!/usr/bin/env node\nconsole.log(1)\n```")[0].1,
            Kind::Run("javascript")
        );
        assert_eq!(
            kinds("```\n#!/usr/bin/env ruby\nputs 1\n```")[0].1,
            Kind::NotRun("not run: unknown language ruby (from the block's #! line)".into())
        );
        assert_eq!(
            extract("```\necho hi\n```", "bash")[0].kind,
            Kind::Run("bash")
        );
    }

    #[test]
    fn fences_nest_by_length_and_character_and_unclosed_blocks_are_reported() {
        let reply = "````markdown\n```python\nprint(1)\n```\n````\n~~~sh\necho ok\n~~~\n";
        let b = extract(reply, "python");
        assert_eq!(b.len(), 2);
        assert_eq!(
            b[0].kind,
            Kind::NotRun("not run: unknown language markdown".into())
        );
        assert_eq!(b[0].code, "```python\nprint(1)\n```\n");
        assert_eq!(
            (b[1].code.as_str(), &b[1].kind),
            ("echo ok\n", &Kind::Run("bash"))
        );
        let cut = extract("```python\nprint(1)\nfor i in", "python");
        assert_eq!(
            cut[0].kind,
            Kind::NotRun(
                "not run: the block has no closing fence (the reply may have been cut off)".into()
            )
        );
        assert_eq!(
            extract("```python\n\n```", "python")[0].kind,
            Kind::NotRun("not run: the block is empty".into())
        );
        assert!(extract("no code here, just `inline` and ``two``", "python").is_empty());
        // Indented four spaces is an indented code block, not a fence.
        assert!(extract("    ```python\n    x\n    ```", "python").is_empty());
    }
}
