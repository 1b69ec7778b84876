//! Code blocks in a model's reply. Every fenced block is found and classified: it runs in a
//! known language, or it is answered with why not — never silently dropped.
//!
//! Which tags name which language is data: the runtime table's languages, their aliases and
//! their `tags` (the names models write on fences, such as `shell` or `cxx`), as [`Tags`].
//! The rule for an untagged block: a `#!` first line decides (its interpreter, looked up the
//! same way: `python3`, `sh`, `node`, `ruby`, ...); otherwise it runs in the run's default
//! language (`python` unless the run says otherwise).

use std::collections::BTreeMap;

use crate::exec::runtime::RuntimeTable;

/// Where a block goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Runs in this language (a name of the runtime table).
    Run(String),
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

/// The fence tags a reply's blocks may carry, lowercased, each to the language it runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tags(BTreeMap<String, String>);

impl Tags {
    /// Every language of `table`, its aliases and its fence `tags`.
    pub fn of(table: &RuntimeTable) -> Tags {
        let mut map = BTreeMap::new();
        for rt in &table.runtimes {
            let names = std::iter::once(&rt.language)
                .chain(&rt.aliases)
                .chain(&rt.tags);
            for name in names {
                map.entry(name.to_ascii_lowercase())
                    .or_insert_with(|| rt.language.clone());
            }
        }
        Tags(map)
    }

    /// The language a tag (any case, `{.lang}` braces removed by the caller) names.
    pub fn language(&self, tag: &str) -> Option<&str> {
        self.0.get(&tag.to_ascii_lowercase()).map(String::as_str)
    }

    /// The languages, each once, for messages that list them.
    pub fn languages(&self) -> Vec<&str> {
        let mut l: Vec<&str> = self.0.values().map(String::as_str).collect();
        l.sort_unstable();
        l.dedup();
        l
    }

    /// An untagged block's language: its `#!` line's interpreter, else `default`.
    fn of_untagged(&self, code: &str, default: &str) -> Kind {
        let Some(shebang) = code.lines().next().and_then(|l| l.strip_prefix("#!")) else {
            return Kind::Run(default.to_string());
        };
        let mut words = shebang.split_whitespace();
        let program = words.next().unwrap_or("");
        let program = if program.ends_with("/env") {
            words.next().unwrap_or("")
        } else {
            program
        };
        let name = program.rsplit('/').next().unwrap_or("");
        // `python3.11` and `lua5.4` are their runtime's interpreters too.
        let bare = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
        match self.language(name).or_else(|| self.language(bare)) {
            Some(l) => Kind::Run(l.to_string()),
            None => Kind::NotRun(format!(
                "not run: unknown language {} (from the block's #! line)",
                if bare.is_empty() {
                    shebang.trim()
                } else {
                    bare
                }
            )),
        }
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
pub fn extract(reply: &str, tags: &Tags, default: &str) -> Vec<Block> {
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
            tags.of_untagged(&code, default)
        } else {
            match tags.language(&name) {
                Some(l) => Kind::Run(l.to_string()),
                None => Kind::NotRun(format!("not run: unknown language {tag}")),
            }
        };
        blocks.push(Block { tag, code, kind });
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags() -> Tags {
        Tags::of(&RuntimeTable::embedded())
    }

    fn kinds(reply: &str) -> Vec<(String, Kind)> {
        extract(reply, &tags(), "python")
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
            ("cxx", "cpp"),
            ("java", "java"),
            ("go", "go"),
            ("golang", "go"),
            ("rust", "rust"),
            ("rs", "rust"),
            ("ts", "typescript"),
            ("typescript", "typescript"),
            ("ruby", "ruby"),
            ("rb", "ruby"),
            ("php", "php"),
            ("perl", "perl"),
            ("lua", "lua"),
        ] {
            let reply = format!("Here:\n```{tag}\nx\n```\n");
            assert_eq!(
                kinds(&reply),
                vec![("x\n".to_string(), Kind::Run(lang.to_string()))],
                "{tag}"
            );
        }
    }

    /// A language added to the runtimes file is a fence tag with no change to this module.
    #[test]
    fn a_language_of_the_runtimes_file_is_a_tag() {
        let mut text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("runtimes.toml"),
        )
        .unwrap();
        text.push_str(
            "\n[[runtime]]\nlanguage = \"scheme\"\naliases = [\"scm\"]\ntags = [\"Racket\"]\nsource_file = \"main.scm\"\nrun = [\"guile\", \"main.scm\"]\nversion = [\"guile\", \"--version\"]\n",
        );
        let tags = Tags::of(&RuntimeTable::parse(&text, "test").unwrap());
        for tag in ["scheme", "scm", "racket", "RACKET"] {
            let b = extract(&format!("```{tag}\n(display 1)\n```"), &tags, "python");
            assert_eq!(b[0].kind, Kind::Run("scheme".into()), "{tag}");
        }
        let b = extract("```\n#!/usr/bin/env scm\n(display 1)\n```", &tags, "python");
        assert_eq!(b[0].kind, Kind::Run("scheme".into()));
        assert!(tags.languages().contains(&"scheme"));
    }

    #[test]
    fn unknown_languages_are_answered_not_dropped() {
        let reply = "a\n```cobol\nDISPLAY 'HI'.\n```\nb\n```python title=\"x.py\"\nprint(1)\n```\n";
        let b = extract(reply, &tags(), "python");
        assert_eq!(b.len(), 2);
        assert_eq!(
            b[0].kind,
            Kind::NotRun("not run: unknown language cobol".into())
        );
        assert_eq!(b[0].tag, "cobol");
        assert_eq!(b[1].kind, Kind::Run("python".into()));
    }

    #[test]
    fn untagged_blocks_follow_their_shebang_or_the_default() {
        assert_eq!(
            kinds("```\nprint(2)\n```"),
            vec![("print(2)\n".into(), Kind::Run("python".into()))]
        );
        assert_eq!(
            kinds("```\n#!/bin/bash\necho hi\n```")[0].1,
            Kind::Run("bash".into())
        );
        assert_eq!(
            kinds("```\n#!/usr/bin/env python3\nprint(1)\n```")[0].1,
            Kind::Run("python".into())
        );
        assert_eq!(
            kinds("```\n#!/usr/bin/env node\nconsole.log(1)\n```")[0].1,
            Kind::Run("javascript".into())
        );
        assert_eq!(
            kinds("```\n#!/usr/bin/env ruby\nputs 1\n```")[0].1,
            Kind::Run("ruby".into())
        );
        assert_eq!(
            kinds("```\n#!/usr/bin/lua5.4\nprint(1)\n```")[0].1,
            Kind::Run("lua".into())
        );
        assert_eq!(
            kinds("```\n#!/usr/bin/env tclsh\nputs 1\n```")[0].1,
            Kind::NotRun("not run: unknown language tclsh (from the block's #! line)".into())
        );
        assert_eq!(
            extract("```\necho hi\n```", &tags(), "bash")[0].kind,
            Kind::Run("bash".into())
        );
    }

    #[test]
    fn fences_nest_by_length_and_character_and_unclosed_blocks_are_reported() {
        let reply = "````markdown\n```python\nprint(1)\n```\n````\n~~~sh\necho ok\n~~~\n";
        let b = extract(reply, &tags(), "python");
        assert_eq!(b.len(), 2);
        assert_eq!(
            b[0].kind,
            Kind::NotRun("not run: unknown language markdown".into())
        );
        assert_eq!(b[0].code, "```python\nprint(1)\n```\n");
        assert_eq!(
            (b[1].code.as_str(), &b[1].kind),
            ("echo ok\n", &Kind::Run("bash".into()))
        );
        let cut = extract("```python\nprint(1)\nfor i in", &tags(), "python");
        assert_eq!(
            cut[0].kind,
            Kind::NotRun(
                "not run: the block has no closing fence (the reply may have been cut off)".into()
            )
        );
        assert_eq!(
            extract("```python\n\n```", &tags(), "python")[0].kind,
            Kind::NotRun("not run: the block is empty".into())
        );
        assert!(extract("no code here, just `inline` and ``two``", &tags(), "python").is_empty());
        // Indented four spaces is an indented code block, not a fence.
        assert!(extract("    ```python\n    x\n    ```", &tags(), "python").is_empty());
    }
}
