//! The words the models read: the roles' default system prompts and the executor's report of
//! a round, with long output cut for the model behind a visible marker.

use crate::exec::{RunResult, Status};

pub const CODER_SYSTEM: &str = "You are a careful programmer solving the user's task by writing and running code.\n\
Plan briefly, then write code in fenced markdown blocks tagged with their language: ```python, ```bash, ```javascript, ```c or ```cpp.\n\
Every block you write is run, in order, as its own program in a sandbox with no network; files written in the working directory stay there for later blocks and turns. \
After your reply you will see each block's exit code, stdout and stderr. If a block fails, the blocks after it in the same reply are not run.\n\
Read the output, fix what is wrong and try again. When the task is done and you have seen your code work, reply with a short summary and the word TERMINATE, without code.";

pub const CRITIC_SYSTEM: &str = "You review a coder's work on a task: its plan, its code and the output of running it.\n\
If the task is fully and correctly done, reply with the word TERMINATE. Otherwise say briefly and concretely what is wrong or missing; do not write the code yourself.";

/// What the model reads about one block.
pub enum Outcome<'a> {
    Ran(&'a RunResult),
    NotRun(&'a str),
}

/// The executor's report of a round, as the coder reads it. Each stream is cut to
/// `max_chars` characters (head and tail kept) behind a marker that says so.
pub fn report(blocks: &[(String, Outcome<'_>)], max_chars: usize) -> String {
    if blocks.is_empty() {
        return "No code block was found in your reply, so nothing ran. Put code to run in a fenced block tagged with its language \
                (```python, ```bash, ```javascript, ```c or ```cpp), or reply TERMINATE if the task is done."
            .into();
    }
    let mut out = String::new();
    for (i, (language, outcome)) in blocks.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let label = if language.is_empty() {
            format!("Block {}", i + 1)
        } else {
            format!("Block {} ({language})", i + 1)
        };
        match outcome {
            Outcome::NotRun(reason) => out.push_str(&format!("{label}: {reason}\n")),
            Outcome::Ran(r) => {
                out.push_str(&format!("{label}: {}\n", headline(r)));
                if let Some(c) = r
                    .compile
                    .as_ref()
                    .filter(|_| r.status == Status::CompileError)
                {
                    section(
                        &mut out,
                        "compiler output",
                        &format!("{}{}", c.stdout, c.stderr),
                        false,
                        max_chars,
                    );
                }
                section(&mut out, "stdout", &r.stdout, r.stdout_truncated, max_chars);
                section(&mut out, "stderr", &r.stderr, r.stderr_truncated, max_chars);
            }
        }
    }
    out
}

fn headline(r: &RunResult) -> String {
    let wall = r.usage.wall_time_ms;
    match r.status {
        Status::Ok => "exit code 0".into(),
        Status::Error => format!("exit code {}", r.exit_code.unwrap_or(-1)),
        Status::Timeout => {
            format!("timed out after {wall} ms; the program and its children were killed")
        }
        Status::CpuLimit => "killed: CPU time limit reached".into(),
        Status::MemoryLimit => "killed: memory limit reached".into(),
        Status::Killed => format!("killed by {}", r.signal.as_deref().unwrap_or("a signal")),
        Status::CompileError => "compile error; the program did not run".into(),
    }
}

fn section(out: &mut String, name: &str, text: &str, capped: bool, max_chars: usize) {
    if text.is_empty() && !capped {
        return;
    }
    out.push_str(name);
    out.push_str(":\n");
    out.push_str(&cut(text, max_chars));
    if !out.ends_with('\n') {
        out.push('\n');
    }
    if capped {
        out.push_str(
            "[execbox: the program wrote more than the sandbox keeps; the rest was discarded]\n",
        );
    }
}

/// `text` if it has at most `max` characters, else its first two thirds and last third of
/// `max` around a marker saying how much was cut.
pub fn cut(text: &str, max: usize) -> String {
    let total = text.chars().count();
    if total <= max {
        return text.to_string();
    }
    let head = max * 2 / 3;
    let tail = max - head;
    let start: String = text.chars().take(head).collect();
    let end: String = text.chars().skip(total - tail).collect();
    format!("{start}\n[... execbox: {} characters cut here for the model; the run's messages hold the whole output ...]\n{end}", total - head - tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_output_is_cut_with_a_marker_keeping_head_and_tail() {
        let text: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        let c = cut(&text, 300);
        assert!(c.starts_with("line 0\nline 1\n"));
        assert!(c.ends_with("line 999\n"));
        let cut_chars = text.chars().count() - 300;
        assert!(
            c.contains(&format!(
                "[... execbox: {cut_chars} characters cut here for the model;"
            )),
            "{c}"
        );
        assert_eq!(cut("short", 300), "short");
        assert_eq!(cut("ééé", 3), "ééé");
    }

    #[test]
    fn a_round_without_blocks_says_so() {
        assert!(report(&[], 100).starts_with("No code block was found in your reply"));
        let r = report(
            &[(
                "cobol".into(),
                Outcome::NotRun("not run: unknown language cobol"),
            )],
            100,
        );
        assert_eq!(r, "Block 1 (cobol): not run: unknown language cobol\n");
    }
}
