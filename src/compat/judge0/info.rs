//! What the Judge0 door offers: its languages (Judge0's ids for execbox's runtimes, named with
//! the versions probed at start), Judge0's statuses, `about` and `config_info`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;

use super::config::ConfigInfo;
use super::verdict::STATUSES;
use super::Judge0Error;
use crate::compat::offered;
use crate::service::AppState;

/// The Judge0 API version this door speaks; Judge0's SDK picks its language ids by it.
pub const VERSION: &str = "1.13.1";

#[derive(Serialize)]
pub struct LanguageItem {
    id: u32,
    name: String,
}

/// `GET /languages`: one entry per language, under the id Judge0's SDK uses, by name.
pub async fn languages(State(state): State<Arc<AppState>>) -> Json<Vec<LanguageItem>> {
    let mut list: Vec<LanguageItem> = offered(&state)
        .iter()
        .map(|l| LanguageItem {
            id: l.row.judge0_id,
            name: l.judge0_name(),
        })
        .collect();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    Json(list)
}

#[derive(Serialize)]
pub struct LanguageDetail {
    id: u32,
    name: String,
    is_archived: bool,
    source_file: String,
    compile_cmd: Option<String>,
    run_cmd: String,
}

/// `GET /languages/{id}`: what runs a language's submissions (any of its Judge0 ids).
pub async fn language(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<LanguageDetail>, Judge0Error> {
    let not_found = || {
        Judge0Error::new(
            StatusCode::NOT_FOUND,
            format!("no language with id {id}; GET /judge0/languages lists them"),
        )
    };
    let wanted: u32 = id.parse().map_err(|_| not_found())?;
    let l = offered(&state)
        .into_iter()
        .find(|l| l.has_judge0_id(wanted))
        .ok_or_else(not_found)?;
    Ok(Json(LanguageDetail {
        id: wanted,
        name: l.judge0_name(),
        is_archived: false,
        source_file: l.runtime.source_file.clone(),
        compile_cmd: l.runtime.compile.as_ref().map(|c| c.join(" ")),
        run_cmd: l.runtime.run.join(" "),
    }))
}

#[derive(Serialize)]
pub struct StatusItem {
    id: u8,
    description: &'static str,
}

/// `GET /statuses`: Judge0's fourteen.
pub async fn statuses() -> Json<Vec<StatusItem>> {
    Json(
        STATUSES
            .iter()
            .map(|&(id, description)| StatusItem { id, description })
            .collect(),
    )
}

#[derive(Serialize)]
pub struct About {
    version: &'static str,
    homepage: Option<String>,
    source_code: Option<String>,
    maintainer: Option<String>,
    /// Not Judge0's: which service answers.
    execbox_version: &'static str,
}

/// `GET /about`: the Judge0 API version spoken (its SDK reads it), and execbox's own.
pub async fn about() -> Json<About> {
    Json(About {
        version: VERSION,
        homepage: None,
        source_code: None,
        maintainer: None,
        execbox_version: env!("CARGO_PKG_VERSION"),
    })
}

/// `GET /config_info`: every field Judge0 reports, as this service applies them.
pub async fn config_info(State(state): State<Arc<AppState>>) -> Json<ConfigInfo> {
    Json(crate::compat::judge0_config(&state))
}
