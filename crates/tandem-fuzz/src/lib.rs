//! A bounded fuzz run over every endpoint of a tandem sidecar.
//!
//! [`run`] starts two real `tandem sidecar` processes over a resources folder that needs
//! no outside service ([`target`]), sends cases made from a seed ([`generate`]) — valid
//! and malformed requests to every HTTP route, every gRPC method and the internal port —
//! and judges each answer with the [`oracle`]: no panic, still answering ([`probe`]),
//! Dapr's error shape, no 5xx (or gRPC `INTERNAL`) for a caller's mistake, no secret
//! value where it does not belong. The [`report`] groups what it found by kind and
//! endpoint, one replayable example each. `docs/reliability.md` tells the whole story.
#![forbid(unsafe_code)]

pub mod case;
pub mod generate;
pub mod json;
pub mod oracle;
pub mod probe;
pub mod proto;
pub mod report;
pub mod send;
pub mod target;
pub mod values;
pub mod world;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::case::{Case, Request};
use crate::oracle::{Kind, Verdict};
use crate::report::Example;
pub use crate::report::Report;
use crate::send::Answer;
use crate::target::Target;
pub use crate::target::TargetError;

/// How to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// The `tandem` binary to fuzz.
    pub tandem: PathBuf,
    pub seed: u64,
    /// How many cases.
    pub cases: u64,
    /// Cases in flight at once.
    pub concurrency: usize,
    /// Cases between two probes (and panic checks).
    pub probe_every: usize,
    /// How long one case may take before it counts as unanswered.
    pub timeout: Duration,
    /// Run only this case (and print it and its answer in full).
    pub only_case: Option<u64>,
    /// Keep the scratch folder (logs, resources) after the run.
    pub keep: bool,
}

impl Config {
    pub fn new(tandem: impl Into<PathBuf>, seed: u64, cases: u64) -> Self {
        Self {
            tandem: tandem.into(),
            seed,
            cases,
            concurrency: 4,
            probe_every: 50,
            timeout: Duration::from_secs(20),
            only_case: None,
            keep: false,
        }
    }
}

/// Runs the cases and judges them. An error means the run could not happen (the
/// sidecar never started); what the run found is in the report.
pub async fn run(config: &Config) -> Result<Report, TargetError> {
    let started = Instant::now();
    let mut target = Target::start(&config.tandem).await?;
    let world = target.world;
    let mut report = Report::new(config.seed);
    let mut logs = LogWatch::default();
    logs.skip_existing(&target);
    let indices: Vec<u64> = match config.only_case {
        Some(index) => vec![index],
        None => (0..config.cases).collect(),
    };
    let mut round = 0;
    for window in indices.chunks(config.probe_every.max(1)) {
        let cases: Vec<Case> = window
            .iter()
            .map(|&index| generate::case(config.seed, index, &world))
            .collect();
        let answers = send_all(&target, &cases, config).await;
        for (case, answer) in cases.iter().zip(&answers) {
            report.count(case, answer);
            for verdict in oracle::judge(case, answer) {
                report.add(
                    &case.endpoint,
                    verdict,
                    Some(Example::of(case, &answer.describe())),
                );
            }
        }
        if config.only_case.is_some() {
            report.replay = Some(replay_text(&cases[0], &answers[0]));
        }
        round += 1;
        let trouble = watch(&mut target, &mut logs, &mut report, round, &cases, &answers).await;
        if trouble.is_empty() {
            continue;
        }
        // Replayed alone on fresh sidecars, the case that breaks them is the example.
        let culprit = isolate(&mut target, &mut logs, &cases, config).await;
        for (endpoint, verdict, suspect) in trouble {
            let example = match culprit {
                Some(case) => {
                    let mut example = Example::of(case, "no answer");
                    example.mutation = format!(
                        "{}; it alone does it again on fresh sidecars",
                        example.mutation
                    );
                    Some(example)
                }
                None => suspect,
            };
            report.add(&endpoint, verdict, example);
        }
        report.restarts += 1;
        if let Err(error) = target.restart().await {
            report.stopped_early = Some(format!("the sidecars could not restart: {error}"));
            break;
        }
        logs.skip_existing(&target);
    }
    for path in &target.logs {
        secrets_in_log(path, &mut report);
    }
    report.elapsed = started.elapsed();
    if config.keep {
        target.keep();
        report.kept = Some(target.dir().display().to_string());
    }
    Ok(report)
}

async fn send_case(target: &Target, case: &Case, timeout: Duration) -> Answer {
    match &case.request {
        Request::Http(request) => send::http(target.main.http, request, timeout).await,
        Request::Grpc(request) => send::grpc(target.main.grpc, request, timeout).await,
        Request::Internal(request) => send::internal(target.main.internal, request, timeout).await,
    }
}

async fn send_all(target: &Target, cases: &[Case], config: &Config) -> Vec<Answer> {
    futures_util::stream::iter(
        cases
            .iter()
            .map(|case| send_case(target, case, config.timeout)),
    )
    .buffered(config.concurrency.max(1))
    .collect()
    .await
}

/// How far each log file has been read.
#[derive(Default)]
struct LogWatch {
    read: HashMap<PathBuf, usize>,
}

impl LogWatch {
    /// Marks what the logs hold now as read (startup output).
    fn skip_existing(&mut self, target: &Target) {
        for path in &target.logs {
            let length = std::fs::metadata(path).map_or(0, |meta| meta.len() as usize);
            self.read.insert(path.clone(), length);
        }
    }

    /// What `path` gained since the last look.
    fn new_text(&mut self, path: &Path) -> String {
        let bytes = std::fs::read(path).unwrap_or_default();
        let from = self.read.get(path).copied().unwrap_or(0).min(bytes.len());
        self.read.insert(path.to_owned(), bytes.len());
        String::from_utf8_lossy(&bytes[from..]).into_owned()
    }
}

/// Something that broke a sidecar: where, what, and the case most likely to blame.
type Trouble = (String, Verdict, Option<Example>);

/// After a window: panics in the logs, processes that exited, probes that fail. Probe
/// failures go in the report at once; panics and exits are returned, to be reported with
/// the case that causes them once it is found.
async fn watch(
    target: &mut Target,
    logs: &mut LogWatch,
    report: &mut Report,
    round: u64,
    cases: &[Case],
    answers: &[Answer],
) -> Vec<Trouble> {
    // The case most likely to blame: the first one left without an answer.
    let suspect = cases
        .iter()
        .zip(answers)
        .find(|(_, answer)| matches!(answer, Answer::NoAnswer(_) | Answer::TimedOut))
        .map(|(case, answer)| (case, answer.describe()))
        .or_else(|| cases.first().map(|case| (case, String::from("(answered)"))));
    let window = match (cases.first(), cases.last()) {
        (Some(first), Some(last)) => format!("cases {}..={}", first.index, last.index),
        _ => String::new(),
    };
    let example = |detail: String| {
        suspect.as_ref().map(|(case, answer)| {
            let mut example = Example::of(case, answer);
            example.mutation = format!("{window}; suspect: {}", example.mutation);
            example.answer = format!("{answer}\n   log: {detail}");
            example
        })
    };
    let mut trouble = Vec::new();
    let mut dead = false;
    for sidecar in [&mut target.main, &mut target.peer] {
        let text = logs.new_text(&sidecar.stderr);
        for panic in oracle::panics(&text) {
            let verdict = Verdict {
                kind: Kind::Panic,
                signature: panic.signature,
            };
            trouble.push((
                format!("sidecar {}", sidecar.app_id),
                verdict,
                example(panic.excerpt),
            ));
        }
        if let Some(status) = sidecar.exited() {
            dead = true;
            let verdict = Verdict {
                kind: Kind::Died,
                signature: format!("exited: {status}"),
            };
            trouble.push((
                format!("sidecar {}", sidecar.app_id),
                verdict,
                example(target::tail(&sidecar.stderr, 600)),
            ));
        }
    }
    if !dead {
        let failures = probe::check(target, round).await;
        let broken = !failures.is_empty();
        for failure in failures {
            report.add(
                &format!("probe: {}", failure.check),
                Verdict {
                    kind: Kind::Unhealthy,
                    signature: oracle::first_words(&failure.detail, 60),
                },
                example(failure.detail),
            );
        }
        if broken && trouble.is_empty() {
            // Broken without a word in the log: still worth fresh sidecars.
            trouble.push((
                "probe".into(),
                Verdict {
                    kind: Kind::Unhealthy,
                    signature: "a probe failed with no panic in the log".into(),
                },
                example(String::new()),
            ));
        }
    }
    trouble
}

/// After a window that broke the sidecar: fresh sidecars, then its cases one at a time
/// until one makes a sidecar panic or exit. `None` when none does alone.
async fn isolate<'a>(
    target: &mut Target,
    logs: &mut LogWatch,
    cases: &'a [Case],
    config: &Config,
) -> Option<&'a Case> {
    if cases.len() < 2 || target.restart().await.is_err() {
        return None;
    }
    logs.skip_existing(target);
    for case in cases {
        send_case(target, case, config.timeout).await;
        // Panics are written by the task that panicked, maybe after its answer.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut hit = false;
        for sidecar in [&mut target.main, &mut target.peer] {
            hit |= !oracle::panics(&logs.new_text(&sidecar.stderr)).is_empty();
            hit |= sidecar.exited().is_some();
        }
        if hit {
            return Some(case);
        }
    }
    None
}

/// Rule 5 for logs: a secret value anywhere in a sidecar's output.
fn secrets_in_log(path: &Path, report: &mut Report) {
    let text = std::fs::read(path).unwrap_or_default();
    for line in text.split(|&byte| byte == b'\n') {
        if let Some(which) = oracle::secret_in([line]) {
            let mut shown = String::from_utf8_lossy(line).into_owned();
            for (at, secret) in world::SECRET_VALUES.iter().enumerate() {
                shown = shown.replace(secret, &format!("<secret #{}>", at + 1));
            }
            let file = path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            report.add(
                &format!("log {file}"),
                Verdict {
                    kind: Kind::SecretInLog,
                    signature: format!("secret #{which}"),
                },
                Some(Example {
                    index: 0,
                    mutation: "a log line".into(),
                    request: String::new(),
                    answer: case::escape(shown.as_bytes(), 400),
                }),
            );
        }
    }
}

fn replay_text(case: &Case, answer: &Answer) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "case {} → {} ({})",
        case.index, case.endpoint, case.mutation
    );
    out.push_str(&case.reproducer());
    let _ = writeln!(out, "allowed server failure: {:?}", case.allow);
    match answer {
        Answer::Http(answer) => {
            let _ = writeln!(out, "answer: HTTP {}", answer.status);
            for (name, value) in &answer.headers {
                let _ = writeln!(out, "  {name}: {}", case::escape(value, 200));
            }
            let _ = writeln!(out, "  body: {}", case::escape(&answer.body, 4000));
        }
        other => {
            let _ = writeln!(out, "answer: {}", other.describe());
        }
    }
    let verdicts = oracle::judge(case, answer);
    if verdicts.is_empty() {
        out.push_str("verdict: fine\n");
    }
    for verdict in verdicts {
        let _ = writeln!(out, "verdict: [{}] {}", verdict.kind, verdict.signature);
    }
    out
}
