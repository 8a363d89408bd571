//! What a run found: answers counted by endpoint and status, and findings grouped by
//! kind, endpoint and signature with one example each (its case number and the request
//! written out), so a failure reads as a short to-do list.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::case::{Case, Door};
use crate::oracle::{Kind, Verdict};
use crate::send::Answer;

/// One group of like findings.
#[derive(Debug, Clone)]
pub struct Finding {
    pub kind: Kind,
    pub endpoint: String,
    pub signature: String,
    pub count: usize,
    pub example: Option<Example>,
}

/// The first case that showed a finding.
#[derive(Debug, Clone)]
pub struct Example {
    pub index: u64,
    pub mutation: String,
    pub request: String,
    pub answer: String,
}

impl Example {
    pub fn of(case: &Case, answer: &str) -> Self {
        Self {
            index: case.index,
            mutation: case.mutation.clone(),
            request: case.reproducer(),
            answer: answer.to_owned(),
        }
    }
}

/// A run's result.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub seed: u64,
    pub cases: u64,
    pub by_door: BTreeMap<Door, u64>,
    pub elapsed: Duration,
    /// Answers per endpoint, per status.
    pub tally: BTreeMap<String, BTreeMap<String, u64>>,
    findings: BTreeMap<(Kind, String, String), Finding>,
    /// Why the run ended before its last case, if it did.
    pub stopped_early: Option<String>,
    /// Restarts of the sidecars after a panic or a failed probe.
    pub restarts: u32,
    /// With `--case`: the one case and its answer in full.
    pub replay: Option<String>,
    /// Where the logs are, when the scratch folder was kept.
    pub kept: Option<String>,
}

impl Report {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            ..Self::default()
        }
    }

    /// Counts one answer.
    pub fn count(&mut self, case: &Case, answer: &Answer) {
        self.cases += 1;
        *self.by_door.entry(case.door()).or_default() += 1;
        *self
            .tally
            .entry(case.endpoint.clone())
            .or_default()
            .entry(answer.status_label())
            .or_default() += 1;
    }

    /// Adds a finding to its group (the group keeps its first example).
    pub fn add(&mut self, endpoint: &str, verdict: Verdict, example: Option<Example>) {
        let key = (verdict.kind, endpoint.to_owned(), verdict.signature.clone());
        let finding = self.findings.entry(key).or_insert_with(|| Finding {
            kind: verdict.kind,
            endpoint: endpoint.to_owned(),
            signature: verdict.signature,
            count: 0,
            example: None,
        });
        finding.count += 1;
        if finding.example.is_none() {
            finding.example = example;
        }
    }

    pub fn findings(&self) -> impl Iterator<Item = &Finding> {
        self.findings.values()
    }

    pub fn is_clean(&self) -> bool {
        self.findings.is_empty() && self.stopped_early.is_none()
    }

    /// The first lines: what ran, how long, how to replay.
    pub fn headline(&self) -> String {
        let doors = self
            .by_door
            .iter()
            .map(|(door, count)| {
                let name = match door {
                    Door::Http => "HTTP",
                    Door::Grpc => "gRPC",
                    Door::Internal => "internal port",
                };
                format!("{count} {name}")
            })
            .collect::<Vec<_>>()
            .join(", ");
        let mut out = format!(
            "tandem fuzz: seed {}, {} cases ({doors}) in {:.1} s: {} problem(s)",
            self.seed,
            self.cases,
            self.elapsed.as_secs_f64(),
            self.problems()
        );
        if self.restarts > 0 {
            let _ = write!(out, ", sidecars restarted {} time(s)", self.restarts);
        }
        out.push('\n');
        if let Some(reason) = &self.stopped_early {
            let _ = writeln!(out, "STOPPED EARLY: {reason}");
        }
        if let Some(kept) = &self.kept {
            let _ = writeln!(out, "logs and resources kept in {kept}");
        }
        out
    }

    /// Answers per endpoint and status, one line per endpoint.
    pub fn tally_text(&self) -> String {
        let width = self.tally.keys().map(String::len).max().unwrap_or(0);
        let mut out = String::from("answers by endpoint and status:\n");
        for (endpoint, statuses) in &self.tally {
            let statuses = statuses
                .iter()
                .map(|(status, count)| format!("{status}×{count}"))
                .collect::<Vec<_>>()
                .join("  ");
            let _ = writeln!(out, "  {endpoint:<width$}  {statuses}");
        }
        out
    }

    /// How many distinct problems: findings alike in kind and answer count once,
    /// whatever endpoints they showed on.
    pub fn problems(&self) -> usize {
        self.grouped().len()
    }

    /// Findings by kind and answer, each with the endpoints it showed on.
    fn grouped(&self) -> BTreeMap<(Kind, &str), Vec<&Finding>> {
        let mut groups: BTreeMap<(Kind, &str), Vec<&Finding>> = BTreeMap::new();
        for finding in self.findings.values() {
            groups
                .entry((finding.kind, finding.signature.as_str()))
                .or_default()
                .push(finding);
        }
        groups
    }

    /// The findings, grouped by kind and answer, with the endpoints each showed on and
    /// one example (the request written out, and how to replay it).
    pub fn findings_text(&self) -> String {
        let mut out = String::new();
        if self.findings.is_empty() {
            out.push_str("no findings\n");
            return out;
        }
        let _ = writeln!(
            out,
            "findings ([kind] answer ×how many, the endpoints, one example; replay one with --seed {} --case N):",
            self.seed
        );
        for (at, ((kind, signature), findings)) in self.grouped().into_iter().enumerate() {
            let total: usize = findings.iter().map(|finding| finding.count).sum();
            let _ = writeln!(out, "{}. [{kind}] {signature} ×{total}", at + 1);
            let endpoints = findings
                .iter()
                .map(|finding| match &finding.example {
                    Some(example) if !example.request.is_empty() => format!(
                        "{} ×{} (case {})",
                        finding.endpoint, finding.count, example.index
                    ),
                    _ => format!("{} ×{}", finding.endpoint, finding.count),
                })
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(out, "   on: {endpoints}");
            if let Some(example) = findings.iter().find_map(|finding| finding.example.as_ref()) {
                if example.request.is_empty() {
                    let _ = writeln!(out, "   e.g. {}", example.answer);
                    continue;
                }
                let _ = writeln!(out, "   e.g. case {} ({})", example.index, example.mutation);
                for line in example.request.lines() {
                    let _ = writeln!(out, "     {line}");
                }
                let _ = writeln!(out, "   answer: {}", example.answer);
            }
        }
        out
    }

    /// Everything: headline, the tally, the findings (and a replayed case).
    pub fn full_text(&self) -> String {
        let mut out = self.headline();
        out.push('\n');
        out.push_str(&self.tally_text());
        out.push('\n');
        if let Some(replay) = &self.replay {
            out.push_str(replay);
            out.push('\n');
        }
        out.push_str(&self.findings_text());
        out
    }
}
