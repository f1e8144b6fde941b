//! Human output: plans like `terraform plan`, sync results, health progress. Colours go through
//! anstream, which drops them when stdout is not a terminal (or NO_COLOR is set).

use std::io::Write;

use anstyle::{AnsiColor, Style};
use capstan_engine::apply::{ChangeSet, Outcome};
use capstan_engine::health::{HealthStatus, Summary};
use capstan_engine::plan::{Action, Plan, PruneDecision};

const GREEN: Style = AnsiColor::Green.on_default();
const RED: Style = AnsiColor::Red.on_default();
const YELLOW: Style = AnsiColor::Yellow.on_default();
const MAGENTA: Style = AnsiColor::Magenta.on_default();
const CYAN: Style = AnsiColor::Cyan.on_default();
const DIM: Style = Style::new().dimmed();
const BOLD: Style = Style::new().bold();

fn paint(style: Style, text: &str) -> String {
    format!("{style}{text}{style:#}")
}

/// Every change with its diff, drift and prune decisions, then the counts.
pub fn plan(out: &mut impl Write, plan: &Plan, prune: bool) -> std::io::Result<()> {
    for change in &plan.changes {
        let (marker, verb, style) = match change.action {
            Action::Unchanged => continue,
            Action::Create => ("+", "create", GREEN),
            Action::Update => ("~", "update", YELLOW),
            Action::Replace => ("-/+", "replace", MAGENTA),
        };
        writeln!(
            out,
            "{} {} {}",
            paint(style, &format!("{marker} {verb}")),
            paint(BOLD, &change.object.to_string()),
            paint(DIM, &format!("({})", change.provenance))
        )?;
        if let Some(reason) = &change.not_dry_run {
            writeln!(out, "  {}", paint(DIM, &format!("not dry-run: {reason}")))?;
        }
        for drift in &change.drift {
            writeln!(
                out,
                "  {} {} was changed by {}; Git takes it back",
                paint(YELLOW, "!"),
                drift.path,
                drift.managers.join(", ")
            )?;
        }
        if !change.ignored.is_empty() {
            writeln!(
                out,
                "  {}",
                paint(
                    DIM,
                    &format!("ignored (ignoreDifferences): {}", change.ignored.join(", "))
                )
            )?;
        }
        diff(out, &change.diff)?;
    }
    for candidate in &plan.prune {
        let (text, style) = match (candidate.decision, prune) {
            (PruneDecision::Delete, true) => ("- delete", RED),
            (PruneDecision::Delete, false) => ("- would delete with --prune", DIM),
            (PruneDecision::NotOwned, _) => ("  keep (not created by this app)", DIM),
            (PruneDecision::Disabled, _) => ("  keep (capstan.dev/prune: disabled)", DIM),
            (PruneDecision::Gone, _) => continue,
        };
        writeln!(out, "{} {}", paint(style, text), candidate.object)?;
    }
    let prunes = if prune { plan.prunes().count() } else { 0 };
    writeln!(
        out,
        "\n{} {} to create, {} to update, {} to replace, {} to prune, {} unchanged.",
        paint(BOLD, "Plan:"),
        plan.count(Action::Create),
        plan.count(Action::Update),
        plan.count(Action::Replace),
        prunes,
        plan.count(Action::Unchanged),
    )
}

fn diff(out: &mut impl Write, diff: &str) -> std::io::Result<()> {
    for line in diff.lines() {
        let style = if line.starts_with("+++") || line.starts_with("---") {
            DIM
        } else if line.starts_with('+') {
            GREEN
        } else if line.starts_with('-') {
            RED
        } else if line.starts_with("@@") {
            CYAN
        } else {
            Style::new()
        };
        writeln!(out, "    {}", paint(style, line))?;
    }
    Ok(())
}

/// What a sync did.
pub fn changes(out: &mut impl Write, changes: &ChangeSet) -> std::io::Result<()> {
    for entry in &changes.entries {
        let style = match entry.outcome {
            Outcome::Unchanged => continue,
            Outcome::Created => GREEN,
            Outcome::Configured => YELLOW,
            Outcome::Replaced => MAGENTA,
            Outcome::Pruned => RED,
        };
        let outcome = serde_json::to_value(entry.outcome)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        writeln!(out, "{} {}", entry.object, paint(style, &outcome))?;
    }
    writeln!(
        out,
        "{} {} created, {} configured, {} replaced, {} pruned, {} unchanged.",
        paint(BOLD, "Sync:"),
        changes.count(Outcome::Created),
        changes.count(Outcome::Configured),
        changes.count(Outcome::Replaced),
        changes.count(Outcome::Pruned),
        changes.count(Outcome::Unchanged),
    )
}

pub fn health_style(status: HealthStatus) -> Style {
    match status {
        HealthStatus::Current => GREEN,
        HealthStatus::InProgress | HealthStatus::Terminating => YELLOW,
        HealthStatus::Failed | HealthStatus::NotFound => RED,
        HealthStatus::Unknown => DIM,
    }
}

pub fn paint_health(health: &capstan_engine::health::Health) -> String {
    format!(
        "{} {}",
        paint(health_style(health.status), health.status.as_str()),
        health.message
    )
}

/// One round of `--wait` progress.
pub fn progress(out: &mut impl Write, summary: &Summary) -> std::io::Result<()> {
    writeln!(
        out,
        "{}",
        paint(health_style(summary.status), &summary.to_string())
    )
}
